"""Image losses of the avatar fit: L1, multi-scale SSIM and a VGG perceptual term.

The default photometric loss mixes L1 and 1 - MS-SSIM as Zhao et al. (2017, "Loss Functions for
Image Restoration with Neural Networks") found best for restoration: 0.16 L1 + 0.84 (1 - MS-SSIM)
(``FitConfig.l1_weight``/``ssim_weight``). MS-SSIM is Wang, Simoncelli and Bovik's (2003): the
contrast-structure term at five scales (2x average pooling between them) and the luminance term at
the coarsest, weighted (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), each with the 11x11 Gaussian window
(sigma 1.5) and the constants of ``metrics.image``'s SSIM, 'valid' positions only. Scales whose
image is smaller than the window are dropped and the remaining weights renormalised. Negative
contrast-structure values (possible early in a fit) are clipped to a small positive number so the
fractional powers stay defined.

The perceptual term (``--vgg``) is the paper's Stage-II form, eq. (8): squared differences of frozen
VGG16 features (after relu1_2, relu2_2, relu3_3, relu4_3; ImageNet-normalised inputs), each averaged
over its elements and summed over the taps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ehead_cli.metrics.image import SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_WINDOW, gaussian_window

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
CS_FLOOR = 1e-4
VGG_TAPS = (3, 8, 15, 22)  # vgg16.features indices of relu1_2, relu2_2, relu3_3, relu4_3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _blur(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """'Valid' separable Gaussian of (N, C, H, W), channel by channel (depthwise convolutions)."""
    C = x.shape[1]
    k = w.shape[0]
    x = F.conv2d(x, w.view(1, 1, k, 1).expand(C, 1, k, 1), groups=C)
    return F.conv2d(x, w.view(1, 1, 1, k).expand(C, 1, 1, k), groups=C)


def _ssim_terms(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) mean luminance term x contrast-structure term, and (N,) mean contrast-structure term."""
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # data range 1
    mu_x, mu_y = _blur(x, w), _blur(y, w)
    var_x = _blur(x * x, w) - mu_x**2
    var_y = _blur(y * y, w) - mu_y**2
    cov = _blur(x * y, w) - mu_x * mu_y
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    lum = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (lum * cs).mean((1, 2, 3)), cs.mean((1, 2, 3))


def ms_ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N,) MS-SSIM of (N, C, H, W) images in [0, 1] (module docstring). Differentiable."""
    w = gaussian_window(SSIM_WINDOW, SSIM_SIGMA).to(pred)
    scales = [s for s in range(len(MS_SSIM_WEIGHTS)) if min(pred.shape[-2:]) >> s >= SSIM_WINDOW]
    if not scales:
        raise ValueError(f"MS-SSIM needs images of at least {SSIM_WINDOW} px, got {tuple(pred.shape[-2:])}")
    weights = torch.tensor([MS_SSIM_WEIGHTS[s] for s in scales], dtype=pred.dtype, device=pred.device)
    weights = weights / weights.sum()
    terms = []
    x, y = pred, target
    for i in range(len(scales)):
        if i:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        full, cs = _ssim_terms(x, y, w)
        terms.append((full if i == len(scales) - 1 else cs).clamp_min(CS_FLOOR))
    return torch.exp((torch.stack(terms, -1).log() * weights).sum(-1))


def weighted_l1(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error of (N, C, H, W) images; ``weight`` (N, 1, H, W) reweights pixels
    (normalised so a weight of ones gives the plain mean)."""
    err = (pred - target).abs()
    if weight is None:
        return err.mean()
    return (err * weight).sum() / (weight.sum() * pred.shape[1])


class VGGPerceptual(nn.Module):
    """Squared differences of frozen VGG16 features (module docstring). forward((N, 3, H, W) x 2) -> ()."""

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        self.features = features[: VGG_TAPS[-1] + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = torch.cat([pred, target])
        x = (x - self.mean) / self.std
        total = pred.new_zeros(())
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in VGG_TAPS:
                a, b = x.chunk(2)
                total = total + (a - b).pow(2).mean()
        return total
