"""PSNR, SSIM and LPIPS-VGG (weights in both official layouts, built in a temp folder)."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from ehead_cli.errors import AssetError
from ehead_cli.metrics import image as I
from ehead_cli.metrics.conventions import Unavailable

SIZE = 16  # 16x16 reaches relu5_3 at 1x1 after four max-pools; small keeps the CPU test fast


def test_psnr_hand_computed():
    gt = torch.full((2, 3, 8, 8), 0.5)
    assert I.psnr(gt + 0.1, gt) == pytest.approx(20.0)  # MSE 0.01 -> 10 log10(1 / 0.01)
    assert I.psnr((gt + 0.1) * 255, gt * 255, data_range=255.0) == pytest.approx(20.0)
    assert I.psnr(gt, gt) == math.inf


def test_gaussian_window():
    w = I.gaussian_window()
    assert w.shape == (11,) and w.sum().item() == pytest.approx(1.0)
    assert (w[5] / w[4]).item() == pytest.approx(math.exp(1 / (2 * 1.5**2)))  # exp(-x^2 / 2 sigma^2)


def test_ssim_identical_and_constant_images():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert I.ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    a, b = 0.2, 0.6
    c1 = (0.01 * 1.0) ** 2  # both images flat: the structure term is (0 + C2) / (0 + C2) = 1
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert I.ssim(torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b)) == pytest.approx(expected)
    assert I.ssim(torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b), channels="luma") == pytest.approx(
        expected
    )


def test_ssim_falls_with_noise_and_needs_the_window():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 24, 24, generator=g)
    slight, strong = x + 0.02 * torch.randn(x.shape, generator=g), x + 0.3 * torch.randn(x.shape, generator=g)
    assert 1.0 > I.ssim(slight, x) > I.ssim(strong, x)
    assert I.ssim(slight, x) == pytest.approx(I.ssim(x, slight))
    with pytest.raises(ValueError, match="window"):
        I.ssim(x[..., :8, :8], x[..., :8, :8])


# --- LPIPS --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """Random VGG16 + LPIPS weights saved the way torchvision / the lpips package ship them."""
    root = tmp_path_factory.mktemp("lpips")
    torch.manual_seed(0)
    features = I.vgg16_features()
    vgg_sd = {f"features.{k}": v for k, v in features.state_dict().items()}
    vgg_sd["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision's full vgg16 also has a classifier
    torch.save(vgg_sd, root / "vgg16.pth")
    save_file({k: v.contiguous() for k, v in vgg_sd.items()}, str(root / "vgg16.safetensors"))
    lin_sd = {}
    for k, c in enumerate(I.LPIPS_CHANNELS):
        lin = nn.Sequential(nn.Dropout(), nn.Conv2d(c, 1, 1, bias=False))  # lpips NetLinLayer(use_dropout=True)
        lin[1].weight.data.uniform_(0.0, 1.0)
        lin_sd.update({f"lin{k}.model.{n}": v for n, v in lin.state_dict().items()})
    torch.save(lin_sd, root / "vgg.pth")
    return {"vgg": root / "vgg16.pth", "vgg_st": root / "vgg16.safetensors", "lin": root / "vgg.pth",
            "features": features, "lin_sd": lin_sd}


def test_lpips_loads_both_layouts_and_scores(weight_files, monkeypatch):
    model = I.load_lpips(weight_files["vgg"], weight_files["lin"])
    assert isinstance(model, I.LPIPSVGG)
    assert torch.equal(model.features[28].weight, weight_files["features"][28].weight)  # conv5_3
    assert torch.equal(model.lins[3].weight, weight_files["lin_sd"]["lin3.model.1.weight"])
    monkeypatch.setenv(I.VGG_ENV, str(weight_files["vgg_st"]))
    monkeypatch.setenv(I.LPIPS_ENV, str(weight_files["lin"]))
    from_env = I.load_lpips()
    assert torch.equal(from_env.features[0].weight, model.features[0].weight)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, 3, SIZE, SIZE, generator=g)
    y = torch.rand(3, 3, SIZE, SIZE, generator=g)
    assert I.lpips(x, x, model) == 0.0
    per_frame = I.lpips_per_frame(x, y, model, batch_size=2)
    assert per_frame.shape == (3,) and bool((per_frame > 0).all())
    assert I.lpips(x * 255, y * 255, model, data_range=255.0) == pytest.approx(per_frame.mean().item(), rel=1e-5)
    assert I.lpips(x, x + 0.01, model) < per_frame.mean().item()


def test_lpips_without_weights_is_unavailable(monkeypatch, weight_files, tmp_path):
    monkeypatch.delenv(I.VGG_ENV, raising=False)
    monkeypatch.delenv(I.LPIPS_ENV, raising=False)
    missing = I.load_lpips()
    assert isinstance(missing, Unavailable) and I.VGG_ENV in missing.reason and I.LPIPS_ENV in missing.reason
    x = torch.rand(1, 3, SIZE, SIZE)
    assert I.lpips(x, x, missing) is missing
    monkeypatch.setenv(I.VGG_ENV, str(tmp_path / "nope.pth"))
    monkeypatch.setenv(I.LPIPS_ENV, str(weight_files["lin"]))
    with pytest.raises(AssetError, match=I.VGG_ENV):
        I.load_lpips()
    with pytest.raises(AssetError, match="lin0"):  # the two files swapped
        I.load_lpips(weight_files["vgg"], weight_files["vgg"])
    bad = {f"features.{k}": v for k, v in I.vgg16_features().state_dict().items()}
    bad["features.0.weight"] = torch.zeros(64, 1, 3, 3)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(AssetError, match="shape"):
        I.load_lpips(tmp_path / "bad.pth", weight_files["lin"])
