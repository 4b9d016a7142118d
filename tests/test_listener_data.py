"""Dyadic data: the importers on tiny files of the DualTalk and Learning-to-Listen layouts, the dyadic
sample-data generator (with a tone synthesiser, no espeak-ng) and the committed sample data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from ehead_cli.errors import InputError
from ehead_cli.io.motionfile import load_motion
from ehead_cli.layout import EXPR, JAW, LISTEN, MOTION_FPS, ROT, SAMPLE_RATE, SPEAK
from ehead_cli.listener.data import LMWindows, TensorDict, VQWindows, fit_identities, fit_norm, load_dyads
from ehead_cli.listener.importers import (
    deca_to_motion,
    import_dualtalk,
    import_learning2listen,
    resample,
    sources_from_csv,
)
from ehead_cli.sampledata import dyadic
from tests.conftest import REPO

SAMPLE_DYADIC = REPO / "sample_data" / "dyadic"


def test_deca_codes_map_into_the_ehead_layout():
    rng = np.random.default_rng(0)
    exp, pose = rng.standard_normal((10, 50)), rng.standard_normal((10, 6))
    m = deca_to_motion(exp, pose, fps=25.0)
    assert m.shape == (10, 115) and m.dtype == np.float32
    np.testing.assert_allclose(m[:, EXPR][:, :50], exp, rtol=1e-6)
    np.testing.assert_allclose(m[:, ROT], pose[:, :3], rtol=1e-6)
    np.testing.assert_allclose(m[:, JAW], pose[:, 3:], rtol=1e-6)
    assert not m[:, 50:100].any() and not m[:, 103:109].any() and not m[:, 112:].any()
    with pytest.raises(InputError, match="exp"):
        deca_to_motion(exp[:, :40], pose, 25.0)


def test_resampling_30_to_25_fps_is_linear_in_time():
    x = np.arange(30, dtype=np.float64)[:, None]  # a ramp at 30 fps: value = frame index
    y = resample(x, 30.0, 25.0)
    assert y.shape == (25, 1)
    np.testing.assert_allclose(y[:, 0], np.arange(25) * 30 / 25)


def test_dualtalk_importer(tmp_path):
    rng = np.random.default_rng(1)
    src = tmp_path / "dualtalk"
    src.mkdir()
    for side in ("a", "b"):
        np.savez(src / f"clip1_{side}.npz", exp=rng.standard_normal((50, 50)) * 0.1,
                 pose=rng.standard_normal((50, 6)) * 0.05)
    sf.write(src / "clip1_b.wav", rng.standard_normal(2 * SAMPLE_RATE).astype(np.float32) * 0.1, SAMPLE_RATE)
    (src / "clips.csv").write_text("id,listener,speaker,audio,split,identity\n"
                                   "clip1,clip1_a.npz,clip1_b.npz,clip1_b.wav,test,alice\n")
    table = import_dualtalk(sources_from_csv(src / "clips.csv"), tmp_path / "out")
    assert table.to_dict("records")[0]["identity"] == "alice"
    index = load_dyads(tmp_path / "out")
    assert not index.problems and len(index.dyads) == 1
    d = index.dyads[0]
    with np.load(src / "clip1_a.npz") as z:
        np.testing.assert_allclose(d.listener[:, :50], z["exp"], rtol=1e-5, atol=1e-7)
    assert d.split == "test" and d.identity == "alice" and d.n_frames == 50
    assert (load_motion(tmp_path / "out" / "clips" / "clip1.npz").states == LISTEN).all()
    np.savez(src / "bad.npz", exp=np.zeros((5, 50)))
    (src / "bad.csv").write_text("id,listener,speaker,audio\nx,bad.npz,clip1_b.npz,clip1_b.wav\n")
    with pytest.raises(InputError, match="pose"):
        import_dualtalk(sources_from_csv(src / "bad.csv"), tmp_path / "out2")


def test_learning2listen_importer(tmp_path):
    rng = np.random.default_rng(2)
    split = tmp_path / "trevor" / "test"
    split.mkdir(parents=True)
    for name in ("p0_list_faces_clean_deca.npy", "p1_speak_faces_clean_deca.npy", "p1_list_faces_clean_deca.npy",
                 "p0_speak_faces_clean_deca.npy"):
        np.save(split / name, rng.standard_normal((2, 64, 184)).astype(np.float32) * 0.1)
    table = import_learning2listen(split, tmp_path / "out", "trevor", "test")
    assert len(table) == 4 and set(table["split"]) == {"test"}
    assert set(table["identity"]) == {"trevor", "trevor_partner"}
    index = load_dyads(tmp_path / "out")
    d = next(x for x in index.dyads if x.id == "trevor_test_p0_00000")
    raw_list = np.load(split / "p0_list_faces_clean_deca.npy")[0]
    raw_speak = np.load(split / "p1_speak_faces_clean_deca.npy")[0]
    assert d.n_frames == 53  # 64 frames at 30 fps -> 53 at 25
    np.testing.assert_allclose(d.listener[0, :50], raw_list[0, :50], rtol=1e-5)
    np.testing.assert_allclose(d.speaker[0, ROT], raw_speak[0, 50:53], rtol=1e-5)
    assert (sf.read(tmp_path / "out" / "clips" / f"{d.id}.flac")[0] == 0).all()  # L2L has no waveform
    # a second import into the same folder keeps the first one's clips
    import_learning2listen(split, tmp_path / "out", "conan", "test")
    assert len(pd.read_csv(tmp_path / "out" / "manifest.csv")) == 8


def _tone_synth(text: str, language: str, voice) -> np.ndarray:
    """A stand-in for espeak-ng: one loud syllable per word, 4 per second."""
    from ehead_cli.sampledata.speech import normalise

    n_words = min(len(text.split()), 6)
    t = np.arange(int(n_words * 0.25 * SAMPLE_RATE)) / SAMPLE_RATE
    env = np.abs(np.sin(np.pi * 4 * t)) ** 3
    tone = sum(np.sin(2 * np.pi * 180 * k * t) / k for k in range(1, 12))
    return normalise((env * tone).astype(np.float32), -12.0)  # peaks above motion.STRESS_DB: stressed syllables


@pytest.mark.slow  # renders video / synthesises and encodes a dyad: about 4 s
def test_dyadic_generator_listener_answers_the_speaker(tmp_path):
    manifest = dyadic.build_dyadic(tmp_path / "d", n_clips=2, synth=_tone_synth)
    assert len(manifest) == 2 and set(manifest["split"]) <= {"train", "val", "test"}
    index = load_dyads(tmp_path / "d")
    assert not index.problems
    d = index.dyads[0]
    style = dyadic.listener_style(int(d.identity[-2:]))
    assert (d.speaker_states == SPEAK).any() and (load_motion(tmp_path / "d" / "clips" / f"{d.id}.npz").states
                                                  == LISTEN).all()
    # the nods: the listener's head pitch rises above its resting pitch right after the speaker's stressed syllables
    from ehead_cli.sampledata.motion import audio_features, stress_beats

    beats = stress_beats(audio_features(d.wave()).level_db, d.speaker_states)
    nods = dyadic.nod_onsets(beats, style, d.n_frames)
    first_strong = next(f for f, s in beats if s >= dyadic.NOD_MIN_STRENGTH)
    assert nods and nods[0][0] == first_strong + dyadic.NOD_LATENCY
    pitch = np.degrees(d.listener[:, ROT.start]) - style.rest_deg[0]
    peak = nods[0][0] + style.nod_frames // 2
    assert pitch[peak] - pitch[nods[0][0]] > 0.5 * style.nod_deg * np.sqrt(nods[0][1])


def test_lagged_and_nod_onsets_known_answers():
    x = np.zeros(10)
    x[2] = 1.0
    y = dyadic.lagged(x, 3, 1.0)
    a = 1 - np.exp(-1.0)
    assert y[:5].tolist() == [0.0] * 5 and y[5] == pytest.approx(a) and y[6] == pytest.approx(a * (1 - a))
    style = dyadic.listener_style(0)
    beats = [(10, 0.9), (12, 0.9), (10 + style.refractory, 0.1), (10 + style.refractory + 1, 0.5)]
    assert dyadic.nod_onsets(beats, style, 500) == [(14, 0.9), (14 + style.refractory + 1, 0.5)]


def test_committed_dyadic_sample_data_is_usable():
    index = load_dyads(SAMPLE_DYADIC)
    assert not index.problems
    train = index.split("train")
    assert len(train) >= 30 and index.split("test") and len({d.identity for d in train}) == dyadic.N_LISTENERS
    total = sum(p.stat().st_size for p in SAMPLE_DYADIC.rglob("*") if p.is_file())
    assert total < 5.5e6
    norm = fit_norm(train, 1e-3)
    ids = fit_identities(train, norm)
    w = VQWindows(train[:3], norm, ids, 32, seed=0)
    b1 = TensorDict.collate([w[i] for i in range(4)])
    assert b1["motion"].shape == (4, 32, 115) and b1["stats"].shape == (4, 230)
    assert (b1["motion"] == TensorDict.collate([w[i] for i in range(4)])["motion"]).all()  # (seed, epoch, index)
    w.set_epoch(1)
    assert any(not torch.equal(w[i]["motion"], b1["motion"][i]) for i in range(4))  # the jitter changes by epoch
    assert abs(train[0].n_frames / MOTION_FPS - float(train[0].meta["duration"])) < 0.1
    with pytest.raises(InputError):
        LMWindows([], 4)
