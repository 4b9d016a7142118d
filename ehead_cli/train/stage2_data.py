"""Stage II's data: Stage-I windows with the video frames of some of their real frames
(``FrameWindows`` -> ``FrameBatch``), the clips that have frames, and how far a dataset's labels lie
from the motion statistics of the model being refined (``label_drift``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ehead_cli.errors import InputError
from ehead_cli.io.dataset import Clip
from ehead_cli.io.frames import FramesInfo, FrameStore, read_frames_info
from ehead_cli.layout import GROUPS
from ehead_cli.model.stats import MotionStats
from ehead_cli.model.windows import WindowBatch
from ehead_cli.train.data import WindowDataset

FRAME_STREAM = 2  # the frames' random stream beside the window's (train.data draws from [seed, epoch, index])


@dataclass
class FrameBatch:
    """Stage II's batch: ``window`` (a WindowBatch), ``frames`` (B, K, S, S, 3) uint8 video frames of
    ``index`` (B, K) frames of the window, ``shape`` (B, 300) the clips' identities, ``clip`` (B,) the
    clips' positions in the task's clip list (which renderer and camera)."""

    window: WindowBatch
    frames: torch.Tensor
    index: torch.Tensor
    shape: torch.Tensor
    clip: torch.Tensor

    def to(self, device, non_blocking: bool = False) -> FrameBatch:
        return FrameBatch(self.window.to(device, non_blocking), *(t.to(device, non_blocking=non_blocking)
                                                                   for t in (self.frames, self.index, self.shape,
                                                                             self.clip)))

    def __len__(self) -> int:
        return len(self.window)

    @staticmethod
    def collate(items: list[FrameBatch]) -> FrameBatch:
        return FrameBatch(WindowBatch.collate([it.window for it in items]),
                          *(torch.stack([getattr(it, f) for it in items]) for f in ("frames", "index", "shape",
                                                                                    "clip")))


class FrameWindows(Dataset):
    """``windows`` with the video frames of ``k`` of each window's real frames, drawn (without
    replacement when the window has k real frames) as a fixed function of (seed, epoch, index).
    Items name their clip by ``offset`` + its position in ``windows.clips``."""

    def __init__(self, windows: WindowDataset, frames: list[FramesInfo], k: int, seed: int,
                 store: FrameStore | None = None, offset: int = 0):
        self.windows, self.frames, self.k, self.seed, self.offset = windows, frames, k, seed, offset
        self.store = store or FrameStore()
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.windows)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.windows.set_epoch(epoch)

    def repeat_to(self, n: int) -> int:
        return self.windows.repeat_to(n)

    def __getitem__(self, index: int) -> FrameBatch:
        window, ci, s = self.windows.window_at(index)
        n = int(window.mask.sum())
        rng = np.random.default_rng([self.seed, self.epoch, index, FRAME_STREAM])
        pick = np.sort(rng.choice(n, size=self.k, replace=n < self.k))  # (k,) frames of the window
        clip = self.windows.clips[ci]
        return FrameBatch(window, torch.from_numpy(self.store.take(self.frames[ci], s + pick)),
                          torch.from_numpy(pick.astype(np.int64)), torch.from_numpy(clip.shape.astype(np.float32)),
                          torch.tensor(self.offset + ci))


DRIFT_WARN = 10.0  # a group's mean |z| beyond this: the labels are not the data the model was trained on


def label_drift(clips: list[Clip], stats: MotionStats) -> dict[str, float]:
    """Per motion group, the mean |z| of the clips' labels under the model's statistics (about 0.8 on
    the data the statistics came from): how far the labels lie from what the model was trained on."""
    mean, std = np.asarray(stats.mean, np.float64), np.asarray(stats.std, np.float64)
    z = np.abs((np.concatenate([c.motion for c in clips]).astype(np.float64) - mean) / std)
    return {g: float(z[:, sl].mean()) for g, sl in GROUPS.items()}


def clips_with_frames(data: Path, index, console) -> tuple[list[Clip], list[Clip], dict[str, FramesInfo]]:
    """The train and val clips that have frames covering their motion, and the frames; InputError
    (naming the fix) when no training clip has any."""
    frames, kept = {}, {"train": [], "val": []}
    without = []
    for split in ("train", "val"):
        for c in index.split(split):
            info = read_frames_info(data, c.id)
            if info is None:
                without.append(c.id)
                continue
            if info.n_frames < c.n_frames:
                raise InputError(f"{info.path}: {info.n_frames} frames for the {c.n_frames} motion frames of clip "
                                 f"{c.id}; prepare the clip again")
            frames[c.id] = info
            kept[split].append(c)
    if not kept["train"]:
        raise InputError(f"{data}: no training clip has video frames (clips/<id>.frames.mp4); Stage II trains on them: "
                         f"prepare the videos again with `ehead prepare VIDEOS --out {data}` (frames are kept unless "
                         f"--no-frames), or for the synthetic data build `python -m ehead_cli.sampledata "
                         f"--tracker-bias --from sample_data --out DIR`")
    if without and console is not None:
        console.print(f"note: {len(without)} clip(s) have no frames and are left out: {', '.join(without[:5])}",
                      highlight=False)
    sizes = {f.size for f in frames.values()}
    if len(sizes) > 1:
        raise InputError(f"{data}: frames of several sizes ({', '.join(map(str, sorted(sizes)))} px)")
    return kept["train"], kept["val"], frames
