"""TalkNet-ASD: MFCC features, checkpoint loading, scoring, and scores -> LS states."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ehead_cli.errors import AssetError
from ehead_cli.layout import LISTEN, SAMPLES_PER_FRAME, SPEAK
from ehead_cli.prepare.mfcc import MFCC_RATE, N_CEPS, n_mfcc_frames, talknet_mfcc
from ehead_cli.prepare.smoothing import moving_average, remove_short_runs, scores_to_states
from ehead_cli.prepare.talknet import (
    ENV_VAR,
    TalkNet,
    load_talknet,
    prepare_faces,
    talknet_face_crops,
    talknet_scores,
)


# --- MFCC ---------------------------------------------------------------------------------
def test_mfcc_rate_and_shape():
    rng = np.random.default_rng(0)
    # 25 ms windows every 10 ms: 2 s plus the 15 ms tail of the last window = exactly 200 frames
    two_s = rng.standard_normal(2 * 16000 + 240) * 0.1
    assert talknet_mfcc(two_s).shape == (2 * MFCC_RATE, N_CEPS) == (200, 13)
    # T video frames of audio give 4T - 1 frames (the last window would run past the end)
    for T in (1, 7, 25):
        assert n_mfcc_frames(T * SAMPLES_PER_FRAME) == 4 * T - 1
        assert talknet_mfcc(rng.standard_normal(T * SAMPLES_PER_FRAME)).shape == (4 * T - 1, 13)
    assert talknet_mfcc(rng.standard_normal(100)).shape == (1, 13)  # shorter than one window


def _mfcc_by_hand(x: np.ndarray) -> np.ndarray:
    """Direct re-derivation with explicit sums: pre-emphasis, 400/160 framing, 512-point DFT,
    26 HTK-mel triangles on floor((512 + 1) f / sr) bins, log, orthonormal DCT-II, lifter 22, log energy."""
    sr, win, hop, nfft, nfilt = 16000, 400, 160, 512, 26
    y = np.array([x[0]] + [x[n] - 0.97 * x[n - 1] for n in range(1, len(x))])
    n_frames = 1 + math.ceil((len(y) - win) / hop)
    y = np.concatenate([y, np.zeros((n_frames - 1) * hop + win - len(y))])
    k = np.arange(nfft // 2 + 1)
    dft = np.exp(-2j * np.pi * np.outer(k, np.arange(win)) / nfft)  # zero-padding to 512 = summing 400 terms
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    imel = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = np.floor((nfft + 1) * imel(np.linspace(mel(0), mel(sr / 2), nfilt + 2)) / sr)
    out = np.zeros((n_frames, 13))
    for f in range(n_frames):
        power = np.abs(dft @ y[f * hop: f * hop + win]) ** 2 / nfft
        logfb = np.zeros(nfilt)
        for j in range(nfilt):
            a, b, c = edges[j], edges[j + 1], edges[j + 2]
            w = [(i - a) / (b - a) if a <= i < b else (c - i) / (c - b) if b <= i < c else 0.0 for i in k]
            logfb[j] = np.log(np.dot(w, power))
        for n in range(13):
            scale = np.sqrt(1 / nfilt) if n == 0 else np.sqrt(2 / nfilt)
            c_n = scale * sum(logfb[m] * np.cos(np.pi * n * (2 * m + 1) / (2 * nfilt)) for m in range(nfilt))
            out[f, n] = c_n * (1 + 11 * np.sin(np.pi * n / 22))
        out[f, 0] = np.log(power.sum())
    return out


def test_mfcc_matches_direct_derivation():
    x = np.random.default_rng(1).integers(-3000, 3000, size=880).astype(np.int16)  # 4 frames
    ours = talknet_mfcc(x)
    assert ours.shape == (4, 13)
    np.testing.assert_allclose(ours, _mfcc_by_hand(x.astype(np.float64)), rtol=1e-5, atol=1e-4)


def test_mfcc_gain_moves_only_the_energy_coefficient_and_float_means_int16_units():
    t = np.arange(4000) / 16000
    tone = 0.1 * np.sin(2 * np.pi * 440 * t)
    quiet, loud = talknet_mfcc(tone), talknet_mfcc(4 * tone)
    np.testing.assert_allclose(loud[:, 0] - quiet[:, 0], 2 * np.log(4), atol=1e-4)  # power x 16
    np.testing.assert_allclose(loud[:, 1:], quiet[:, 1:], atol=1e-3)
    noise = 0.1 * np.random.default_rng(2).standard_normal(4000)  # broadband: int16 rounding is negligible
    as_int16 = talknet_mfcc(np.round(noise * 32768).astype(np.int16))
    np.testing.assert_allclose(as_int16, talknet_mfcc(noise), atol=1e-2)


# --- checkpoint ---------------------------------------------------------------------------
def _random_talknet() -> TalkNet:
    net = TalkNet()
    with torch.no_grad():  # non-trivial normalisation statistics, so a lost buffer would show
        for name, buf in net.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0.0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
    return net.eval()


def _clip(T: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, 256, size=(T, 112, 112), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal(T * SAMPLES_PER_FRAME)).astype(np.float32)
    return faces, audio


def test_official_key_layout_loads_and_scores(tmp_path):
    net = _random_talknet()
    keys = set(net.state_dict())
    for expected in ("model.visualFrontend.frontend3D.0.weight", "model.visualTCN.net.0.net.4.gamma",
                     "model.audioEncoder.layer4.0.downsample.0.weight", "model.crossA2V.self_attn.in_proj_weight",
                     "model.selfAV.norm2.bias", "lossAV.FC.weight", "lossA.FC.bias", "lossV.FC.weight"):
        assert expected in keys
    assert sum(p.numel() for p in net.model.parameters()) / 2**20 == pytest.approx(15.01, abs=0.01)

    path = tmp_path / "pretrain_TalkSet.model"
    torch.save(net.state_dict(), path)
    loaded = load_talknet(path)
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k

    faces, audio = _clip(10)
    scores = talknet_scores(loaded, faces, audio)
    assert scores.shape == (10,) and scores.dtype == np.float32 and np.isfinite(scores).all()
    # 10 frames of audio give 39 MFCC frames: 9 frames are scored, the last repeats frame 9;
    # 9 frames are shorter than every demo chunk, so all six passes equal one plain pass
    assert scores[-1] == scores[-2]
    mfcc = torch.from_numpy(talknet_mfcc(audio))[None, :36]
    with torch.no_grad():
        direct = net(torch.from_numpy(faces[None, :9]), mfcc)[0].numpy()
    np.testing.assert_allclose(scores[:9], direct, atol=1e-4)


def test_dataparallel_prefix_is_accepted(tmp_path):
    path = tmp_path / "dp.model"
    torch.save({f"module.{k}": v for k, v in TalkNet().state_dict().items()}, path)
    assert isinstance(load_talknet(path), TalkNet)


@pytest.mark.parametrize("damage", ["drop", "rename", "reshape", "not_weights"])
def test_wrong_checkpoint_is_a_one_line_asset_error(tmp_path, damage):
    state = TalkNet().state_dict()
    if damage == "drop":
        state.pop("lossV.FC.weight")
    elif damage == "rename":
        state["model.visualTCN.net.9.weight"] = state.pop("model.visualTCN.net.4.net.5.weight")
    elif damage == "reshape":
        state["lossAV.FC.weight"] = torch.zeros(3, 256)
    else:
        state = {"weights": [1, 2, 3]}
    path = tmp_path / "bad.model"
    torch.save(state, path)
    with pytest.raises(AssetError) as err:
        load_talknet(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_checkpoint_names_the_flag_and_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(AssetError, match=f"--talknet.*{ENV_VAR}"):
        load_talknet(None)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere.model"))
    with pytest.raises(AssetError, match="nowhere.model"):
        load_talknet()


def test_chunked_scoring_equals_independent_chunk_passes():
    """The shared-stem shortcut must give the demo's numbers: each chunk scored on its own."""
    net = _random_talknet()
    T = 14  # 0.4 s chunks: cut at frame 10 (the demo's 1..6 s chunks cut every 25..150 frames)
    faces, audio = _clip(T, seed=3)
    audio = np.concatenate([audio, np.zeros(SAMPLES_PER_FRAME, np.float32)])  # cover all 14 frames
    ours = talknet_scores(net, faces, audio, durations_s=(0.4,))

    mfcc = torch.from_numpy(talknet_mfcc(audio))
    x = torch.from_numpy(faces).float()
    with torch.no_grad():
        reference = torch.cat([net(x[None, s:e], mfcc[None, 4 * s: 4 * e])[0] for s, e in ((0, 10), (10, 14))])
        unchunked = net(x[None], mfcc[None, : 4 * T])[0]
    np.testing.assert_allclose(ours, reference.numpy(), atol=1e-4)
    assert not np.allclose(ours, unchunked.numpy(), atol=1e-3)  # chunking does change the scores


def test_face_inputs_follow_the_demo():
    rng = np.random.default_rng(0)
    crop224 = rng.integers(0, 256, size=(2, 224, 224), dtype=np.uint8)
    np.testing.assert_array_equal(prepare_faces(crop224).numpy(), crop224[:, 56:168, 56:168])
    rgb = np.zeros((1, 112, 112, 3), np.uint8)
    rgb[..., 1] = 100  # pure green -> 0.587 * 100
    assert float(prepare_faces(rgb)[0, 0, 0]) == 59.0

    frames = np.full((3, 120, 160), 200, np.uint8)
    boxes = np.array([[0.0, 0.0, 40.0, 40.0]] * 3)  # face in the corner: the crop runs off the frame
    crops = talknet_face_crops(frames, boxes)
    assert crops.shape == (3, 224, 224) and crops.dtype == np.uint8
    assert crops[0, 0, 0] == 110 and crops[0, -1, -1] == 200  # grey padding top-left, image bottom-right


# --- scores -> states ---------------------------------------------------------------------
def test_clean_turns_binarise_at_the_expected_frames():
    logits = np.concatenate([np.full(20, -5.0), np.full(30, 5.0), np.full(20, -5.0)])
    states, smoothed = scores_to_states(logits)
    assert states.dtype == np.int8 and smoothed.dtype == np.float32
    expected = np.concatenate([np.full(20, LISTEN), np.full(30, SPEAK), np.full(20, LISTEN)])
    np.testing.assert_array_equal(states, expected)
    assert 0.0 <= smoothed.min() and smoothed.max() <= 1.0


def test_short_bursts_are_removed_only_by_the_minimum_segment():
    prob = np.zeros(40)
    prob[20:23] = 1.0  # a 3-frame burst survives a 5-frame average (3/5 >= 0.5 at its centre)
    kept, _ = scores_to_states(prob, logits=False, min_segment_s=0.0)
    np.testing.assert_array_equal(np.flatnonzero(kept == SPEAK), [20, 21, 22])
    cleaned, _ = scores_to_states(prob, logits=False)  # default 0.2 s = 5 frames
    assert (cleaned == LISTEN).all()


def test_run_removal_and_edge_average_by_hand():
    s = np.array([1, 1, 1, 1, -1, 1, 1, 1, -1, -1, -1, -1], np.int8)
    np.testing.assert_array_equal(remove_short_runs(s, 3), [1] * 8 + [-1] * 4)
    np.testing.assert_allclose(moving_average(np.array([0.0, 0.0, 1.0]), 3), [0.0, 1 / 3, 1 / 2])
    with pytest.raises(ValueError):
        scores_to_states(np.array([0.2, 1.5]), logits=False)
