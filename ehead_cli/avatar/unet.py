"""The image network of the neural avatar: a U-Net from the rasterised feature image to RGB + alpha.

Input (B, C_in, S, S) at the avatar's size S. The stem is an r x r convolution of stride r
(``unshuffle`` = r; the same as pixel-unshuffling r x r blocks into r^2 channels and a 1x1
convolution), so every later convolution runs at S / r while no input pixel is dropped, and the
output layer is its transpose (a 1x1 convolution and a pixel shuffle back to S): the
full-resolution detail of the feature image reaches the output at 1 / r^2 of the cost of a
full-resolution U-Net, which is what makes the avatar render at video rate on a CPU. Tensors are
kept channels-last, the layout oneDNN's CPU convolutions are fastest in.

Levels: two 3x3 convolutions (LeakyReLU 0.2) per level, 2x average pooling down, bilinear 2x up,
skip connections by concatenation. The head pose conditions the bottleneck by FiLM
(x (1 + gamma) + beta, from a 2-layer MLP whose output layer starts at zero, so the untrained
network ignores the pose): a single global, low-capacity path, which keeps the pose of one
training frame from becoming that frame's identity.

Output (B, 4, S, S): RGB in (0, 1) (sigmoid) and the alpha logit of the composite over the
learned background.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NEGATIVE_SLOPE = 0.2
OUT_CHANNELS = 4  # RGB + alpha logit


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.LeakyReLU(NEGATIVE_SLOPE),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.LeakyReLU(NEGATIVE_SLOPE))


class UNet(nn.Module):
    """in_channels at full resolution; ``channels`` per level (finest first); ``pose_dim`` inputs
    of the FiLM MLP with ``pose_hidden`` hidden units."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], unshuffle: int, pose_dim: int,
                 pose_hidden: int) -> None:
        super().__init__()
        self.r = int(unshuffle)
        c = list(channels)
        self.stem = nn.Conv2d(in_channels, c[0], self.r, stride=self.r)
        self.down = nn.ModuleList([_block(c[0], c[0])] + [_block(c[i], c[i + 1]) for i in range(len(c) - 1)])
        self.up = nn.ModuleList([_block(c[i + 1] + c[i], c[i]) for i in reversed(range(len(c) - 1))])
        self.head = nn.ConvTranspose2d(c[0], OUT_CHANNELS, self.r, stride=self.r)
        self.film = nn.Sequential(nn.Linear(pose_dim, pose_hidden), nn.SiLU(), nn.Linear(pose_hidden, 2 * c[-1]))
        self.initialize_weights()
        self.to(memory_format=torch.channels_last)

    def initialize_weights(self) -> None:
        """Kaiming for the convolutions (leaky ReLU), a zero FiLM output layer (identity at start),
        and an alpha bias of 0 (alpha 0.5 everywhere before training)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, a=NEGATIVE_SLOPE, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.film[-1].weight)
        nn.init.zeros_(self.film[-1].bias)
        nn.init.normal_(self.head.weight, std=1e-3)

    def forward(self, x: torch.Tensor, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C_in, S, S), pose (B, pose_dim) -> rgb (B, 3, S, S) in (0, 1), alpha logit (B, 1, S, S)."""
        h = self.stem(x.contiguous(memory_format=torch.channels_last))  # (B, c0, S/r, S/r)
        skips = []
        for i, block in enumerate(self.down):
            if i:
                h = F.avg_pool2d(h, 2)
            h = block(h)
            skips.append(h)
        gamma, beta = self.film(pose).to(h.dtype)[:, :, None, None].chunk(2, dim=1)
        h = h * (1 + gamma) + beta
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
            h = block(torch.cat([h, skip], 1))
        out = self.head(h)  # (B, 4, S, S)
        return torch.sigmoid(out[:, :3]), out[:, 3:]
