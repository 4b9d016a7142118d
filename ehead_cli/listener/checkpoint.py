"""Listener checkpoint folders: ``config.json`` + ``model.safetensors``, like ehead's (no pickle).

config.json: {"format": "ehead-listener-checkpoint", "version", "config" (ListenerConfig), "norm"
(MotionNorm), "identities" {name: 230 floats}, "lm" (null, or {"offset", "gpt2_config"}), "meta"}.
model.safetensors: ``vq.*`` (the VQ-VAE), ``tokens.*`` (the fitted speech / affect k-means, when the
offline defaults are used) and ``lm.*`` (the language model, after stage lm). After stage vq a
checkpoint holds the VQ-VAE alone; after stage lm all three: the folder alone rebuilds the listener
(SpeechTokenizer, EMOCA and a pretrained GPT-2 base are loaded from their own local paths).
Saving is atomic: a temp folder is filled, then renamed into place. Reading goes through the one
checkpoint-folder reader, ``ehead_cli.io.checkpoint``, with ``prefer_best``: a run folder's ``best/``
(the stage's lowest validation loss) before its ``checkpoint/``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from ehead_cli.errors import ConfigError, InputError
from ehead_cli.io.atomic import atomic_dir
from ehead_cli.io.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    CheckpointFormat,
    check_state,
    load_weights,
    read_config,
    resolve_folder,
)
from ehead_cli.listener.config import ListenerConfig
from ehead_cli.listener.data import MotionNorm
from ehead_cli.listener.lm import ListenerLM
from ehead_cli.listener.tokens import TokenCodebooks
from ehead_cli.listener.vqvae import VQVAE

FORMAT = "ehead-listener-checkpoint"
VERSION = 1
LISTENER_FORMAT = CheckpointFormat(FORMAT, VERSION, label="listener checkpoint", describe="a listener checkpoint",
                                   hint="an EmbodiedHead checkpoint goes without --family listener", prefer_best=True)


@dataclass
class ListenerModel:
    """Everything a listener checkpoint holds, in memory."""

    cfg: ListenerConfig
    norm: MotionNorm
    identities: dict[str, np.ndarray]
    vq: VQVAE
    codebooks: TokenCodebooks | None = None
    lm: ListenerLM | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to(self, device: str | torch.device) -> ListenerModel:
        self.vq.to(device)
        if self.lm is not None:
            self.lm.to(device)
        return self

    def eval(self) -> ListenerModel:
        self.vq.eval()
        if self.lm is not None:
            self.lm.eval()
        return self


def save_listener(folder: str | os.PathLike, model: ListenerModel, meta: dict[str, Any] | None = None,
                  weights: dict[str, dict[str, torch.Tensor]] | None = None,
                  dtype: torch.dtype = torch.float32) -> Path:
    """Write ``model`` to ``folder`` (atomically). ``weights`` ({"vq": state dict, "lm": state dict})
    replaces those parts' weights (the training loop's averaged copy); ``dtype`` stores the floating
    weights in another precision (float16 for a shipped checkpoint; loading gives float32)."""
    folder = Path(folder)
    weights = weights or {}
    tensors = {f"vq.{k}": v for k, v in weights.get("vq", model.vq.state_dict()).items()}
    lm_info = None
    if model.codebooks is not None:
        tensors.update(model.codebooks.tensors())
    if model.lm is not None:
        tensors.update({f"lm.{k}": v for k, v in weights.get("lm", model.lm.state_dict()).items()})
        lm_info = {"offset": model.lm.vocab.offset, "gpt2_config": model.lm.gpt.config.to_dict()}
    tensors = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
               for k, v in tensors.items()}
    # GPT-2 ties its output layer to the token embedding: safetensors refuses shared storage
    seen: dict[int, str] = {}
    for k in list(tensors):
        ptr = tensors[k].data_ptr()
        if ptr in seen and tensors[k].numel():
            tensors[k] = tensors[k].clone()
        seen[ptr] = k
    config = {"format": FORMAT, "version": VERSION, "config": model.cfg.to_dict(), "norm": model.norm.to_dict(),
              "identities": {k: [float(x) for x in v] for k, v in model.identities.items()}, "lm": lm_info,
              "meta": meta if meta is not None else model.meta}
    with atomic_dir(folder) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": FORMAT})
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=1, default=_json_default) + "\n")
    return folder


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    if isinstance(x, (torch.dtype, Path)):
        return str(x)
    raise TypeError(f"cannot store {type(x).__name__} in config.json")


def listener_folder(folder: str | os.PathLike) -> Path:
    """``folder`` itself, or for a training run folder (``ehead train --family listener --out RUN_DIR``)
    its ``best/`` when the run kept one (``keep_best``: the lowest validation loss), else its
    ``checkpoint/`` (the last step): ``--checkpoint`` and ``--vq`` accept either
    (``ehead_cli.io.checkpoint.resolve_folder`` with ``prefer_best``)."""
    return resolve_folder(folder, LISTENER_FORMAT.prefer_best)


def read_listener_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The validated config.json of a listener checkpoint or run folder."""
    return read_config(folder, LISTENER_FORMAT)[1]


def load_listener(folder: str | os.PathLike, device: str | torch.device = "cpu") -> ListenerModel:
    """Rebuild the listener of ``folder`` (a checkpoint or a run folder: ``listener_folder``) in float32
    on ``device``, in eval mode."""
    folder, config = read_config(folder, LISTENER_FORMAT)
    try:
        cfg = ListenerConfig.from_dict(config["config"], source=str(folder / CONFIG_NAME))
        norm = MotionNorm.from_dict(config["norm"])
        identities = {k: np.asarray(v, np.float32) for k, v in config.get("identities", {}).items()}
    except (KeyError, TypeError, ValueError, ConfigError) as err:
        raise InputError(f"{folder / CONFIG_NAME}: invalid listener config ({err})") from None
    state = load_weights(folder / WEIGHTS_NAME)
    vq = VQVAE(cfg.vq)
    _load_part(vq, state, "vq.", folder)
    codebooks = TokenCodebooks.from_tensors(state) if any(k.startswith("tokens.") for k in state) else None
    lm = None
    if config.get("lm"):
        info = config["lm"]
        lm = ListenerLM(cfg.lm, cfg.vq.codebook_size, cfg.tokens.speech_codes, cfg.tokens.emotion_codes,
                        cfg.tokens.speech_per_group, offset=int(info["offset"]), gpt2_config=info["gpt2_config"])
        _load_part(lm, state, "lm.", folder)
    model = ListenerModel(cfg, norm, identities, vq, codebooks, lm, config.get("meta", {}))
    return model.to(device).eval()


def _load_part(module: torch.nn.Module, state: dict[str, torch.Tensor], prefix: str, folder: Path) -> None:
    part = {k[len(prefix):]: v.float() if v.is_floating_point() else v
            for k, v in state.items() if k.startswith(prefix)}
    check_state(module.state_dict(), part, folder / WEIGHTS_NAME, prefix)
    module.load_state_dict(part)
