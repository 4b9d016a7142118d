"""Who is animated: an identity shape and an optional reference motion frame (``--avatar FILE``).

The reference frame is the generator's reference condition and the history padding of the first
window; without one, the dataset's mean frame (the model's normalised zero) is used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ehead_cli.errors import InputError
from ehead_cli.io.motionfile import check_head_centred, load_motion, read_arrays
from ehead_cli.layout import N_SHAPE


@dataclass
class Avatar:
    """Who is animated: shape (300,) and an optional raw reference motion frame (115,).

    Without a reference the dataset's mean frame (the model's normalised zero) is used. ``camera``:
    the video camera of a prepared clip (renders are framed from it); ``renderer``: the neural
    renderer of an avatar folder (``ehead avatar fit``); ``face_model``: the face model it needs.
    """

    shape: np.ndarray = field(default_factory=lambda: np.zeros(N_SHAPE, np.float32))
    reference: np.ndarray | None = None
    camera: object | None = None
    renderer: object | None = None
    face_model: str | None = None

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu",
             flame: str | os.PathLike | None = None) -> Avatar:
        """A shape file (.npy with (300,), or .npz with 'shape'), a motion NPZ (its shape and first
        frame become the reference; it must be head-centred) or an avatar folder (``ehead avatar
        fit``; its renderer runs on ``device``, with FLAME from ``flame`` if it needs it)."""
        path = Path(path)
        if path.is_dir():
            from ehead_cli.avatar.folder import load_avatar

            # the folder's identity and reference become the generation's; its renderer draws the video
            folder = load_avatar(path, device=device, flame=flame)
            return cls(folder.shape.copy(), folder.reference.copy(), camera=folder.camera,
                       renderer=folder.renderer, face_model=folder.face_model)
        arrays = read_arrays(path, "avatar file (--avatar)")
        if path.suffix == ".npy":
            return cls(_check_shape(arrays["array"], path))
        if "motion" not in arrays:
            if "shape" not in arrays:
                raise InputError(f"{path}: an avatar .npz needs a 'shape' array (or be a motion NPZ)")
            return cls(_check_shape(arrays["shape"], path))
        m = load_motion(path)  # a motion NPZ, validated as one
        check_head_centred(m.motion, str(path))
        return cls(m.shape, m.motion[0].copy(), camera=m.camera)


def _check_shape(shape: np.ndarray, path: Path) -> np.ndarray:
    shape = np.asarray(shape, np.float32).reshape(-1)
    if shape.shape != (N_SHAPE,) or not np.isfinite(shape).all():
        raise InputError(f"{path}: shape must be {N_SHAPE} finite numbers, got {shape.shape}")
    return shape
