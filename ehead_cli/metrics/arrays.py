"""Array helpers shared by the metric modules: numpy/torch input as float64 numpy, the equal-length
rule of paired metrics, and frame selections (a boolean mask or frame indices)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def as_float64(x: Any) -> np.ndarray:
    """A numpy array or torch tensor (any device) -> float64 numpy array, the precision metrics use."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def check_same_length(pred: np.ndarray, gt: np.ndarray, what: str) -> None:
    """ValueError unless prediction and ground truth have the same (non-empty) shape: aligning
    lengths is the caller's rule, never done silently inside a metric."""
    if pred.shape != gt.shape:
        raise ValueError(f"{what}: prediction {pred.shape} and ground truth {gt.shape} differ; align lengths first")
    if pred.shape[0] == 0:
        raise ValueError(f"{what}: empty sequence")


def frame_mask(frames: Any, n: int) -> np.ndarray:
    """None -> all frames; a boolean (T,) mask or integer indices -> boolean (T,) mask."""
    if frames is None:
        return np.ones(n, dtype=bool)
    f = np.asarray(frames.cpu() if isinstance(frames, torch.Tensor) else frames)
    if f.dtype == bool:
        if f.shape != (n,):
            raise ValueError(f"frame mask has shape {f.shape}, expected ({n},)")
        mask = f
    else:
        mask = np.zeros(n, dtype=bool)
        mask[f.astype(np.int64)] = True
    if not mask.any():
        raise ValueError("frame selection is empty")
    return mask
