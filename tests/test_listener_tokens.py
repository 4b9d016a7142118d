"""Speech and emotion tokens: eqs. 7-9 on known inputs, the offline k-means defaults, and the real
SpeechTokenizer and EMOCA loaders on tiny files of their formats built here."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ehead_cli.errors import AssetError
from ehead_cli.layout import EXPR, JAW, ROT
from ehead_cli.listener.config import TokenConfig
from ehead_cli.listener.tokens import (
    EmocaEmotion,
    SpeakerTokenizer,
    SpeechTokenizerCodes,
    emotion_tokens_from_probs,
    fit_token_codebooks,
    mode_per_group,
    speech_features,
)


def test_group_mode_and_averaged_distributions():
    labels = np.array([2, 2, 1, 0, 1, 1, 1, 0, 3, 3, 0, 0])  # groups of 4
    assert mode_per_group(labels, 4, 4).tolist() == [2, 1, 0]  # 1 and 0 tie in group 3: the lower wins
    probs = np.zeros((4, 3))
    probs[0] = [0.6, 0.4, 0.0]
    probs[1] = [0.0, 0.5, 0.5]  # group 1 mean: [0.3, 0.45, 0.25] -> 1 though frame 0 alone says 0
    probs[2] = [0.2, 0.2, 0.6]
    probs[3] = [0.2, 0.2, 0.6]
    assert emotion_tokens_from_probs(probs, 2).tolist() == [1, 2]


def test_speech_features_are_two_log_mel_frames_per_motion_frame():
    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    f = speech_features(wave, 20, 24)  # 20 frames = 12800 samples: the rest is cut
    assert f.shape == (20, 48) and np.isfinite(f).all()
    g = speech_features(wave[:6000], 20, 24)  # padded with silence past the end
    np.testing.assert_allclose(f[:9], g[:9], atol=1e-5)
    assert (g[12:] < f[12:]).all()


def test_default_tokenizer_fits_and_tokenises_per_group():
    rng = np.random.default_rng(0)
    cfg = TokenConfig(speech_codes=4, speech_per_group=8, n_mels=16, emotion_codes=2, affect_dims=5,
                      kmeans_frames=500)
    T = 64
    waves = [(0.1 * rng.standard_normal(T * 640)).astype(np.float32) for _ in range(2)]
    motions = []
    for k in range(2):
        m = np.zeros((T, 115), np.float32)
        m[:, 0] = np.where(np.arange(T) < 32, 0.0, 1.0 + k)  # a smile in the second half
        motions.append(m)
    books = fit_token_codebooks(waves, motions, cfg)
    assert books.speech_centers.shape == (4, 32) and books.affect_centers.shape == (2, 5)
    tok = SpeakerTokenizer(cfg, 8, books)
    speech = tok.speech(waves[0], T)
    assert speech.shape == (8, 8) and speech.max() < 4
    emo = tok.emotion(motions[0])
    assert emo.shape == (8,) and len(set(emo[:4])) == 1 and emo[0] != emo[-1]  # neutral vs smiling groups
    with pytest.raises(ValueError):
        tok.emotion(motions[0][:60])


# --- SpeechTokenizer -----------------------------------------------------------------------------------
ST_CONFIG = {"n_filters": 4, "dimension": 16, "strides": [8, 5, 4, 2], "lstm_layers": 1, "bidirectional": True,
             "dilation_base": 2, "residual_kernel_size": 3, "n_residual_layers": 1, "activation": "ELU",
             "semantic_dimension": 16, "n_q": 2, "codebook_size": 8, "sample_rate": 16000}


def test_speechtokenizer_loader_reads_a_tiny_checkpoint(tmp_path):
    import einops  # noqa: F401 (make install provides einops and speechtokenizer: fail, not skip, without them)

    from ehead_cli.listener.tokens import _speechtokenizer_class

    cls = _speechtokenizer_class()
    torch.manual_seed(0)
    model = cls(ST_CONFIG)
    (tmp_path / "config.json").write_text(json.dumps(ST_CONFIG))
    torch.save(model.state_dict(), tmp_path / "SpeechTokenizer.pt")  # the release's layout: a plain state dict
    codes = SpeechTokenizerCodes(tmp_path)
    wave = np.random.default_rng(0).standard_normal(16 * 640).astype(np.float32) * 0.1
    out = codes.codes(wave, 16)
    expected = model.eval().encode(torch.from_numpy(wave)[None, None], n_q=1)[0, 0].numpy()
    assert out.shape == (32,) and np.array_equal(out, expected) and out.max() < 8
    tok = SpeakerTokenizer(TokenConfig(speech="speechtokenizer", speech_codes=8, speech_per_group=16), 8, None,
                           speech_tokenizer=tmp_path)
    assert tok.speech(wave, 16).shape == (2, 16)
    bad = dict(ST_CONFIG, n_filters=8)
    (tmp_path / "config.json").write_text(json.dumps(bad))
    with pytest.raises(AssetError, match="do not match"):
        SpeechTokenizerCodes(tmp_path)


def test_speechtokenizer_refuses_a_pickled_object(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(ST_CONFIG))
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "SpeechTokenizer.pt")  # a whole module: needs unpickling
    with pytest.raises(AssetError, match="weights_only"):
        SpeechTokenizerCodes(tmp_path)


# --- EMOCA ----------------------------------------------------------------------------------------------------
EMOCA_CFG = """model:
  use_identity: false
  use_expression: true
  use_global_pose: false
  use_jaw_pose: true
  use_detail_code: false
  num_mlp_layers: 1
  mlp_dim: 12
  mlp_norm_layer: BatchNorm1d
  predict_expression: true
  predict_valence: true
  predict_arousal: true
  deca_cfg:
    model:
      n_shape: 100
      n_exp: 50
      n_detail: 128
data:
  n_expression: 8
"""


def _emoca_folder(tmp_path):
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(53, 12), torch.nn.BatchNorm1d(12), torch.nn.LeakyReLU(0.2),
                              torch.nn.Linear(12, 10))
    with torch.no_grad():
        mlp[1].running_mean.normal_()
        mlp[1].running_var.uniform_(0.5, 2.0)
    state = {f"mlp.model.{k}": v for k, v in mlp.state_dict().items()}
    state["deca.E_flame.layers.0.weight"] = torch.zeros(2, 2)  # the face net's weights are ignored
    (tmp_path / "cfg.yaml").write_text(EMOCA_CFG)
    (tmp_path / "checkpoints").mkdir()
    torch.save({"state_dict": state, "epoch": 3, "global_step": 100}, tmp_path / "checkpoints" / "last.ckpt")
    return mlp.eval()


def test_emoca_loader_gives_eq8_probabilities_and_eq9_tokens(tmp_path):
    mlp = _emoca_folder(tmp_path)
    emo = EmocaEmotion(tmp_path)
    assert emo.n_classes == 8 and emo.has_va
    motion = np.random.default_rng(0).standard_normal((16, 115)).astype(np.float32) * 0.3
    probs = emo.probabilities(motion)
    x = torch.cat([torch.from_numpy(motion[:, EXPR][:, :50]), torch.from_numpy(motion[:, JAW])], 1)
    expected = torch.softmax(mlp(x)[:, :8], 1).detach().numpy()
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
    assert emo.affect(motion).shape == (16, 2)  # valence, arousal
    tok = SpeakerTokenizer(TokenConfig(emotion="emoca", emotion_codes=8), 8, None, emoca=tmp_path)
    assert tok.emotion(motion).tolist() == emotion_tokens_from_probs(expected, 8).tolist()
    assert not np.allclose(motion[:, ROT], 0)  # global pose is not an input of this config and changes nothing
    moved = motion.copy()
    moved[:, ROT] += 1.0
    np.testing.assert_allclose(emo.probabilities(moved), probs, rtol=1e-6)


def test_emoca_loader_errors_name_the_file(tmp_path):
    with pytest.raises(AssetError, match="cfg.yaml"):
        EmocaEmotion(tmp_path)
    _emoca_folder(tmp_path)
    (tmp_path / "cfg.yaml").write_text(EMOCA_CFG.replace("mlp_dim: 12", "mlp_dim: 7"))
    with pytest.raises(AssetError, match="do not match"):
        EmocaEmotion(tmp_path)
