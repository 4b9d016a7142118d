"""Jaw opening: not a paper metric, ehead's check of lip sync and of a closed listening mouth.

The jaw's rotation angle (the norm of its axis-angle) is how far the mouth opens; ``jaw_r`` is the
Pearson correlation of predicted and ground-truth angles, ``jaw_deg`` the predicted mean in degrees,
``jaw_err`` the mean absolute difference of the two angles frame by frame, in degrees (how far the
mouth opening is off: an attenuated or late jaw shows here, not in ``jaw_r``'s scale-free correlation).
"""

from __future__ import annotations

import numpy as np

from ehead_cli.layout import JAW
from ehead_cli.metrics.conventions import Unavailable


def jaw_opening_stats(pred: np.ndarray, gt: np.ndarray) -> dict[str, float | Unavailable]:
    """jaw_r: Pearson r of the jaw angles of (N, 115) prediction and ground truth (Unavailable when
    either is constant); jaw_deg: the prediction's mean jaw angle in degrees; jaw_err: the mean
    absolute error of the jaw angle in degrees."""
    p, g = jaw_degrees(pred), jaw_degrees(gt)
    if len(p) < 2 or p.std() < 1e-9 or g.std() < 1e-9:
        r: float | Unavailable = Unavailable("jaw_r needs jaw angles that vary on both sides")
    else:
        r = float(np.corrcoef(p, g)[0, 1])
    return {"jaw_r": r, "jaw_deg": float(p.mean()), "jaw_err": float(np.abs(p - g).mean()) if len(p) else 0.0}


def jaw_degrees(motion: np.ndarray) -> np.ndarray:
    """(T, 115) -> (T,) jaw rotation angle in degrees (norm of the axis-angle): how far the jaw opens."""
    return np.degrees(np.linalg.norm(np.asarray(motion, dtype=np.float64)[:, JAW], axis=1))
