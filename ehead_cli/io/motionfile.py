"""Motion NPZ files: ``motion`` (T, 115) float32, ``shape`` (300,) float32, ``states`` (T,) int8, ``fps``,
and, for a clip that comes from a video, its camera (``camera_pose`` (4, 4), ``camera_intrinsics`` (5,);
``ehead_cli.render.clip_camera``).

Motion is head-centred (docs/formats.md): ROT/TRANS move the head about its rest pose.
``check_head_centred`` turns a file far outside that convention (a camera-space track from an older
``ehead prepare``: TRANS z ~ -1.2 m) into a one-line error before it is used as a reference or rendered.

The reader checks keys, shapes, dtypes and finiteness and names the file in every error; the
writer is atomic (temp file in the same folder, then rename).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ehead_cli.errors import InputError, first_line
from ehead_cli.io.atomic import atomic_path
from ehead_cli.layout import LISTEN, MOTION_DIM, MOTION_FPS, N_SHAPE, ROT, SPEAK, TRANS
from ehead_cli.render.clip_camera import INTRINSICS_KEY, POSE_KEY, ClipCamera

REQUIRED_KEYS = ("motion", "shape", "states", "fps")
# Head-centred motion stays near its rest pose; beyond these a file is in another convention.
MAX_TRANS_M = 0.3  # metres from the rest position
MAX_ROT_RAD = 1.6  # about 90 degrees from the rest orientation


@dataclass
class Motion:
    """A motion clip. motion (T, 115) float32 at ``fps``; shape (300,) float32; states (T,) int8."""

    motion: np.ndarray
    shape: np.ndarray
    states: np.ndarray
    fps: float = MOTION_FPS
    camera: ClipCamera | None = None  # the video's camera, for clips that come from one

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
    camera = m.camera.to_arrays() if m.camera is not None else {}
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, motion=m.motion, shape=m.shape, states=m.states, fps=np.float32(m.fps), **camera)


def read_arrays(path: str | Path, what: str = "motion file") -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (by name) or an ``.npy`` (as ``"array"``), never unpickling: a file
    holding Python objects, or one that is not NumPy's format at all, is a one-line InputError."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a {what}")
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        if path.suffix == ".npy":
            return {"array": np.load(path, allow_pickle=False)}
        if not zipfile.is_zipfile(path):
            raise InputError(f"{path}: not an NPZ file (NumPy's zip of arrays); expected a {what}")
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except InputError:
        raise
    except ValueError as err:
        if "pickle" in str(err):  # object arrays: ehead never loads them (they can run code)
            raise InputError(f"{path}: holds Python objects, not plain arrays; ehead does not load those") from None
        raise InputError(f"{path}: not a readable NumPy file ({first_line(err)})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise InputError(f"{path}: not a readable NumPy file ({first_line(err)})") from None


def load_motion(path: str | Path) -> Motion:
    """Read and validate a motion NPZ. Object arrays are refused (no unpickling)."""
    path = Path(path)
    arrays = read_arrays(path)
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise InputError(f"{path}: missing key(s) {', '.join(missing)} (need {', '.join(REQUIRED_KEYS)})")
    data = {k: arrays[k] for k in REQUIRED_KEYS}
    cam = {k: arrays[k] for k in (POSE_KEY, INTRINSICS_KEY) if k in arrays}
    for key, kinds in (("motion", "f"), ("shape", "f"), ("states", "iu"), ("fps", "fiu")):
        if data[key].dtype.kind not in kinds:
            raise InputError(f"{path}: '{key}' has dtype {data[key].dtype}, expected "
                             f"{'float' if kinds == 'f' else 'integer' if kinds == 'iu' else 'a number'}")
    if data["fps"].size != 1:
        raise InputError(f"{path}: 'fps' must be a scalar")
    camera = None
    if cam:
        try:
            camera = ClipCamera.from_arrays(cam[POSE_KEY], cam[INTRINSICS_KEY])
        except (KeyError, ValueError, TypeError) as err:
            raise InputError(f"{path}: invalid camera ({POSE_KEY} (4, 4) and {INTRINSICS_KEY} (5,) go together; "
                             f"{err})") from None
    m = Motion(data["motion"], data["shape"], data["states"], float(data["fps"]), camera)
    return m.validate(str(path))


def check_head_centred(motion: np.ndarray, source: str) -> None:
    """InputError (one line) when (T, 115) ``motion`` is far outside the head-centred convention."""
    motion = np.asarray(motion)
    trans = np.linalg.norm(motion[:, TRANS], axis=-1)
    rot = np.linalg.norm(motion[:, ROT], axis=-1)
    for what, values, limit, unit in (("translation", trans, MAX_TRANS_M, "m"), ("rotation", rot, MAX_ROT_RAD, "rad")):
        if len(values) and float(values.max()) > limit:
            t = int(values.argmax())
            raise InputError(f"{source}: head {what} reaches {values[t]:.2f} {unit} at frame {t}, beyond the "
                             f"head-centred convention's {limit} {unit} (docs/formats.md); a clip prepared by "
                             f"ehead before the convention holds camera-space poses: prepare it again")
