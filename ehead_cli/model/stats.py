"""Dataset statistics stored in every checkpoint: motion normalisation and motion magnitude.

Motion magnitude (paper 3.2, "motion magnitude"): from a ground-truth target window,
    m_r = mean over successive frames of the SO(3) geodesic angle between head rotations (rad/frame)
    m_t = mean over successive frames of the head-translation displacement (model units/frame)
each normalised to [0, 1] with dataset statistics: m_norm = clip((m - lo) / (hi - lo), 0, 1) with
lo, hi the 1st and 99th percentiles of the training windows' values (robust to outliers). The
inference default is m = [0.3, 0.3].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from ehead_cli.geometry import geodesic_angle
from ehead_cli.layout import MOTION_DIM, ROT, TRANS

DEFAULT_MAGNITUDE = (0.3, 0.3)
MAG_PERCENTILES = (1.0, 99.0)
STD_FLOOR = 1e-3  # dimensions that barely move are not blown up by normalisation


def motion_magnitude(motion: torch.Tensor) -> torch.Tensor:
    """Raw magnitude of a window. (..., T, 115) -> (..., 2) = [m_r rad/frame, m_t units/frame]."""
    rot, trans = motion[..., ROT], motion[..., TRANS]
    m_r = geodesic_angle(rot[..., :-1, :], rot[..., 1:, :]).mean(-1)
    m_t = (trans[..., 1:, :] - trans[..., :-1, :]).norm(dim=-1).mean(-1)
    return torch.stack([m_r, m_t], dim=-1)


@dataclass
class MotionStats:
    """Per-dimension mean/std of motion (115 each) and the magnitude range [lo, hi] for (m_r, m_t)."""

    mean: list[float]
    std: list[float]
    mag_lo: list[float]
    mag_hi: list[float]

    @classmethod
    def identity(cls) -> MotionStats:
        return cls([0.0] * MOTION_DIM, [1.0] * MOTION_DIM, [0.0, 0.0], [1.0, 1.0])

    @classmethod
    def fit(cls, motions: list[np.ndarray], window_magnitudes: np.ndarray) -> MotionStats:
        """motions: list of (T_i, 115) clips; window_magnitudes: (N, 2) raw magnitudes of training windows."""
        allm = np.concatenate(motions, axis=0).astype(np.float64)
        mean, std = allm.mean(0), np.maximum(allm.std(0), STD_FLOOR)
        lo = np.percentile(window_magnitudes, MAG_PERCENTILES[0], axis=0)
        hi = np.percentile(window_magnitudes, MAG_PERCENTILES[1], axis=0)
        hi = np.maximum(hi, lo + 1e-8)
        return cls(mean.tolist(), std.tolist(), lo.tolist(), hi.tolist())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MotionStats:
        s = cls(**d)
        if len(s.mean) != MOTION_DIM or len(s.std) != MOTION_DIM or len(s.mag_lo) != 2 or len(s.mag_hi) != 2:
            raise ValueError("motion statistics have the wrong sizes")
        return s

    def _t(self, values, like: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(values, dtype=like.dtype, device=like.device)

    def normalize(self, motion: torch.Tensor) -> torch.Tensor:
        return (motion - self._t(self.mean, motion)) / self._t(self.std, motion)

    def denormalize(self, motion: torch.Tensor) -> torch.Tensor:
        return motion * self._t(self.std, motion) + self._t(self.mean, motion)

    def normalize_magnitude(self, raw: torch.Tensor) -> torch.Tensor:
        """(..., 2) raw magnitudes -> (..., 2) in [0, 1]."""
        lo, hi = self._t(self.mag_lo, raw), self._t(self.mag_hi, raw)
        return ((raw - lo) / (hi - lo)).clamp(0.0, 1.0)
