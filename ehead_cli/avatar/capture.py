"""A capture: what ``ehead avatar fit`` learns from, made from videos of one person.

Videos are tracked into a capture by ``ehead_cli.prepare.capture.read_capture`` (``ehead prepare``'s
ingest and landmark tracker; the avatar layer never imports prepare). ``dataset_capture`` reads a
dataset folder with frames instead (``ehead avatar fit --data``): its clips' frames are already the
crop, and their labels are the motion.

``make_capture`` is the part that needs no detector (``read_capture`` ends with it; the tests build
captures from clips rendered by the built-in head): the face-centred square crop, fixed for the
whole capture (a static camera sees a static background; the head's motion stays motion in the
crop), its camera, the mouth box of each frame and the split by time (the last ``holdout`` of each
video held out).

Crop: centred ``CROP_RAISE`` face heights above the median centre of the face model's projected 68
landmarks (the hair is above them, the neck below), ``crop_scale`` face heights (the median
landmark height, brows to chin) on a side but no larger than the image, moved inside the image,
rounded to whole pixels, resampled to the avatar's size with
antialiased bilinear filtering (PyTorch's ``antialias=True``), pixel centres aligned with the crop
camera (``ClipCamera.crop``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ehead_cli.errors import InputError
from ehead_cli.face.base import FaceModel
from ehead_cli.layout import N_SHAPE
from ehead_cli.render.clip_camera import ClipCamera

MOUTH = slice(48, 68)  # iBUG outer and inner lips
MOUTH_CORNERS = (48, 54)
MOUTH_BOX_SCALE = 1.5  # mouth box side, in mouth widths
CROP_RAISE = 0.15  # the crop's centre sits this many face heights above the landmarks' centre
DATASET_FRAMES = 2000  # frames a dataset capture takes at most (the fit samples a few thousand in all)


@dataclass
class Capture:
    """frames (T, S, S, 3) uint8 crops; motion (T, 115) float32 head-centred; shape (300,);
    camera: the crop's camera (S x S); source_camera: the video's; crop (x0, y0, side) in video
    pixels; found (T,) bool frames with a tracked face; mouth (T, 4) int64 x0, y0, x1, y1 boxes in
    crop pixels; heldout (T,) bool; sources: (path, frames) per video; rmse_px: landmark error."""

    frames: torch.Tensor
    motion: np.ndarray
    shape: np.ndarray
    camera: ClipCamera
    source_camera: ClipCamera
    crop: tuple[int, int, int]
    found: np.ndarray
    mouth: np.ndarray
    heldout: np.ndarray
    sources: list[tuple[str, int]]
    rmse_px: float = float("nan")

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def train_index(self) -> np.ndarray:
        return np.flatnonzero(~self.heldout & self.found)

    @property
    def heldout_index(self) -> np.ndarray:
        return np.flatnonzero(self.heldout & self.found)


# --- the capture --------------------------------------------------------------------------------------
def dataset_capture(root: str | os.PathLike, face: FaceModel, holdout: float,
                    max_frames: int = DATASET_FRAMES) -> Capture:
    """A Capture from a dataset folder with frames (``ehead avatar fit --data``): the training
    clips' frames as they are (already the face-centred crop, so the avatar's camera is the frames'
    own), their motion labels (no tracking), at most ``max_frames`` frames taken at an even stride
    from each clip. The clips must show one person (one shape) through one camera."""
    from ehead_cli.io.dataset import load_index
    from ehead_cli.io.frames import decode_frames, read_frames_info

    root = Path(root)
    clips = [c for c in load_index(root).split("train") if read_frames_info(root, c.id) is not None]
    if not clips:
        raise InputError(f"{root}: no training clip has video frames (clips/<id>.frames.mp4; see ehead prepare) "
                         f"(--data)")
    infos = [read_frames_info(root, c.id) for c in clips]
    if len({i.camera for i in infos}) > 1:
        raise InputError(f"{root}: the clips' frames come from different cameras; an avatar is fitted from one "
                         f"static camera (--data)")
    if any(np.abs(c.shape - clips[0].shape).max() > 1e-5 for c in clips):
        raise InputError(f"{root}: the training clips have different identity shapes; an avatar is one person (--data)")
    stride = max(1, math.ceil(sum(c.n_frames for c in clips) / max_frames))
    frames, motion, lengths, sources = [], [], [], []
    for c, info in zip(clips, infos, strict=True):
        pick = np.arange(0, c.n_frames, stride)
        if len(pick) < 2:
            continue
        frames.append(decode_frames(info)[pick])
        motion.append(c.motion[pick])
        lengths.append(len(pick))
        sources.append((c.id, len(pick)))
    if not frames:
        raise InputError(f"{root}: the training clips are too short to fit an avatar on (--data)")
    camera, motion_all = infos[0].camera, np.concatenate(motion)
    found = np.ones(len(motion_all), bool)
    S = camera.height
    return Capture(torch.from_numpy(np.concatenate(frames)), motion_all.astype(np.float32),
                   clips[0].shape.astype(np.float32)[:N_SHAPE], camera, camera, (0, 0, S), found,
                   mouth_boxes(face, clips[0].shape, motion_all, camera, found, S), heldout_mask(lengths, holdout),
                   sources)


@torch.no_grad()
def make_capture(frames: np.ndarray, motion: np.ndarray, shape: np.ndarray, camera: ClipCamera, found: np.ndarray,
                 face: FaceModel, size: int, crop_scale: float, holdout: float,
                 lengths: list[int] | None = None) -> Capture:
    """Crop, cameras, mouth boxes and the split of (T, H, W, 3) frames with their head-centred
    motion, identity and video camera (module docstring). ``lengths``: frames per video."""
    T = len(frames)
    lengths = lengths or [T]
    if sum(lengths) != T or min(lengths) < 2:
        raise ValueError(f"video lengths {lengths} do not add up to {T} frames of at least 2 each")
    if tuple(frames.shape[1:3]) != (camera.height, camera.width):
        raise ValueError(f"frames of {frames.shape[2]}x{frames.shape[1]}, a camera of {camera.width}x{camera.height}")
    ok = np.asarray(found, bool)
    (x0, y0, side), crop_camera = crop_square(motion, shape, camera, ok, face, size, crop_scale)
    crops = crop_frames(frames, x0, y0, side, size)
    return Capture(crops, np.asarray(motion, np.float32), np.asarray(shape, np.float32)[:N_SHAPE], crop_camera,
                   camera, (x0, y0, side), ok, mouth_boxes(face, shape, motion, crop_camera, ok, size),
                   heldout_mask(lengths, holdout), [("<frames>", n) for n in lengths])


@torch.no_grad()
def mouth_boxes(face: FaceModel, shape: np.ndarray, motion: np.ndarray, camera: ClipCamera, found: np.ndarray,
                size: int) -> np.ndarray:
    """(T, 4) int64 x0, y0, x1, y1 mouth boxes in the pixels of ``camera``'s ``size`` px images: squares
    of ``MOUTH_BOX_SCALE`` median mouth widths (of the ``found`` frames) on each frame's lips."""
    mouth_px = _projected_landmarks(face, shape, motion, camera)[:, MOUTH]  # (T, 20, 2) crop pixels
    width = np.linalg.norm(mouth_px[:, 0] - mouth_px[:, MOUTH_CORNERS[1] - MOUTH.start], axis=-1)
    half = MOUTH_BOX_SCALE * float(np.median(width[np.asarray(found, bool)])) / 2
    mc = mouth_px.mean(1)
    mouth = np.stack([mc[:, 0] - half, mc[:, 1] - half, mc[:, 0] + half, mc[:, 1] + half], -1)
    return np.clip(np.round(mouth), 0, size).astype(np.int64)


def heldout_mask(lengths: list[int], holdout: float) -> np.ndarray:
    """(sum(lengths),) bool: the last ``holdout`` of each video, by time (at least one frame)."""
    heldout = np.zeros(sum(lengths), bool)
    start = 0
    for n in lengths:
        k = max(1, math.ceil(holdout * n))
        heldout[start + n - k: start + n] = True
        start += n
    return heldout


@torch.no_grad()
def crop_square(motion: np.ndarray, shape: np.ndarray, camera: ClipCamera, found: np.ndarray, face: FaceModel,
                size: int, crop_scale: float) -> tuple[tuple[int, int, int], ClipCamera]:
    """The capture's face-centred square (module docstring) of a video seen by ``camera``, from the
    head-centred motion of its frames (``found`` (T,) bool: those with a tracked face): ((x0, y0,
    side) in video pixels, the camera of the crop resampled to ``size`` px). ``ehead prepare`` crops
    a dataset's frames (``ehead_cli.io.frames``) with it too, so they match an avatar of the video."""
    landmarks = _projected_landmarks(face, shape, motion, camera)  # (T, 68, 2) video pixels
    ok = np.asarray(found, bool)
    box_lo, box_hi = landmarks.min(1), landmarks.max(1)  # (T, 2)
    centre = np.median(((box_lo + box_hi) / 2)[ok], axis=0)
    height = float(np.median((box_hi - box_lo)[ok, 1]))
    H, W = camera.height, camera.width
    side = max(8, min(int(round(crop_scale * height)), H, W))
    # the landmarks span brows to chin: move up to take in the hair, and stay inside the image
    x0 = int(np.clip(round(centre[0] - side / 2), 0, W - side))
    y0 = int(np.clip(round(centre[1] - CROP_RAISE * height - side / 2), 0, H - side))
    return (x0, y0, side), camera.crop(x0, y0, side, size)


def crop_frames(frames: np.ndarray, x0: int, y0: int, side: int, size: int, batch: int = 64) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, size, size, 3) uint8 of the square [x0, x0 + side) x [y0, y0 + side)
    (edge pixels replicated where it reaches outside the image), antialiased bilinear resampling."""
    T, H, W, _ = frames.shape
    out = torch.empty(T, size, size, 3, dtype=torch.uint8)
    pad = (max(0, -x0), max(0, x0 + side - W), max(0, -y0), max(0, y0 + side - H))
    for a in range(0, T, batch):
        x = torch.from_numpy(np.ascontiguousarray(frames[a:a + batch])).permute(0, 3, 1, 2).float()
        if any(pad):
            x = F.pad(x, pad, mode="replicate")
        x = x[:, :, y0 + pad[2]: y0 + pad[2] + side, x0 + pad[0]: x0 + pad[0] + side]
        if side != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[a:a + batch] = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return out


def _projected_landmarks(face: FaceModel, shape: np.ndarray, motion: np.ndarray, camera: ClipCamera,
                         batch: int = 256) -> np.ndarray:
    """(T, 68, 2) pixels of the face model's landmarks of each frame, seen by ``camera``."""
    like = face.vertex_colors
    s = torch.as_tensor(np.asarray(shape, np.float32)[:N_SHAPE], dtype=like.dtype, device=like.device)
    out = []
    for a in range(0, len(motion), batch):
        m = torch.as_tensor(np.asarray(motion[a:a + batch], np.float32), dtype=like.dtype, device=like.device)
        lmk = face.landmarks(face(s, m))  # (t, 68, 3)
        px = camera.project_channels(lmk.reshape(-1, 3).T.double(), camera.height, camera.width)[:2]
        out.append(px.T.reshape(-1, 68, 2).cpu().numpy())
    return np.concatenate(out)
