"""Typed, frozen configuration of the listener family and its presets.

Presets are TOML files in ``models/presets/listener/`` (``paper``, ``small``, ``tiny``) with the
sections ``[vq]`` (VQConfig), ``[tokens]`` (TokenConfig), ``[lm]`` (LMConfig), ``[train_vq]`` and
``[train_lm]`` (StageConfig). Every field is validated here, in one place; unknown fields are a
ConfigError naming the file. A checkpoint's ``config.json`` stores the resolved configs, so the
folder alone rebuilds the model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ehead_cli.errors import ConfigError
from ehead_cli.model.config import check_fields, load_toml, models_dir

PRESET_DIR = "listener"  # under models/presets/
SPEECH_KINDS = ("kmeans", "speechtokenizer")
EMOTION_KINDS = ("kmeans", "emoca")
OBJECTIVES = ("pre", "full")


@dataclass(frozen=True)
class VQConfig:
    """The identity-disentangled VQ-VAE (supplement section 2; LM-listener where it is silent).

    codebook_size:  K motion codes (LM-listener: 256)
    code_dim:       width of a code (LM-listener: 512)
    width:          channels of the convolutions (LM-listener: 512)
    levels:         L stride-2 downsamplings, r = 2^L frames per token (supplement: L = 3, r = 8)
    depth:          ResBlocks per level (LM-listener: 3)
    dilation_growth: dilation of the k-th ResBlock of a level = growth^k (LM-listener: 3)
    identity:       instance norm in the encoder and AdaIN from an identity code in the decoder (the
                    supplement's disentanglement); False = the plain VQ-VAE of LM-listener (ablations)
    identity_dim:   width of the identity code
    window:         frames per VQ training window (LM-listener: 32)
    std_floor:      per-dimension std floor of the motion normalisation (dims that never move stay 0)
    reset_threshold: a code whose EMA usage per batch falls below this is re-seeded from a random
                    encoder output of the batch (LM-listener's "reset"); 0 disables
    stop_gradients: which side the 0.02 of eq. 6 weighs. "lm-listener" (default): 0.02 on the encoder's
                    commitment || z - sg[Q(z)] ||^2 and 1 on the codebook's || sg[z] - Q(z) ||^2, as the
                    LM-listener code (commit 0.02 on the encoder, the codebook moved fully); "as-printed":
                    eqs. 2-3 literally, 1 on || z - sg[Q(z)] ||^2 (L_embed) and 0.02 on || sg[z] - Q(z) ||^2
                    (L_commit), which collapsed the codebook in our runs (docs/listener.md)
    """

    codebook_size: int = 256
    code_dim: int = 512
    width: int = 512
    levels: int = 3
    depth: int = 3
    dilation_growth: int = 3
    identity: bool = True
    identity_dim: int = 64
    window: int = 32
    std_floor: float = 1e-3
    reset_threshold: float = 1.0
    stop_gradients: str = "lm-listener"

    @property
    def rate(self) -> int:
        """r: motion frames per token."""
        return 2 ** self.levels

    def validate(self) -> VQConfig:
        for name in ("codebook_size", "code_dim", "width", "levels", "depth", "dilation_growth", "identity_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"vq.{name} must be >= 1, got {getattr(self, name)}")
        if self.window % self.rate:
            raise ConfigError(f"vq.window ({self.window}) must be a multiple of r = 2^levels = {self.rate}")
        if self.stop_gradients not in ("lm-listener", "as-printed"):
            raise ConfigError(f"vq.stop_gradients must be lm-listener or as-printed, got {self.stop_gradients!r}")
        if not self.std_floor > 0 or self.reset_threshold < 0:
            raise ConfigError("vq.std_floor must be > 0 and vq.reset_threshold >= 0")
        return self


@dataclass(frozen=True)
class TokenConfig:
    """The speaker's speech and emotion tokens (supplement section 3; offline defaults are ours).

    speech:          "kmeans" (log-mel k-means, the offline default) or "speechtokenizer" (RVQ-1 codes
                     of a local SpeechTokenizer checkpoint, 50 Hz, 1024 codes)
    speech_codes:    k-means clusters of the default speech tokens
    speech_per_group: speech tokens per r-frame group (kmeans: one per motion frame = r; the log-mel's
                     two 50 Hz frames of a motion frame are stacked into one feature)
    n_mels:          mel bands of the log-mel front end
    emotion:         "kmeans" (affect clusters of the speaker's expression, the offline default) or
                     "emoca" (EMOCA's emotion recogniser from a local path)
    emotion_codes:   affect clusters (kmeans) or emotion classes (emoca: from its config)
    affect_dims:     leading expression coefficients the affect k-means sees (EMOCA reads 50)
    kmeans_frames:   most frames sampled (seeded) to fit each k-means
    """

    speech: str = "kmeans"
    speech_codes: int = 256
    speech_per_group: int = 8
    n_mels: int = 80
    emotion: str = "kmeans"
    emotion_codes: int = 8
    affect_dims: int = 50
    kmeans_frames: int = 20000

    def validate(self) -> TokenConfig:
        if self.speech not in SPEECH_KINDS:
            raise ConfigError(f"tokens.speech must be one of {', '.join(SPEECH_KINDS)}, got {self.speech!r}")
        if self.emotion not in EMOTION_KINDS:
            raise ConfigError(f"tokens.emotion must be one of {', '.join(EMOTION_KINDS)}, got {self.emotion!r}")
        for name in ("speech_codes", "speech_per_group", "n_mels", "emotion_codes", "affect_dims", "kmeans_frames"):
            if getattr(self, name) < 1:
                raise ConfigError(f"tokens.{name} must be >= 1, got {getattr(self, name)}")
        if self.affect_dims > 100:
            raise ConfigError("tokens.affect_dims must be <= 100 (the expression coefficients)")
        return self


@dataclass(frozen=True)
class LMConfig:
    """The GPT-2-architecture language model (supplement section 1; LM-listener where it is silent).

    n_layer, n_head, n_embd: GPT-2 sizes (LM-listener: gpt2-medium, 24 x 16 x 1024)
    window_groups:   r-frame groups per training sequence (LM-listener: 240 frames at 30 fps = 30 groups)
    multimodal:      speech and emotion tokens in every group (False: speaker motion only, the ablations)
    pkeep:           teacher-forcing corruption: each listener input token is kept with this
                     probability and otherwise replaced by a random code (LM-listener: 0.5)
    dropout:         GPT-2 residual / attention / embedding dropout (LM-listener: 0.1)
    """

    n_layer: int = 24
    n_head: int = 16
    n_embd: int = 1024
    window_groups: int = 30
    multimodal: bool = True
    pkeep: float = 0.5
    dropout: float = 0.1

    def validate(self) -> LMConfig:
        for name in ("n_layer", "n_head", "n_embd", "window_groups"):
            if getattr(self, name) < 1:
                raise ConfigError(f"lm.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"lm.n_embd ({self.n_embd}) must be divisible by lm.n_head ({self.n_head})")
        if not 0 < self.pkeep <= 1 or not 0 <= self.dropout < 1:
            raise ConfigError("lm.pkeep must be in (0, 1] and lm.dropout in [0, 1)")
        return self


@dataclass(frozen=True)
class Phase:
    """A stretch of training at one learning rate and objective (``pre``: next-token loss on every
    token; ``full``: on the listener's tokens only)."""

    steps: int
    lr: float
    objective: str = "full"


@dataclass(frozen=True)
class StageConfig:
    """One stage's schedule: AdamW with ``betas`` over consecutive ``phases``.

    batch_size:    windows per step (VQ: 256, LM: 8 in the supplement)
    warmup_steps:  linear warm-up of the first phase's lr (LM-listener's default: 1000)
    weight_decay:  AdamW decay (LM-listener: 0 for the VQ-VAE, 1e-6 for the LM)
    grad_clip:     max global gradient norm (0 disables)
    log_every, ckpt_every: steps between metrics rows / saved states
    seed:          initialisation, window order and corruption
    """

    phases: tuple[Phase, ...]
    batch_size: int
    betas: tuple[float, float]
    warmup_steps: int = 1000
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    log_every: int = 50
    ckpt_every: int = 5000
    seed: int = 0

    @property
    def steps(self) -> int:
        return sum(p.steps for p in self.phases)

    def phase_at(self, step: int) -> tuple[Phase, int]:
        """(phase, its index) of 0-based optimiser step ``step``."""
        start = 0
        for i, p in enumerate(self.phases):
            if step < start + p.steps:
                return p, i
            start += p.steps
        return self.phases[-1], len(self.phases) - 1

    def lr_at(self, step: int) -> float:
        """Constant per phase (the supplement's schedules are step decays: LM-listener's MultiStepLR,
        gamma 0.05), with a linear warm-up at the very start."""
        phase, _ = self.phase_at(step)
        if step < self.warmup_steps:
            return phase.lr * (step + 1) / self.warmup_steps
        return phase.lr

    def validate(self, section: str) -> StageConfig:
        if not self.phases:
            raise ConfigError(f"{section}.phases must list at least one phase")
        for p in self.phases:
            if p.steps < 1 or not p.lr > 0 or p.objective not in OBJECTIVES:
                raise ConfigError(f"{section}: each phase needs steps >= 1, lr > 0 and objective in "
                                  f"{', '.join(OBJECTIVES)}; got {p}")
        if self.batch_size < 1 or self.log_every < 1 or self.ckpt_every < 1 or self.warmup_steps < 0:
            raise ConfigError(f"{section}: batch_size, log_every, ckpt_every must be >= 1, warmup_steps >= 0")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["phases"] = [dataclasses.asdict(p) for p in self.phases]
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str, section: str) -> StageConfig:
        check_fields(cls, d, source, section)
        d = dict(d)
        try:
            phases = tuple(Phase(**p) for p in d.pop("phases", ()))
            betas = tuple(float(b) for b in d.pop("betas", (0.9, 0.99)))
            return cls(phases=phases, betas=betas, **d).validate(section)  # type: ignore[arg-type]
        except TypeError as err:
            raise ConfigError(f"{source}: [{section}] {err}") from None


@dataclass(frozen=True)
class ListenerConfig:
    """Everything of one listener model: the VQ-VAE, the tokens, the LM and both schedules."""

    preset: str = "custom"
    vq: VQConfig = field(default_factory=VQConfig)
    tokens: TokenConfig = field(default_factory=TokenConfig)
    lm: LMConfig = field(default_factory=LMConfig)
    train_vq: StageConfig = field(default_factory=lambda: StageConfig((Phase(1, 1e-4),), 8, (0.9, 0.99)))
    train_lm: StageConfig = field(default_factory=lambda: StageConfig((Phase(1, 1e-4),), 8, (0.5, 0.99)))

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "vq": dataclasses.asdict(self.vq), "tokens": dataclasses.asdict(self.tokens),
                "lm": dataclasses.asdict(self.lm), "train_vq": self.train_vq.to_dict(),
                "train_lm": self.train_lm.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> ListenerConfig:
        unknown = set(d) - {"preset", "vq", "tokens", "lm", "train_vq", "train_lm"}
        if unknown:
            raise ConfigError(f"{source}: unknown section(s) {', '.join(sorted(unknown))}")
        parts: dict[str, Any] = {"preset": str(d.get("preset", "custom"))}
        for name, kind in (("vq", VQConfig), ("tokens", TokenConfig), ("lm", LMConfig)):
            sub = dict(d.get(name, {}))
            check_fields(kind, sub, source, name)
            try:
                parts[name] = kind(**sub).validate()
            except TypeError as err:
                raise ConfigError(f"{source}: [{name}] {err}") from None
        for name in ("train_vq", "train_lm"):
            if name in d:
                parts[name] = StageConfig.from_dict(d[name], source, name)
        return cls(**parts)

    def replace(self, **sections: Any) -> ListenerConfig:
        """A copy with whole sections or fields replaced: ``replace(vq={"identity": False})``."""
        d = self.to_dict()
        for name, value in sections.items():
            if isinstance(value, dict) and isinstance(d.get(name), dict):
                d[name] = {**d[name], **value}
            else:
                d[name] = value
        return ListenerConfig.from_dict(d, source="replace()")


def preset_path(name: str) -> Path:
    return models_dir() / "presets" / PRESET_DIR / f"{name}.toml"


def list_presets() -> list[str]:
    return sorted(p.stem for p in (models_dir() / "presets" / PRESET_DIR).glob("*.toml"))


def load_preset(name: str, config_file: str | Path | None = None, overrides: dict[str, Any] | None = None
                ) -> ListenerConfig:
    """The preset ``name`` (``--preset``), then ``--config FILE.toml`` sections, then ``overrides``
    ({section: {field: value}}), later wins."""
    path = preset_path(name)
    if not path.is_file():
        raise ConfigError(f"unknown listener preset {name!r} for --preset; choose one of {', '.join(list_presets())}")
    data: dict[str, Any] = {"preset": name, **load_toml(path)}
    source = str(path)
    for extra in ([load_toml(Path(config_file))] if config_file else []) + ([overrides] if overrides else []):
        for section, values in extra.items():
            if isinstance(values, dict) and isinstance(data.get(section), dict):
                data[section] = {**data[section], **values}
            else:
                data[section] = values
        source = str(config_file or source)
    return ListenerConfig.from_dict(data, source=source)
