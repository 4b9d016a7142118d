"""``--states auto``: listening/speaking states of single-stream audio from its voice activity.

The rule: frames where the Silero voice-activity detector of ``ehead prepare`` hears speech (its
probability smoothed over 0.2 s, threshold 0.5, runs under 0.2 s absorbed) are speaking, and pauses
of at most ``AUTO_PAUSE_S`` inside speech stay speaking; the rest is listening. It suits a recording
of the agent alone: the avatar speaks through its sentences and listens in the long silences
between them. Audio that mixes the user and the agent needs real states (a CSV) or the two-stream
mode, since voice activity cannot tell who speaks.
"""

from __future__ import annotations

import numpy as np

from ehead_cli.layout import MOTION_FPS, n_frames_for

AUTO = "auto"  # the --states value (and jobs-CSV cell) that asks for this rule
AUTO_PAUSE_S = 0.5  # the agent pausing this long or less is still speaking


def auto_states(audio: np.ndarray) -> np.ndarray:
    """(N,) 16 kHz audio -> (ceil(N / 640),) int8 states by the module's rule."""
    from ehead_cli.prepare.smoothing import bridge_pauses
    from ehead_cli.prepare.vad import vad_states

    labels = vad_states(np.asarray(audio, np.float32), n_frames_for(len(audio)))
    return bridge_pauses(labels.states, round(AUTO_PAUSE_S * MOTION_FPS))
