"""Image metrics of EmbodiedHead (supplementary B.2, "2D Metrics"): PSNR, SSIM and LPIPS-VGG.

Images are (N, C, H, W) or (C, H, W) float tensors (or arrays) in [0, data_range], RGB for LPIPS;
each metric is computed frame by frame and averaged over frames, as B.2 does.

LPIPS is a native implementation of LPIPS v0.1 with the VGG16 trunk (Zhang et al. 2018, the
``lpips`` package): input mapped to [-1, 1], the ScalingLayer shift/scale, torchvision-layout
``vgg16.features`` up to relu5_3 with taps after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3,
unit-normalisation over channels, squared difference, the learned 1x1 ``lin`` convolutions, spatial
mean, sum over the five taps. Its weights do not ship with ehead: the VGG16 backbone is a
torchvision-layout state dict (``features.N.weight``/``bias``, e.g. ``vgg16-397923af.pth``) and the
linear layers are the ``lpips`` package's ``weights/v0.1/vgg.pth`` (``lin0.model.1.weight`` ...),
found through ``EHEAD_VGG`` / ``EHEAD_LPIPS`` or explicit paths; without them LPIPS is reported as
``Unavailable``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ehead_cli.assets import ASSETS
from ehead_cli.errors import AssetError
from ehead_cli.metrics.conventions import Unavailable

DATA_RANGE = 1.0  # float images in [0, 1]; pass 255 for 8-bit values

# --- SSIM (Wang et al. 2004) -----------------------------------------------------------------
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
LUMA_BT601 = (0.299, 0.587, 0.114)  # Y' = 0.299 R + 0.587 G + 0.114 B

# --- LPIPS v0.1, VGG16 trunk -------------------------------------------------------------------
VGG_ENV, LPIPS_ENV = ASSETS["vgg"].env, ASSETS["lpips"].env
# torchvision vgg16 "features" up to relu5_3: ints are 3x3 conv output channels, "M" a 2x2 max-pool.
VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
LPIPS_TAPS = (3, 8, 15, 22, 29)  # features indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
LPIPS_CHANNELS = (64, 128, 256, 512, 512)
LPIPS_SHIFT = (-0.030, -0.088, -0.188)  # ScalingLayer, applied to inputs in [-1, 1]
LPIPS_SCALE = (0.458, 0.448, 0.450)
LPIPS_NORM_EPS = 1e-10  # lpips.normalize_tensor: x / (||x||_channels + eps)
LPIPS_BATCH = 16


def _images(x: Any) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    t = t.to(torch.float64)
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W) or (C, H, W), got {tuple(t.shape)}")
    return t


def _pair(pred: Any, gt: Any) -> tuple[torch.Tensor, torch.Tensor]:
    p, g = _images(pred), _images(gt)
    if p.shape != g.shape:
        raise ValueError(f"images differ in shape: {tuple(p.shape)} vs {tuple(g.shape)}")
    return p, g


# --- PSNR ----------------------------------------------------------------------------------------
def psnr_per_frame(pred: Any, gt: Any, *, data_range: float = DATA_RANGE) -> torch.Tensor:
    """(N,) PSNR in dB: 10 log10(data_range^2 / MSE), MSE over C, H, W; +inf for identical frames."""
    p, g = _pair(pred, gt)
    mse = ((p - g) ** 2).mean((1, 2, 3))
    return 10.0 * torch.log10(data_range**2 / mse)


def psnr(pred: Any, gt: Any, *, data_range: float = DATA_RANGE) -> float:
    """Mean over frames of ``psnr_per_frame`` (dB). +inf as soon as one frame is identical."""
    return float(psnr_per_frame(pred, gt, data_range=data_range).mean())


# --- SSIM ----------------------------------------------------------------------------------------
def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """(size,) normalised 1-D Gaussian; the 2-D window is its outer product (separable)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-(x**2) / (2 * sigma**2))
    return w / w.sum()


def _filter_axis(x: torch.Tensor, w: torch.Tensor, dim: int) -> torch.Tensor:
    """'Valid' 1-D filter of ``x`` along ``dim`` with the window ``w``, as a sum of shifted copies."""
    k = w.shape[0]
    n = x.shape[dim] - k + 1
    out = x.narrow(dim, 0, n) * float(w[0])
    for i in range(1, k):
        out.add_(x.narrow(dim, i, n), alpha=float(w[i]))
    return out


def _blur(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """'Valid' separable Gaussian filter of (N, C, H, W), each channel on its own: the same numbers
    as a depthwise conv2d, written as shifted sums because grouped conv2d is slow on CPU."""
    return _filter_axis(_filter_axis(x, w, -2), w, -1)


def ssim_per_frame(pred: Any, gt: Any, *, data_range: float = DATA_RANGE, channels: str = "rgb",
                   window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """(N,) SSIM (Wang et al. 2004) with an 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03.

    SSIM(x, y) = mean over pixels of ((2 mu_x mu_y + C1)(2 s_xy + C2)) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)),
    C1 = (K1 L)^2, C2 = (K2 L)^2, L = data_range; mu, s are Gaussian-weighted local means and
    (biased) variances/covariance; only positions where the whole window fits are used ('valid',
    as Wang's reference code). ``channels="rgb"``: computed per colour channel and averaged over
    channels (skimage ``channel_axis`` / torchmetrics behaviour); ``"luma"``: on BT.601 luma only.
    """
    p, g = _pair(pred, gt)
    if channels == "luma":
        if p.shape[1] != 3:
            raise ValueError("SSIM on luma needs RGB images (C = 3)")
        y = torch.tensor(LUMA_BT601, dtype=p.dtype).view(1, 3, 1, 1)
        p, g = (p * y).sum(1, keepdim=True), (g * y).sum(1, keepdim=True)
    elif channels != "rgb":
        raise ValueError(f"SSIM: unknown channels {channels!r} (rgb or luma)")
    if min(p.shape[-2:]) < window:
        raise ValueError(f"SSIM: images of {tuple(p.shape[-2:])} are smaller than the {window}x{window} window")
    w = gaussian_window(window, sigma)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mu_p, mu_g = _blur(p, w), _blur(g, w)
    var_p = _blur(p * p, w) - mu_p**2
    var_g = _blur(g * g, w) - mu_g**2
    cov = _blur(p * g, w) - mu_p * mu_g
    ssim_map = ((2 * mu_p * mu_g + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_g**2 + c1) * (var_p + var_g + c2))
    return ssim_map.mean((1, 2, 3))


def ssim(pred: Any, gt: Any, **kwargs: Any) -> float:
    """Mean over frames of ``ssim_per_frame``; unitless, 1 for identical images."""
    return float(ssim_per_frame(pred, gt, **kwargs).mean())


# --- LPIPS-VGG -----------------------------------------------------------------------------------
def vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features[:30]`` layout (conv3x3+ReLU blocks and max-pools, ending at
    relu5_3), untrained. ReLUs are not in-place so the tapped activations stay intact."""
    layers: list[nn.Module] = []
    c_in = 3
    for spec in VGG16_LAYERS:
        if spec == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c_in, int(spec), kernel_size=3, padding=1), nn.ReLU()]
            c_in = int(spec)
    return nn.Sequential(*layers)


def _read_state_dict(path: str | os.PathLike, source: str) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file or a torch checkpoint loaded with weights_only=True."""
    p = Path(path)
    if not p.is_file():
        raise AssetError(f"{source}: no file at {p}")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(p), device="cpu")
        else:
            sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any read failure is the same user-facing problem
        raise AssetError(f"{source}: cannot read {p} ({type(err).__name__}: {str(err).splitlines()[0]})") from err
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise AssetError(f"{source}: {p} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def _take(sd: dict[str, torch.Tensor], names: tuple[str, ...], shape: torch.Size, source: str,
          path: Any) -> torch.Tensor:
    for name in names:
        if name in sd:
            if sd[name].shape != shape:
                raise AssetError(f"{source}: {path}: {name} has shape {tuple(sd[name].shape)}, expected {tuple(shape)}")
            return sd[name].float()
    raise AssetError(f"{source}: {path} lacks {names[0]} (is it the right file?)")


def load_vgg16_features(path: str | os.PathLike, *, source: str = VGG_ENV) -> nn.Sequential:
    """VGG16 ``features`` (to relu5_3) from a torchvision-layout state dict (``features.N.weight``
    or a features-only dict with ``N.weight``); classifier weights, if present, are ignored.
    Frozen, in eval mode. ``source`` names the flag/variable in error messages."""
    sd = _read_state_dict(path, source)
    net = vgg16_features()
    with torch.no_grad():
        for i, layer in enumerate(net):
            if isinstance(layer, nn.Conv2d):
                for attr in ("weight", "bias"):
                    param = getattr(layer, attr)
                    param.copy_(_take(sd, (f"features.{i}.{attr}", f"{i}.{attr}"), param.shape, source, path))
    return net.eval().requires_grad_(False)


class LPIPSVGG(nn.Module):
    """LPIPS v0.1 distance with the VGG16 trunk. forward((N, 3, H, W), (N, 3, H, W)) in [0, 1] -> (N,)."""

    def __init__(self, features: nn.Sequential | None = None):
        super().__init__()
        self.features = features if features is not None else vgg16_features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in LPIPS_CHANNELS)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))

    def load_lins(self, path: str | os.PathLike, *, source: str = LPIPS_ENV) -> None:
        """The five 1x1 linear layers from the lpips package's weights/v0.1/vgg.pth layout
        (``lin{k}.model.1.weight``, shape (1, C, 1, 1); ``model.0`` without dropout is accepted)."""
        sd = _read_state_dict(path, source)
        with torch.no_grad():
            for k, lin in enumerate(self.lins):
                names = (f"lin{k}.model.1.weight", f"lin{k}.model.0.weight")
                lin.weight.copy_(_take(sd, names, lin.weight.shape, source, path))

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in LPIPS_TAPS:
                taps.append(x)
        return taps

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        # [0, 1] -> [-1, 1] (lpips normalize=True), then the v0.1 ScalingLayer
        f0 = self._taps(((2 * x0 - 1) - self.shift) / self.scale)
        f1 = self._taps(((2 * x1 - 1) - self.shift) / self.scale)
        total = torch.zeros(x0.shape[0], dtype=x0.dtype, device=x0.device)
        for lin, a, b in zip(self.lins, f0, f1, strict=True):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + LPIPS_NORM_EPS)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + LPIPS_NORM_EPS)
            total = total + lin((a - b) ** 2).mean((1, 2, 3))
        return total


def load_lpips(vgg_path: str | os.PathLike | None = None,
               lpips_path: str | os.PathLike | None = None) -> LPIPSVGG | Unavailable:
    """LPIPS-VGG from explicit paths or ``EHEAD_VGG`` / ``EHEAD_LPIPS``.

    Returns ``Unavailable`` when either is not configured; raises AssetError (naming the variable)
    when a configured file is missing or malformed.
    """
    vgg = vgg_path or ASSETS["vgg"].configured()
    lins = lpips_path or ASSETS["lpips"].configured()
    missing = [name for name, value in ((VGG_ENV, vgg), (LPIPS_ENV, lins)) if not value]
    if missing:
        return Unavailable(f"LPIPS needs local weights: set {' and '.join(missing)} (VGG16 torchvision "
                           f"state dict; lpips weights/v0.1/vgg.pth)")
    model = LPIPSVGG(load_vgg16_features(vgg, source=VGG_ENV))
    model.load_lins(lins, source=LPIPS_ENV)
    return model.eval().requires_grad_(False)


@torch.no_grad()
def lpips_per_frame(pred: Any, gt: Any, model: LPIPSVGG, *, data_range: float = DATA_RANGE,
                    batch_size: int = LPIPS_BATCH) -> torch.Tensor:
    """(N,) LPIPS distances (unitless, 0 for identical images) of RGB frames in [0, data_range]."""
    p, g = _pair(pred, gt)
    if p.shape[1] != 3:
        raise ValueError(f"LPIPS needs RGB images (C = 3), got C = {p.shape[1]}")
    dev = model.shift.device
    out = [model(p[i : i + batch_size].to(dev, torch.float32) / data_range,
                 g[i : i + batch_size].to(dev, torch.float32) / data_range).double().cpu()
           for i in range(0, p.shape[0], batch_size)]
    return torch.cat(out)


def lpips(pred: Any, gt: Any, model: LPIPSVGG | Unavailable, **kwargs: Any) -> float | Unavailable:
    """Mean over frames of ``lpips_per_frame``; passes an ``Unavailable`` model through unchanged."""
    if isinstance(model, Unavailable):
        return model
    return float(lpips_per_frame(pred, gt, model, **kwargs).mean())
