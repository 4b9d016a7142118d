"""The soundtrack of a motion clip's video: an audio file cut or padded to the clip's frames, refused when
its length is not the clip's (``ehead render --audio``)."""

from __future__ import annotations

import os

import numpy as np

from ehead_cli import checks
from ehead_cli.errors import InputError
from ehead_cli.io.audio import load_audio
from ehead_cli.layout import MOTION_FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, tolerance_frames


def soundtrack(audio: str | os.PathLike, n_frames: int, motion: str | os.PathLike) -> np.ndarray:
    """``audio`` as exactly ``n_frames`` frames of 16 kHz samples (zero-padded or cut within the tolerance
    of ``layout.tolerance_frames``); InputError naming both files when the lengths disagree more."""
    wave = load_audio(audio)
    n = n_frames * SAMPLES_PER_FRAME
    if abs(len(wave) - n) > SAMPLES_PER_FRAME * tolerance_frames():
        raise InputError(f"{audio}: lasts {checks.seconds(len(wave) / SAMPLE_RATE)} but {motion} has "
                         f"{n_frames} frames ({checks.seconds(n_frames / MOTION_FPS)})")
    return np.pad(wave, (0, max(0, n - len(wave))))[:n]
