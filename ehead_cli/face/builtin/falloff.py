"""Smooth weights over the mesh: the ramps and Gaussian bumps the parts, colours, rig and
blendshapes are painted with."""

from __future__ import annotations

import numpy as np


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """0 below e0, 1 above e1 (or the reverse when e1 < e0), a cubic ramp between."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def bump(p: np.ndarray, c, sigma) -> np.ndarray:
    """Gaussian falloff exp(-|(p - c) / sigma|^2 / 2); p (V, 3), sigma scalar or per axis -> (V,)."""
    q = (p - np.asarray(c)) / np.asarray(sigma)
    return np.exp(-0.5 * (q * q).sum(-1))


def sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, 3), (B, 3) -> (A, B) squared distances."""
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T, 0.0)
