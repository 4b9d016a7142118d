"""Checkpoint folders: ``config.json`` + ``model.safetensors``. The folder alone rebuilds the model.

config.json holds {"format", "version", "model" (ModelConfig), "stats" (MotionStats),
"audio_encoder" (kind and identity), "meta" (free-form: training command, steps, losses; a Stage-II
checkpoint's "stage" = 2, "stage1" and "renderers", whose refined avatar folders are in avatars/)}.
model.safetensors holds the trainable weights (``dit.*``, and ``encoder.*`` for the built-in mel
encoder; a frozen HuBERT is not stored, it is loaded from --audio-encoder / EHEAD_HUBERT).
No pickle anywhere. Saving is atomic: a temp folder is filled, then renamed into place. Reading goes
through the one checkpoint-folder reader, ``ehead_cli.io.checkpoint`` (its run-folder rule: a run
folder's ``checkpoint/``; this family does not prefer ``best/``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ehead_cli.errors import ConfigError, InputError
from ehead_cli.io.atomic import atomic_dir
from ehead_cli.io.checkpoint import (  # the names re-exported here are the checkpoint layout's
    CONFIG_NAME,
    WEIGHTS_NAME,
    CheckpointFormat,
    check_state,
    load_weights,
    resolve_folder,
)
from ehead_cli.io.checkpoint import RUN_BEST as RUN_BEST
from ehead_cli.io.checkpoint import RUN_CHECKPOINT as RUN_CHECKPOINT
from ehead_cli.io.checkpoint import read_config as read_checkpoint_config
from ehead_cli.model.config import ModelConfig
from ehead_cli.model.network import EmbodiedHead
from ehead_cli.model.stats import MotionStats

FORMAT = "ehead-checkpoint"
VERSION = 1
LISTENER_FORMAT = "ehead-listener-checkpoint"  # ehead_cli.listener.checkpoint.FORMAT, named in the hint
CHECKPOINT_FORMAT = CheckpointFormat(FORMAT, VERSION, foreign={
    LISTENER_FORMAT: "a listener checkpoint; add --family listener"})
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
    ``checkpoint/``: ``--checkpoint`` accepts either (``ehead_cli.io.checkpoint.resolve_folder``)."""
    return resolve_folder(folder, CHECKPOINT_FORMAT.prefer_best)


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The validated config.json of a checkpoint or run folder."""
    return read_checkpoint_config(folder, CHECKPOINT_FORMAT)[1]


def load_checkpoint(folder: str | os.PathLike, hubert_path: str | os.PathLike | None = None,
                    device: str | torch.device = "cpu") -> EmbodiedHead:
    """Rebuild the model of ``folder`` (config.json + model.safetensors, or a run folder holding
    ``checkpoint/``) in float32 on ``device``."""
    folder, config = read_checkpoint_config(folder, CHECKPOINT_FORMAT)
    try:
        cfg = ModelConfig.from_dict(config["model"], source=str(folder / CONFIG_NAME))
        stats = MotionStats.from_dict(config["stats"])
    except (KeyError, TypeError, ValueError, ConfigError) as err:
        raise InputError(f"{folder / CONFIG_NAME}: invalid model or stats section ({err})") from None
    weights = folder / WEIGHTS_NAME
    state = load_weights(weights)
    model = EmbodiedHead(cfg, stats, hubert_path=hubert_path)
    check_state(model.trainable_state_dict(), state, weights)
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
