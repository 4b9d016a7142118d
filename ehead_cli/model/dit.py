"""The Rectified-Flow Diffusion Transformer of EmbodiedHead (supplementary A), top to bottom:
small blocks, then the network, then weight initialisation in one place.

Shapes (paper preset): B windows, T = 100 current frames, L = 75 history frames packed into
H = 20 tokens, d = 448, audio stack of N_l hidden layers of width C at 50 Hz (2T frames).

    history (B, 75, 115) + states (B, 75)  -> HistoryPacker -> (B, 20, 116)  --+
    x_t     (B, 100, 115) + states (B, 100)                  -> (B, 100, 116) --+-> Linear -> (B, 120, d)
    audio   (B, N_l, 200, C) -> fusion_x -> Conv1d(k5,s2)+LN -> (B, 100, d) -> per-block FiLM(q) -> cross-attn K/V
    audio   (B, N_l, 200, C) -> fusion_g -> mean over time -> MLP -> (B, 224)            --+
    t (B,) -> sinusoid(448) -> MLP -> (B, 448)                                            --+-> c (B, 896)
    [shape[:100], ref frame] (B, 215) -> MLP -> (B, 112)                                 --+
    m = [m_r, m_t] (B, 2) -> MLP -> (B, 112)                                             --+
    8 x DiTBlock(c): RoPE self-attn over 120 tokens, RoPE cross-attn (|i-j|<=2) for the 100
    current tokens, MLP; each sub-layer AdaLN-zero modulated by c
    FinalLayer(c) on the 100 current tokens -> velocity (B, 100, 115)

Everything that does not depend on (x_t, t) is computed once per window by ``condition()``
and reused across Euler steps by ``velocity()``: packed history tokens, FiLM-modulated audio
keys/values of every block, and the non-timestep part of the global condition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ehead_cli.model.config import ModelConfig

T_SCALE = 1000.0  # flow time t in [0, 1] is scaled to [0, 1000] before the sinusoid, as in DiT's step index
LN_EPS = 1e-6


# ---------------------------------------------------------------------------------------------
# small blocks
# ---------------------------------------------------------------------------------------------
def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """AdaLN: x (B, N, d) * (1 + scale) + shift, with (B, d) modulation (one fused kernel)."""
    return torch.addcmul(shift.unsqueeze(1), x, 1 + scale.unsqueeze(1))


def gated(x: torch.Tensor, gate: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Residual with an AdaLN-zero gate: x + gate (B, d) * y (one fused kernel)."""
    return torch.addcmul(x, gate.unsqueeze(1), y)


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.SiLU(), nn.Linear(d_hidden, d_out))


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) scalars -> (B, dim) [cos | sin] features with geometrically spaced frequencies."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Rotary:
    """Rotary position embedding (RoPE, base ``rope_base``) for fractional positions.

    Pairs are adjacent channels (2i, 2i + 1), each rotated by angle pos * base^(-2i / head_dim).
    ``tables(pos)`` gives (cos, sin) of every angle as float32 (N, head_dim / 2, 2): real storage,
    a complex number seen as a view. ``apply`` rotates (B, heads, N, head_dim) by one complex
    multiplication (a single kernel, which matters on a CPU); under ``torch.compile`` the same
    product is written in real arithmetic (``apply_real``): Inductor generates no code for
    complex tensors, even as graph inputs, but fuses the real form into its neighbours.
    """

    def __init__(self, head_dim: int, base: float):
        self.head_dim = head_dim
        self.inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))

    def tables(self, pos: torch.Tensor) -> torch.Tensor:
        ang = pos.double()[:, None] * self.inv_freq.to(pos.device)[None]  # (N, head_dim/2)
        return torch.stack([ang.cos(), ang.sin()], dim=-1).float()

    @staticmethod
    def apply(x: torch.Tensor, cs: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return Rotary.apply_real(x, cs)
        pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
        return torch.view_as_real(pairs * torch.view_as_complex(cs)).flatten(-2).to(x.dtype)

    @staticmethod
    def apply_real(x: torch.Tensor, cs: torch.Tensor) -> torch.Tensor:
        """``apply`` in real arithmetic (what runs under ``torch.compile``)."""
        pairs = x.float().reshape(*x.shape[:-1], -1, 2)
        a, b, c, s = pairs[..., 0], pairs[..., 1], cs[..., 0], cs[..., 1]
        return torch.stack([a * c - b * s, a * s + b * c], dim=-1).flatten(-2).to(x.dtype)


class SelfAttention(nn.Module):
    """Multi-head RoPE self-attention over all tokens (packed history + current)."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        B, N, d = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k = Rotary.apply(q, rope), Rotary.apply(k, rope)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, head_dim)
        return self.proj(out.transpose(1, 2).reshape(B, N, d))


class AudioCrossAttention(nn.Module):
    """RoPE cross-attention from the T current motion tokens to the T aligned audio tokens,
    restricted by the locality mask |i - j| <= R (``mask`` True = may attend)."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.proj = nn.Linear(d, d)

    def keys_values(self, audio: torch.Tensor, rope: torch.Tensor):
        """(B, T, d) FiLM-modulated audio -> rotated keys and values (B, heads, T, head_dim)."""
        B, T, d = audio.shape
        k, v = self.kv(audio).view(B, T, 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return Rotary.apply(k, rope), v

    def forward(self, x, k, v, rope, mask) -> torch.Tensor:
        B, T, d = x.shape
        q = self.q(x).view(B, T, self.heads, d // self.heads).transpose(1, 2)
        q = Rotary.apply(q, rope)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(B, T, d))


class StateFiLM(nn.Module):
    """Per-block FiLM of the aligned audio on the LS state: A' = A (1 + alpha(q)) + beta(q).
    A small MLP (1 -> film_hidden -> 2d) with a zero-initialised output layer (identity at start)."""

    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.net = mlp(1, hidden, 2 * d)

    def forward(self, audio: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        alpha, beta = self.net(states.unsqueeze(-1).to(audio.dtype)).chunk(2, dim=-1)  # (B, T, d) each
        return audio * (1 + alpha) + beta


class LayerFusion(nn.Module):
    """Learnable softmax weights over the N_l hidden layers of the audio encoder."""

    def __init__(self, n_layers: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n_layers))

    def forward(self, stack: torch.Tensor) -> torch.Tensor:
        """(B, N_l, S, C) -> (B, S, C)."""
        w = torch.softmax(self.logits, dim=0).to(stack.dtype)
        return torch.einsum("l,blsc->bsc", w, stack)


class AudioAligner(nn.Module):
    """50 Hz -> 25 Hz: Conv1d(kernel 5, stride 2, padding 2) + LayerNorm -> d-dim audio tokens."""

    KERNEL, STRIDE = 5, 2

    def __init__(self, c_in: int, d: int):
        super().__init__()
        self.conv = nn.Conv1d(c_in, d, self.KERNEL, stride=self.STRIDE, padding=self.KERNEL // 2)
        self.norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2T, C) at 50 Hz -> (B, T, d) at 25 fps."""
        return self.norm(self.conv(x.transpose(1, 2)).transpose(1, 2))


class HistoryPacker(nn.Module):
    """History Context Packing: the L = sum(spans) history frames, split into groups of
    exponentially growing span (nearest group = most recent frames), each compressed to
    ``tokens_per_group`` tokens by the group's own linear projection.

    Each group of span S is cut into ``tokens_per_group`` consecutive patches of S / tokens_per_group
    frames (1, 2, 4, 8 frames for spans 5, 10, 20, 40); a patch's frames are concatenated and
    projected back to one token of the frame width (D + 1 = 116) by that group's Linear, the way
    FramePack [43] patchifies older context with larger kernels.
    """

    def __init__(self, spans: tuple[int, ...], tokens_per_group: int, width: int):
        super().__init__()
        self.spans = tuple(spans)
        self.tokens = tokens_per_group
        self.proj = nn.ModuleList(nn.Linear(width * (s // tokens_per_group), width) for s in spans)

    def group_bounds(self) -> list[tuple[int, int]]:
        """[start, end) frame indices of each group inside the history, nearest group first."""
        L, out, end = sum(self.spans), [], sum(self.spans)
        for s in self.spans:
            out.append((end - s, end))
            end -= s
        assert end == 0 and out[0][1] == L
        return out

    def token_positions(self) -> torch.Tensor:
        """Centre frame index (fractional) of each packed token, in output order (oldest first)."""
        pos = []
        for (a, b) in reversed(self.group_bounds()):
            patch = (b - a) / self.tokens
            pos += [a + (k + 0.5) * patch - 0.5 for k in range(self.tokens)]
        return torch.tensor(pos)

    def forward(self, hist: torch.Tensor) -> torch.Tensor:
        """(B, L, 116) history frames (oldest first) -> (B, H, 116) packed tokens (oldest first)."""
        B, L, W = hist.shape
        out = []
        for (a, b), proj in reversed(list(zip(self.group_bounds(), self.proj, strict=True))):
            out.append(proj(hist[:, a:b].reshape(B, self.tokens, -1)))
        return torch.cat(out, dim=1)


class DiTBlock(nn.Module):
    """AdaLN-zero block: RoPE self-attention, RoPE audio cross-attention (current tokens only), MLP."""

    N_MOD = 9  # (shift, scale, gate) x (self-attention, cross-attention, MLP)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=LN_EPS)
        self.attn = SelfAttention(d, cfg.heads)
        self.film = StateFiLM(d, cfg.film_hidden)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=LN_EPS)
        self.cross = AudioCrossAttention(d, cfg.heads)
        self.norm3 = nn.LayerNorm(d, elementwise_affine=False, eps=LN_EPS)
        self.mlp = nn.Sequential(nn.Linear(d, cfg.mlp_hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(cfg.mlp_hidden, d))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cfg.cond_dim, self.N_MOD * d))

    def forward(self, x, mod, kv, rope_self, rope_cross, cross_mask) -> torch.Tensor:
        """x (B, H + T, d); mod (B, 9d) precomputed adaLN output; kv the block's audio keys/values."""
        (shift_sa, scale_sa, gate_sa, shift_ca, scale_ca, gate_ca,
         shift_mlp, scale_mlp, gate_mlp) = mod.chunk(self.N_MOD, dim=-1)
        x = gated(x, gate_sa, self.attn(modulate(self.norm1(x), shift_sa, scale_sa), rope_self))
        T = kv[0].shape[2]
        hist, cur = x[:, :-T], x[:, -T:]
        cross = self.cross(modulate(self.norm2(cur), shift_ca, scale_ca), *kv, rope_cross, cross_mask)
        cur = gated(cur, gate_ca, cross)
        x = torch.cat([hist, cur], dim=1)
        return gated(x, gate_mlp, self.mlp(modulate(self.norm3(x), shift_mlp, scale_mlp)))


class FinalLayer(nn.Module):
    """AdaLN-modulated projection of the T current tokens to the 115-dim velocity."""

    def __init__(self, d: int, cond_dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(d, elementwise_affine=False, eps=LN_EPS)
        self.linear = nn.Linear(d, out_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * d))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


# ---------------------------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------------------------
@dataclass
class Condition:
    """Everything the velocity field needs besides (x_t, t); built once per window.

    hist_tokens  (B, H, d) embedded packed history tokens
    cur_states   (B, T, 1) LS state channel of the current frames (+1 speak, -1 listen)
    static_cond  (B, cond_dim - t_embed_dim) reference | audio | magnitude embeddings
    kv           per block: FiLM-modulated audio keys and values, (B, heads, T, head_dim) each
    """

    hist_tokens: torch.Tensor
    cur_states: torch.Tensor
    static_cond: torch.Tensor
    kv: list[tuple[torch.Tensor, torch.Tensor]]


class EmbodiedHeadDiT(nn.Module):
    """v_theta(x_t, t, c): the velocity field of the rectified flow (see the module docstring)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        d, W = cfg.d_model, cfg.token_dim
        self.packer = HistoryPacker(cfg.history_spans, cfg.tokens_per_group, W)
        self.x_embed = nn.Linear(W, d)
        self.t_embed = mlp(cfg.t_embed_dim, cfg.t_embed_dim, cfg.t_embed_dim)
        self.ref_embed = mlp(cfg.ref_in_dim, cfg.ref_embed_dim, cfg.ref_embed_dim)
        self.mag_embed = mlp(2, cfg.mag_embed_dim, cfg.mag_embed_dim)
        self.fusion_cross = LayerFusion(cfg.audio.n_layers)
        self.fusion_global = LayerFusion(cfg.audio.n_layers)
        self.aligner = AudioAligner(cfg.audio.dim, d)
        self.audio_embed = mlp(cfg.audio.dim, cfg.audio_embed_dim, cfg.audio_embed_dim)
        self.blocks = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.depth))
        self.final = FinalLayer(d, cfg.cond_dim, cfg.motion_dim)

        self.rotary = Rotary(cfg.head_dim, cfg.rope_base)
        hist_pos = self.packer.token_positions()  # frames -75..-1 live at 0..74
        cur_pos = cfg.history_frames + torch.arange(cfg.window, dtype=torch.float32)
        self.register_buffer("pos_self", torch.cat([hist_pos, cur_pos]), persistent=False)
        self.register_buffer("pos_cross", cur_pos, persistent=False)
        # the positions never change: the rotary tables are computed once, (N, head_dim / 2, 2) cos, sin
        self.register_buffer("rope_self", self.rotary.tables(self.pos_self), persistent=False)
        self.register_buffer("rope_cross", self.rotary.tables(self.pos_cross), persistent=False)
        i = torch.arange(cfg.window)
        self.register_buffer("cross_mask", (i[:, None] - i[None, :]).abs() <= cfg.cross_radius, persistent=False)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT initialisation: Xavier-uniform linears, then zero the AdaLN modulations (every block
        starts as the identity), the FiLM output layers (identity on the audio) and the final
        projection (the initial velocity is exactly zero)."""

        def _basic(m: nn.Module) -> None:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

        self.apply(_basic)
        nn.init.normal_(self.t_embed[0].weight, std=0.02)
        nn.init.normal_(self.t_embed[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
            nn.init.zeros_(block.film.net[-1].weight)
            nn.init.zeros_(block.film.net[-1].bias)
        nn.init.zeros_(self.final.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)

    # --- per window ----------------------------------------------------------------------------
    def condition(self, audio: torch.Tensor, states: torch.Tensor, history: torch.Tensor,
                  history_states: torch.Tensor, shape: torch.Tensor, ref: torch.Tensor,
                  magnitude: torch.Tensor) -> Condition:
        """Build the per-window condition.

        audio          (B, N_l, 2T, C) audio encoder hidden stack at 50 Hz for the current window
        states         (B, T) LS states of the current frames, +1 speak / -1 listen
        history        (B, L, 115) previous (clean) motion frames, normalised, oldest first
        history_states (B, L) their LS states
        shape          (B, 100) first 100 shape coefficients
        ref            (B, 115) reference motion frame, normalised
        magnitude      (B, 2) [m_r, m_t] in [0, 1]
        """
        cfg = self.cfg
        B, _, S, _ = audio.shape
        if S != 2 * cfg.window:
            raise ValueError(f"audio must have {2 * cfg.window} feature frames (50 Hz) per window, got {S}")
        states = states.to(history.dtype)
        hist = torch.cat([history, history_states.to(history.dtype).unsqueeze(-1)], dim=-1)
        hist_tokens = self.x_embed(self.packer(hist))  # (B, H, d)

        aligned = self.aligner(self.fusion_cross(audio))  # (B, T, d)
        kv = [blk.cross.keys_values(blk.film(aligned, states), self.rope_cross) for blk in self.blocks]

        a_global = self.audio_embed(self.fusion_global(audio).mean(dim=1))  # (B, audio_embed_dim)
        r = self.ref_embed(torch.cat([shape, ref], dim=-1))
        m = self.mag_embed(magnitude.to(r.dtype))
        return Condition(hist_tokens, states.unsqueeze(-1), torch.cat([r, a_global, m], dim=-1), kv)

    # --- per Euler step --------------------------------------------------------------------------
    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, cond: Condition) -> torch.Tensor:
        """(B, T, 115) noisy current window (normalised), (B,) flow time in [0, 1] -> (B, T, 115)."""
        B, T, _ = x_t.shape
        cur = self.x_embed(torch.cat([x_t, cond.cur_states.to(x_t.dtype)], dim=-1))
        x = torch.cat([cond.hist_tokens.to(cur.dtype), cur], dim=1)
        t_emb = self.t_embed(sinusoidal_embedding(t * T_SCALE, self.cfg.t_embed_dim).to(x_t.dtype))
        c = torch.cat([t_emb, cond.static_cond.to(t_emb.dtype)], dim=-1)
        for blk, kv in zip(self.blocks, cond.kv, strict=True):
            x = blk(x, blk.adaLN_modulation(c), kv, self.rope_self, self.rope_cross, self.cross_mask)
        return self.final(x[:, -T:], c)

    def forward(self, x_t, t, audio, states, history, history_states, shape, ref, magnitude) -> torch.Tensor:
        """One call for training: ``velocity(x_t, t, condition(...))``."""
        return self.velocity(x_t, t, self.condition(audio, states, history, history_states, shape, ref, magnitude))


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
