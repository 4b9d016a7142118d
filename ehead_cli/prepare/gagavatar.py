"""Import GAGAvatar tracking results (xg-chu/GAGAvatar_track) into our motion layout.

The tracker (``track_video.py``) writes ``outputs/<video>/optim.pkl`` and a temporally smoothed
``smoothed.pkl``: a pickled dict ``{"<video>_<i>": frame}`` of numpy float32 arrays per frame:

    shapecode (300)       FLAME identity, the clip mean (``share_id``), so nearly constant
    expcode (100)         FLAME expression
    posecode (6)          [global (3, always zero here), jaw (3)] axis-angle
    eyecode (6)           eyeball poses, left then right, axis-angle (FLAME's joint order)
    transform_matrix (3, 4)  [R | T], PyTorch3D world-to-view: p_view = p_flame_scaled @ R + T
    bbox (4)              head box in [0, 1] (not used here)

``<i>`` counts the frames in which the head was detected, so a gap in detection shifts the numbering
rather than leaving a hole; compare ``len(track.keys)`` with the video's frame count.

Conversion to our layout (FLAME convention, y up, the face looking toward +z):

* EXPR <- expcode, JAW <- posecode[3:6], EYES <- eyecode (same convention, copied).
* Camera frame: ours is OpenGL-style, x right, y up, z toward the viewer, camera at the origin
  looking down -z. PyTorch3D's view frame has x left, y up, z into the scene, so
  ``p_ours = F p_p3d`` with ``F = diag(-1, 1, -1)`` (a half turn about y; a frontal face has
  ``R = F``). With column vectors the head pose is then ``v_cam = (F R^T) v + F T``.
* ROT <- axis-angle of ``M = F R^T`` composed with the FLAME global pose ``posecode[0:3]`` (zero
  in GAGAvatar output): the head's rotation, identity when the face looks into the camera; a
  positive angle about y turns the face toward image right (the subject's left).
* TRANS <- ``F T / 5``: the tracker scales FLAME vertices by 5 (``verts_scale``), so this is the
  head origin's position in metres in our camera frame (z about -1.8 m for its 12.0 NDC focal).
  That is exact for a model that rotates about the FLAME origin. ehead's ``FlameModel`` rotates
  about FLAME's root joint J0 instead: pass it as ``face=`` and TRANS gets ``+ (M - I) J0``
  (J0 from the clip's shape and each frame's expression), after which its vertices equal the
  tracker's exactly, a non-zero global pose included. Without it the vertices are off by
  (M - I) J0, which grows with the turn angle and the root joint's distance from the origin.
* shape <- the per-coefficient median of shapecode over the clip's frames.

This is the tracker's camera space; ``ehead prepare`` then makes it head-centred with
``prepare.head_centred`` and stores the tracker's camera (``track_intrinsics``: its square
``TRACK_IMAGE_SIZE`` crops seen with the NDC focal length ``FOCAL_NDC``) next to the motion.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ehead_cli.errors import InputError
from ehead_cli.face.pickle_compat import RestrictedUnpickler
from ehead_cli.geometry import axis_angle_to_matrix, matrix_to_axis_angle
from ehead_cli.layout import EXPR, EYES, JAW, MOTION_DIM, N_EXPR, N_SHAPE, ROT, TRANS

VERTS_SCALE = 5.0  # GAGAvatar_track multiplies FLAME vertices (metres) by this
FOCAL_NDC = 12.0  # its camera focal length, in NDC units (for a renderer that wants the same view)
TRACK_IMAGE_SIZE = 512  # pixels: the square face crops the tracker fits (its default image size)
P3D_TO_OURS = np.diag([-1.0, 1.0, -1.0])  # PyTorch3D view frame -> ours (x right, y up, z to viewer)
TRACK_FILES = ("smoothed.pkl", "optim.pkl")  # in a tracker output folder, smoothed preferred
FIELDS: dict[str, tuple[int, ...]] = {
    "shapecode": (N_SHAPE,),
    "expcode": (N_EXPR,),
    "posecode": (6,),
    "eyecode": (6,),
    "transform_matrix": (3, 4),
}
JAW_IN_POSE = slice(3, 6)
GLOBAL_IN_POSE = slice(0, 3)


@dataclass(frozen=True)
class GagaTrack:
    """One clip's track. motion (T, 115) float32 at the video rate; shape (300,) float32;
    keys: the tracker's frame names in order; frame_index (T,) int64, the number after the last '_'."""

    motion: np.ndarray
    shape: np.ndarray
    keys: list[str]
    frame_index: np.ndarray


class _NumpyOnlyUnpickler(RestrictedUnpickler):
    """The FLAME loader's restricted unpickler narrowed to plain containers and numpy
    arrays/scalars (under numpy 1 and 2 module names); anything else is refused."""

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how protocol-2 pickles carry bytes
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def resolve_track_file(path: str | Path) -> Path:
    """A tracker pickle, or a tracker output folder (its smoothed.pkl, else optim.pkl)."""
    p = Path(path).expanduser()
    if p.is_dir():
        for name in TRACK_FILES:
            if (p / name).is_file():
                return p / name
        raise InputError(f"{p}: no GAGAvatar track in this folder (expected {' or '.join(TRACK_FILES)})")
    if not p.is_file():
        raise InputError(f"{p}: GAGAvatar track file not found")
    return p


def read_track_pickle(path: Path) -> dict:
    """Unpickle a tracker file through the numpy-only unpickler -> {frame key: {field: array}}."""
    try:
        data = _NumpyOnlyUnpickler(io.BytesIO(path.read_bytes())).load()
    except Exception as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise InputError(f"{path}: not a GAGAvatar track pickle ({reason})") from None
    if not isinstance(data, dict) or not data or not all(isinstance(v, Mapping) for v in data.values()):
        raise InputError(f"{path}: not a GAGAvatar track pickle (expected a dict of per-frame dicts)")
    return data


def frame_number(key: str) -> int:
    """'<video>_<i>' -> i (video names may themselves contain '_')."""
    return int(key.rsplit("_", 1)[-1])


class _HasJoints(Protocol):
    def joints(self, shape: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """(N, 300), (N, 100) -> (N, J, 3) rest-pose joints, the root first (metres)."""
        ...


def load_gagavatar_track(path: str | Path, video: str | None = None, face: _HasJoints | None = None) -> GagaTrack:
    """Read and convert a GAGAvatar track (file or output folder). ``video`` picks one clip from a
    file holding several (keys '<video>_<i>'); ``face`` (e.g. a ``FlameModel``) moves the rotation
    pivot to its root joint."""
    p = resolve_track_file(path)
    return gagavatar_to_motion(read_track_pickle(p), source=str(p), video=video, face=face)


def gagavatar_to_motion(frames: Mapping[str, Mapping[str, np.ndarray]], source: str = "<track>",
                        video: str | None = None, face: _HasJoints | None = None) -> GagaTrack:
    """Convert the per-frame dicts of one clip to our layout; see the module docstring."""
    keyed = []
    for key in frames:
        try:
            keyed.append((key.rsplit("_", 1)[0] if "_" in key else "", frame_number(key), key))
        except (ValueError, AttributeError):
            raise InputError(f"{source}: frame key {key!r} is not '<video>_<number>'") from None
    clips = sorted({name for name, _, _ in keyed})
    if video is not None:
        keyed = [k for k in keyed if k[0] == video]
        if not keyed:
            raise InputError(f"{source}: no frames of video {video!r} (it holds {', '.join(clips)})")
    elif len(clips) > 1:
        raise InputError(f"{source}: holds {len(clips)} videos ({', '.join(clips[:3])}, ...); choose one of them")
    keys = [key for _, _, key in sorted(keyed, key=lambda k: k[1])]

    fields = {name: np.stack([_field(frames[k], name, k, source) for k in keys]) for name in FIELDS}
    T = len(keys)
    motion = np.zeros((T, MOTION_DIM), dtype=np.float64)
    motion[:, EXPR] = fields["expcode"]
    motion[:, JAW] = fields["posecode"][:, JAW_IN_POSE]
    motion[:, EYES] = fields["eyecode"]

    R = fields["transform_matrix"][:, :, :3]  # (T, 3, 3), row-vector convention
    T_view = fields["transform_matrix"][:, :, 3]  # (T, 3)
    head = P3D_TO_OURS @ R.transpose(0, 2, 1)  # (T, 3, 3) column-vector rotation in our frame
    flame_global = axis_angle_to_matrix(torch.from_numpy(fields["posecode"][:, GLOBAL_IN_POSE])).numpy()
    rot = matrix_to_axis_angle(torch.from_numpy(head @ flame_global))
    motion[:, ROT] = rot.numpy()
    motion[:, TRANS] = T_view @ P3D_TO_OURS.T / VERTS_SCALE
    shape = np.median(fields["shapecode"], axis=0)
    if face is not None:
        ref = next(iter(face.buffers()), None) if isinstance(face, torch.nn.Module) else None
        like = ref if ref is not None and ref.is_floating_point() else torch.zeros(0)  # model dtype/device
        with torch.no_grad():
            shapes = torch.from_numpy(np.repeat(shape[None], T, axis=0)).to(like)
            root = face.joints(shapes, torch.from_numpy(fields["expcode"]).to(like))[:, 0]
        root = root.double().cpu().numpy()  # (T, 3) J0 per frame (expression moves it slightly)
        motion[:, TRANS] += ((head - np.eye(3)) @ root[..., None])[..., 0]

    return GagaTrack(
        motion=motion.astype(np.float32),
        shape=shape.astype(np.float32),
        keys=keys,
        frame_index=np.array([frame_number(k) for k in keys], dtype=np.int64),
    )


def track_intrinsics(size: int = TRACK_IMAGE_SIZE) -> tuple[float, float, float, int, int]:
    """(focal, cx, cy, height, width) in pixels of the tracker's camera on its square crops:
    PyTorch3D's NDC focal length covers half the image side per unit."""
    return FOCAL_NDC * size / 2, size / 2, size / 2, size, size


def _field(frame: Mapping[str, np.ndarray], name: str, key: str, source: str) -> np.ndarray:
    """One field of one frame as float64 of the expected shape, or a one-line InputError."""
    if name not in frame:
        raise InputError(f"{source}: frame {key!r} has no {name!r} (a GAGAvatar track needs "
                         f"{', '.join(FIELDS)})")
    try:
        value = np.asarray(frame[name], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{source}: frame {key!r} field {name!r} is not numeric") from None
    if value.shape != FIELDS[name]:
        raise InputError(f"{source}: frame {key!r} field {name!r} has shape {value.shape}, "
                         f"expected {FIELDS[name]}")
    if not np.isfinite(value).all():
        raise InputError(f"{source}: frame {key!r} field {name!r} contains NaN or infinity")
    return value
