"""Who is animated: an identity shape and an optional reference motion frame (``--avatar FILE``).

The reference frame is the generator's reference condition and the history padding of the first
window; without one, the dataset's mean frame (the model's normalised zero) is used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ehead_cli.errors import InputError
from ehead_cli.io.motionfile import load_motion
from ehead_cli.layout import N_SHAPE


@dataclass
class Avatar:
    """Who is animated: shape (300,) and an optional raw reference motion frame (115,).

    Without a reference the dataset's mean frame (the model's normalised zero) is used.
    """

    shape: np.ndarray = field(default_factory=lambda: np.zeros(N_SHAPE, np.float32))
    reference: np.ndarray | None = None

    @classmethod
    def load(cls, path: str | os.PathLike) -> Avatar:
        """A shape file (.npy with (300,), or .npz with 'shape') or a motion NPZ (its shape and
        first frame become the reference)."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: avatar file not found (--avatar)")
        try:
            if path.suffix == ".npy":
                shape = np.load(path, allow_pickle=False)
                return cls(_check_shape(shape, path))
            with np.load(path, allow_pickle=False) as z:
                if "motion" not in z.files:
                    if "shape" not in z.files:
                        raise InputError(f"{path}: an avatar .npz needs a 'shape' array (or be a motion NPZ)")
                    return cls(_check_shape(z["shape"], path))
            m = load_motion(path)  # a motion NPZ, validated as one
            return cls(m.shape, m.motion[0].copy())
        except (OSError, ValueError) as err:
            raise InputError(f"{path}: unreadable avatar file ({err})") from None


def _check_shape(shape: np.ndarray, path: Path) -> np.ndarray:
    shape = np.asarray(shape, np.float32).reshape(-1)
    if shape.shape != (N_SHAPE,) or not np.isfinite(shape).all():
        raise InputError(f"{path}: shape must be {N_SHAPE} finite numbers, got {shape.shape}")
    return shape
