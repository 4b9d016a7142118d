"""Camera-space face tracks -> the head-centred motion convention plus the clip's camera.

Every motion NPZ is head-centred (docs/formats.md, "The motion convention"):

* ROT (axis-angle, radians, FLAME axes: x toward the subject's left, y up, z out of the face) is
  the head's rotation about the face model's own pivot (the built-in head's neck pivot, FLAME's
  root joint) away from its rest orientation. Rotation 0 is the rest: for generated motion and the
  synthetic sample data, the face looking along +z into the default camera; for a tracked clip, the
  clip's mean head orientation as its own camera saw it.
* TRANS (metres, the same axes) is the head's displacement from its rest position; 0 is the rest
  (a tracked clip: its median position).

The trackers (the landmark fitter, GAGAvatar) give the pose in the video camera's frame instead
(OpenGL axes, z ~ -1.2 m for a head in front of the lens). ``head_centred`` splits that into the
head-centred motion and a ``ClipCamera`` that puts the rest pose where the video had it, exactly:
``camera(face(shape, head_centred)) == face(shape, camera_space)`` for every vertex of every frame.

With R_c, t_c the tracked pose of a frame and R0 the rest rotation (the chordal mean of the clip's
R_c, projected onto SO(3)):

    ROT   = axis-angle(R0^T R_c)
    TRANS = a - median(a),  a = R0^T v_cam - v_rest   (any vertex; the same for all of them)

where v_cam is a vertex of the tracked frame and v_rest the same vertex posed with ROT and zero
TRANS, because the face models turn rigidly about their pivot and then translate. The camera's
world-to-camera transform is ``[R0 | R0 median(a)]``.
"""

from __future__ import annotations

import numpy as np
import torch

from ehead_cli.face.base import FaceModel
from ehead_cli.geometry import axis_angle_to_matrix, matrix_to_axis_angle
from ehead_cli.layout import N_SHAPE, ROT, TRANS
from ehead_cli.render.clip_camera import ClipCamera

CHUNK = 256  # frames per face-model evaluation


def mean_rotation(R: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotations -> (3, 3) their chordal L2 mean: the rotation nearest to the
    arithmetic mean of the matrices (SVD projection onto SO(3))."""
    U, _, Vt = np.linalg.svd(np.asarray(R, np.float64).mean(0))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


@torch.no_grad()
def head_centred(face: FaceModel, shape: np.ndarray, motion: np.ndarray, focal: float, cx: float, cy: float,
                 height: int, width: int) -> tuple[np.ndarray, ClipCamera]:
    """Split a camera-space track into head-centred motion and the clip's camera (module docstring).

    shape (300,); motion (T, 115) with ROT/TRANS in OpenGL camera coordinates; the intrinsics of the
    video (focal and principal point in pixels, its size). Returns ((T, 115) float32, ClipCamera).
    """
    motion = np.asarray(motion, np.float64)
    if motion.shape[0] == 0:
        raise ValueError("an empty track has no rest pose")
    R_c = axis_angle_to_matrix(torch.from_numpy(motion[:, ROT])).numpy()  # (T, 3, 3)
    R0 = mean_rotation(R_c)
    R_h = np.einsum("ji,tjk->tik", R0, R_c)  # R0^T R_c
    out = motion.copy()
    out[:, ROT] = matrix_to_axis_angle(torch.from_numpy(R_h)).numpy()
    out[:, TRANS] = 0.0
    a = np.zeros((len(motion), 3))
    like = face.vertex_colors
    s = torch.as_tensor(np.asarray(shape, np.float32)[:N_SHAPE], dtype=like.dtype, device=like.device)
    for i in range(0, len(motion), CHUNK):
        cam = face(s, torch.as_tensor(motion[i:i + CHUNK], dtype=like.dtype, device=like.device))
        rest = face(s, torch.as_tensor(out[i:i + CHUNK], dtype=like.dtype, device=like.device))
        # R0^T v_cam - v_rest: one offset per frame; the mean over vertices averages out rounding
        a[i:i + CHUNK] = (cam.double().cpu().numpy() @ R0 - rest.double().cpu().numpy()).mean(1)
    centre = np.median(a, axis=0)
    out[:, TRANS] = a - centre
    return out.astype(np.float32), ClipCamera.from_rt(R0, R0 @ centre, focal, cx, cy, height, width)
