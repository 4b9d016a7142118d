"""The DiT: preset dimensions, zero initialisation, locality of the audio cross-attention,
History Context Packing, and that the tiny preset can fit one window."""

from __future__ import annotations

import pytest
import torch

from ehead_cli.errors import ConfigError
from ehead_cli.info import preset_info
from ehead_cli.model.config import ModelConfig, preset
from ehead_cli.model.dit import EmbodiedHeadDiT, count_parameters
from ehead_cli.model.flow import flow_loss, sample_path


def window_inputs(cfg: ModelConfig, B: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    T, L = cfg.window, cfg.history_frames
    return {
        "audio": torch.randn(B, cfg.audio.n_layers, 2 * T, cfg.audio.dim, generator=g),
        "states": torch.where(torch.rand(B, T, generator=g) > 0.5, 1.0, -1.0),
        "history": torch.randn(B, L, 115, generator=g),
        "history_states": torch.where(torch.rand(B, L, generator=g) > 0.5, 1.0, -1.0),
        "shape": torch.randn(B, 100, generator=g),
        "ref": torch.randn(B, 115, generator=g),
        "magnitude": torch.rand(B, 2, generator=g),
    }


def randomize_zero_init(model: torch.nn.Module, seed: int = 1) -> None:
    """Give the zero-initialised layers random weights so every pathway is live."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def test_paper_preset_dimensions():
    cfg = preset("paper")
    info = preset_info(cfg)
    dims = (info["d_model"], info["depth"], info["heads"], info["head_dim"], info["mlp_hidden"])
    assert dims == (448, 8, 8, 56, 1792)
    assert (info["window"], info["history_frames"], info["history_tokens"], info["seq_len"]) == (100, 75, 20, 120)
    assert (info["token_dim"], info["cond_dim"], info["ref_in_dim"]) == (116, 896, 215)
    assert info["cond_parts"] == {"timestep": 448, "reference": 112, "audio": 224, "magnitude": 112}
    assert cfg.history_spans == (5, 10, 20, 40) and cfg.tokens_per_group == 5
    assert cfg.cross_radius == 2 and cfg.rope_base == 10000.0 and cfg.film_hidden == 112
    assert (cfg.audio.kind, cfg.audio.n_layers, cfg.audio.dim) == ("hubert", 13, 768)
    # the frozen HuBERT is not counted; the DiT alone is
    assert info["params_trainable"] == count_parameters(EmbodiedHeadDiT(cfg))


def test_network_shapes_follow_the_paper():
    m = EmbodiedHeadDiT(preset("paper"))
    assert m.x_embed.in_features == 116 and m.x_embed.out_features == 448
    assert [p.in_features for p in m.packer.proj] == [116 * 1, 116 * 2, 116 * 4, 116 * 8]
    assert m.aligner.conv.kernel_size == (5,) and m.aligner.conv.stride == (2,)
    assert m.final.linear.out_features == 115
    blk = m.blocks[0]
    assert blk.adaLN_modulation[-1].in_features == 896
    assert blk.film.net[0].in_features == 1 and blk.film.net[0].out_features == 112
    assert blk.film.net[-1].out_features == 2 * 448
    assert m.pos_self.shape == (120,) and m.cross_mask.shape == (100, 100)


def test_initial_output_is_zero_and_ignores_states():
    cfg = preset("tiny")
    m = EmbodiedHeadDiT(cfg).eval()
    x = window_inputs(cfg)
    x_t, t = torch.randn(2, 100, 115), torch.rand(2)
    v = m(x_t, t, **x)
    assert torch.equal(v, torch.zeros_like(v))
    flipped = dict(x, states=-x["states"], history_states=-x["history_states"])
    assert torch.equal(m(x_t, t, **flipped), v)
    # zero-initialised FiLM is the identity on the audio, whatever the state
    a = torch.randn(2, 100, cfg.d_model)
    for blk in m.blocks:
        assert torch.equal(blk.film(a, x["states"]), a)
        assert torch.equal(blk.film(a, -x["states"]), a)


def test_states_matter_once_trained_weights_are_nonzero():
    cfg = preset("tiny")
    m = EmbodiedHeadDiT(cfg).eval()
    randomize_zero_init(m)
    x = window_inputs(cfg)
    x_t, t = torch.randn(2, 100, 115), torch.rand(2)
    v = m(x_t, t, **x)
    assert v.abs().max() > 0
    assert not torch.allclose(m(x_t, t, **dict(x, states=-x["states"])), v)


def test_cross_attention_is_local():
    cfg = preset("tiny")
    m = EmbodiedHeadDiT(cfg).eval()
    randomize_zero_init(m)
    blk, R, T, d = m.blocks[0], cfg.cross_radius, cfg.window, cfg.d_model
    rope = m.rope_cross
    states = torch.ones(1, T)
    query = torch.randn(1, T, d)
    audio = torch.randn(1, T, d)

    def cross_out(a):
        return blk.cross(query, *blk.cross.keys_values(blk.film(a, states), rope), rope, m.cross_mask)

    base = cross_out(audio)
    i = 50
    far = audio.clone()
    far[:, : i - R] += torch.randn(1, i - R, d)
    far[:, i + R + 1:] += torch.randn(1, T - i - R - 1, d)
    out = cross_out(far)
    assert torch.allclose(out[:, i], base[:, i], atol=1e-6)
    assert not torch.allclose(out[:, i - R - 1], base[:, i - R - 1])  # the changed frames do change
    near = audio.clone()
    near[:, i + R] += 1.0
    assert not torch.allclose(cross_out(near)[:, i], base[:, i])  # frame i + R is inside the mask


def test_history_frame_changes_only_its_group():
    cfg = preset("tiny")
    m = EmbodiedHeadDiT(cfg)
    hist = torch.randn(1, cfg.history_frames, cfg.token_dim)
    base = m.packer(hist)
    bounds = list(reversed(m.packer.group_bounds()))  # oldest group first, as the tokens are ordered
    n = cfg.tokens_per_group
    for k in (0, 30, 35, 36, 55, 60, 69, 70, 74):
        h2 = hist.clone()
        h2[0, k] += 1.0
        changed = (m.packer(h2) - base).abs().amax(-1)[0] > 0  # (H,)
        g = next(i for i, (a, b) in enumerate(bounds) if a <= k < b)
        in_group = torch.zeros_like(changed)
        in_group[g * n:(g + 1) * n] = True
        assert changed.any() and not (changed & ~in_group).any(), f"frame {k}"
        a, b = bounds[g]
        patch = (b - a) // n
        assert changed.nonzero().flatten().tolist() == [g * n + (k - a) // patch]
    assert [b - a for a, b in bounds] == [40, 20, 10, 5]  # nearest group (5 frames) is the newest


def test_rotary_embedding_is_a_relative_rotation():
    from ehead_cli.model.dit import Rotary

    rot = Rotary(56, 10000.0)
    q, k = torch.randn(56), torch.randn(56)

    def score(i: float, j: float) -> float:
        qi = Rotary.apply(q[None], rot.tables(torch.tensor([i])))[0]
        kj = Rotary.apply(k[None], rot.tables(torch.tensor([j])))[0]
        assert torch.allclose(qi.norm(), q.norm(), rtol=1e-5)  # a rotation keeps the length
        return float(qi @ kj)

    assert score(3.0, 1.0) == pytest.approx(score(103.0, 101.0), rel=1e-4, abs=1e-4)  # only i - j matters
    assert score(3.0, 1.0) != pytest.approx(score(3.0, 2.0), rel=1e-3)
    assert torch.allclose(Rotary.apply(q[None], rot.tables(torch.zeros(1)))[0], q)
    # the real-arithmetic form used under torch.compile is the same rotation
    x, cis = torch.randn(2, 4, 7, 56), rot.tables(torch.arange(7) * 0.75)
    torch.testing.assert_close(Rotary.apply_real(x, cis), Rotary.apply(x, cis), atol=1e-6, rtol=1e-6)
    assert Rotary.apply_real(x.bfloat16(), cis).dtype == torch.bfloat16


def test_token_positions_put_history_before_the_window():
    m = EmbodiedHeadDiT(preset("tiny"))
    pos = m.pos_self
    assert pos.shape == (120,) and torch.all(pos[1:] > pos[:-1])
    assert pos[:20].max() < 75 <= pos[20]


@pytest.mark.slow
def test_tiny_preset_fits_one_window():
    """Overfit one window (fixed noise draws and times): the Stage-I loss falls at least tenfold."""
    torch.manual_seed(0)
    cfg = preset("tiny")
    m = EmbodiedHeadDiT(cfg)
    B = 4
    x = {k: v[:1].expand(B, *v.shape[1:]) for k, v in window_inputs(cfg, B=1).items()}
    x1 = (torch.randn(1, 100, 115) * 0.5).expand(B, -1, -1)
    path = sample_path(x1, torch.Generator().manual_seed(1))
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3, weight_decay=0.0)
    losses = []
    for _ in range(100):
        loss = flow_loss(m(path.x_t, path.t, **x), path)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def test_config_validation_names_the_field():
    cfg = preset("tiny")
    with pytest.raises(ConfigError, match="divisible"):
        cfg.replace(heads=3)
    with pytest.raises(ConfigError, match="history span"):
        cfg.replace(history_spans=(5, 10, 21, 40))
    with pytest.raises(ConfigError, match="unknown model field"):
        ModelConfig.from_dict({"d_modle": 3})
    with pytest.raises(ConfigError, match="--preset"):
        preset("huge")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
