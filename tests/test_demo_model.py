"""The shipped demo model: it loads through its manifest and has learned the sample data.

(Its full figures are in models/ehead-small-mel/MODEL_CARD.md; this checks one test clip.)"""

from __future__ import annotations

import numpy as np
from conftest import REPO

from ehead_cli.generate.generator import Generator, default_checkpoint
from ehead_cli.io.audio import load_audio
from ehead_cli.io.motionfile import load_motion
from ehead_cli.layout import JAW, SPEAK


def test_demo_model_moves_the_jaw_with_speech_and_closes_it_to_listen():
    assert default_checkpoint() == REPO / "models" / "ehead-small-mel"
    gen = Generator.from_checkpoint(device="cpu")  # verifies size and SHA-256 against models/MANIFEST.json
    clip = REPO / "sample_data" / "clips" / "conv026_de"  # a test-split clip, 8.1 s
    gt = load_motion(clip.with_suffix(".npz"))
    out = gen.generate(load_audio(clip.with_suffix(".flac")), gt.states, seed=0)
    jaw_pred = np.degrees(np.linalg.norm(out.motion[:, JAW], axis=1))
    jaw_gt = np.degrees(np.linalg.norm(gt.motion[:, JAW], axis=1))
    speaking = gt.states == SPEAK
    assert speaking.sum() > 50 and (~speaking).sum() > 50
    assert np.corrcoef(jaw_pred[speaking], jaw_gt[speaking])[0, 1] >= 0.6
    assert jaw_pred[~speaking].mean() <= 2.0
    assert jaw_pred[speaking].mean() > 2 * jaw_pred[~speaking].mean()
