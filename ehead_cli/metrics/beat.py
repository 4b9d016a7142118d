"""Beat Alignment (BA) of EmbodiedHead supplementary B.2, eq. 13: how well the beats of the
predicted head motion (peaks of its angular speed) line up with those of the ground truth.

Motion is at 25 fps (``layout.MOTION_FPS``); speeds are in rad/s, beat times in seconds. BA is
unitless in [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d, uniform_filter1d
from scipy.signal import argrelextrema

from ehead_cli.geometry import geodesic_angle
from ehead_cli.layout import MOTION_FPS, ROT
from ehead_cli.metrics.arrays import as_float64, check_same_length, frame_mask

BA_SIGMA_S = 0.1  # Gaussian kernel width in seconds (B.2)
# Our dynamic threshold (the paper names one but gives no numbers): a beat is a local maximum of the
# smoothed head angular speed that exceeds mean + BEAT_K x std of the speed in a centred window of
# BEAT_WINDOW_S, and BEAT_MIN_SPEED, below which the head counts as still (tracker jitter).
BEAT_WINDOW_S = 1.0
BEAT_K = 0.5
BEAT_MIN_SPEED = 0.05  # rad/s, about 3 degrees per second
BEAT_SMOOTH_FRAMES = 1.0  # Gaussian sigma (frames) applied to the speed before peak picking
BAILANDO_SMOOTH_FRAMES = 5.0  # Bailando calc_db: gaussian_filter(kinetic_vel, 5)
BA_EMPTY_BOTH = 1.0  # neither sequence has a beat: the beat sets are identical
BA_EMPTY_ONE = 0.0  # only one side has beats: nothing is aligned


def head_angular_speed(rotation: Any, fps: float = MOTION_FPS) -> np.ndarray:
    """(T, 3) axis-angle head rotations -> (T-1,) angular speed in rad/s:
    speed[t] = geodesic_angle(R_t, R_{t+1}) x fps, the SO(3) angle between successive frames."""
    r = torch.as_tensor(as_float64(rotation))
    if r.ndim != 2 or r.shape[-1] != 3 or r.shape[0] < 2:
        raise ValueError(f"head rotation must be (T >= 2, 3), got {tuple(r.shape)}")
    return geodesic_angle(r[:-1], r[1:]).numpy() * fps


def speed_sample_times(n: int, fps: float = MOTION_FPS) -> np.ndarray:
    """Time (s) of speed sample t, which lies between frames t and t+1: (t + 0.5) / fps."""
    return (np.arange(n) + 0.5) / fps


def detect_beats(speed: Any, fps: float = MOTION_FPS, *, detector: str = "dynamic_peaks",
                 window_s: float = BEAT_WINDOW_S, k: float = BEAT_K, min_speed: float = BEAT_MIN_SPEED,
                 smooth_frames: float | None = None) -> np.ndarray:
    """Beat times in seconds from a (N,) head angular speed in rad/s (``head_angular_speed``).

    ``dynamic_peaks`` (default): s = speed smoothed by a Gaussian of ``smooth_frames`` (default 1)
    frames; sample t is a beat when s[t-1] < s[t] >= s[t+1] (interior samples only) and
    s[t] > max(mean_w(s)[t] + k x std_w(s)[t], min_speed), where mean_w / std_w are the mean and
    standard deviation over a centred window of ``window_s`` seconds (1 s; edges reflected),
    k = 0.5 and min_speed = 0.05 rad/s.
    ``bailando_minima``: s smoothed by a Gaussian of 5 frames, beats = strict local minima
    (scipy argrelextrema(np.less)), no threshold, as Bailando's calc_db.
    """
    s = as_float64(speed).reshape(-1)
    times = speed_sample_times(s.shape[0], fps)
    if detector == "dynamic_peaks":
        sigma = BEAT_SMOOTH_FRAMES if smooth_frames is None else smooth_frames
        if sigma > 0:
            s = gaussian_filter1d(s, sigma, mode="nearest")
        if s.shape[0] < 3:
            return np.empty(0)
        window = max(1, round(window_s * fps))
        mean = uniform_filter1d(s, window, mode="reflect")
        std = np.sqrt(np.maximum(uniform_filter1d(s * s, window, mode="reflect") - mean**2, 0.0))
        threshold = np.maximum(mean + k * std, min_speed)
        mid = slice(1, -1)
        peak = (s[mid] > s[:-2]) & (s[mid] >= s[2:]) & (s[mid] > threshold[mid])
        return times[1:-1][peak]
    if detector == "bailando_minima":
        sigma = BAILANDO_SMOOTH_FRAMES if smooth_frames is None else smooth_frames
        s = gaussian_filter1d(s, sigma) if sigma > 0 else s
        return times[argrelextrema(s, np.less)[0]]
    raise ValueError(f"BA: unknown beat detector {detector!r} (dynamic_peaks or bailando_minima)")


def beat_alignment_score(pred_beats: Any, gt_beats: Any, *, sigma_s: float = BA_SIGMA_S,
                         symmetric: bool = True) -> float:
    """Beat Alignment, EmbodiedHead eq. 13, from beat times in seconds.

    BA = 1/2 [ (1/|Bp|) sum_{b in Bp} exp(-min_{b' in Bg} (b - b')^2 / (2 sigma^2))
             + (1/|Bg|) sum_{b' in Bg} exp(-min_{b in Bp} (b' - b)^2 / (2 sigma^2)) ],  sigma = 0.1 s

    ``symmetric=False`` keeps only the second term (Bailando: average over reference beats).
    Empty sets, which eq. 13 leaves undefined: both empty -> 1.0 (identical, beat-free sequences);
    exactly one empty -> 0.0 (no beat can be matched).
    """
    bp, bg = as_float64(pred_beats).reshape(-1), as_float64(gt_beats).reshape(-1)
    if bp.size == 0 and bg.size == 0:
        return BA_EMPTY_BOTH
    if bp.size == 0 or bg.size == 0:
        return BA_EMPTY_ONE
    gap2 = (bp[:, None] - bg[None, :]) ** 2  # (|Bp|, |Bg|)
    to_gt = np.exp(-gap2.min(1) / (2 * sigma_s**2)).mean()
    to_pred = np.exp(-gap2.min(0) / (2 * sigma_s**2)).mean()
    return float(0.5 * (to_gt + to_pred) if symmetric else to_pred)


def beat_alignment(pred_motion: Any, gt_motion: Any, *, fps: float = MOTION_FPS, detector: str = "dynamic_peaks",
                   sigma_s: float = BA_SIGMA_S, sigma_frames: float | None = None, symmetric: bool = True,
                   beat_kwargs: Mapping[str, Any] | None = None, frames: Any = None) -> float:
    """BA of two (T, 115) motions: beats of the head angular speed of the ROT slice (rad/s at
    ``fps``), then ``beat_alignment_score``. ``sigma_frames`` (if given) sets sigma = frames / fps.
    ``frames``: keep only the beats of selected frames (speaking/listening splits); beats are still
    detected on the whole clip so the sliding threshold sees the full context."""
    p, g = as_float64(pred_motion), as_float64(gt_motion)
    check_same_length(p, g, "BA")
    kw = dict(beat_kwargs or {})
    bp = detect_beats(head_angular_speed(p[:, ROT], fps), fps, detector=detector, **kw)
    bg = detect_beats(head_angular_speed(g[:, ROT], fps), fps, detector=detector, **kw)
    if frames is not None:
        mask = frame_mask(frames, p.shape[0])

        def keep(beats: np.ndarray) -> np.ndarray:
            # a beat at (t + 0.5) / fps belongs to frame t, the first of the pair it was measured on
            return beats[mask[np.clip(np.floor(beats * fps).astype(np.int64), 0, p.shape[0] - 1)]]

        bp, bg = keep(bp), keep(bg)
    sigma = sigma_s if sigma_frames is None else sigma_frames / fps
    return beat_alignment_score(bp, bg, sigma_s=sigma, symmetric=symmetric)
