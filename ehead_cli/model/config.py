"""Typed, frozen model configuration and the preset registry.

The presets live as TOML files in ``models/presets/`` (``paper``, ``small``, ``tiny``); this module
reads them, validates every field in one place (the merge of preset, file and flags is
``ehead_cli.io.config``'s), and derives the numbers the README's presets table
quotes (``seq_len`` = 20 packed history tokens + 100 current = 120, ``cond_dim`` = 896, ...). A
``ModelConfig`` is stored in every checkpoint's ``config.json`` so the folder alone rebuilds the model.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ehead_cli.errors import ConfigError
from ehead_cli.io.config import check_fields as check_fields  # the one merge's field check, re-exported
from ehead_cli.io.config import check_types
from ehead_cli.io.config import load_toml as load_toml
from ehead_cli.layout import MOTION_DIM, N_SHAPE_REF

PACKAGE_MODELS = Path(__file__).resolve().parents[1] / "_models"  # models/ as installed from a wheel (setup.py)
REPO_ROOT = Path(__file__).resolve().parents[2]  # ehead_cli/model/config.py -> a source checkout
STATE_DIM = 1  # one listening/speaking channel appended to every motion frame


def models_dir() -> Path:
    """The folder with presets, model cards and shipped checkpoints: ``EHEAD_MODELS`` if set, else the
    installed package data (a wheel), else the source checkout's ``models/`` (an editable install)."""
    env = os.environ.get("EHEAD_MODELS")
    path = Path(env) if env else PACKAGE_MODELS if PACKAGE_MODELS.is_dir() else REPO_ROOT / "models"
    if not (path / "presets").is_dir():
        raise ConfigError(f"model folder {path} has no presets/; set EHEAD_MODELS to the repository's models/ folder")
    return path


@dataclass(frozen=True)
class AudioEncoderConfig:
    """Which audio encoder produces the stack of 50 Hz hidden layers, and its sizes.

    kind:         "mel" (built-in log-mel + trainable conv stack, the offline default) or
                  "hubert" (frozen HuBERT-family model in the mHuBERT-147 layout, local folder)
    n_layers:     hidden states in the stack the layer fusion weighs (HuBERT base: 13 =
                  the CNN/embedding output + 12 transformer layers)
    dim:          width of each hidden state (HuBERT base: 768)
    n_mels:       mel bands of the log-mel front end (mel only)
    conv_kernel:  kernel of each conv in the mel stack (mel only)
    """

    kind: str = "mel"
    n_layers: int = 4
    dim: int = 256
    n_mels: int = 80
    conv_kernel: int = 5

    def validate(self) -> None:
        if self.kind not in ("mel", "hubert"):
            raise ConfigError(f"audio.kind must be 'mel' or 'hubert', got {self.kind!r}")
        for name in ("n_layers", "dim", "n_mels", "conv_kernel"):
            if getattr(self, name) < 1:
                raise ConfigError(f"audio.{name} must be >= 1")


@dataclass(frozen=True)
class ModelConfig:
    """Every number of the Rectified-Flow DiT (supplementary A). Field by field:

    preset:          name of the preset this config came from
    d_model:         transformer width (paper 448)
    depth:           DiT blocks (paper 8)
    heads:           attention heads (paper 8, head dim 56)
    mlp_ratio:       feed-forward hidden = mlp_ratio x d_model (paper 4 -> 1792)
    window:          current frames per window, T (paper 100, 4 s at 25 fps)
    history_spans:   History Context Packing group spans in frames, nearest group first (5, 10, 20, 40)
    tokens_per_group: packed tokens per history group (paper 5 -> 20 packed tokens)
    rope_base:       rotary embedding base (paper 10000)
    cross_radius:    audio cross-attention locality mask |i - j| <= R frames (paper 2)
    film_hidden:     hidden width of each block's LS-state FiLM MLP (paper 112)
    t_embed_dim:     sinusoidal timestep embedding width (paper 448)
    ref_embed_dim:   reference embedding width (paper 112)
    audio_embed_dim: mean-pooled global audio embedding width (paper 224)
    mag_embed_dim:   motion-magnitude embedding width (paper 112)
    audio:           the audio encoder (paper: frozen mHuBERT-147, 13 x 768)
    """

    preset: str = "custom"
    d_model: int = 448
    depth: int = 8
    heads: int = 8
    mlp_ratio: float = 4.0
    window: int = 100
    history_spans: tuple[int, ...] = (5, 10, 20, 40)
    tokens_per_group: int = 5
    rope_base: float = 10000.0
    cross_radius: int = 2
    film_hidden: int = 112
    t_embed_dim: int = 448
    ref_embed_dim: int = 112
    audio_embed_dim: int = 224
    mag_embed_dim: int = 112
    audio: AudioEncoderConfig = field(default_factory=lambda: AudioEncoderConfig("hubert", 13, 768))

    # --- derived numbers (the README quotes them; never stored separately) -------------------
    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.d_model * self.mlp_ratio)

    @property
    def history_frames(self) -> int:
        return sum(self.history_spans)

    @property
    def history_tokens(self) -> int:
        return len(self.history_spans) * self.tokens_per_group

    @property
    def seq_len(self) -> int:
        return self.history_tokens + self.window

    @property
    def motion_dim(self) -> int:
        return MOTION_DIM

    @property
    def token_dim(self) -> int:
        return MOTION_DIM + STATE_DIM

    @property
    def ref_in_dim(self) -> int:
        return N_SHAPE_REF + MOTION_DIM

    @property
    def cond_dim(self) -> int:
        return self.t_embed_dim + self.ref_embed_dim + self.audio_embed_dim + self.mag_embed_dim

    def validate(self) -> ModelConfig:
        self.audio.validate()
        positive = ("d_model", "depth", "heads", "window", "tokens_per_group", "film_hidden",
                    "t_embed_dim", "ref_embed_dim", "audio_embed_dim", "mag_embed_dim")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.heads:
            raise ConfigError(f"model.d_model ({self.d_model}) must be divisible by model.heads ({self.heads})")
        if self.head_dim % 2:
            raise ConfigError(f"head dim d_model/heads = {self.head_dim} must be even for rotary embeddings")
        if self.t_embed_dim % 2:
            raise ConfigError("model.t_embed_dim must be even (sin and cos halves)")
        if not self.history_spans or any(s % self.tokens_per_group for s in self.history_spans):
            raise ConfigError(f"every history span {self.history_spans} must be a multiple of "
                              f"tokens_per_group ({self.tokens_per_group})")
        if self.cross_radius < 0:
            raise ConfigError("model.cross_radius must be >= 0")
        if self.mlp_ratio <= 0:
            raise ConfigError("model.mlp_ratio must be > 0")
        return self

    # --- (de)serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["history_spans"] = list(self.history_spans)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> ModelConfig:
        d = dict(d)
        check_fields(cls, d, source, "model")
        check_types(cls, d, source, "model")
        audio = d.pop("audio", {})
        if isinstance(audio, dict):
            check_fields(AudioEncoderConfig, audio, source, "audio")
            check_types(AudioEncoderConfig, audio, source, "model.audio")
            audio = AudioEncoderConfig(**audio)
        if "history_spans" in d:
            d["history_spans"] = tuple(int(s) for s in d["history_spans"])
        try:
            return cls(audio=audio, **d).validate()
        except TypeError as err:  # wrong value types reach the dataclass
            raise ConfigError(f"{source}: {err}") from None

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes).validate()


def list_presets() -> list[str]:
    return sorted(p.stem for p in (models_dir() / "presets").glob("*.toml"))


def preset(name: str) -> ModelConfig:
    """The model config of a named preset (``paper``, ``small``, ``tiny``)."""
    path = models_dir() / "presets" / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r} for --preset; choose one of {', '.join(list_presets())}")
    data = load_toml(path)
    return ModelConfig.from_dict({"preset": name, **data.get("model", {})}, source=str(path))
