"""Motion NPZ files: ``motion`` (T, 115) float32, ``shape`` (300,) float32, ``states`` (T,) int8, ``fps``.

The reader checks keys, shapes, dtypes and finiteness and names the file in every error; the
writer is atomic (temp file in the same folder, then rename).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ehead_cli.errors import InputError
from ehead_cli.io.atomic import atomic_path
from ehead_cli.layout import LISTEN, MOTION_DIM, MOTION_FPS, N_SHAPE, SPEAK

REQUIRED_KEYS = ("motion", "shape", "states", "fps")


@dataclass
class Motion:
    """A motion clip. motion (T, 115) float32 at ``fps``; shape (300,) float32; states (T,) int8."""

    motion: np.ndarray
    shape: np.ndarray
    states: np.ndarray
    fps: float = MOTION_FPS

    def __post_init__(self) -> None:
        self.motion = np.asarray(self.motion, dtype=np.float32)
        self.shape = np.asarray(self.shape, dtype=np.float32)
        self.states = np.asarray(self.states, dtype=np.int8)
        self.fps = float(self.fps)

    @property
    def n_frames(self) -> int:
        return int(self.motion.shape[0])

    def validate(self, source: str = "motion") -> Motion:
        if self.motion.ndim != 2 or self.motion.shape[1] != MOTION_DIM:
            raise InputError(f"{source}: 'motion' must have shape (T, {MOTION_DIM}), got {self.motion.shape}")
        if self.shape.shape != (N_SHAPE,):
            raise InputError(f"{source}: 'shape' must have shape ({N_SHAPE},), got {self.shape.shape}")
        if self.states.shape != (self.n_frames,):
            raise InputError(f"{source}: 'states' must have shape ({self.n_frames},) to match 'motion', "
                             f"got {self.states.shape}")
        if not np.isin(self.states, (SPEAK, LISTEN)).all():
            raise InputError(f"{source}: 'states' must hold only +1 (speak) and -1 (listen)")
        if not (np.isfinite(self.motion).all() and np.isfinite(self.shape).all()):
            raise InputError(f"{source}: 'motion' or 'shape' contains NaN or infinite values")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise InputError(f"{source}: 'fps' must be a positive number, got {self.fps}")
        return self


def save_motion(path: str | Path, m: Motion) -> None:
    """Validate and write ``m`` to ``path`` (compressed .npz), atomically."""
    m.validate(str(path))
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, motion=m.motion, shape=m.shape, states=m.states, fps=np.float32(m.fps))


def load_motion(path: str | Path) -> Motion:
    """Read and validate a motion NPZ. Object arrays are refused (no unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: motion file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in REQUIRED_KEYS if k not in z.files]
            if missing:
                raise InputError(f"{path}: missing key(s) {', '.join(missing)} (need {', '.join(REQUIRED_KEYS)})")
            data = {k: z[k] for k in REQUIRED_KEYS}
    except InputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise InputError(f"{path}: not a readable NPZ file ({err})") from None
    for key, kinds in (("motion", "f"), ("shape", "f"), ("states", "iu"), ("fps", "fiu")):
        if data[key].dtype.kind not in kinds:
            raise InputError(f"{path}: '{key}' has dtype {data[key].dtype}, expected "
                             f"{'float' if kinds == 'f' else 'integer' if kinds == 'iu' else 'a number'}")
    if data["fps"].size != 1:
        raise InputError(f"{path}: 'fps' must be a scalar")
    m = Motion(data["motion"], data["shape"], data["states"], float(data["fps"]))
    return m.validate(str(path))
