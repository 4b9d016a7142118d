"""What ``ehead info`` reports: preset dimensions, parameter counts, configured assets."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

from ehead_cli import __version__
from ehead_cli.assets import ASSETS
from ehead_cli.model.config import ModelConfig, list_presets, preset
from ehead_cli.model.dit import EmbodiedHeadDiT, count_parameters
from ehead_cli.model.encoders import MelEncoder


def preset_info(cfg: ModelConfig) -> dict[str, Any]:
    """The numbers of a model config, with ``params_trainable`` (a frozen audio encoder excluded)."""
    dit = count_parameters(EmbodiedHeadDiT(cfg))
    enc = count_parameters(MelEncoder(cfg.audio)) if cfg.audio.kind == "mel" else 0
    return {
        "preset": cfg.preset,
        "d_model": cfg.d_model,
        "depth": cfg.depth,
        "heads": cfg.heads,
        "head_dim": cfg.head_dim,
        "mlp_hidden": cfg.mlp_hidden,
        "window": cfg.window,
        "history_frames": cfg.history_frames,
        "history_spans": list(cfg.history_spans),
        "history_tokens": cfg.history_tokens,
        "seq_len": cfg.seq_len,
        "token_dim": cfg.token_dim,
        "motion_dim": cfg.motion_dim,
        "cond_dim": cfg.cond_dim,
        "cond_parts": {"timestep": cfg.t_embed_dim, "reference": cfg.ref_embed_dim,
                       "audio": cfg.audio_embed_dim, "magnitude": cfg.mag_embed_dim},
        "ref_in_dim": cfg.ref_in_dim,
        "cross_radius": cfg.cross_radius,
        "rope_base": cfg.rope_base,
        "film_hidden": cfg.film_hidden,
        "audio_encoder": {"kind": cfg.audio.kind, "n_layers": cfg.audio.n_layers, "dim": cfg.audio.dim,
                          "frozen": cfg.audio.kind == "hubert"},
        "params_dit": dit,
        "params_audio_encoder_trainable": enc,
        "params_trainable": dit + enc,
    }


def asset_status() -> list[dict[str, Any]]:
    out = []
    for a in ASSETS.values():
        value = a.configured()
        out.append({"asset": a.key, "env": a.env, "flag": a.flag, "commands": list(a.commands), "configured": value,
                    "found": bool(value) and os.path.exists(value), "used_for": a.used_for, "licence": a.licence})
    return out


def environment() -> dict[str, Any]:
    from ehead_cli.devices import autocast_dtype, resolve_device
    from ehead_cli.generate.generator import default_checkpoint

    ckpt = default_checkpoint()
    device = resolve_device(None)
    return {"default_device": device.type,
            "compute_dtype": {torch.bfloat16: "bf16", torch.float32: "fp32"}[autocast_dtype(device)],
            "ehead": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "default_checkpoint": str(ckpt), "default_checkpoint_found": (ckpt / "config.json").is_file(),
            "cuda": torch.cuda.is_available(),
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "threads": torch.get_num_threads()}


def all_presets() -> list[dict[str, Any]]:
    return [preset_info(preset(name)) for name in list_presets()]
