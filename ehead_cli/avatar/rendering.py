"""Which renderer draws a generation job, and whether its avatar suits the checkpoint.

A job's avatar decides (through ``avatar.renderers``, where every command gets its renderer): an
avatar folder brings its fitted renderer; a prepared clip (a motion NPZ with a camera) frames the
mesh renderer from that clip's camera; anything else uses the run's mesh renderer as it is.

Checkpoints say which face model their motion drives in ``config.json`` ``meta.face_model``
(written by ``ehead train`` from the dataset; a checkpoint without it was trained on the synthetic
sample data, made for the built-in head). An avatar fitted on another face model cannot render its
motion: the expression coefficients mean different things.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch

from ehead_cli.avatar.renderers import framed, renderer_for

__all__ = ["DEFAULT_FACE_MODEL", "avatar_checkpoint_mismatch", "checkpoint_face_model", "framed", "renderer_for",
           "time_avatar"]

DEFAULT_FACE_MODEL = "builtin"  # what a checkpoint without meta.face_model was trained for


def checkpoint_face_model(meta: dict[str, Any] | None) -> str:
    return str((meta or {}).get("face_model") or DEFAULT_FACE_MODEL)


def avatar_checkpoint_mismatch(avatar, avatar_path: str | os.PathLike | None, generator) -> str | None:
    """A one-line reason when ``avatar`` was fitted on another face model than the checkpoint drives."""
    want = getattr(avatar, "face_model", None)
    have = checkpoint_face_model(getattr(generator.model, "meta", None))
    if want is None or want == have:
        return None
    return (f"{avatar_path}: the avatar was fitted on the {want} face model but the checkpoint generates motion "
            f"for the {have} face model (config.json meta.face_model); fit the avatar with the same face model")


def time_avatar(renderer, batch_sizes: tuple[int, ...], frames: int = 64, repeats: int = 3) -> list[dict[str, Any]]:
    """frames/s of ``renderer.render`` on ``frames`` frames of a nodding, talking head, per batch size
    (median of ``repeats`` after one warm-up), for ``ehead bench --avatar``."""
    from ehead_cli.devices import sync
    from ehead_cli.layout import JAW, MOTION_DIM, ROT

    t = np.arange(frames) / 25.0
    motion = np.zeros((frames, MOTION_DIM), np.float32)
    motion[:, JAW.start] = 0.1 * (1 + np.sin(2 * np.pi * 3 * t))  # jaw 0..0.2 rad, three times a second
    motion[:, ROT.start] = 0.05 * np.sin(2 * np.pi * 0.5 * t)
    shape = torch.zeros(300)
    rows = []
    old = renderer.batch_size
    try:
        for B in batch_sizes:
            renderer.batch_size = B
            renderer.render(shape, motion[:B])
            times = []
            for _ in range(repeats):
                sync(renderer.device)
                t0 = time.perf_counter()
                renderer.render(shape, motion)
                sync(renderer.device)
                times.append(time.perf_counter() - t0)
            rows.append({"batch": B, "size": renderer.size, "avatar_fps": frames / float(np.median(times))})
    finally:
        renderer.batch_size = old
    return rows

