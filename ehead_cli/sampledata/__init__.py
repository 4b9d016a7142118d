"""The sample-data generator: synthetic espeak-ng conversations with procedural ground-truth motion
on the built-in head, written as a dataset folder (see ``build``).

``speech``  espeak-ng synthesis and conversation assembly (single-stream mix + per-frame states)
``motion``  the ground-truth motion as a function of the audio, the states and a seed
``build``   the whole generator: ``python -m ehead_cli.sampledata --out sample_data``
"""

from ehead_cli.sampledata.build import DEFAULT_CLIPS, DEFAULT_SEED, build_dataset
from ehead_cli.sampledata.motion import ground_truth_motion, identity_shape
from ehead_cli.sampledata.speech import Voice, assemble, espeak_available, synthesize

__all__ = [
    "DEFAULT_CLIPS",
    "DEFAULT_SEED",
    "Voice",
    "assemble",
    "build_dataset",
    "espeak_available",
    "ground_truth_motion",
    "identity_shape",
    "synthesize",
]
