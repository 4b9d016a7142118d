"""Pairing predicted and ground-truth motion files by clip id, and aligning their lengths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ehead_cli.errors import ConfigError, InputError
from ehead_cli.io.dataset import MANIFEST, MOTION_SUFFIX, clip_ids, is_dataset, motion_path
from ehead_cli.io.motionfile import Motion, load_motion
from ehead_cli.layout import LENGTH_TOLERANCE_S, LISTEN, SPEAK, tolerance_frames


@dataclass(frozen=True)
class Pairing:
    """pairs: (id, prediction path, ground-truth path) sorted by id; the ids found on one side only."""

    pairs: tuple[tuple[str, Path, Path], ...]
    missing_prediction: tuple[str, ...]
    no_ground_truth: tuple[str, ...]


def motion_files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob(f"*{MOTION_SUFFIX}")) if p.is_file() and not p.name.startswith(".")}


def pair_files(pred_dir: str | Path, gt_dir: str | Path, split: str | None = None) -> Pairing:
    """Match ``pred_dir/<id>.npz`` with the ground truth by name (module docstring, "Pairing")."""
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    if not pred_dir.is_dir():
        raise InputError(f"--pred: {pred_dir} is not a folder")
    if not gt_dir.is_dir():
        raise InputError(f"--gt: {gt_dir} is not a folder")
    preds = motion_files(pred_dir)
    if not preds:
        raise InputError(f"--pred: {pred_dir} holds no {MOTION_SUFFIX} motion files")
    if is_dataset(gt_dir):
        gts = {i: motion_path(gt_dir, i) for i in clip_ids(gt_dir, split, flag="--gt")}
    elif split is not None:
        raise ConfigError(f"--split: {gt_dir} is not a dataset folder (no {MANIFEST}); drop --split or point --gt "
                          "at the dataset")
    else:
        gts = motion_files(gt_dir)
    if not gts:
        raise InputError(f"--gt: {gt_dir} holds no {MOTION_SUFFIX} motion files")
    common = sorted(set(preds) & set(gts))
    if not common:
        raise InputError(f"--pred {pred_dir} and --gt {gt_dir} share no clip name (e.g. {next(iter(preds))}"
                         f"{MOTION_SUFFIX} vs {next(iter(gts))}{MOTION_SUFFIX})")
    return Pairing(tuple((i, preds[i], gts[i]) for i in common),
                   tuple(sorted(set(gts) - set(preds))), tuple(sorted(set(preds) - set(gts))))


class AlignmentError(InputError):
    """Prediction and ground truth differ in length by more than the alignment tolerance."""


def aligned_length(n_pred: int, n_gt: int, fps: float, what: tuple[str, str] = ("prediction", "ground truth")) -> int:
    """The evaluated length of a pair: min(n_pred, n_gt) when they differ by at most
    ``LENGTH_TOLERANCE_S`` x fps frames (12 at 25 fps); else AlignmentError naming both lengths
    (``what`` names the two sides in the message)."""
    tolerance = tolerance_frames(fps)
    if abs(n_pred - n_gt) > tolerance:
        raise AlignmentError(f"{what[0]} has {n_pred} frames, {what[1]} {n_gt}: they differ by more than "
                             f"{tolerance} frames ({LENGTH_TOLERANCE_S} s)")
    n = min(n_pred, n_gt)
    if n < 1:
        raise InputError("the clip has no frames")
    return n


@dataclass
class LoadedClip:
    """A loaded, aligned pair (internal)."""

    clip_id: str
    pred: np.ndarray  # (T, 115) float32, aligned
    gt: np.ndarray  # (T, 115)
    shape: np.ndarray  # (300,) the ground truth's identity
    masks: dict[str, np.ndarray]  # split -> (T,) bool from the ground-truth states
    fps: float
    pred_frames: int
    gt_frames: int
    speaker: np.ndarray | None = None  # (T, 115) the interlocutor, for P-FD


def load_pair(clip_id: str, pred_path: Path, gt_path: Path, speaker_dir: Path | None) -> LoadedClip:
    gt = load_motion(gt_path)
    pred = load_motion(pred_path)
    if pred.fps != gt.fps:
        raise InputError(f"{pred_path}: {pred.fps:g} fps but the ground truth {gt_path} has {gt.fps:g}; "
                         "resample one of them")
    n = aligned_length(pred.n_frames, gt.n_frames, gt.fps)
    speaker = None
    if speaker_dir is not None and (speaker_dir / f"{clip_id}{MOTION_SUFFIX}").is_file():
        sp: Motion = load_motion(speaker_dir / f"{clip_id}{MOTION_SUFFIX}")
        n = aligned_length(sp.n_frames, n, gt.fps, ("the speaker's motion", "the clip"))
        speaker = sp.motion[:n]
    states = gt.states[:n]
    masks = {"all": np.ones(n, dtype=bool), "speaking": states == SPEAK, "listening": states == LISTEN}
    return LoadedClip(clip_id, pred.motion[:n], gt.motion[:n], gt.shape, masks, gt.fps, pred.n_frames, gt.n_frames,
                 speaker)
