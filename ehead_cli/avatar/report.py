"""What a fit reports: held-out image metrics, the side-by-side figure and the avatar's card.

Held-out frames are the last 10 % of each video, by time (``avatar.capture``), never trained on.
On them, at the avatar's size: PSNR and SSIM (``metrics.image``, the paper's B.2 definitions), LPIPS
when its weights are given, and the PSNR of the mouth box (``Capture.mouth``: 1.8 mouth widths
square around the lips of each frame), the region where a talking head is judged.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ehead_cli.avatar.capture import Capture
from ehead_cli.avatar.folder import HELDOUT_PNG
from ehead_cli.avatar.neural import NeuralAvatar
from ehead_cli.metrics import image as image_metrics
from ehead_cli.metrics.conventions import Unavailable
from ehead_cli.render.renderer import Renderer

FIGURE_ROWS = 4  # held-out frames in the side-by-side figure


@torch.no_grad()
def render_frames(avatar: NeuralAvatar, capture: Capture, index: np.ndarray) -> torch.Tensor:
    """(K, 3, S, S) float images of the capture's frames ``index``, rendered by the avatar."""
    was = avatar.training
    avatar.eval()
    out = avatar.render(torch.from_numpy(capture.shape), torch.from_numpy(capture.motion[index]))
    avatar.train(was)
    return out.permute(0, 3, 1, 2).float() / 255.0


def mouth_psnr(pred: torch.Tensor, real: torch.Tensor, boxes: np.ndarray) -> float:
    """Mean PSNR (dB) over frames of the (x0, y0, x1, y1) box of each (K, 3, S, S) image pair."""
    values = []
    for p, r, (x0, y0, x1, y1) in zip(pred, real, boxes, strict=True):
        if x1 > x0 and y1 > y0:
            values.append(image_metrics.psnr(p[:, y0:y1, x0:x1], r[:, y0:y1, x0:x1]))
    return float(np.mean(values)) if values else float("nan")


def heldout_metrics(avatar: NeuralAvatar, capture: Capture, lpips_model: Any = None,
                    index: np.ndarray | None = None) -> dict[str, Any]:
    """PSNR, SSIM, mouth PSNR and LPIPS (a reason string when unavailable) on the held-out frames."""
    index = capture.heldout_index if index is None else index
    pred = render_frames(avatar, capture, index)
    real = capture.frames[index].permute(0, 3, 1, 2).float() / 255.0
    out: dict[str, Any] = {"frames": int(len(index)), "psnr": image_metrics.psnr(pred, real),
                           "ssim": image_metrics.ssim(pred, real), "mouth_psnr": mouth_psnr(pred, real,
                                                                                           capture.mouth[index])}
    if lpips_model is None or isinstance(lpips_model, Unavailable):
        out["lpips"] = str(lpips_model.reason) if isinstance(lpips_model, Unavailable) else "no LPIPS weights given"
    else:
        out["lpips"] = float(image_metrics.lpips_per_frame(pred, real, lpips_model).mean())
    return out


@torch.no_grad()
def side_by_side(avatar: NeuralAvatar, capture: Capture, path: Path, rows: int = FIGURE_ROWS) -> None:
    """PNG of held-out frames, one per row: real | avatar | mesh (the shaded face model, same camera)."""
    from matplotlib import image as mpimg

    held = capture.heldout_index
    index = held[np.linspace(0, len(held) - 1, min(rows, len(held))).round().astype(int)]
    pred = (render_frames(avatar, capture, index) * 255).round().byte().permute(0, 2, 3, 1)
    mesh = Renderer(avatar.face, avatar.size, camera=avatar.camera).render(
        torch.from_numpy(capture.shape), torch.from_numpy(capture.motion[index]))
    grid = torch.cat([torch.cat([capture.frames[index], pred.cpu(), mesh.cpu()], dim=2)], dim=0)  # (K, S, 3S, 3)
    mpimg.imsave(path, grid.reshape(-1, grid.shape[2], 3).numpy(), format="png")


def save_png(path: Path, image: torch.Tensor | np.ndarray) -> None:
    """(H, W, 3) uint8 -> PNG."""
    from matplotlib import image as mpimg

    mpimg.imsave(path, np.asarray(image), format="png")


def _fmt(value: Any, digits: int) -> str:
    if isinstance(value, (int, float)) and math.isfinite(value):
        return f"{value:.{digits}f}"
    return str(value)


def card_text(name: str, config: dict[str, Any], licence: str, attribution: str | None = None) -> str:
    """The AVATAR_CARD.md of a fitted avatar, from its config.json content."""
    m, fit, meta = config["metrics"], config["fit"], config["meta"]
    first = m.get("first_step", {})
    sources = "\n".join(f"- `{s['file']}`: {s['frames']} frames at 25 fps" for s in config["sources"])
    lines = [
        f"# Avatar `{name}`",
        "",
        f"A person-specific neural avatar fitted by `ehead avatar fit` (ehead {meta['ehead']}): a learned feature "
        f"field on the {config['face']['name']} face model's surface, rasterised and turned into images by a U-Net "
        f"over a learned background, {config['renderer']['size']} px. It renders head-centred motion from "
        "`ehead generate --avatar` or `ehead render --avatar`.",
        "",
        "## Source",
        "",
        sources,
        "",
        f"Face-centred square crop of {config['crop']['side']} px at ({config['crop']['x0']}, {config['crop']['y0']}) "
        f"of the {config['source_camera']['width']}x{config['source_camera']['height']} video, resampled to "
        f"{config['renderer']['size']} px; landmark fit error {_fmt(config.get('landmark_rmse_px'), 2)} px.",
        "",
        "## Held-out quality",
        "",
        f"The last {100 * fit['holdout']:.0f} % of each video ({m['frames']} frames), never trained on:",
        "",
        "| measure | after the first step | fitted |",
        "|---|---|---|",
        f"| PSNR (dB) | {_fmt(first.get('psnr'), 2)} | **{_fmt(m['psnr'], 2)}** |",
        f"| SSIM | {_fmt(first.get('ssim'), 3)} | **{_fmt(m['ssim'], 3)}** |",
        f"| mouth-box PSNR (dB) | {_fmt(first.get('mouth_psnr'), 2)} | **{_fmt(m['mouth_psnr'], 2)}** |",
        f"| LPIPS (VGG) | | {_fmt(m['lpips'], 3)} |",
        "",
        f"`{HELDOUT_PNG}`: held-out frames, real | avatar | mesh.",
        "",
        "## Fit",
        "",
        f"{fit['steps']} steps of batch {fit['batch_size']} (Adam, lr {fit['lr']:g}), losses "
        f"{fit['l1_weight']:g} L1 (mouth box x{1 + fit['mouth_weight']:g}) + {fit['ssim_weight']:g} (1 - MS-SSIM)"
        + (f" + {fit['vgg_weight']:g} VGG perceptual" if meta.get("vgg") else " (no VGG weights given)")
        + f"; {meta['seconds'] / 60:.1f} min on {meta['device']} ({meta['threads']} threads).",
        "",
        "## Licence",
        "",
        licence,
    ]
    if attribution:
        lines += ["", attribution]
    return "\n".join(lines) + "\n"

