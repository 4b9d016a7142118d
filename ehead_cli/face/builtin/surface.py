"""The bare head as an implicit surface, and the skin rays cast onto it.

The head is a smooth union of ellipsoids (cranium, midface, jaw, chin, cheeks, cheekbones, brow
ridge, upper jaw, eyelid bulges), a nose, two lips that meet in a groove at ``MOUTH_Y`` and a neck
cut flat at ``NECK_CUT_Y``. The skin's vertices are where rays from the vertical axis
(x = 0, z = ``AXIS_Z``) leave it.
"""

from __future__ import annotations

import numpy as np

from ehead_cli.face.builtin.proportions import (
    AXIS_Z,
    EYE_CENTER,
    LID_RADIUS,
    MAX_RAY,
    MIN_RAY,
    MOUTH_Y,
    NECK_CUT_Y,
    RAY_STEP,
)


def _ellipsoid(p: np.ndarray, c, r) -> np.ndarray:
    """Approximate signed distance (metres) to an ellipsoid; p (..., 3)."""
    r = np.asarray(r)
    q = (p - np.asarray(c)) / r
    k0 = np.sqrt(np.einsum("...i,...i->...", q, q))
    q = q / r
    k1 = np.sqrt(np.einsum("...i,...i->...", q, q))
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)


def _capsule(p: np.ndarray, a, b, r: float) -> np.ndarray:
    """Signed distance to the segment a-b thickened by r; p (..., 3)."""
    a, b = np.asarray(a), np.asarray(b)
    ab = b - a
    h = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
    q = p - a - h[..., None] * ab
    return np.sqrt(np.einsum("...i,...i->...", q, q)) - r


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth union of two distance fields with blend radius k (metres)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def _mirror_x(p: np.ndarray) -> np.ndarray:
    """Fold space about x = 0 so one primitive makes both sides."""
    q = p.copy()
    q[..., 0] = np.abs(q[..., 0])
    return q


def head_distance(p: np.ndarray) -> np.ndarray:
    """Signed distance-like field of the bare head (negative inside), p (..., 3) in metres."""
    m = _mirror_x(p)
    d = _ellipsoid(p, (0.0, 0.028, -0.012), (0.075, 0.094, 0.099))  # cranium
    d = _smin(d, _ellipsoid(p, (0.0, -0.030, 0.022), (0.060, 0.066, 0.064)), 0.02)  # midface
    # the mandible narrows toward the chin
    jaw_p = p.copy()
    jaw_p[..., 0] /= np.clip(1.0 + 0.55 * (p[..., 1] + 0.078) / 0.042, 0.5, 1.35)
    d = _smin(d, _ellipsoid(jaw_p, (0.0, -0.078, 0.030), (0.047, 0.040, 0.052)), 0.02)
    d = _smin(d, _ellipsoid(p, (0.0, -0.099, 0.070), (0.020, 0.017, 0.016)), 0.012)  # chin
    d = _smin(d, _ellipsoid(m, (0.040, -0.030, 0.050), (0.026, 0.027, 0.030)), 0.02)  # cheeks
    d = _smin(d, _ellipsoid(m, (0.049, -0.006, 0.045), (0.020, 0.014, 0.026)), 0.016)  # cheekbones
    d = _smin(d, _ellipsoid(p, (0.0, 0.027, 0.060), (0.056, 0.014, 0.025)), 0.012)  # brow ridge
    d = _smin(d, _ellipsoid(p, (0.0, -0.050, 0.071), (0.032, 0.022, 0.022)), 0.01)  # upper jaw
    # eyelid bulges: the lids lie on a sphere around each eyeball
    d = _smin(d, np.linalg.norm(m - np.asarray(EYE_CENTER), axis=-1) - LID_RADIUS, 0.006)
    # nose: a ridge from the root to the tip, the tip and the two wings
    nose = _capsule(p, (0.0, 0.010, 0.079), (0.0, -0.029, 0.104), 0.0)
    t = np.clip((0.010 - p[..., 1]) / 0.039, 0.0, 1.0)
    nose = nose - (0.0050 + 0.0040 * t)
    nose = _smin(nose, _ellipsoid(p, (0.0, -0.031, 0.101), (0.0105, 0.0095, 0.0105)), 0.006)
    nose = _smin(nose, _ellipsoid(m, (0.0125, -0.036, 0.089), (0.0075, 0.0065, 0.0080)), 0.005)
    d = _smin(d, nose, 0.008)
    # lips meet in a groove at MOUTH_Y
    lips = _ellipsoid(p, (0.0, MOUTH_Y + 0.0078, 0.0850), (0.026, 0.0090, 0.0105))
    lips = np.minimum(lips, _ellipsoid(p, (0.0, MOUTH_Y - 0.0080, 0.0825), (0.0225, 0.0078, 0.0105)))
    d = _smin(d, lips, 0.004)
    d = _smin(d, _capsule(p, (0.0, -0.060, -0.030), (0.0, -0.300, -0.015), 0.053), 0.03)  # neck
    return np.maximum(d, NECK_CUT_Y - p[..., 1])


def cast(origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """(R,) distance along each ray (R, 3) from its origin to where it leaves the head."""
    steps = np.arange(MIN_RAY, MAX_RAY + RAY_STEP, RAY_STEP)
    outside = head_distance(origins[:, None, :] + steps[None, :, None] * dirs[:, None, :]) > 0  # (R, S)
    if outside[:, 0].any() or not outside.any(1).all():
        raise RuntimeError("a skin ray starts outside the head or never leaves it")
    k = outside.argmax(1)
    lo, hi = steps[k - 1], steps[k]
    for _ in range(12):  # bisection: RAY_STEP / 2^12 = 1 um
        mid = 0.5 * (lo + hi)
        out = head_distance(origins + mid[:, None] * dirs) > 0
        hi = np.where(out, mid, hi)
        lo = np.where(out, lo, mid)
    return 0.5 * (lo + hi)



def direction(azimuth: np.ndarray, elevation: np.ndarray) -> np.ndarray:
    """Unit vectors from azimuth (0 = +z, positive toward +x) and elevation (up), in radians."""
    azimuth, elevation = np.broadcast_arrays(azimuth, elevation)
    ce = np.cos(elevation)
    return np.stack([ce * np.sin(azimuth), np.sin(elevation), ce * np.cos(azimuth)], -1)


def azimuth_deg(p: np.ndarray) -> np.ndarray:
    """|azimuth| in degrees of points (..., 3) about the skin-ray axis, 0 at the front."""
    return np.degrees(np.abs(np.arctan2(p[..., 0], p[..., 2] - AXIS_Z)))
