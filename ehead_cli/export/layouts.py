"""ehead motion -> the coefficient layouts other codebases read (docs/formats.md gives each one's keys,
shapes, units, axes and the public file it was checked against).

Every ``to_*`` function is pure (a ``Motion`` in, arrays out) and every ``write_*`` writes one file
atomically. What the motion NPZ holds is exported as it is: no camera is added or removed (ehead's
head-centred convention, and where the per-clip camera lives, are defined elsewhere).

Rotations: ehead, FLAME, DECA/EMOCA, ARTalk and DualTalk all store axis-angle vectors in FLAME's
frame (x toward the subject's left, y up, the face looking toward +z; 0 = facing the camera), so those
are copied. GAGAvatar keeps the head rotation in a PyTorch3D world-to-view matrix instead; that
conversion is the exact inverse of ``ehead_cli.prepare.gagavatar`` (see ``gagavatar_transform``).
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ehead_cli.errors import InputError
from ehead_cli.geometry import axis_angle_to_matrix
from ehead_cli.io.atomic import atomic_path
from ehead_cli.io.motionfile import Motion
from ehead_cli.layout import EXPR, EYES, JAW, LISTEN, MOTION_DIM, N_EXPR, ROT, TRANS
from ehead_cli.prepare.gagavatar import P3D_TO_OURS, VERTS_SCALE

# --- flame-npz: ehead's own FLAME-parameter file ------------------------------------------------------
FLAME_NPZ_KEYS = ("expr", "pose", "shape", "trans", "fps")

# --- ARTalk ---------------------------------------------------------------------------------------------
ARTALK_DIM = 106  # 100 expression + 3 global rotation + 3 jaw, at 25 fps
ARTALK_FPS = 25

# --- DualTalk -------------------------------------------------------------------------------------------
DUALTALK_N_EXPR = 50  # DualTalk pads these with 50 zeros to FLAME's 100 when it renders
DUALTALK_N_SHAPE = 100
DUALTALK_FPS = 25


def _check_fps(m: Motion, fps: int, layout: str, source: str) -> None:
    if abs(m.fps - fps) > 1e-6:
        raise InputError(f"{source}: motion is at {m.fps:g} fps but {layout} reads {fps} fps motion")


def _pose6(m: Motion) -> np.ndarray:
    """(T, 6) float32 [head rotation, jaw] axis-angle: FLAME's global + jaw pose, DECA's ``pose``."""
    return np.concatenate([m.motion[:, ROT], m.motion[:, JAW]], axis=1)


# --- flame-npz ------------------------------------------------------------------------------------------

def to_flame_npz(m: Motion) -> dict[str, np.ndarray]:
    """expr (T, 100), pose (T, 6) [global rotation, jaw] axis-angle (rad), shape (300,), trans (T, 3) (m),
    fps () float32. Eye poses and states have no place here."""
    return {"expr": m.motion[:, EXPR].copy(), "pose": _pose6(m), "shape": m.shape.copy(),
            "trans": m.motion[:, TRANS].copy(), "fps": np.float32(m.fps)}


def flame_npz_to_motion(arrays: Mapping[str, np.ndarray], source: str = "flame-npz") -> Motion:
    """The inverse of ``to_flame_npz``: eye poses 0 and every frame listening (the file has neither)."""
    missing = [k for k in FLAME_NPZ_KEYS if k not in arrays]
    if missing:
        raise InputError(f"{source}: missing key(s) {', '.join(missing)} (a flame-npz holds "
                         f"{', '.join(FLAME_NPZ_KEYS)})")
    expr, pose, trans = (np.asarray(arrays[k]) for k in ("expr", "pose", "trans"))
    if expr.ndim != 2 or expr.shape[1] != N_EXPR:
        raise InputError(f"{source}: 'expr' must have shape (T, {N_EXPR}), got {expr.shape}")
    T = expr.shape[0]
    for key, value, width in (("pose", pose, 6), ("trans", trans, 3)):
        if value.shape != (T, width):
            raise InputError(f"{source}: '{key}' must have shape ({T}, {width}) to match 'expr', got {value.shape}")
    motion = np.zeros((T, MOTION_DIM), np.float32)
    motion[:, EXPR], motion[:, ROT], motion[:, JAW], motion[:, TRANS] = expr, pose[:, :3], pose[:, 3:], trans
    fps = np.asarray(arrays["fps"])
    if fps.size != 1:
        raise InputError(f"{source}: 'fps' must be a scalar")
    return Motion(motion, arrays["shape"], np.full(T, LISTEN, np.int8), float(fps)).validate(source)


def load_flame_npz(path: str | Path) -> Motion:
    """Read a flame-npz (no pickled objects) into ehead's layout; see ``flame_npz_to_motion``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: flame-npz file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as err:
        raise InputError(f"{path}: not a readable NPZ file ({err})") from None
    return flame_npz_to_motion(arrays, str(path))


def write_flame_npz(path: str | Path, m: Motion) -> None:
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **to_flame_npz(m))


# --- ARTalk ---------------------------------------------------------------------------------------------

def to_artalk(m: Motion, source: str = "motion") -> torch.Tensor:
    """(T, 106) float32 tensor: expression 100, global rotation 3, jaw 3 (axis-angle, rad), 25 fps."""
    _check_fps(m, ARTALK_FPS, "ARTalk", source)
    return torch.from_numpy(np.concatenate([m.motion[:, EXPR], _pose6(m)], axis=1).copy())


def write_artalk(path: str | Path, m: Motion, source: str = "motion") -> None:
    """A ``.pt`` holding the bare tensor, as ARTalk saves its motions and loads style motions
    (``torch.load(..., weights_only=True)``)."""
    motion = to_artalk(m, source)
    with atomic_path(path) as tmp:
        torch.save(motion, tmp)


# --- DualTalk -------------------------------------------------------------------------------------------

def to_dualtalk(m: Motion, source: str = "motion") -> dict[str, np.ndarray]:
    """exp (T, 50), pose (T, 6) [head rotation, jaw] axis-angle (rad), shape (T, 100), all float32, 25 fps."""
    _check_fps(m, DUALTALK_FPS, "DualTalk", source)
    return {"exp": m.motion[:, :DUALTALK_N_EXPR].copy(), "pose": _pose6(m),
            "shape": np.repeat(m.shape[None, :DUALTALK_N_SHAPE], m.n_frames, axis=0)}


def write_dualtalk(path: str | Path, m: Motion, source: str = "motion") -> None:
    arrays = to_dualtalk(m, source)
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)


# --- GAGAvatar ------------------------------------------------------------------------------------------

class HasJoints(Protocol):
    def joints(self, shape: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """(N, 300), (N, 100) -> (N, J, 3) rest-pose joints, the root first (metres)."""
        ...


def gagavatar_transform(rot: np.ndarray, trans: np.ndarray, root: np.ndarray | None = None) -> np.ndarray:
    """ehead head pose -> GAGAvatar's ``transform_matrix`` [R | T], (T, 3), (T, 3)[, (T, 3)] -> (T, 3, 4).

    GAGAvatar maps a FLAME point p (metres, row vector, global pose 0) to PyTorch3D's view frame as
    ``5 p @ R + T``. ehead's head is ``M p + TRANS`` with M = R(rot) in ehead's camera frame, which is
    PyTorch3D's turned half a turn about y (F = diag(-1, 1, -1)). So R = M^T F and T = 5 F TRANS. ehead's
    FLAME turns about its root joint J0, not the origin: with ``root`` (J0 per frame) TRANS becomes
    TRANS - (M - I) J0, so the tracker's vertices equal ehead's FLAME vertices exactly.
    """
    M = axis_angle_to_matrix(torch.from_numpy(np.asarray(rot, np.float64))).numpy()  # (T, 3, 3)
    t = np.asarray(trans, np.float64)
    if root is not None:
        t = t - ((M - np.eye(3)) @ np.asarray(root, np.float64)[..., None])[..., 0]
    R = M.transpose(0, 2, 1) @ P3D_TO_OURS
    T = VERTS_SCALE * t @ P3D_TO_OURS.T
    return np.concatenate([R, T[..., None]], axis=2).astype(np.float32)


def root_joints(face: HasJoints, m: Motion) -> np.ndarray:
    """(T, 3) float64 root joint J0 per frame (metres): the clip's shape, each frame's expression."""
    buffers = face.buffers() if isinstance(face, torch.nn.Module) else iter(())
    like = next((b for b in buffers if b.is_floating_point()), torch.zeros(0))  # the model's dtype and device
    with torch.no_grad():
        shapes = torch.from_numpy(np.repeat(m.shape[None], m.n_frames, axis=0)).to(like)
        return face.joints(shapes, torch.from_numpy(m.motion[:, EXPR]).to(like))[:, 0].double().cpu().numpy()


def to_gagavatar(m: Motion, video: str, face: HasJoints | None = None) -> dict[str, dict[str, np.ndarray]]:
    """The GAGAvatar tracker's per-frame dict ``{"<video>_<i>": frame}``; each frame: shapecode (300,),
    expcode (100,), posecode (6,) [global 0, jaw], eyecode (6,) [left, right], transform_matrix (3, 4),
    all float32. ``face`` (ehead's FLAME) moves the rotation pivot from its root joint to the origin."""
    root = None if face is None else root_joints(face, m)
    transform = gagavatar_transform(m.motion[:, ROT], m.motion[:, TRANS], root)
    posecode = np.zeros((m.n_frames, 6), np.float32)
    posecode[:, 3:] = m.motion[:, JAW]  # the tracker keeps the head rotation in the camera, not in FLAME
    return {f"{video}_{i}": {"shapecode": m.shape.copy(), "expcode": m.motion[i, EXPR].copy(),
                             "posecode": posecode[i], "eyecode": m.motion[i, EYES].copy(),
                             "transform_matrix": transform[i]}
            for i in range(m.n_frames)}


class _PortablePickler(pickle.Pickler):
    """Pickles an array as ``numpy.ndarray(shape, dtype)`` filled by its ``__setstate__`` with the raw
    bytes: globals ``numpy.ndarray`` and ``numpy.dtype`` only, which every numpy 1 and 2 resolves (numpy 2's
    own pickles name ``numpy._core``, which numpy before 1.26.1 cannot import)."""

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray):
            a = np.ascontiguousarray(obj)
            return np.ndarray, (a.shape, a.dtype.str), (1, a.shape, a.dtype, False, a.tobytes())
        return NotImplemented


def write_gagavatar(path: str | Path, m: Motion, video: str, face: HasJoints | None = None) -> None:
    """The tracker's ``smoothed.pkl`` layout (``to_gagavatar``), pickled with plain containers and arrays."""
    frames = to_gagavatar(m, video, face)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        _PortablePickler(f, protocol=4).dump(frames)
