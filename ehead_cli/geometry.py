"""Rotation maths shared by the face models, the motion-magnitude condition and the metrics.

Axis-angle vectors are (..., 3) with the angle in radians as their norm; rotation matrices are
(..., 3, 3) and act on column vectors (``R @ v``). Everything is batched and differentiable.
"""

from __future__ import annotations

import torch

_SMALL = 1e-6  # below this angle (rad) the series expansions are used


def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula. (..., 3) axis-angle -> (..., 3, 3) rotation matrix.

    Uses the Taylor expansions of sin(x)/x and (1-cos x)/x^2 near zero so the gradient at the
    identity is finite (a rest pose is all zeros).
    """
    theta2 = (aa * aa).sum(-1, keepdim=True)  # (..., 1)
    theta = torch.sqrt(theta2.clamp_min(_SMALL**2))
    small = theta2 < _SMALL**2
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)  # sin(x)/x
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2.clamp_min(_SMALL**2))
    K = skew(aa)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand(K.shape)
    return eye + a[..., None] * K + b[..., None] * (K @ K)


def skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrix, ``skew(v) @ w == v x w``."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*v.shape[:-1], 3, 3)


def matrix_to_axis_angle(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrix -> (..., 3) axis-angle with angle in [0, pi].

    Near pi the antisymmetric part vanishes, so the axis is read from the symmetric part instead.
    """
    angle = rotation_angle(R)  # (...,)
    w = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    sin = torch.sin(angle)[..., None]
    # angle / (2 sin angle), with its series near 0
    scale = torch.where(sin.abs() > 1e-4, angle[..., None] / (2 * sin.clamp_min(1e-12)),
                        0.5 + angle[..., None] ** 2 / 12)
    aa = w * scale
    # angle close to pi: R ~ 2 n n^T - I, take the largest column of (R + I) / 2
    near_pi = angle > torch.pi - 1e-3
    if bool(near_pi.any()):
        B = (R + torch.eye(3, dtype=R.dtype, device=R.device)) / 2
        diag = torch.diagonal(B, dim1=-2, dim2=-1)
        k = diag.argmax(-1)
        col = torch.gather(B, -1, k[..., None, None].expand(*k.shape, 3, 1))[..., 0]
        n = col / col.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        # choose the sign consistent with the antisymmetric part where it is informative
        sign = torch.where((n * w).sum(-1, keepdim=True) < 0, -1.0, 1.0)
        aa = torch.where(near_pi[..., None], n * sign * angle[..., None], aa)
    return aa


def rotation_angle(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (...,) rotation angle in [0, pi] (radians), stable at 0 and pi.

    atan2(|skew part|, trace part) rather than acos((tr - 1) / 2), which loses precision near 0.
    """
    w = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    tr = R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2]
    return torch.atan2(w.norm(dim=-1) / 2, (tr - 1) / 2)


def geodesic_angle(aa1: torch.Tensor, aa2: torch.Tensor) -> torch.Tensor:
    """SO(3) geodesic distance (radians) between two axis-angle rotations, (..., 3) -> (...,)."""
    R = axis_angle_to_matrix(aa1).transpose(-1, -2) @ axis_angle_to_matrix(aa2)
    return rotation_angle(R)


def euler_to_matrix(pitch: torch.Tensor, yaw: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """Intrinsic rotations about x (pitch, nod), y (yaw, turn), z (roll, tilt): R = Ry @ Rx @ Rz."""
    ax = torch.stack([pitch, torch.zeros_like(pitch), torch.zeros_like(pitch)], -1)
    ay = torch.stack([torch.zeros_like(yaw), yaw, torch.zeros_like(yaw)], -1)
    az = torch.stack([torch.zeros_like(roll), torch.zeros_like(roll), roll], -1)
    return axis_angle_to_matrix(ay) @ axis_angle_to_matrix(ax) @ axis_angle_to_matrix(az)
