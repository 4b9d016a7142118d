"""The motion layout and the rates everything else is derived from (the README's "The model, as built").

One frame of motion is 115 float32 at 25 fps:

    [0:100]    FLAME expression coefficients
    [100:103]  jaw pose, axis-angle
    [103:109]  eye poses, left then right, axis-angle
    [109:112]  global head rotation, axis-angle
    [112:115]  global head translation (metres for FLAME)

Identity is a separate 300-dim shape vector; the model's reference condition uses its first 100.
"""

from __future__ import annotations

# --- rates -------------------------------------------------------------------------------
SAMPLE_RATE = 16_000  # Hz, every audio path works at this rate
MOTION_FPS = 25  # frames per second of motion and video
SAMPLES_PER_FRAME = SAMPLE_RATE // MOTION_FPS  # 640 audio samples per motion frame
FEATURE_RATE = 50  # Hz, HuBERT-family hidden states (and our log-mel frames)
FEATURE_HOP = SAMPLE_RATE // FEATURE_RATE  # 320 samples between audio feature frames
FEATURES_PER_FRAME = FEATURE_RATE // MOTION_FPS  # 2 audio feature frames per motion frame
# How far two lengths that should agree (audio vs states, prediction vs ground truth, audio vs motion)
# may differ before it is an error rather than rounding or a tracker dropping the last frames.
LENGTH_TOLERANCE_S = 0.5

# --- motion vector -----------------------------------------------------------------------
N_EXPR = 100
N_SHAPE = 300
N_SHAPE_REF = 100  # shape coefficients used by the model's reference condition

EXPR = slice(0, 100)
JAW = slice(100, 103)
EYES = slice(103, 109)
EYE_LEFT = slice(103, 106)
EYE_RIGHT = slice(106, 109)
ROT = slice(109, 112)
TRANS = slice(112, 115)
POSE = slice(100, 115)  # everything that is not expression
MOTION_DIM = 115

# The five loss groups of Stage I and their weights (supplementary B.1).
GROUPS: dict[str, slice] = {"expression": EXPR, "jaw": JAW, "eye": EYES, "rotation": ROT, "translation": TRANS}

# --- listening / speaking state ----------------------------------------------------------
SPEAK = 1
LISTEN = -1


def tolerance_frames(fps: float = MOTION_FPS) -> int:
    """``LENGTH_TOLERANCE_S`` in frames at ``fps`` (12 at 25 fps)."""
    return int(LENGTH_TOLERANCE_S * fps)


def n_frames_for(n_samples: int) -> int:
    """Motion frames covering ``n_samples`` of 16 kHz audio: ceil(duration x 25)."""
    return -(-n_samples // SAMPLES_PER_FRAME)
