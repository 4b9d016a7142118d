"""The identity-disentangled VQ-VAE (mm-listener supplement, section 2 and eqs. 2-6).

    motion (B, T, 115), normalised  ->  encoder  ->  z (B, T/r, C)  ->  quantiser  ->  codes (B, T/r)
    codes + identity code (B, I)    ->  decoder  ->  motion (B, T, 115)

Encoder: Conv1D in, then per level a stride-2 Conv1D (k 4) followed by ``depth`` ResBlocks, Conv1D
out; decoder: Conv1D in, per level ``depth`` ResBlocks, nearest x2 upsampling and a Conv1D, Conv1D
out; ReLU activations (as LM-listener). With ``identity``:

* each encoder ResBlock instance-normalises its input on the main path, h <- IN(h); h + F(h), so a
  per-channel constant (an identity's resting pose or expression) is removed before any nonlinearity.
  Every convolution before the first block is linear with replicate padding, so a constant offset of
  an input dimension stays a per-channel constant until the first IN removes it exactly: the encoder
  is invariant to identity-only shifts of its input (tested);
* each decoder ResBlock applies AdaIN, h <- IN(h) (1 + gamma(id)) + beta(id), with gamma, beta linear
  in the identity code, then h + F(h): the identity is injected back.

Without ``identity`` the blocks have no normalisation and the decoder no identity input (LM-listener's
VQ-VAE, the Naive / MM-only ablations). F(h) = Conv1x1(ReLU(Conv3_dilated(ReLU(h)))).

Identity code: id = MLP([mean_t, std_t] of the listener's normalised motion, 2 x 115) (``IdentityEncoder``),
the statistics of a reference clip of that listener (training: all its training frames pooled;
generation: the identity's stored statistics or any reference motion NPZ).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ehead_cli.layout import MOTION_DIM
from ehead_cli.listener.config import VQConfig

LAMBDA_COMMIT = 0.02  # eq. 6
LAMBDA_VELOC = 0.5  # eq. 6
IN_EPS = 1e-5
USAGE_DECAY = 0.99  # EMA of per-batch code counts for the dead-code reset


def identity_features(motion_norm: torch.Tensor) -> torch.Tensor:
    """(..., T, 115) normalised motion -> (..., 230) [per-dim mean over frames, per-dim std]."""
    return torch.cat([motion_norm.mean(-2), motion_norm.std(-2, unbiased=False)], dim=-1)


class IdentityEncoder(nn.Module):
    """(B, 230) identity statistics -> (B, identity_dim) identity code (2-layer ReLU MLP)."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * MOTION_DIM, 4 * dim), nn.ReLU(), nn.Linear(4 * dim, dim))

    def forward(self, stats: torch.Tensor) -> torch.Tensor:
        return self.net(stats)


def instance_norm(h: torch.Tensor) -> torch.Tensor:
    """(B, C, T) -> per-sample, per-channel zero mean and unit variance over T (no affine)."""
    return F.instance_norm(h, eps=IN_EPS)


class ResBlock(nn.Module):
    """h <- norm(h); h + Conv1x1(ReLU(Conv3_dilated(ReLU(h)))); norm: none, IN, or AdaIN(identity)."""

    def __init__(self, width: int, dilation: int, norm: str, identity_dim: int = 0):
        super().__init__()
        self.norm = norm
        self.conv1 = nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation, padding_mode="replicate")
        self.conv2 = nn.Conv1d(width, width, 1)
        if norm == "adain":
            self.affine = nn.Linear(identity_dim, 2 * width)
            nn.init.zeros_(self.affine.weight)  # starts as plain IN: gamma = beta = 0
            nn.init.zeros_(self.affine.bias)

    def forward(self, h: torch.Tensor, identity: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm == "in":
            h = instance_norm(h)
        elif self.norm == "adain":
            gamma, beta = self.affine(identity).unsqueeze(-1).chunk(2, dim=1)  # (B, C, 1) each
            h = instance_norm(h) * (1.0 + gamma) + beta
        return h + self.conv2(F.relu(self.conv1(F.relu(h))))


class Encoder(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        norm = "in" if cfg.identity else "none"
        self.conv_in = nn.Conv1d(MOTION_DIM, cfg.width, 3, padding=1, padding_mode="replicate")
        self.down = nn.ModuleList(nn.Conv1d(cfg.width, cfg.width, 4, stride=2, padding=1, padding_mode="replicate")
                                  for _ in range(cfg.levels))
        self.blocks = nn.ModuleList(
            nn.ModuleList(ResBlock(cfg.width, cfg.dilation_growth ** k, norm) for k in range(cfg.depth))
            for _ in range(cfg.levels))
        self.conv_out = nn.Conv1d(cfg.width, cfg.code_dim, 3, padding=1, padding_mode="replicate")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 115) -> (B, T / r, code_dim)."""
        h = self.conv_in(x.transpose(1, 2))
        for down, blocks in zip(self.down, self.blocks, strict=True):
            h = down(h)
            for blk in blocks:
                h = blk(h)
        return self.conv_out(F.relu(h)).transpose(1, 2)


class Decoder(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        norm = "adain" if cfg.identity else "none"
        self.conv_in = nn.Conv1d(cfg.code_dim, cfg.width, 3, padding=1, padding_mode="replicate")
        self.blocks = nn.ModuleList(
            nn.ModuleList(ResBlock(cfg.width, cfg.dilation_growth ** (cfg.depth - 1 - k), norm, cfg.identity_dim)
                          for k in range(cfg.depth))
            for _ in range(cfg.levels))
        self.up = nn.ModuleList(nn.Conv1d(cfg.width, cfg.width, 3, padding=1, padding_mode="replicate")
                                for _ in range(cfg.levels))
        self.conv_out = nn.Conv1d(cfg.width, MOTION_DIM, 3, padding=1, padding_mode="replicate")

    def forward(self, q: torch.Tensor, identity: torch.Tensor | None) -> torch.Tensor:
        """(B, T / r, code_dim), (B, identity_dim) or None -> (B, T, 115)."""
        h = F.relu(self.conv_in(q.transpose(1, 2)))
        for blocks, up in zip(self.blocks, self.up, strict=True):
            for blk in blocks:
                h = blk(h, identity)
            h = up(F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.conv_out(F.relu(h)).transpose(1, 2)


@dataclass
class Quantized:
    """z_e (B, N, C) encoder output; z_q (B, N, C) nearest codes (straight-through: z_e + sg[z_q - z_e]);
    codes (B, N) long; embed, commit: the unweighted eq. 2 and eq. 3 terms (per-element means)."""

    z_e: torch.Tensor
    z_q: torch.Tensor
    codes: torch.Tensor
    embed: torch.Tensor
    commit: torch.Tensor


class Quantizer(nn.Module):
    """Nearest-neighbour codebook. The loss terms are the supplement's, with its names:

        L_embed  = mean || z - sg[Q(z)] ||^2   (eq. 2: moves the encoder towards its code)
        L_commit = mean || sg[z] - Q(z) ||^2   (eq. 3: moves the code towards the encoder output)

    The sums of eqs. 2-3 over T/r are implemented as means over all elements (the reduction of the
    LM-listener code), so the weights of eq. 6 do not depend on clip length or code width. Codes whose
    EMA usage falls below ``reset_threshold`` per batch are re-seeded from random encoder outputs of
    the batch during training (LM-listener's "reset"; the supplement says nothing on dead codes).
    """

    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.codebook = nn.Parameter(torch.randn(cfg.codebook_size, cfg.code_dim) / cfg.code_dim**0.5)
        self.register_buffer("usage", torch.ones(cfg.codebook_size))
        self.reset_threshold = cfg.reset_threshold

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """(..., C) -> (...) index of the nearest code (squared Euclidean distance, in float32 even
        under bf16 autocast: the expanded distance cancels and would flip near ties)."""
        with torch.autocast(z.device.type, enabled=False):
            flat = z.reshape(-1, z.shape[-1]).float()
            cb = self.codebook.float()
            d = (flat * flat).sum(1, keepdim=True) - 2.0 * flat @ cb.t() + (cb * cb).sum(1)[None]
        return d.argmin(1).view(z.shape[:-1])

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes, self.codebook)

    def forward(self, z: torch.Tensor) -> Quantized:
        codes = self.nearest(z.detach())
        q = self.lookup(codes)
        embed = F.mse_loss(z, q.detach())
        commit = F.mse_loss(z.detach(), q)
        if self.training and self.reset_threshold > 0:
            self._reset_dead(z.detach(), codes)
        return Quantized(z, z + (q - z).detach(), codes, embed, commit)

    @torch.no_grad()
    def _reset_dead(self, z: torch.Tensor, codes: torch.Tensor) -> None:
        """Count the batch's codes, update the usage EMA, re-seed the dead codes from random encoder
        outputs of the batch. In a process group (torchrun) every process does the same: the counts
        are summed over the processes, the outputs gathered into the global batch's order (the shared
        loop gives process r items r, r + N, ... of it) and process 0's random picks broadcast, so the
        codebooks stay identical and equal a single process's on the same global batch."""
        counts = torch.bincount(codes.reshape(-1), minlength=self.codebook.shape[0]).float()
        flat = z.reshape(-1, z.shape[-1])
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if world > 1:
            dist.all_reduce(counts)
            parts = [torch.empty_like(z) for _ in range(world)]
            dist.all_gather(parts, z.contiguous())
            flat = torch.stack(parts, 1).reshape(-1, z.shape[-1])  # (B/N, N, T', C): global item j N + r
        self.usage.mul_(USAGE_DECAY).add_(counts, alpha=1 - USAGE_DECAY)
        dead = (self.usage < self.reset_threshold).nonzero().squeeze(1)
        if dead.numel():
            pick = torch.randint(0, flat.shape[0], (dead.numel(),), device=z.device)
            if world > 1:
                dist.broadcast(pick, src=0)
            self.codebook.data[dead] = flat[pick].to(self.codebook.dtype)
            self.usage[dead] = self.reset_threshold


def smooth_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 (Huber, beta 1) averaged over all elements (eqs. 4-5's sums as means)."""
    return F.smooth_l1_loss(pred, target)


def vq_loss_terms(recon: torch.Tensor, target: torch.Tensor, quant: Quantized,
                  mask: torch.Tensor | None = None, stop_gradients: str = "lm-listener") -> dict[str, torch.Tensor]:
    """Eqs. 2-6. recon, target (B, T, 115) normalised; mask (B, T) 1 = real frame (None = all).

    L_vq = L_embed + 0.02 L_commit + L_rec + 0.5 L_veloc, with
    L_rec = smoothL1(f_hat, f), L_veloc = smoothL1(f_hat_{t+1} - f_hat_t, f_{t+1} - f_t).
    ``stop_gradients`` (``VQConfig``): "as-printed" weighs L_embed = ||z - sg[Q(z)]||^2 by 1 and
    L_commit = ||sg[z] - Q(z)||^2 by 0.02; "lm-listener" puts the 0.02 on the encoder's term instead.
    The two terms have the same value; only where their gradients go differs.
    """
    if mask is None:
        rec = smooth_l1(recon, target)
        vel = smooth_l1(recon[:, 1:] - recon[:, :-1], target[:, 1:] - target[:, :-1])
    else:
        m = mask[..., None].to(recon.dtype)
        per = F.smooth_l1_loss(recon, target, reduction="none")
        rec = (per * m).sum() / (m.sum() * recon.shape[-1]).clamp_min(1)
        mv = m[:, 1:] * m[:, :-1]
        pv = F.smooth_l1_loss(recon[:, 1:] - recon[:, :-1], target[:, 1:] - target[:, :-1], reduction="none")
        vel = (pv * mv).sum() / (mv.sum() * recon.shape[-1]).clamp_min(1)
    if stop_gradients == "as-printed":
        vq_terms = quant.embed + LAMBDA_COMMIT * quant.commit
    else:
        vq_terms = LAMBDA_COMMIT * quant.embed + quant.commit
    loss = vq_terms + rec + LAMBDA_VELOC * vel
    return {"loss": loss, "embed": quant.embed, "commit": quant.commit, "rec": rec, "veloc": vel}


class VQVAE(nn.Module):
    """The VQ-VAE of ``VQConfig`` (with or without identity disentanglement)."""

    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.quantizer = Quantizer(cfg)
        self.decoder = Decoder(cfg)
        self.identity = IdentityEncoder(cfg.identity_dim) if cfg.identity else None

    @property
    def rate(self) -> int:
        return self.cfg.rate

    def identity_code(self, stats: torch.Tensor | None) -> torch.Tensor | None:
        """(B, 230) identity statistics -> (B, identity_dim), or None without disentanglement."""
        if self.identity is None:
            return None
        if stats is None:
            raise ValueError("this VQ-VAE is identity-disentangled: give the listener's identity statistics")
        return self.identity(stats)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 115) normalised, T a multiple of r -> (B, T / r) codes."""
        return self.quantizer.nearest(self.encoder(x))

    def decode(self, codes: torch.Tensor, stats: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N) codes (+ (B, 230) identity statistics) -> (B, N r, 115) normalised motion."""
        return self.decoder(self.quantizer.lookup(codes), self.identity_code(stats))

    def encoder_long(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 115) normalised, T a multiple of r, of any length -> (B, T / r, code_dim) encoder
        outputs, computed in consecutive windows of ``cfg.window`` frames: the windows training saw, so
        instance normalisation sees the same span, and a token depends on its window only. A last
        partial window is taken as the last ``window`` frames of the clip (its earlier outputs are
        dropped); a clip shorter than a window is padded with its last frame."""
        w, r, T = self.cfg.window, self.rate, x.shape[1]
        if T < w:
            return self.encoder(torch.cat([x, x[:, -1:].expand(-1, w - T, -1)], dim=1))[:, : T // r]
        parts = [self.encoder(x[:, s: s + w]) for s in range(0, T - w + 1, w)]
        done = len(parts) * w
        if done < T:
            parts.append(self.encoder(x[:, T - w:])[:, (done - (T - w)) // r:])
        return torch.cat(parts, dim=1)

    def encode_long(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 115) of any length -> (B, T / r) codes (``encoder_long`` then the nearest codes)."""
        return self.quantizer.nearest(self.encoder_long(x))

    def decode_long(self, codes: torch.Tensor, stats: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N) codes of any length -> (B, N r, 115): decoded in windows of ``cfg.window`` frames with
        half-window hops, overlaps cross-faded linearly (training's window length, no seams)."""
        r, w = self.rate, self.cfg.window // self.rate  # tokens per window
        N = codes.shape[1]
        if N <= w:
            return self.decode(codes, stats)
        hop = max(1, w // 2)
        starts = list(range(0, N - w + 1, hop))
        if starts[-1] != N - w:
            starts.append(N - w)
        out = codes.new_zeros((codes.shape[0], N * r, MOTION_DIM), dtype=torch.float32)
        weight = torch.zeros(N * r, device=codes.device)
        ramp = torch.ones(w * r, device=codes.device)
        fade = torch.linspace(0.0, 1.0, hop * r + 2, device=codes.device)[1:-1]
        ramp[: hop * r] = fade  # each window fades in over its first hop and out over its last
        ramp[-hop * r:] = torch.minimum(ramp[-hop * r:], fade.flip(0))
        for k, s in enumerate(starts):
            win = ramp.clone()
            if k == 0:
                win[: hop * r] = 1.0
            if k == len(starts) - 1:
                win[-hop * r:] = 1.0
            dec = self.decode(codes[:, s: s + w], stats).float()
            out[:, s * r: (s + w) * r] += dec * win[None, :, None]
            weight[s * r: (s + w) * r] += win
        return out / weight[None, :, None]

    def forward(self, x: torch.Tensor, stats: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The loss terms of a batch (``vq_loss_terms``) plus ``recon`` and ``codes``."""
        quant = self.quantizer(self.encoder(x))
        recon = self.decoder(quant.z_q, self.identity_code(stats))
        out = vq_loss_terms(recon, x, quant, mask, self.cfg.stop_gradients)
        out.update(recon=recon, codes=quant.codes)
        return out
