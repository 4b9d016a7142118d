"""Typed, frozen configuration of the listener family and its presets.

Presets are TOML files in ``models/presets/listener/`` (``paper``, ``small``, ``tiny``) with the
sections ``[vq]`` (VQConfig), ``[tokens]`` (TokenConfig), ``[lm]`` (LMConfig), ``[train_vq]`` and
``[train_lm]`` (``ehead_cli.train.config.TrainConfig`` with ``phases``: the schedules the shared
training loop runs; ``stage_config`` fills in the listener's defaults). Every field is validated
here, in one place; preset, ``--config`` file and overrides are merged by the one merge
(``ehead_cli.io.config.merge_config``, ``resolve_listener_config``); unknown sections and fields are a
ConfigError naming the file and the section. A checkpoint's ``config.json``
stores the resolved configs, so the folder alone rebuilds the model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ehead_cli.errors import ConfigError
from ehead_cli.io.config import COMMAND_LINE, Layer, build_section, file_layer, load_toml, merge_config, merge_tables
from ehead_cli.model.config import models_dir
from ehead_cli.train.config import TrainConfig

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


# The listener's schedules are ``TrainConfig`` sections run by the shared loop; the fields a section
# leaves out default to these (LM-listener's, whose models keep no EMA and the VQ-VAE no weight decay)
# rather than to Stage I's.
STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "train_vq": {"betas": (0.9, 0.99), "weight_decay": 0.0},
    "train_lm": {"betas": (0.5, 0.99), "weight_decay": 1e-6},
}
COMMON_DEFAULTS: dict[str, Any] = {"warmup_steps": 1000, "ema_decay": 0.0, "grad_clip": 1.0, "workers": 0,
                                   "log_every": 50, "ckpt_every": 5000, "val_every": 0, "val_windows": 256}


def stage_config(d: dict[str, Any], source: str, section: str) -> TrainConfig:
    """A ``[train_vq]`` / ``[train_lm]`` section -> TrainConfig, the listener's defaults filled in;
    the LM's phase objectives must be "pre" or "full" ("" = "full")."""
    cfg = TrainConfig.from_dict({**COMMON_DEFAULTS, **STAGE_DEFAULTS[section], **d}, source, section)
    if not cfg.phases:
        raise ConfigError(f"{source}: [{section}] needs phases = [{{ steps = N, lr = X }}, ...]")
    if section == "train_lm":
        bad = [p.objective for p in cfg.phases if p.objective not in ("", *OBJECTIVES)]
        if bad:
            raise ConfigError(f"{source}: [{section}] phase objective {bad[0]!r}: choose one of "
                              f"{', '.join(OBJECTIVES)}")
    return cfg


@dataclass(frozen=True)
class ListenerConfig:
    """Everything of one listener model: the VQ-VAE, the tokens, the LM and both schedules."""

    preset: str = "custom"
    vq: VQConfig = field(default_factory=VQConfig)
    tokens: TokenConfig = field(default_factory=TokenConfig)
    lm: LMConfig = field(default_factory=LMConfig)
    train_vq: TrainConfig = field(default_factory=lambda: stage_config(
        {"phases": [{"steps": 1, "lr": 1e-4}], "batch_size": 8}, "defaults", "train_vq"))
    train_lm: TrainConfig = field(default_factory=lambda: stage_config(
        {"phases": [{"steps": 1, "lr": 1e-4}], "batch_size": 8}, "defaults", "train_lm"))

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "vq": dataclasses.asdict(self.vq), "tokens": dataclasses.asdict(self.tokens),
                "lm": dataclasses.asdict(self.lm), "train_vq": _train_dict(self.train_vq),
                "train_lm": _train_dict(self.train_lm)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> ListenerConfig:
        unknown = set(d) - {"preset", "vq", "tokens", "lm", "train_vq", "train_lm"}
        if unknown:
            raise ConfigError(f"{source}: unknown section(s) {', '.join(sorted(unknown))}")
        parts: dict[str, Any] = {"preset": str(d.get("preset", "custom"))}
        for name, kind in (("vq", VQConfig), ("tokens", TokenConfig), ("lm", LMConfig)):
            parts[name] = build_section(kind, dict(d.get(name, {})), source, name)
        for name in ("train_vq", "train_lm"):
            if name in d:
                parts[name] = stage_config(d[name], source, name)
        return cls(**parts)

    def replace(self, **sections: Any) -> ListenerConfig:
        """A copy with whole sections or fields replaced: ``replace(vq={"identity": False})``."""
        return ListenerConfig.from_dict(merge_sections(self.to_dict(), sections), source="replace()")


def merge_sections(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra``'s sections over ``base``'s, field by field (a non-table value replaces). New
    ``phases`` without ``steps`` / ``lr`` also replace the totals derived from the old ones
    (``ehead_cli.io.config.merge_tables``)."""
    return merge_tables(base, extra)


SCHEMA: dict[str, type] = {"vq": VQConfig, "tokens": TokenConfig, "lm": LMConfig, "train_vq": TrainConfig,
                           "train_lm": TrainConfig}  # the sections of a listener config


def resolve_listener_config(base: dict[str, Any], source: str, config_file: str | Path | None = None,
                            overrides: dict[str, Any] | None = None) -> ListenerConfig:
    """``base`` (a preset's or a run's sections, with its "preset" name) <- ``config_file``'s sections
    <- ``overrides`` ({section: {field: value}}), later wins, through the one merge."""
    base = dict(base)
    name = str(base.pop("preset", "custom"))
    layers = [Layer(base, source), *file_layer(config_file)]
    if overrides:
        layers.append(Layer(overrides, COMMAND_LINE, file=False))
    merged, last = merge_config(layers, SCHEMA)
    return ListenerConfig.from_dict({"preset": name, **merged}, source=last)


def _train_dict(cfg: TrainConfig) -> dict[str, Any]:
    d = dataclasses.asdict(cfg)
    d["betas"] = list(cfg.betas)
    return d


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
    return resolve_listener_config({"preset": name, **load_toml(path)}, str(path), config_file, overrides)
