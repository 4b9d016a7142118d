"""Per-frame speaking scores -> listening/speaking (LS) states.

The paper (section 3.3) runs an active-speaker detector, "applies a short temporal smoothing to
suppress jitter, and then binarizes". Ours, step by step:

1. logits -> probabilities with a sigmoid (skipped for scores already in [0, 1]);
2. a centred moving average over ``smooth_s`` seconds (default 0.2 s = 5 frames at 25 fps, the
   window TalkNet-ASD's own demo averages over); near the ends the window shrinks to the frames
   that exist rather than padding;
3. speaking where the smoothed probability is >= ``threshold`` (default 0.5: for TalkNet
   scores this is the demo's own decision, logit >= 0);
4. runs shorter than ``min_segment_s`` (default 0.2 s) are absorbed into their neighbours,
   shortest first, so one-frame flicker cannot survive.
"""

from __future__ import annotations

import numpy as np

from ehead_cli.layout import LISTEN, MOTION_FPS, SPEAK

DEFAULT_SMOOTH_S = 0.2
DEFAULT_THRESHOLD = 0.5
DEFAULT_MIN_SEGMENT_S = 0.2


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically safe logistic function."""
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


def moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """(T,) -> (T,) centred mean over ``window`` frames (made odd); shrinks at the ends."""
    window = max(1, int(window) | 1)
    half = window // 2
    csum = np.concatenate([[0.0], np.cumsum(np.asarray(x, dtype=np.float64))])
    t = np.arange(len(x))
    lo, hi = np.maximum(t - half, 0), np.minimum(t + half + 1, len(x))
    return (csum[hi] - csum[lo]) / (hi - lo)


def remove_short_runs(states: np.ndarray, min_len: int) -> np.ndarray:
    """Flip runs shorter than ``min_len`` frames into their neighbours, shortest (then earliest) first.

    Flipping a run merges it with the runs on both sides, so each step removes at least one run;
    a clip that is a single run is left as it is.
    """
    values, lengths = _runs(states)
    values, lengths = list(values), list(lengths)
    while len(lengths) > 1:
        i = int(np.argmin(lengths))
        if lengths[i] >= min_len:
            break
        # absorb run i into its neighbours (both, if it has two, since they share one state)
        lo, hi = max(i - 1, 0), min(i + 1, len(lengths) - 1)
        merged = sum(lengths[lo: hi + 1])
        keep = values[lo] if lo != i else values[hi]
        values[lo: hi + 1] = [keep]
        lengths[lo: hi + 1] = [merged]
    return np.repeat(np.asarray(values, dtype=np.int8), lengths)


def _runs(states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T,) -> (values (R,), lengths (R,)) of consecutive equal runs."""
    states = np.asarray(states)
    if states.size == 0:
        return states[:0], np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], states[1:] != states[:-1]]))
    lengths = np.diff(np.concatenate([starts, [states.size]]))
    return states[starts], lengths


def scores_to_states(scores: np.ndarray, fps: int = MOTION_FPS, smooth_s: float = DEFAULT_SMOOTH_S,
                     threshold: float = DEFAULT_THRESHOLD, min_segment_s: float = DEFAULT_MIN_SEGMENT_S,
                     logits: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(T,) speaking scores -> (states (T,) int8 in {SPEAK=+1, LISTEN=-1}, smoothed (T,) float32 in [0, 1]).

    ``logits=True`` maps the scores through a sigmoid first (TalkNet-ASD); pass ``False`` for
    probabilities. ``smoothed`` is the continuous score after smoothing, before thresholding.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"expected per-frame scores (T,), got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("speaking scores contain NaN or infinity")
    if not logits and (s.min(initial=0.0) < 0.0 or s.max(initial=1.0) > 1.0):
        raise ValueError("probabilities must lie in [0, 1]; pass logits=True for raw scores")
    prob = sigmoid(s) if logits else s
    smoothed = moving_average(prob, round(smooth_s * fps))
    states = np.where(smoothed >= threshold, SPEAK, LISTEN).astype(np.int8)
    min_len = round(min_segment_s * fps)
    if min_len > 1:
        states = remove_short_runs(states, min_len)
    return states, smoothed.astype(np.float32)


def bridge_pauses(states: np.ndarray, max_len: int) -> np.ndarray:
    """Listening runs of at most ``max_len`` frames between two speaking runs become speaking: the
    pauses inside one speaker's utterance (commas, breaths). Runs at the ends are kept."""
    values, lengths = _runs(states)
    values = values.copy()
    for i in range(1, len(values) - 1):
        if values[i] != SPEAK and lengths[i] <= max_len and values[i - 1] == SPEAK and values[i + 1] == SPEAK:
            values[i] = SPEAK
    return np.repeat(values.astype(np.int8), lengths)
