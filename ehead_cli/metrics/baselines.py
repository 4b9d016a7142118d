"""The trivial predictions of ``ehead eval --baseline`` (mean, still, shuffled), built from the
ground truth, that every model must beat."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ehead_cli.errors import ConfigError
from ehead_cli.metrics.arrays import as_float64

BASELINES = ("mean", "still", "shuffled")


def baseline_motion(kind: str, gt_clips: Sequence[Any]) -> list[np.ndarray]:
    """Trivial predictions built from the ground truth, one (T_i, 115) float32 array per clip.

    mean:     every frame is the per-dimension mean of all frames of all ground-truth clips
              (axis-angle slices averaged component-wise, fine for the small angles of a head).
    still:    the clip's own first ground-truth frame, held for all T_i frames.
    shuffled: the ground truth of another clip: clip i gets clip (i + 1) mod N (in the order given),
              cut or looped to T_i frames: plausible motion, not synchronised with the audio. With a
              single clip, its own motion rolled by T // 2 frames instead.
    """
    clips = [as_float64(c).astype(np.float32) for c in gt_clips]
    if not clips:
        raise ValueError("baseline_motion needs at least one ground-truth clip")
    if kind == "mean":
        mean = np.concatenate(clips, 0).mean(0, dtype=np.float64).astype(np.float32)
        return [np.broadcast_to(mean, c.shape).copy() for c in clips]
    if kind == "still":
        return [np.broadcast_to(c[:1], c.shape).copy() for c in clips]
    if kind == "shuffled":
        if len(clips) == 1:
            return [np.roll(clips[0], clips[0].shape[0] // 2, axis=0)]
        out = []
        for i, c in enumerate(clips):
            src = clips[(i + 1) % len(clips)]
            out.append(src[np.arange(c.shape[0]) % src.shape[0]].copy())
        return out
    raise ConfigError(f"--baseline: unknown baseline {kind!r}; choose from {', '.join(BASELINES)}")
