"""Audio encoders: frame alignment at 50 Hz, the HuBERT loader on a tiny random model in the
mHuBERT-147 layout, and the on-disk feature cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ehead_cli.errors import AssetError
from ehead_cli.model.config import AudioEncoderConfig, preset
from ehead_cli.model.encoders import FeatureCache, HubertEncoder, MelEncoder, build_encoder, n_feature_frames


def test_mel_encoder_gives_two_frames_per_motion_frame():
    enc = MelEncoder(preset("tiny").audio)
    wave = torch.randn(3, 640 * 100) * 0.1
    out = enc.encode(wave)
    assert out.shape == (3, 3, 200, 64)
    assert n_feature_frames(640 * 100 + 1) == 201


def test_mel_frames_are_local_so_windows_match_the_clip():
    """Feature frame j reads samples [320 j, 320 j + 320) only: a window's log-mel is a slice of
    the clip's, so cached clip features and per-window encoding agree exactly."""
    enc = MelEncoder(preset("tiny").audio)
    clip = torch.randn(1, 640 * 300) * 0.1
    full = enc.frontend(clip)
    window = enc.frontend(clip[:, 640 * 100: 640 * 200])
    torch.testing.assert_close(window, full[:, 200:400])


def test_mel_responds_to_frequency():
    enc = MelEncoder(AudioEncoderConfig("mel", 2, 16, 40))
    t = torch.arange(16000) / 16000
    low = enc.frontend(torch.sin(2 * np.pi * 200 * t)[None])[0].mean(0)
    high = enc.frontend(torch.sin(2 * np.pi * 4000 * t)[None])[0].mean(0)
    assert low.argmax() < high.argmax()


def write_tiny_hubert(folder, normalize=True):
    from transformers import HubertConfig, HubertModel

    cfg = HubertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                       conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                       feat_extract_norm="group", do_stable_layer_norm=False)
    torch.manual_seed(0)
    HubertModel(cfg).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"do_normalize": normalize,
                                                                 "sampling_rate": 16000}))
    return folder


def test_hubert_encoder_loads_a_local_folder(tmp_path):
    folder = write_tiny_hubert(tmp_path / "hubert")
    cfg = AudioEncoderConfig("hubert", n_layers=3, dim=16)
    enc = build_encoder(cfg, folder)
    assert isinstance(enc, HubertEncoder) and enc.frozen
    assert not any(p.requires_grad for p in enc.parameters())
    out = enc.encode(torch.randn(2, 640 * 100) * 0.1)
    assert out.shape == (2, 3, 200, 16) and torch.isfinite(out).all()
    # same model, same identity; the identity changes with the weights
    assert HubertEncoder(cfg, folder).identity == enc.identity
    enc.train()
    assert not enc.model.training


def test_hubert_encoder_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("EHEAD_HUBERT", raising=False)
    cfg = AudioEncoderConfig("hubert", n_layers=3, dim=16)
    with pytest.raises(AssetError, match="--audio-encoder PATH or set EHEAD_HUBERT"):
        HubertEncoder(cfg)
    with pytest.raises(AssetError, match="not found"):
        HubertEncoder(cfg, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AssetError, match="no config.json"):
        HubertEncoder(cfg, tmp_path / "empty")
    folder = write_tiny_hubert(tmp_path / "hubert")
    monkeypatch.setenv("EHEAD_HUBERT", str(folder))
    with pytest.raises(AssetError, match="3 hidden states of width 16"):
        HubertEncoder(AudioEncoderConfig("hubert", n_layers=13, dim=768))
    assert HubertEncoder(cfg).folder == folder  # found through the environment variable


def test_feature_cache_is_keyed_by_content_and_encoder(tmp_path):
    cache = FeatureCache(tmp_path)
    enc = MelEncoder(preset("tiny").audio)
    wave = (np.random.default_rng(0).normal(size=640 * 50) * 0.1).astype(np.float32)
    a = cache.frontend(enc, wave)
    files = list(tmp_path.rglob("*.npy"))
    assert len(files) == 1
    b = cache.frontend(enc, wave)
    torch.testing.assert_close(a, b)
    assert len(list(tmp_path.rglob("*.npy"))) == 1  # read back, not recomputed
    cache.frontend(enc, wave * 0.5)
    cache.frontend(MelEncoder(preset("small").audio), wave)
    assert len(list(tmp_path.rglob("*.npy"))) == 3
    files[0].write_bytes(b"damaged")
    torch.testing.assert_close(cache.frontend(enc, wave), a)  # a damaged entry is recomputed


def test_log_mel_is_the_hann_rfft_power_and_ignores_autocast():
    from ehead_cli.model.encoders import LOG_FLOOR, LOG_OFFSET, LOG_SCALE, MEL_N_FFT, log_mel, mel_filterbank

    rng = np.random.default_rng(0)
    wave = (rng.normal(size=(2, 16000)) * np.linspace(0, 1, 16000)).astype(np.float32)
    fb = mel_filterbank(40)
    frames = wave.reshape(2, -1, 320) * np.hanning(321)[:-1]  # periodic Hann
    power = np.abs(np.fft.rfft(frames, n=MEL_N_FFT)) ** 2
    expected = (np.log(power @ fb.double().numpy() + LOG_FLOOR) + LOG_OFFSET) / LOG_SCALE
    got = log_mel(torch.from_numpy(wave), fb)
    np.testing.assert_allclose(got.numpy(), expected, atol=2e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # generation runs under autocast: features stay fp32
        under = log_mel(torch.from_numpy(wave), fb)
    assert under.dtype == torch.float32 and torch.equal(under, got)
