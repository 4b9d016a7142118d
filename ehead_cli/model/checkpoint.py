"""Checkpoint folders: ``config.json`` + ``model.safetensors``. The folder alone rebuilds the model.

config.json holds {"format", "version", "model" (ModelConfig), "stats" (MotionStats),
"audio_encoder" (kind and identity), "meta" (free-form: training command, steps, losses; a Stage-II
checkpoint's "stage" = 2, "stage1" and "renderers", whose refined avatar folders are in avatars/)}.
model.safetensors holds the trainable weights (``dit.*``, and ``encoder.*`` for the built-in mel
encoder; a frozen HuBERT is not stored, it is loaded from --audio-encoder / EHEAD_HUBERT).
No pickle anywhere. Saving is atomic: a temp folder is filled, then renamed into place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ehead_cli.errors import ConfigError, InputError
from ehead_cli.io.atomic import atomic_dir
from ehead_cli.model.config import ModelConfig
from ehead_cli.model.network import EmbodiedHead
from ehead_cli.model.stats import MotionStats

FORMAT = "ehead-checkpoint"
VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
RUN_CHECKPOINT = "checkpoint"  # a training run folder's checkpoint sub-folder
RUN_BEST = "best"  # its checkpoint of the best validation (train.keep_best)
AVATARS_DIR = "avatars"  # a Stage-II checkpoint's refined renderers, one avatar folder each (train.stage2)


def save_checkpoint(folder: str | os.PathLike, model: EmbodiedHead, meta: dict[str, Any] | None = None,
                    dtype: torch.dtype = torch.float32, state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``model`` to ``folder`` (replacing it whole). ``dtype`` float16 halves the size; ``state``
    (same keys as ``model.trainable_state_dict()``, e.g. EMA weights) is written instead of the model's."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        write_checkpoint(tmp, model, meta, dtype, state)
    return folder


def write_checkpoint(tmp: Path, model: EmbodiedHead, meta: dict[str, Any] | None = None,
                     dtype: torch.dtype = torch.float32, state: dict[str, torch.Tensor] | None = None) -> None:
    """``save_checkpoint``'s two files, written into the (temporary) folder ``tmp`` that the caller
    renames into place (Stage II adds its avatars/ to the same folder first)."""
    config = {
        "format": FORMAT,
        "version": VERSION,
        "model": model.cfg.to_dict(),
        "stats": model.stats.to_dict(),
        "audio_encoder": {"kind": model.cfg.audio.kind, "identity": model.encoder.identity},
        "meta": meta or {},
    }
    weights = model.trainable_state_dict() if state is None else state
    tensors = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
               for k, v in weights.items()}
    save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": FORMAT})
    (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")


def checkpoint_folder(folder: str | os.PathLike) -> Path:
    """``folder`` itself, or for a training run folder (``ehead train --out RUN_DIR``) its
    ``checkpoint/``: ``--checkpoint`` accepts either."""
    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file() and (folder / RUN_CHECKPOINT / CONFIG_NAME).is_file():
        return folder / RUN_CHECKPOINT
    return folder


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    folder = checkpoint_folder(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: checkpoint folder not found (--checkpoint)")
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise InputError(f"{folder}: not a checkpoint folder (no {CONFIG_NAME}, nor a run folder with "
                         f"{RUN_CHECKPOINT}/{CONFIG_NAME})")
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: unreadable checkpoint config ({err})") from None
    if config.get("format") == "ehead-listener-checkpoint":
        raise InputError(f"{path}: a listener checkpoint; add --family listener")
    if config.get("format") != FORMAT:
        raise InputError(f"{path}: not an ehead checkpoint config (format {config.get('format')!r})")
    if config.get("version") != VERSION:
        raise InputError(f"{path}: checkpoint version {config.get('version')} is not supported (need {VERSION})")
    return config


def load_checkpoint(folder: str | os.PathLike, hubert_path: str | os.PathLike | None = None,
                    device: str | torch.device = "cpu") -> EmbodiedHead:
    """Rebuild the model of ``folder`` (config.json + model.safetensors, or a run folder holding
    ``checkpoint/``) in float32 on ``device``."""
    folder = checkpoint_folder(folder)
    config = read_config(folder)
    try:
        cfg = ModelConfig.from_dict(config["model"], source=str(folder / CONFIG_NAME))
        stats = MotionStats.from_dict(config["stats"])
    except (KeyError, TypeError, ValueError, ConfigError) as err:
        raise InputError(f"{folder / CONFIG_NAME}: invalid model or stats section ({err})") from None
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise InputError(f"{folder}: checkpoint has no {WEIGHTS_NAME}")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise InputError(f"{weights}: unreadable safetensors file ({err})") from None
    model = EmbodiedHead(cfg, stats, hubert_path=hubert_path)
    expected = model.trainable_state_dict()
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    if missing or unexpected:
        detail = f"missing {sorted(missing)[:3]}" if missing else f"unexpected {sorted(unexpected)[:3]}"
        raise InputError(f"{weights}: weights do not match the config ({detail})")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise InputError(f"{weights}: {k} has shape {tuple(v.shape)}, config expects {tuple(expected[k].shape)}")
    model.dit.load_state_dict({k[4:]: v.float() for k, v in state.items() if k.startswith("dit.")})
    enc = {k[8:]: v.float() for k, v in state.items() if k.startswith("encoder.")}
    if enc:
        model.encoder.load_state_dict(enc, strict=False)
    identity = config.get("audio_encoder", {}).get("identity")
    if cfg.audio.kind == "hubert" and identity and identity != model.encoder.identity:
        import warnings

        warnings.warn(f"{folder}: trained with audio encoder {identity}, loaded {model.encoder.identity} "
                      f"from {model.encoder.folder}", stacklevel=2)
    model.meta = config.get("meta", {})
    return model.to(device).eval()
