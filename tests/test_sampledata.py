"""The sample-data generator: motion from audio on synthetic syllables (no espeak-ng needed),
conversation assembly, a whole build with a tone synthesiser, and real espeak-ng when installed."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from ehead_cli.errors import AssetError
from ehead_cli.face.builtin import (
    EXPR_BLINK,
    EXPR_LIP_ROUND,
    EXPR_LIP_STRETCH,
    EXPR_LIPS_PART,
    N_NAMED_SHAPE,
)
from ehead_cli.io.audio import load_audio
from ehead_cli.io.motionfile import load_motion
from ehead_cli.layout import EXPR, JAW, LISTEN, MOTION_DIM, MOTION_FPS, N_SHAPE, ROT, SAMPLE_RATE, SPEAK, TRANS
from ehead_cli.sampledata import build as build_mod
from ehead_cli.sampledata import motion as gt
from ehead_cli.sampledata import speech

SYLLABLE_HZ = 4.0  # one syllable every 6.25 frames
FRAMES_PER_SYLLABLE = MOTION_FPS / SYLLABLE_HZ
MOUTH_EXPR = (EXPR_LIPS_PART, EXPR_LIP_ROUND, EXPR_LIP_STRETCH)


def syllables(n: int, f0: float = 140.0, rate_hz: float = SYLLABLE_HZ, rolloff: float = 1.0) -> np.ndarray:
    """(N,) a harmonic tone (harmonics to 4 kHz, amplitude k^-rolloff) amplitude-modulated into ``n``
    syllables: |sin(pi rate t)|^3, loudest at (i + 0.5) / rate s, silent at i / rate s; -20 dBFS."""
    t = np.arange(round(n / rate_hz * SAMPLE_RATE)) / SAMPLE_RATE
    harmonics = np.arange(1, int(4000 / f0) + 1)
    tone = (np.sin(2 * np.pi * f0 * harmonics[:, None] * t) / harmonics[:, None] ** rolloff).sum(0)
    return speech.normalise((tone * np.abs(np.sin(np.pi * rate_hz * t)) ** 3).astype(np.float32))


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), np.float32)


def frames(wave: np.ndarray) -> int:
    return -(-len(wave) // (SAMPLE_RATE // MOTION_FPS))


# --- motion from audio ------------------------------------------------------------------------------


def test_jaw_opens_at_each_syllable_and_closes_between():
    n = 12
    wave = syllables(n)
    states = np.full(frames(wave), SPEAK, np.int8)
    jaw = gt.ground_truth_motion(wave, states, seed=1)[:, JAW.start]
    for i in range(n):
        lo, hi = int(np.ceil(i * FRAMES_PER_SYLLABLE)), int(np.floor((i + 1) * FRAMES_PER_SYLLABLE))
        peak = lo + int(np.argmax(jaw[lo: hi + 1]))
        assert abs(peak - (i + 0.5) * FRAMES_PER_SYLLABLE) <= 1.0, f"syllable {i}: jaw peak at frame {peak}"
        assert jaw[peak] > 0.05  # a clearly open mouth (rad)
    gaps = np.round(np.arange(1, n) * FRAMES_PER_SYLLABLE).astype(int)
    assert jaw[gaps].max() < 0.3 * jaw.max()  # nearly closed between syllables


def test_listening_mouth_depends_on_the_states_only():
    wave = syllables(16)  # loud speech throughout: the state alone closes the mouth
    T = frames(wave)
    states = np.where(np.arange(T) < T // 2, SPEAK, LISTEN).astype(np.int8)
    m = gt.ground_truth_motion(wave, states, seed=2)
    silent = gt.ground_truth_motion(np.zeros_like(wave), states, seed=2)
    listening = states == LISTEN
    settled = listening & (np.arange(T) >= T // 2 + 8)  # past the closing of the avatar's last syllable
    np.testing.assert_array_equal(m[settled, JAW.start], silent[settled, JAW.start])
    np.testing.assert_array_equal(m[settled][:, list(MOUTH_EXPR)], silent[settled][:, list(MOUTH_EXPR)])
    assert m[~listening, JAW.start].max() > 0.05 and m[~listening][:, EXPR_LIPS_PART].max() > 0.1
    # after the turn the jaw closes within a few frames, then rests nearly closed and relaxes slowly
    after = m[T // 2:, JAW.start]
    assert after[0] <= m[T // 2 - 1, JAW.start] and after[8] < 0.01
    assert after.max() <= max(m[T // 2 - 1, JAW.start], gt.RELAX_JAW_RAD) + 1e-9
    assert after[-1] > after[8] and after[-1] <= gt.RELAX_JAW_RAD
    assert np.all(m[listening][:, [EXPR_LIP_ROUND, EXPR_LIP_STRETCH]] == 0.0)


def test_the_mouth_opens_slightly_before_a_turn():
    states = np.full(40, LISTEN, np.int8)
    states[20:30] = SPEAK
    jaw = gt.listening_jaw(states, np.full(40, 0.1))
    assert jaw[0] < 1e-3 and jaw[16] < jaw[17] < jaw[18] < jaw[19] <= gt.INHALE_JAW_RAD
    assert np.all(jaw[20:30] == 0.0)  # speaking frames belong to the audio-driven mouth
    assert jaw[30] == pytest.approx(0.1 * np.exp(-1 / gt.CLOSE_TAU))


def test_mouth_depends_only_on_audio_within_two_frames():
    """What the DiT's cross-attention (|i - j| <= 2) can see decides the speaking mouth."""
    a = syllables(16)
    b = a.copy()
    t0, t1 = 50, 60  # frames whose audio is replaced by silence
    spf = SAMPLE_RATE // MOTION_FPS
    b[t0 * spf: t1 * spf] = 0.0
    states = np.full(frames(a), SPEAK, np.int8)
    ma, mb = (gt.mouth_tracks(gt.audio_features(w), states) for w in (a, b))
    outside = np.ones(len(states), bool)
    outside[t0 - 2: t1 + 2] = False
    for name in ("jaw", "lips_part", "lip_round", "lip_stretch"):
        np.testing.assert_array_equal(getattr(ma, name)[outside], getattr(mb, name)[outside], err_msg=name)
    assert not np.array_equal(ma.jaw, mb.jaw)


def test_lip_rounding_for_low_spectra_stretch_for_high():
    states = np.full(frames(syllables(8)), SPEAK, np.int8)
    dark = gt.mouth_tracks(gt.audio_features(syllables(8, f0=300.0, rolloff=3.0)), states)  # centroid ~330 Hz
    rng = np.random.default_rng(0)
    hiss = np.fft.irfft(np.fft.rfft(rng.standard_normal(len(syllables(8)))) *
                        (np.fft.rfftfreq(len(syllables(8)), 1 / SAMPLE_RATE) > 2000))
    bright_wave = speech.normalise((hiss * np.abs(np.sin(np.pi * SYLLABLE_HZ * np.arange(len(hiss)) /
                                                         SAMPLE_RATE)) ** 3).astype(np.float32))
    bright = gt.mouth_tracks(gt.audio_features(bright_wave), states)
    assert dark.lip_round.max() > 0.5 and dark.lip_stretch.max() == 0.0
    assert bright.lip_stretch.max() > 0.3 and bright.lip_round.max() == 0.0


def test_motion_shapes_ranges_blinks_and_determinism():
    wave = np.concatenate([syllables(20), silence(5.0), syllables(20)])  # 15 s
    T = frames(wave)
    states = np.where((np.arange(T) >= 125) & (np.arange(T) < 250), LISTEN, SPEAK).astype(np.int8)
    m = gt.ground_truth_motion(wave, states, seed=3, magnitude=1.6)
    assert m.shape == (T, MOTION_DIM) and m.dtype == np.float32 and np.isfinite(m).all()
    assert 0.0 <= m[:, JAW.start].min() and m[:, JAW.start].max() <= gt.JAW_OPEN_RAD
    assert np.all(m[:, JAW.start + 1: JAW.stop] == 0.0)  # the jaw only opens about x
    assert np.abs(m[:, EXPR]).max() <= 2.0
    assert np.degrees(np.abs(m[:, ROT])).max() < 12.0  # a few degrees
    assert np.abs(m[:, TRANS]).max() < 0.005  # a few millimetres
    blink = m[:, EXPR_BLINK]
    onsets = np.flatnonzero((blink[1:] > 0) & (blink[:-1] == 0)) + 1
    assert blink.max() == 1.0  # some blink closes the eyes fully
    assert T / MOTION_FPS / gt.BLINK_GAP_S[1] - 1 <= len(onsets) <= T / MOTION_FPS / gt.BLINK_GAP_S[0] + 1
    assert (blink[states == SPEAK] > 0.5).any() and (blink[states == LISTEN] > 0.5).any()
    np.testing.assert_array_equal(m, gt.ground_truth_motion(wave, states, seed=3, magnitude=1.6))
    other = gt.ground_truth_motion(wave, states, seed=4, magnitude=1.6)
    assert not np.array_equal(other[:, EXPR_BLINK], blink)  # blink times come from the seed
    np.testing.assert_array_equal(other[:, JAW], m[:, JAW])  # the mouth from the audio alone


def test_magnitude_scales_head_motion_but_not_the_mouth():
    wave = syllables(20)
    states = np.full(frames(wave), SPEAK, np.int8)
    small = gt.ground_truth_motion(wave, states, seed=5, magnitude=0.5)
    large = gt.ground_truth_motion(wave, states, seed=5, magnitude=1.5)
    np.testing.assert_allclose(np.diff(large[:, ROT], axis=0), 3 * np.diff(small[:, ROT], axis=0), atol=1e-6)
    np.testing.assert_allclose(large[:, TRANS], 3 * small[:, TRANS], atol=1e-7)
    np.testing.assert_array_equal(large[:, JAW], small[:, JAW])


def test_head_motion_speed_varies_widely_between_windows_of_one_clip():
    import torch

    from ehead_cli.model.stats import motion_magnitude

    wave = np.concatenate([syllables(20), silence(20.0), syllables(20), silence(20.0)])
    T = frames(wave)
    states = np.where((np.arange(T) // 150) % 2 == 0, SPEAK, LISTEN).astype(np.int8)
    m = torch.from_numpy(gt.ground_truth_motion(wave, states, seed=7))
    speeds = np.array([motion_magnitude(m[s:s + 100]).numpy() for s in range(0, T - 100, 50)])
    for k in range(2):  # rotation and translation speed: the fastest windows at least 4x the slowest
        assert speeds[:, k].max() > 4 * speeds[:, k].min()
    profile = gt.speed_profile(2000, np.random.default_rng(1))
    lo, hi = gt.SPEED_FACTOR
    assert lo - 1e-9 <= profile.min() and profile.max() <= hi + 1e-9 and profile.max() / profile.min() > 3
    assert np.abs(np.diff(profile)).max() <= (hi - lo) / gt.SPEED_RAMP_FRAMES + 1e-9  # ramps, no jumps


def test_beats_follow_the_avatar_and_nods_follow_the_interlocutors_pause():
    loud = 2.0 * syllables(8)  # +6 dB: every syllable stressed
    wave = np.concatenate([loud, silence(2.0), syllables(8), silence(2.0)])
    T = frames(wave)
    states = np.where(np.arange(T) < 100, SPEAK, LISTEN).astype(np.int8)  # avatar, then interlocutor
    level = gt.audio_features(wave).level_db
    beats = [t for t, _ in gt.stress_beats(level, states)]
    assert beats and all(states[t] == SPEAK for t in beats)
    assert np.diff(beats).min() >= gt.BEAT_REFRACTORY
    nods = gt.listening_nods(level, states)
    pause = 150  # frame where the interlocutor's syllables end (8 syllables after frame 100)
    assert len(nods) == 1 and pause - 1 <= nods[0] <= pause + 2
    # the avatar ending its own turn at frame 50 is no interlocutor pause
    assert not any(40 <= t <= 60 for t in nods)


def test_identity_shapes_are_seeded_and_plausible():
    a, b = gt.identity_shape(7), gt.identity_shape(8)
    assert a.shape == (N_SHAPE,) and a.dtype == np.float32
    np.testing.assert_array_equal(a, gt.identity_shape(7))
    assert not np.allclose(a, b)
    assert np.abs(a[:N_NAMED_SHAPE]).max() <= gt.SHAPE_NAMED_LIMIT
    assert np.abs(a[N_NAMED_SHAPE:]).max() < 2.0


def test_motion_rejects_states_of_the_wrong_length():
    with pytest.raises(ValueError, match="states must have shape"):
        gt.ground_truth_motion(syllables(4), np.ones(3, np.int8), seed=0)


# --- conversation assembly ----------------------------------------------------------------------------


def test_assemble_mixes_turns_and_labels_the_avatars_frames():
    a, b = syllables(6), syllables(5, f0=220.0)
    turns = [speech.Turn(a, True, 0.4), speech.Turn(b, False, 0.5), speech.Turn(a, True, 0.3)]
    conv = speech.assemble(turns, other_gain_db=-10.0, tail_s=0.5, noise_seed=0)
    spf = SAMPLE_RATE // MOTION_FPS
    assert len(conv.wave) == len(conv.states) * spf - spf // 2  # the last frame is half long
    assert [t[2] for t in conv.turns] == [True, False, True]
    centres = np.arange(len(conv.states)) * spf + spf // 2
    for start, stop, is_avatar in conv.turns:
        inside = (centres >= start) & (centres < stop)
        assert np.all(conv.states[inside] == (SPEAK if is_avatar else LISTEN))
    assert (conv.states == SPEAK).sum() == sum(
        ((centres >= s) & (centres < e)).sum() for s, e, av in conv.turns if av)
    (s0, e0, _), (s1, e1, _) = conv.turns[:2]
    gain_db = speech.active_rms_db(conv.other[s1:e1]) - speech.active_rms_db(conv.avatar[s0:e0])
    assert gain_db == pytest.approx(-10.0, abs=0.01)
    np.testing.assert_allclose(conv.wave, conv.avatar + conv.other, atol=2e-3)  # plus faint noise


def test_equal_loudness_roles_are_not_told_apart_by_level():
    a = syllables(6)
    conv = speech.assemble([speech.Turn(a, True, 0.3), speech.Turn(a, False, 0.3)], 0.0, 0.3, noise_seed=1)
    level = gt.audio_features(conv.wave).level_db
    assert level[conv.states == SPEAK].max() == pytest.approx(level[conv.states == LISTEN].max(), abs=0.5)


# --- the whole generator with a tone synthesiser (no espeak-ng) --------------------------------------


def tone_synth(text: str, language: str, voice: speech.Voice) -> np.ndarray:
    """Stand-in for espeak-ng: two syllables per word, pitch from the voice."""
    return syllables(2 * len(text.split()), f0=90.0 + 2.0 * voice.pitch)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    manifest = build_mod.build_dataset(out, n_clips=6, seed=11, synth=tone_synth)
    return out, manifest


def test_build_writes_the_dataset_folder_contract(built):
    out, manifest = built
    on_disk = pd.read_csv(out / "manifest.csv")
    assert list(on_disk.columns[:4]) == ["id", "split", "duration", "n_frames"]
    assert {"language", "identity", "avatar_voice", "other_voice"} <= set(on_disk.columns)
    assert set(on_disk["split"]) == {"train", "val", "test"}
    assert len(on_disk) == 6 and on_disk["id"].is_unique
    for row in on_disk.itertuples():
        wave = load_audio(out / "clips" / f"{row.id}.flac")
        m = load_motion(out / "clips" / f"{row.id}.npz")
        assert m.n_frames == row.n_frames == frames(wave) == int(np.ceil(row.duration * MOTION_FPS))
        assert build_mod.MIN_CLIP_S <= row.duration <= build_mod.MAX_CLIP_S
        assert {SPEAK, LISTEN} <= set(np.unique(m.states).tolist())
        # the motion is recomputable from the stored audio alone (plus the clip's seed)
        seed = build_mod.derive_seed(11, row.id + "/motion")
        np.testing.assert_array_equal(m.motion, gt.ground_truth_motion(wave, m.states, seed, row.magnitude))
    readme = (out / "README.md").read_text()
    assert "synthetic" in readme and "python -m ehead_cli.sampledata --out" in readme


def test_build_is_deterministic(built, tmp_path):
    out, manifest = built
    again = build_mod.build_dataset(tmp_path, n_clips=6, seed=11, synth=tone_synth)
    pd.testing.assert_frame_equal(manifest, again)
    for cid in manifest["id"]:
        digest = [hashlib.sha256((d / "clips" / f"{cid}.flac").read_bytes()).hexdigest() for d in (out, tmp_path)]
        assert digest[0] == digest[1]
        a, b = load_motion(out / "clips" / f"{cid}.npz"), load_motion(tmp_path / "clips" / f"{cid}.npz")
        np.testing.assert_array_equal(a.motion, b.motion)
        np.testing.assert_array_equal(a.shape, b.shape)


def test_splits_are_seeded_and_cover_every_clip():
    ids = [f"c{k}" for k in range(50)]
    split = build_mod.assign_splits(ids, seed=0)
    assert split == build_mod.assign_splits(ids, seed=0)
    counts = pd.Series(split).value_counts()
    assert (counts["train"], counts["val"], counts["test"]) == (40, 5, 5)


def test_missing_espeak_is_a_one_line_asset_error(monkeypatch):
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(AssetError, match="espeak-ng not found on PATH.*apt-get install espeak-ng"):
        speech.synthesize("Hello.", "en", speech.Voice("m3"))


# --- real espeak-ng -----------------------------------------------------------------------------------


@pytest.mark.skipif(not speech.espeak_available(), reason="espeak-ng is not installed")
def test_espeak_speaks_every_language_in_distinct_voices():
    waves = {}
    for language in ("en", "es", "de"):
        for variant in ("m3", "f2"):
            w = speech.synthesize(speech.TEXTS[language][0], language, speech.Voice(variant, 50, 160))
            assert w.dtype == np.float32 and 1.0 < len(w) / SAMPLE_RATE < 8.0
            assert speech.active_rms_db(w) == pytest.approx(speech.REFERENCE_RMS_DB, abs=0.01)
            waves[language, variant] = w
    assert not np.array_equal(waves["en", "m3"][:16000], waves["en", "f2"][:16000])
    # espeak-ng is deterministic: the same call gives the same samples
    np.testing.assert_array_equal(waves["en", "m3"], speech.synthesize(speech.TEXTS["en"][0], "en",
                                                                        speech.Voice("m3", 50, 160)))
    states = np.full(frames(waves["en", "m3"]), SPEAK, np.int8)
    jaw = gt.ground_truth_motion(waves["en", "m3"], states, seed=0)[:, JAW.start]
    peaks = gt._local_peaks(jaw, 1) & (jaw > 0.05)
    assert 2.0 < peaks.sum() / (len(jaw) / MOTION_FPS) < 8.0  # syllable-rate opening, 2-8 per second
