"""The listener's networks: VQ-VAE losses on known inputs, identity invariance of the encoder, the
decoder's identity input, the LM's losses, causal masking, and incremental decoding with the KV cache."""

from __future__ import annotations

import math

import pytest
import torch

from ehead_cli.errors import ConfigError
from ehead_cli.listener.config import LMConfig, VQConfig, load_preset, stage_config
from ehead_cli.listener.lm import ListenerLM, Vocab, group_tokens, sample_logits, window_sequence
from ehead_cli.listener.vqvae import VQVAE, Quantized, Quantizer, smooth_l1, vq_loss_terms
from ehead_cli.train.config import lr_at, phase_at

TINY_VQ = VQConfig(codebook_size=16, code_dim=8, width=16, levels=3, depth=1, identity=True, identity_dim=4,
                   window=32)


def _quant(z: torch.Tensor, q: torch.Tensor) -> Quantized:
    from torch.nn import functional as F

    return Quantized(z, z + (q - z).detach(), torch.zeros(z.shape[:2], dtype=torch.long),
                     F.mse_loss(z, q.detach()), F.mse_loss(z.detach(), q))


def test_smooth_l1_known_values():
    pred = torch.tensor([[0.0, 0.5, 3.0]])
    # Huber with beta 1: 0.5 x^2 below 1, |x| - 0.5 above: (0 + 0.125 + 2.5) / 3
    assert float(smooth_l1(pred, torch.zeros_like(pred))) == pytest.approx((0.125 + 2.5) / 3)


def test_vq_loss_terms_on_known_inputs():
    target = torch.zeros(1, 4, 1)
    recon = torch.tensor([0.0, 0.5, 0.5, 3.0]).view(1, 4, 1)
    z = torch.tensor([[[1.0, 1.0]]])
    q = torch.tensor([[[0.0, 3.0]]])
    out = vq_loss_terms(recon, target, _quant(z, q))
    rec = (0.0 + 0.125 + 0.125 + 2.5) / 4
    vel = (0.125 + 0.0 + 2.0) / 3  # differences 0.5, 0, 2.5 -> 0.125, 0, 2.0
    embed = (1.0 + 4.0) / 2  # mean ||z - q||^2 per element
    assert float(out["rec"]) == pytest.approx(rec)
    assert float(out["veloc"]) == pytest.approx(vel)
    assert float(out["embed"]) == pytest.approx(embed) and float(out["commit"]) == pytest.approx(embed)
    # eq. 6 with the 0.02 on the encoder's term (default) and as printed: the same value either way
    assert float(out["loss"]) == pytest.approx(0.02 * embed + embed + rec + 0.5 * vel)
    printed = vq_loss_terms(recon, target, _quant(z, q), stop_gradients="as-printed")
    assert float(printed["loss"]) == pytest.approx(embed + 0.02 * embed + rec + 0.5 * vel)


@pytest.mark.parametrize(("mode", "enc", "code"), [("lm-listener", 0.02, 1.0), ("as-printed", 1.0, 0.02)])
def test_stop_gradients_send_the_weights_where_the_config_says(mode, enc, code):
    z = torch.tensor([[[1.0, 1.0]]], requires_grad=True)
    q = torch.tensor([[[0.0, 3.0]]], requires_grad=True)
    target = torch.zeros(1, 2, 1)
    out = vq_loss_terms(target.clone(), target, _quant(z, q), stop_gradients=mode)
    out["loss"].backward()
    # d/dz mean (z - q)^2 = (z - q) (2 / 2 elements); d/dq = (q - z)
    torch.testing.assert_close(z.grad, enc * (z - q).detach())
    torch.testing.assert_close(q.grad, code * (q - z).detach())


def test_quantizer_picks_the_nearest_code_and_passes_gradients_straight_through():
    qz = Quantizer(VQConfig(codebook_size=3, code_dim=2, reset_threshold=0.0, window=8))
    with torch.no_grad():
        qz.codebook.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [-2.0, 0.0]]))
    z = torch.tensor([[[0.9, 0.8], [-1.5, 0.2], [0.1, -0.1]]], requires_grad=True)
    out = qz(z)
    assert out.codes.tolist() == [[1, 2, 0]]
    out.z_q.sum().backward()
    torch.testing.assert_close(z.grad, torch.ones_like(z))


def test_encoder_is_unchanged_by_an_identity_only_shift():
    torch.manual_seed(0)
    vq = VQVAE(TINY_VQ).eval()
    x = torch.randn(2, 32, 115)
    shift = torch.randn(1, 1, 115) * 2.0  # a per-dimension constant: another identity's resting face
    torch.testing.assert_close(vq.encoder(x + shift), vq.encoder(x), atol=2e-5, rtol=1e-4)
    plain = VQVAE(TINY_VQ.__class__(**{**TINY_VQ.__dict__, "identity": False})).eval()
    assert (plain.encoder(x + shift) - plain.encoder(x)).abs().max() > 1e-2  # without IN it is not


def test_decoder_injects_the_identity():
    torch.manual_seed(0)
    vq = VQVAE(TINY_VQ)
    for blk in vq.decoder.blocks[0]:  # AdaIN starts as plain IN (zero-initialised): make it live
        torch.nn.init.normal_(blk.affine.weight, std=0.5)
    codes = torch.randint(0, 16, (1, 4))
    a, b = torch.randn(1, 230), torch.randn(1, 230)
    assert vq.decode(codes, a).shape == (1, 32, 115)
    assert (vq.decode(codes, a) - vq.decode(codes, b)).abs().max() > 1e-3
    with pytest.raises(ValueError):
        vq.decode(codes, None)


def test_vq_forward_backward_reaches_every_part():
    torch.manual_seed(0)
    vq = VQVAE(TINY_VQ)
    out = vq(torch.randn(3, 32, 115), torch.randn(3, 230))
    out["loss"].backward()
    # AdaIN starts as plain IN (zero affine), so the first gradient reaches its affine layer, not the identity MLP
    for name in ("encoder.conv_in.weight", "decoder.conv_out.weight", "quantizer.codebook",
                 "decoder.blocks.0.0.affine.weight"):
        g = dict(vq.named_parameters())[name].grad
        assert g is not None and g.abs().sum() > 0, name
    assert out["codes"].shape == (3, 4)


def _lm(multimodal: bool = True, window_groups: int = 4, seed: int = 0) -> ListenerLM:
    torch.manual_seed(seed)
    cfg = LMConfig(n_layer=2, n_head=2, n_embd=32, window_groups=window_groups, multimodal=multimodal, dropout=0.0)
    return ListenerLM(cfg, n_motion=8, n_speech=6, n_emotion=3, speech_per_group=2).eval()


def _batch(G: int = 4, B: int = 2, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"listener": torch.randint(0, 8, (B, G), generator=g), "speaker": torch.randint(0, 8, (B, G), generator=g),
            "speech": torch.randint(0, 6, (B, G, 2), generator=g), "emotion": torch.randint(0, 3, (B, G), generator=g)}


def test_vocabulary_layout_and_interleaving():
    v = Vocab(n_motion=8, n_speech=6, n_emotion=3, speech_per_group=2, multimodal=True)
    assert (v.listener, v.speaker, v.speech, v.emotion, v.bos, v.size, v.group_len) == (0, 8, 16, 22, 25, 26, 5)
    b = _batch(G=2, B=1)
    seq = window_sequence(v, group_tokens(v, b["speaker"], b["listener"], b["speech"], b["emotion"]))[0].tolist()
    s, e, m, li = b["speech"][0], b["emotion"][0], b["speaker"][0], b["listener"][0]
    expected = [25]
    for j in range(2):
        expected += [16 + int(s[j, 0]), 16 + int(s[j, 1]), 22 + int(e[j]), 8 + int(m[j]), int(li[j])]
    assert seq == expected


def test_lm_losses_on_known_logits():
    lm = _lm()
    with torch.no_grad():  # zero output layer (tied to the input embedding): every logit 0
        lm.gpt.get_output_embeddings().weight.zero_()
    b = _batch()
    full = lm.loss(b, "full")
    assert float(full["loss"].detach()) == pytest.approx(math.log(8), rel=1e-5)  # uniform over the 8 listener codes
    pre = lm.loss(b, "pre")
    G, B = 4, 2
    counts = {"listener": G, "speaker": G, "speech": 2 * G, "emotion": G}
    sizes = {"listener": 8, "speaker": 8, "speech": 6, "emotion": 3}
    expected = sum(counts[k] * math.log(sizes[k]) for k in counts) / sum(counts.values())
    assert float(pre["loss"].detach()) == pytest.approx(expected, rel=1e-5)
    assert B == b["listener"].shape[0]


@pytest.mark.parametrize("multimodal", [True, False])
def test_the_speakers_future_never_changes_earlier_listener_logits(multimodal):
    lm = _lm(multimodal)
    v = lm.vocab
    b = _batch(G=4, B=1)
    changed = {k: t.clone() for k, t in b.items()}
    k = 2  # change every speaker token of group 2 and later
    changed["speaker"][:, k:] = (changed["speaker"][:, k:] + 3) % 8
    changed["speech"][:, k:] = (changed["speech"][:, k:] + 1) % 6
    changed["emotion"][:, k:] = (changed["emotion"][:, k:] + 1) % 3

    def listener_logits(batch):
        seq = window_sequence(v, group_tokens(v, batch["speaker"], batch["listener"], batch.get("speech"),
                                              batch.get("emotion")))
        logits, _ = lm.logits(seq)
        gl = v.group_len
        pos = [1 + j * gl + gl - 2 for j in range(4)]  # the token before each listener token predicts it
        return logits[0, pos]

    a, c = listener_logits(b), listener_logits(changed)
    torch.testing.assert_close(a[:k], c[:k])
    assert (a[k:] - c[k:]).abs().max() > 1e-4  # and the later ones do see it


def test_kv_cache_sampling_matches_full_recomputation():
    lm = _lm(window_groups=16)
    b = _batch(G=5, B=2)
    fast = lm.sample(b["speaker"], b["speech"], b["emotion"], temperature=0.0)
    v = lm.vocab
    slow = torch.zeros_like(fast)
    for j in range(5):  # greedy, recomputing the whole prefix each group
        seq = window_sequence(v, group_tokens(v, b["speaker"][:, : j + 1], slow[:, : j + 1], b["speech"][:, : j + 1],
                                              b["emotion"][:, : j + 1]))[:, :-1]
        logits, _ = lm.logits(seq)
        slow[:, j] = logits[:, -1, v.listener: v.listener + v.n_motion].argmax(-1)
    assert torch.equal(fast, slow)


def test_sampling_past_the_window_restarts_the_context_and_is_seeded():
    lm = _lm(window_groups=4)
    b = _batch(G=11, B=3)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = lm.sample(b["speaker"], b["speech"], b["emotion"], generator=g1)
    c = lm.sample(b["speaker"], b["speech"], b["emotion"], generator=g2)
    assert a.shape == (3, 11) and torch.equal(a, c) and int(a.max()) < 8


def test_sample_logits_temperature_and_top_k():
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]])
    assert sample_logits(logits, 0.0, None, None).tolist() == [1, 0]
    g = torch.Generator().manual_seed(0)
    assert sample_logits(logits, 5.0, 1, g).tolist() == [1, 0]  # top-1 is the argmax at any temperature


def test_presets_load_and_the_paper_schedules_are_the_supplements():
    paper = load_preset("paper")
    assert paper.vq.rate == 8 and paper.vq.identity and paper.vq.codebook_size == 256
    vq, lm = paper.train_vq, paper.train_lm
    assert (vq.batch_size, vq.betas, [(p.steps, p.lr) for p in vq.phases]) == (
        256, (0.9, 0.99), [(200_000, 2e-4), (100_000, 1e-5)])
    assert (lm.batch_size, lm.betas) == (8, (0.5, 0.99))
    assert [(p.steps, p.lr, p.objective) for p in lm.phases] == [
        (60_000, 5e-5, "pre"), (150_000, 5e-5, "full"), (50_000, 2.5e-6, "full")]
    assert (vq.steps, lm.steps, vq.ema_decay, lm.ema_decay, vq.weight_decay) == (300_000, 260_000, 0.0, 0.0, 0.0)
    assert lr_at(lm, 0) == 5e-5 / 1000 and lr_at(lm, 59_999) == 5e-5  # 1000 warm-up steps, then the phase's lr
    assert phase_at(lm, 59_999)[1].objective == "pre" and phase_at(lm, 60_000)[1].objective == "full"
    assert lr_at(lm, 209_999) == 5e-5 and lr_at(lm, 210_000) == 2.5e-6 and lr_at(lm, 259_999) == 2.5e-6
    assert lr_at(vq, 199_999) == 2e-4 and lr_at(vq, 200_000) == 1e-5
    for name in ("small", "tiny"):
        assert load_preset(name).vq.rate == 8
    with pytest.raises(ConfigError):
        load_preset("tiny", overrides={"vq": {"levels": 0}})
    with pytest.raises(ConfigError, match="steps >= 1"):
        stage_config({"phases": [{"steps": 0, "lr": 1.0}], "batch_size": 1}, "x", "train_vq")
    with pytest.raises(ConfigError, match="objective 'fine'"):
        stage_config({"phases": [{"steps": 1, "lr": 1.0, "objective": "fine"}], "batch_size": 1}, "x", "train_lm")
    with pytest.raises(ConfigError, match=r"steps \(5\) must equal the phases' total \(1 steps\)"):
        stage_config({"phases": [{"steps": 1, "lr": 1.0}], "steps": 5, "batch_size": 1}, "x", "train_vq")
    # new phases replace the totals derived from the old ones
    short = load_preset("small", overrides={"train_lm": {"phases": [{"steps": 3, "lr": 1e-4, "objective": "full"}]}})
    assert (short.train_lm.steps, short.train_lm.lr) == (3, 1e-4)


def test_long_sequences_are_encoded_in_training_windows_and_decoded_with_crossfades(monkeypatch):
    torch.manual_seed(0)
    vq = VQVAE(TINY_VQ).eval()
    x = torch.randn(1, 88, 115)  # 2 whole 32-frame windows + 24 frames
    codes = vq.encode_long(x)
    assert codes.shape == (1, 11)
    assert torch.equal(codes[:, :4], vq.encode(x[:, :32])) and torch.equal(codes[:, 4:8], vq.encode(x[:, 32:64]))
    assert torch.equal(codes[:, 8:], vq.encode(x[:, 56:88])[:, 1:])  # the last window is the clip's last 32 frames
    assert vq.encode_long(x[:, :16]).shape == (1, 2)  # shorter than a window: padded
    stats = torch.randn(1, 230)
    torch.testing.assert_close(vq.decode_long(codes[:, :4], stats), vq.decode(codes[:, :4], stats))
    # the cross-fade weights sum to one everywhere: windows that all decode to ones give ones
    monkeypatch.setattr(vq, "decode", lambda c, s=None: torch.ones(c.shape[0], c.shape[1] * 8, 115))
    torch.testing.assert_close(vq.decode_long(codes, stats), torch.ones(1, 88, 115))
