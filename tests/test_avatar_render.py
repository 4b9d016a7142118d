"""The neural avatar as a renderer: gradients with respect to motion and weights, the frame
interface it shares with the mesh renderer, MS-SSIM, and AVATAR_DIR on disk (round trip,
checksums, damaged and mismatched folders)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from avatar_fixtures import TINY, talking_motion, tiny_capture

from ehead_cli.avatar.folder import CONFIG, MANIFEST, WEIGHTS, load_avatar, verify_folder
from ehead_cli.avatar.losses import ms_ssim
from ehead_cli.avatar.neural import NeuralAvatar
from ehead_cli.errors import AssetError, InputError
from ehead_cli.face import BuiltinHead
from ehead_cli.metrics.image import ssim


@pytest.fixture
def fitted(tiny_avatar):
    return tiny_avatar[0]


def random_avatar(dtype=torch.float64, smooth: bool = False) -> NeuralAvatar:
    """A tiny avatar whose every weight is non-zero (the zero-initialised FiLM output included).
    ``smooth``: the U-Net's leaky ReLUs become the identity, so that finite differences (which a
    kink within their step spoils) converge; their own derivative is PyTorch's."""
    cap = tiny_capture()
    torch.manual_seed(0)
    av = NeuralAvatar(BuiltinHead(), cap.camera, TINY)
    with torch.no_grad():
        for p in av.parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (0.5 if p is av.background else 0.0))
    if smooth:
        for m in av.unet.modules():
            if isinstance(m, torch.nn.LeakyReLU):
                m.negative_slope = 1.0
    return av.to(dtype), cap


def _loss(av, shape, motion, weight, fragments=None):
    return (av.images(shape, motion, fragments=fragments).image * weight).sum()


def test_gradients_with_respect_to_motion_match_finite_differences():
    """The gradient is the image's with the visibility held fixed (a hard rasteriser's silhouettes
    carry none), so the finite differences reuse the visibility of the point they are taken at."""
    av, cap = random_avatar(smooth=True)
    motion = torch.from_numpy(cap.motion[:3]).double().requires_grad_(True)
    shape = torch.from_numpy(cap.shape).double()
    weight = torch.randn(3, TINY.size, TINY.size, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = av.images(shape, motion)
    (out.image * weight).sum().backward()
    grad, frags = motion.grad.clone(), out.fragments
    for dims in ([100], [109, 110, 111], [112, 113, 114], [0, 1, 2, 3]):  # jaw, rotation, translation, expression
        d = torch.zeros_like(motion)
        d[:, dims] = torch.randn(3, len(dims), dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        eps = 1e-7
        with torch.no_grad():
            numeric = (_loss(av, shape, motion + eps * d, weight, frags)
                       - _loss(av, shape, motion - eps * d, weight, frags)) / (2 * eps)
        analytic = (grad * d).sum()
        assert abs(float(analytic)) > 1e-3, dims
        assert float(abs(numeric - analytic) / abs(analytic)) < 1e-4, (dims, float(numeric), float(analytic))


def test_gradients_with_respect_to_every_weight_match_finite_differences():
    av, cap = random_avatar(smooth=True)
    shape, motion = torch.from_numpy(cap.shape).double(), torch.from_numpy(cap.motion[:2]).double()
    weight = torch.randn(2, TINY.size, TINY.size, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    params = dict(av.named_parameters())
    _loss(av, shape, motion, weight).backward()
    for name in ("field.learned", "unet.stem.weight", "unet.film.2.weight", "unet.head.bias", "background"):
        p = params[name]
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        d = torch.randn(p.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
        eps = 1e-6
        with torch.no_grad():
            p.add_(eps * d)
            up = _loss(av, shape, motion, weight)
            p.sub_(2 * eps * d)
            down = _loss(av, shape, motion, weight)
            p.add_(eps * d)
        numeric, analytic = (up - down) / (2 * eps), (p.grad * d).sum()
        assert float(abs(numeric - analytic) / abs(analytic)) < 1e-4, name


def test_frames_interface_matches_the_mesh_renderer():
    av, cap = random_avatar(torch.float32)
    motion = talking_motion(11)
    frames = av.render(cap.shape, motion)
    assert frames.shape == (11, TINY.size, TINY.size, 3) and frames.dtype == torch.uint8
    av.batch_size = 3  # batching does not change a frame
    again = np.stack(list(av.iter_frames(cap.shape, motion)))
    assert np.abs(again.astype(int) - frames.numpy().astype(int)).max() <= 1
    assert av.render(cap.shape, motion[:0]).shape == (0, TINY.size, TINY.size, 3)
    with pytest.raises(ValueError, match="motion must be"):
        av.render(cap.shape, np.zeros((2, 7)))


def test_ms_ssim_is_one_for_identical_images_and_ranks_like_ssim():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g)
    assert torch.allclose(ms_ssim(x, x), torch.ones(2), atol=1e-5)
    slight, strong = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1), torch.rand(2, 3, 64, 64, generator=g)
    assert ms_ssim(slight, x).min() > ms_ssim(strong, x).max()
    assert ssim(slight, x) > ssim(strong, x)


def test_folder_round_trip_renders_the_same_frames(fitted):
    loaded = load_avatar(fitted)
    assert loaded.face_model == "builtin" and loaded.shape.shape == (300,) and loaded.reference.shape == (115,)
    config = json.loads((fitted / CONFIG).read_text())
    assert config["metrics"]["frames"] == 3 and config["metrics"]["psnr"] > 0
    cap = tiny_capture()
    idx = cap.heldout_index
    frames = loaded.renderer.render(loaded.shape, cap.motion[idx])
    # the same weights in a fresh process-level load render the same pixels
    from ehead_cli.avatar import folder

    folder._load_cached.cache_clear()
    again = load_avatar(fitted).renderer.render(loaded.shape, cap.motion[idx])
    assert torch.equal(frames, again)
    names = {p.name for p in fitted.iterdir()}
    assert names == {"config.json", "avatar.safetensors", "identity.npz", "reference.png", "heldout.png",
                     "AVATAR_CARD.md", "MANIFEST.json"}
    assert "PSNR" in (fitted / "AVATAR_CARD.md").read_text()


@pytest.mark.parametrize("damage", ["truncated", "missing_manifest", "missing_weights", "wrong_face", "flame_given",
                                    "flame_needed", "bad_keys"])
def test_damaged_or_mismatched_folder_is_one_error(damage, fitted, tmp_path):
    from ehead_cli.avatar import folder

    folder._load_cached.cache_clear()
    bad = tmp_path / "bad"
    shutil.copytree(fitted, bad)
    flame = None
    if damage == "truncated":
        data = (bad / WEIGHTS).read_bytes()
        (bad / WEIGHTS).write_bytes(data[: len(data) // 2])
        needle, kind = "avatar.safetensors: size or SHA-256 differs", InputError
    elif damage == "missing_manifest":
        (bad / MANIFEST).unlink()
        needle, kind = "not an avatar folder", InputError
    elif damage == "missing_weights":
        (bad / WEIGHTS).unlink()
        needle, kind = "avatar.safetensors: missing", InputError
    elif damage in ("wrong_face", "flame_needed", "bad_keys"):
        config = json.loads((bad / CONFIG).read_text())
        if damage == "wrong_face":
            config["face"]["vertices"] += 1
            needle, kind = "fitted on a different builtin face model", InputError
        elif damage == "flame_needed":
            config["face"]["name"] = "flame"
            needle, kind = "fitted on FLAME; pass --flame", AssetError
        else:
            config["renderer"]["channels"] = [8, 16]
            needle, kind = "the config expects", InputError
        (bad / CONFIG).write_text(json.dumps(config))
        _rewrite_manifest(bad)
    else:
        flame, needle, kind = "/some/flame.pkl", "fitted on the built-in head, not FLAME", InputError
    with pytest.raises(kind, match=needle) as err:
        load_avatar(bad, flame=flame)
    assert "\n" not in str(err.value)


def _rewrite_manifest(path):
    from ehead_cli.io.atomic import sha256_file

    entries = json.loads((path / MANIFEST).read_text())["files"]
    for name, e in entries.items():
        e["size"], e["sha256"] = (path / name).stat().st_size, sha256_file(path / name)
    (path / MANIFEST).write_text(json.dumps({"files": entries}))
    verify_folder(path)


def test_shipped_demo_avatar_loads_and_credits_grid():
    from conftest import REPO

    demo = REPO / "models" / "avatar-grid-bbaf2n"  # committed: a checkout without it fails here
    loaded = load_avatar(demo)  # verifies every file against its manifest
    assert loaded.face_model == "builtin" and loaded.renderer.size == 256
    assert sum(p.stat().st_size for p in demo.iterdir()) < 20 * 2**20
    card = (demo / "AVATAR_CARD.md").read_text()
    assert "GRID" in card and "CC BY 4.0" in card
    entries = json.loads((demo / MANIFEST).read_text())["files"].values()
    assert all(e["licence"].startswith("CC BY 4.0") for e in entries)
