"""The server's default hop, chosen from a measurement of the device it runs on.

A live window of hop H frames must be generated within H frames of session time, or the session
falls behind; each frame waits for the rest of its hop (up to H - 1 frames) plus the window's compute,
so the smallest hop the device can sustain gives the lowest latency. ``ehead serve --hop auto`` (the
default) times a few windows of the model at batch 1 and takes the smallest hop of ``LADDER`` whose
time the compute fills at most ``SHARE`` of (the rest is headroom for other conversations batched
with it, the JPEG renderer and the event loop). On a 2-core CPU (README, "Live latency") the small
preset at 4 steps (66 ms a window) gets H = 4 and the paper preset (340 ms) H = 20; a GPU gets H = 1.
"""

from __future__ import annotations

import time

import numpy as np

from ehead_cli.layout import MOTION_FPS, SAMPLES_PER_FRAME

LADDER = (1, 2, 4, 5, 8, 10, 20, 25, 50, 100)  # hops tried, smallest first (frames)
SHARE = 0.5  # of a hop's time one conversation's window may take


def choose_hop(window_ms: float, window: int, share: float = SHARE) -> int:
    """The smallest hop of ``LADDER`` (at most ``window``) whose duration a window of ``window_ms``
    fills at most ``share`` of; the whole window when none does."""
    for hop in LADDER:
        if hop <= window and window_ms <= share * 1000.0 * hop / MOTION_FPS:
            return hop
    return window


def measure_window_ms(gen, repeats: int = 3, warmup: int = 2) -> float:
    """The median time (ms) to generate one live window at batch 1 on ``gen``'s device: the audio
    encoder and the sampler, as a session's hop runs them."""
    session = gen.stream(None, seed=0, record=False, hop=1)
    mic = (np.random.default_rng(0).normal(size=SAMPLES_PER_FRAME) * 0.05).astype(np.float32)
    times = []
    for i in range(warmup + repeats):
        (window,) = session.form(mic, "mic")
        t = time.perf_counter()
        session.generate(window)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return 1000.0 * float(np.median(times))
