"""Image metrics of a video pair: both decoded frame by frame with PyAV, centre-cropped, aligned
with each other and with the clip's motion, PSNR / SSIM / LPIPS per frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

from ehead_cli.errors import InputError
from ehead_cli.eval.pairing import aligned_length
from ehead_cli.io.video import iter_frames
from ehead_cli.metrics import image as image_metrics

IMAGE_CROP = 256  # pixels, centre crop side for PSNR / SSIM / LPIPS (B.2)


IMAGE_BATCH = 16  # video frames per metric call


VIDEO_SUFFIX = ".mp4"


def centre_crop(frame: np.ndarray, size: int = IMAGE_CROP) -> np.ndarray:
    """(H, W, C) -> the centred (min(size, H), min(size, W), C) window."""
    h, w = frame.shape[:2]
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return frame[top : top + ch, left : left + cw]


def _image_batch(frames: list[np.ndarray]) -> torch.Tensor:
    """list of (H, W, 3) uint8 -> (N, 3, H, W) float64 in [0, 1]."""
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).to(torch.float64) / 255.0


def video_metrics(pred_path: Path, gt_path: Path, names: Sequence[str], lpips_model: Any,
                  n_motion: int, fps: float) -> tuple[dict[str, np.ndarray], int]:
    """Per-frame image metrics of a video pair: {name: (n,)} for names in psnr/ssim/lpips, and n.

    Frames are centre-cropped (``centre_crop``) and aligned with each other and with the clip's
    ``n_motion`` motion frames by ``aligned_length``; InputError for unreadable or mismatched videos.
    """
    per_frame: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    counts = [0, 0]
    batch_p: list[np.ndarray] = []
    batch_g: list[np.ndarray] = []

    def flush() -> None:
        if not batch_p:
            return
        p, g = _image_batch(batch_p), _image_batch(batch_g)
        if "psnr" in per_frame:
            per_frame["psnr"].append(image_metrics.psnr_per_frame(p, g))
        if "ssim" in per_frame:
            per_frame["ssim"].append(image_metrics.ssim_per_frame(p, g))
        if "lpips" in per_frame:
            per_frame["lpips"].append(image_metrics.lpips_per_frame(p, g, lpips_model))
        batch_p.clear()
        batch_g.clear()

    try:
        frames_p, frames_g = iter_frames(pred_path), iter_frames(gt_path)
        while True:
            fp, fg = next(frames_p, None), next(frames_g, None)
            counts[0] += fp is not None
            counts[1] += fg is not None
            if fp is None or fg is None:
                break
            if counts[0] > n_motion:
                continue  # only counted: the alignment check below needs the full lengths
            fp, fg = centre_crop(fp), centre_crop(fg)
            if fp.shape != fg.shape:
                raise InputError(f"{pred_path}: frames of {fp.shape[1]}x{fp.shape[0]} after cropping, "
                                 f"{gt_path} {fg.shape[1]}x{fg.shape[0]}; render both at the same size")
            batch_p.append(fp)
            batch_g.append(fg)
            if len(batch_p) == IMAGE_BATCH:
                flush()
        counts[0] += sum(1 for _ in frames_p)
        counts[1] += sum(1 for _ in frames_g)
    except av.error.FFmpegError as err:
        raise InputError(f"cannot decode {pred_path} or {gt_path} ({err})") from None
    flush()
    n = aligned_length(counts[0], counts[1], fps, ("the prediction video", "the ground-truth video"))
    n = aligned_length(n, n_motion, fps, ("the videos", "the motion"))
    return {k: torch.cat(v).numpy()[:n] for k, v in per_frame.items()}, n
