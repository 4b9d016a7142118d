"""The one timer every benchmark uses: warm-up calls first, then each timed call between two device
synchronisations (so a GPU's queued work is inside the call that queued it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from ehead_cli.devices import sync


def time_calls(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int) -> list[float]:
    """Seconds per call of ``fn``: ``repeats`` timed calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - t0)
    return out
