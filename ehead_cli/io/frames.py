"""A clip's video frames, what Stage II trains on: ``clips/<id>.frames.mp4`` + ``clips/<id>.frames.json``.

The frames are face-centred square crops, ``FRAME_SIZE`` = 256 px (Stage II's image size), one per
motion frame at 25 fps: frame t of the MP4 shows motion frame t. They are H.264 in 4:4:4 chroma at
CRF 12 (``FRAMES_X264``), near-lossless (about 46 dB PSNR against the images encoded, measured on
rendered heads) at about 25 kB per second of video; the yuv420p of ``ehead generate``'s videos loses
3-5 dB more at the colour edges of lips and eyes, exactly where Stage II looks.

The JSON says what they are and marks them complete (written after the MP4):

    {"format": "ehead-frames", "version": 1, "size": S, "n_frames": T,
     "camera": the crop's ClipCamera (head-centred world -> crop pixels; render.clip_camera),
     "crop": {"x0", "y0", "side"} in source-video pixels, or null for rendered frames,
     "source_size": [H, W] of the source video, or null}

``FrameStore`` gives training random access to many clips' frames: a clip is decoded whole on first
use and kept, the least recently used clips dropped beyond a byte budget (``EHEAD_FRAME_CACHE_MB``,
default ``DEFAULT_CACHE_MB``).
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ehead_cli.errors import InputError
from ehead_cli.io.atomic import atomic_path
from ehead_cli.io.dataset import frames_files
from ehead_cli.io.video import iter_frames, write_mp4
from ehead_cli.layout import MOTION_FPS
from ehead_cli.render.clip_camera import ClipCamera

FORMAT = "ehead-frames"
VERSION = 1
FRAME_SIZE = 256  # px: Stage II renders at 256 x 256 (supplementary B.1)
FRAMES_X264 = {"crf": "12", "preset": "veryfast"}
FRAMES_PIXEL_FORMAT = "yuv444p"
DEFAULT_CACHE_MB = 4096
CACHE_ENV = "EHEAD_FRAME_CACHE_MB"


@dataclass(frozen=True)
class FramesInfo:
    """A clip's frames: ``path`` the MP4, ``size`` px square, ``n_frames``, the crop's ``camera``,
    ``crop`` (x0, y0, side) in source pixels or None, ``source_size`` (H, W) or None."""

    path: Path
    size: int
    n_frames: int
    camera: ClipCamera
    crop: tuple[int, int, int] | None = None
    source_size: tuple[int, int] | None = None


def write_frames(root: str | os.PathLike, clip_id: str, frames: Iterable[np.ndarray], camera: ClipCamera,
                 crop: tuple[int, int, int] | None = None, source_size: tuple[int, int] | None = None) -> FramesInfo:
    """Write clip ``clip_id``'s frames ((S, S, 3) uint8 each, streamed) and their JSON into dataset
    folder ``root``, each atomically, the JSON last. ``camera`` must describe S x S images."""
    mp4, meta = frames_files(root, clip_id)
    count = [0, 0]  # frames seen, their side

    def counted():
        for f in frames:
            if f.shape[:2] != (camera.height, camera.width) or f.shape[0] != f.shape[1]:
                raise ValueError(f"frame {count[0]} is {f.shape[1]}x{f.shape[0]}; the frames camera describes "
                                 f"{camera.width}x{camera.height} square images")
            count[0] += 1
            yield f

    write_mp4(mp4, counted(), None, fps=MOTION_FPS, x264=FRAMES_X264, pixel_format=FRAMES_PIXEL_FORMAT)
    info = {"format": FORMAT, "version": VERSION, "size": camera.height, "n_frames": count[0],
            "camera": camera.to_dict(),
            "crop": None if crop is None else dict(zip(("x0", "y0", "side"), map(int, crop), strict=True)),
            "source_size": None if source_size is None else [int(v) for v in source_size]}
    with atomic_path(meta) as tmp:
        tmp.write_text(json.dumps(info, indent=1) + "\n")
    return read_frames_info(root, clip_id)


def read_frames_info(root: str | os.PathLike, clip_id: str) -> FramesInfo | None:
    """The clip's FramesInfo, or None when it has no (finished) frames; InputError for a damaged JSON."""
    mp4, meta = frames_files(root, clip_id)
    if not (mp4.is_file() and meta.is_file()):
        return None
    try:
        d = json.loads(meta.read_text())
        if d.get("format") != FORMAT or d.get("version") != VERSION:
            raise ValueError(f"format {d.get('format')!r} version {d.get('version')!r}")
        crop = d.get("crop")
        info = FramesInfo(mp4, int(d["size"]), int(d["n_frames"]), ClipCamera.from_dict(d["camera"]),
                          None if crop is None else (int(crop["x0"]), int(crop["y0"]), int(crop["side"])),
                          None if d.get("source_size") is None else tuple(int(v) for v in d["source_size"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise InputError(f"{meta}: unreadable frames description ({err})") from None
    if (info.camera.height, info.camera.width) != (info.size, info.size):
        raise InputError(f"{meta}: the camera describes {info.camera.width}x{info.camera.height} images, "
                         f"the frames are {info.size} px")
    return info


def decode_frames(info: FramesInfo) -> np.ndarray:
    """(n_frames, S, S, 3) uint8: the whole MP4, checked against its description."""
    frames = np.stack(list(iter_frames(info.path))) if info.n_frames else np.zeros((0, info.size, info.size, 3),
                                                                                    np.uint8)
    if frames.shape != (info.n_frames, info.size, info.size, 3):
        raise InputError(f"{info.path}: holds {frames.shape[0]} frames of {frames.shape[2]}x{frames.shape[1]}, "
                         f"its description says {info.n_frames} of {info.size}x{info.size}")
    return frames


class FrameStore:
    """Random access to frames of many clips (module docstring): decoded whole, kept under a budget."""

    def __init__(self, budget_mb: float | None = None):
        env = os.environ.get(CACHE_ENV)
        self.budget = int((budget_mb if budget_mb is not None else float(env) if env else DEFAULT_CACHE_MB) * 2**20)
        self._clips: OrderedDict[Path, np.ndarray] = OrderedDict()
        self._bytes = 0

    def take(self, info: FramesInfo, index: np.ndarray) -> np.ndarray:
        """(k, S, S, 3) uint8: frames ``index`` (k,) of the clip."""
        frames = self._clips.get(info.path)
        if frames is None:
            frames = decode_frames(info)
            self._clips[info.path] = frames
            self._bytes += frames.nbytes
            while self._bytes > self.budget and len(self._clips) > 1:
                _, dropped = self._clips.popitem(last=False)
                self._bytes -= dropped.nbytes
        else:
            self._clips.move_to_end(info.path)
        return frames[np.asarray(index, np.int64)]

    def __getstate__(self):  # DataLoader workers start with an empty store of the same budget
        return {"budget": self.budget}

    def __setstate__(self, state):
        self.budget, self._clips, self._bytes = state["budget"], OrderedDict(), 0
