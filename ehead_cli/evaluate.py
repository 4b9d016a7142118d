"""The evaluation pipeline behind ``ehead eval``: predicted vs. ground-truth motion (and video).

``evaluate`` pairs the files, aligns their lengths, computes the metrics of ``ehead_cli.metrics``
per clip and overall, split into all / speaking / listening frames, optionally for trivial
baselines too, and (with ``out_dir``) writes the reports; ``print_report`` shows the result as rich
tables. The rules below are also written into every ``report.json`` (``RULES``).

Pairing. ``pred_dir/<id>.npz`` goes with ``gt_dir/<id>.npz``; when ``gt_dir`` is a dataset folder
(``manifest.csv`` + ``clips/<id>.npz``, as ``ehead prepare`` writes it) the ground truth is the
manifest's clips, optionally only one ``split``. A file on one side without its partner, a file that does not
load, and a pair that cannot be aligned are listed as problems (never dropped silently); the other
clips are still evaluated and the report's ``exit_code`` is 1.

Alignment. Both files must have the same fps. When their lengths differ by at most
``ALIGN_TOLERANCE_S`` (0.5 s = 12 frames at 25 fps) both are cut to the shorter (the end of a clip
is where encoders pad and trackers drop frames); a larger difference means the prediction belongs
to other audio, and the clip is reported as an error.

Identity. Vertices of both sides are built with the ground truth's ``shape``: LVE/FDD/MOD measure
motion, and a predicted identity (or a method that outputs none) must not count as lip error.

Splits. Frames are split by the GROUND-TRUTH states (+1 speaking, -1 listening), since those say
what the person really did. The paper reports speaking and listening results separately.

Aggregation over clips ("overall"), by the metric's ``level``:
- ``frame``  (LVE, MOD, L2; PSNR/SSIM/LPIPS over video frames): frame-weighted mean of the per-clip
  values, i.e. the mean over all frames of the set, so long clips count in proportion;
- ``clip``   (FDD, BA, Variation, Diversity, L2 Affect: defined on a whole sequence): plain mean
  over clips (each sequence one sample, as CodeTalker averages FDD over sequences);
- ``pooled`` (SID, FD, P-FD: distribution metrics): computed once on the frames of all clips
  pooled (SID: K-Means fitted on the pooled ground truth, as B.2 describes).
A clip whose split has no frames contributes nothing to that split. Listening-family metrics
(L2, FD, Variation, Diversity, P-FD, L2 Affect; mm-listener section 6) are computed on listening
frames only; every other metric on all three splits.

Image metrics. ``image_dirs=(pred_videos, gt_videos)`` with ``<id>.mp4`` in each, decoded frame by
frame with PyAV; each frame is centre-cropped to ``IMAGE_CROP`` x ``IMAGE_CROP`` (256, B.2's face
region; a side that is already smaller is kept whole), RGB in [0, 1]; PSNR, SSIM and LPIPS per
frame. The two videos and the clip's motion are cut to the shortest of the three when they agree
within the alignment tolerance, so video frame t carries the ground-truth state of motion frame t.

Baselines (``baseline``): the same metrics for ``metrics.baseline_motion`` predictions (mean,
still, shuffled) built from the same aligned ground truth; they have no video, so no image
metrics. Metrics that describe a prediction alone (Variation, Diversity, SID) are also reported
for the ground truth itself (source ``ground truth``) as the value to compare with.

Reports (``out_dir``, every file written atomically): ``report.json`` (settings, convention, rules,
units, definitions, problems, overall and per-clip values; Unavailable as {"unavailable": reason},
infinities as strings), ``per_clip.csv`` (one row per clip and source, failed clips with their
message), ``summary.png`` and ``plots/<id>.png`` for the first ``max_plots`` clips.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import pandas as pd
import torch

from ehead_cli.devices import resolve_device
from ehead_cli.errors import ConfigError, EheadError, InputError
from ehead_cli.face.base import FaceModel
from ehead_cli.io.atomic import atomic_path
from ehead_cli.io.dataset import MANIFEST, read_manifest
from ehead_cli.io.motionfile import Motion, load_motion
from ehead_cli.io.video import iter_frames
from ehead_cli.layout import JAW, LISTEN, SPEAK
from ehead_cli.metrics import image as image_metrics
from ehead_cli.metrics import listening as listen_metrics
from ehead_cli.metrics import motion as motion_metrics
from ehead_cli.metrics.conventions import Convention, Unavailable, resolve_convention

# --- rules and file names ---------------------------------------------------------------------
ALIGN_TOLERANCE_S = 0.5  # largest length difference (seconds) that is cut away instead of reported
IMAGE_CROP = 256  # pixels, centre crop side for PSNR / SSIM / LPIPS (B.2)
IMAGE_BATCH = 16  # video frames per metric call
MAX_CLIP_PLOTS = 24  # jaw-opening plots written per report (the first clips in name order)
PRINT_CLIPS = 40  # per-clip rows ``print_report`` shows before pointing at the CSV
MIN_DISTRIBUTION_FRAMES = 2  # Variation, Diversity, FD need at least two frames

SPLITS = ("all", "speaking", "listening")
LISTENING_ONLY = ("listening",)
PREDICTION = "prediction"
GROUND_TRUTH = "ground truth"
BASELINE_PREFIX = "baseline:"

MOTION_SUFFIX = ".npz"
VIDEO_SUFFIX = ".mp4"
CLIPS_DIR = "clips"
REPORT_JSON = "report.json"
PER_CLIP_CSV = "per_clip.csv"
SUMMARY_PNG = "summary.png"
PLOTS_DIR = "plots"

RULES = {
    "pairing": "pred/<id>.npz with gt/<id>.npz (or a dataset folder's clips/<id>.npz from manifest.csv, "
               "optionally one split); unmatched, unreadable and unalignable clips are listed as problems",
    "alignment": f"same fps required; lengths differing by at most {ALIGN_TOLERANCE_S} s are cut to the "
                 "shorter, larger differences are errors",
    "identity": "vertices of prediction and ground truth both use the ground truth's shape (metrics measure "
                "motion, not identity)",
    "head_pose": "LVE, FDD, MOD use vertices with the global head rotation and translation removed",
    "splits": "frames split by the ground-truth states: speaking (+1), listening (-1); listening-family "
              "metrics on listening frames only",
    "aggregation": "frame-level metrics: frame-weighted mean over clips; clip-level metrics: mean over clips; "
                   "pooled metrics: computed once on all clips' frames pooled",
    "images": f"<id>.mp4 pairs, PyAV frame by frame, centre crop {IMAGE_CROP}x{IMAGE_CROP} (smaller sides kept), "
              "RGB in [0, 1], frames aligned with the motion",
    "baselines": "metrics.baseline_motion predictions from the same aligned ground truth (no video)",
}

Value = float | Unavailable
Table = dict[str, dict[str, dict[str, Value]]]  # source -> split -> metric key -> value


# --- the metric registry -----------------------------------------------------------------------
@dataclass(frozen=True)
class MetricSpec:
    """One selectable metric (``--metrics NAME``) and the report columns it fills.

    keys     report columns (``sid`` also gives its three components, listening metrics one per space)
    level    frame | video | clip | pooled: how per-clip values become the overall value (module docstring)
    splits   the frame splits it is computed on
    better   "lower", "higher", or "" (describes the prediction; compare with the ground truth's value)
    """

    name: str
    keys: tuple[str, ...]
    level: str
    splits: tuple[str, ...]
    better: str
    definition: str


def _spaces(name: str) -> tuple[str, str]:
    return (f"{name}_exp", f"{name}_pose")


METRICS: Mapping[str, MetricSpec] = {s.name: s for s in (
    MetricSpec("lve", ("lve",), "frame", SPLITS, "lower",
               "Lip Vertex Error (B.2 eq. 9): mean over frames of the max over lip vertices of the L2 vertex "
               "distance, head pose removed"),
    MetricSpec("fdd", ("fdd",), "clip", SPLITS, "lower",
               "Upper-Face Dynamics Deviation (eqs. 10-11): mean over upper-face vertices of |std_pred - std_gt| "
               "of the displacement from frame 1, head pose removed"),
    MetricSpec("mod", ("mod",), "frame", SPLITS, "lower",
               "Mouth Opening Difference (eq. 12): mean over frames of |d_pred - d_gt|, d = distance of "
               "landmarks 62 and 66, head pose removed"),
    MetricSpec("ba", ("ba",), "clip", SPLITS, "higher",
               "Beat Alignment (eq. 13): symmetric Gaussian (sigma 0.1 s) matching of head angular-speed "
               "peaks above a sliding mean + 0.5 std threshold"),
    MetricSpec("sid", ("sid", "sid_jaw", "sid_exp50", "sid_rot"), "pooled", SPLITS, "higher",
               "Speaker Identity Diversity (eqs. 14-15): entropy (bits) of the predicted frames' K-Means cluster "
               "histogram, K-Means fitted on the ground truth; mean of jaw (K 10), exp50 (K 40), rot (K 10)"),
    MetricSpec("l2", _spaces("l2"), "frame", LISTENING_ONLY, "lower",
               "L2 (mm-listener sec. 6): mean over frames of the Euclidean distance to the ground-truth "
               "coefficients; exp = 100 expression, pose = head rotation + jaw"),
    MetricSpec("fd", _spaces("fd"), "pooled", LISTENING_ONLY, "lower",
               "Frechet distance (sec. 6) between Gaussian fits of predicted and ground-truth frames"),
    MetricSpec("variation", _spaces("variation"), "clip", LISTENING_ONLY, "",
               "Variation (sec. 6): variance over frames, mean over dimensions"),
    MetricSpec("diversity", _spaces("diversity"), "clip", LISTENING_ONLY, "",
               "Diversity (sec. 6): mean distance of 30 seeded random frame pairs within a clip"),
    MetricSpec("pfd", _spaces("pfd"), "pooled", LISTENING_ONLY, "lower",
               "Paired FD (sec. 6): FD of [listener || speaker] concatenations; needs the speaker's motion"),
    MetricSpec("l2_affect", ("l2_affect",), "clip", LISTENING_ONLY, "lower",
               "L2 Affect (sec. 6): L2 of 1-second-averaged affect, sliding; needs an affect estimator"),
    MetricSpec("jaw", ("jaw_r", "jaw_deg"), "pooled", SPLITS, "",
               "Jaw opening (not a paper metric; ehead's check of lip sync and of a closed listening mouth): "
               "jaw_r = Pearson r of the jaw rotation angle |jaw axis-angle| of prediction vs ground truth over "
               "the pooled frames (higher is better); jaw_deg = mean predicted jaw angle in degrees (compare "
               "with the ground truth's)"),
    MetricSpec("psnr", ("psnr",), "video", SPLITS, "higher", "PSNR (dB) per video frame, averaged"),
    MetricSpec("ssim", ("ssim",), "video", SPLITS, "higher",
               "SSIM per video frame (11x11 Gaussian window, sigma 1.5, per RGB channel), averaged"),
    MetricSpec("lpips", ("lpips",), "video", SPLITS, "lower", "LPIPS-VGG v0.1 per video frame, averaged"),
)}
METRIC_GROUPS: Mapping[str, tuple[str, ...]] = {
    "motion": ("lve", "fdd", "mod", "ba", "sid", "jaw"),
    "listening": ("l2", "fd", "variation", "diversity", "pfd", "l2_affect"),
    "image": ("psnr", "ssim", "lpips"),
    "all": tuple(METRICS),
}
VERTEX_METRICS = frozenset(motion_metrics.VERTEX_METRICS)
DESCRIPTIVE = frozenset({"sid", "variation", "diversity", "jaw"})  # also reported for the ground truth itself
KEY_SPEC: Mapping[str, MetricSpec] = {k: s for s in METRICS.values() for k in s.keys}


def parse_metrics(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """``None`` (all), ``"lve,mod"`` or a list of names / groups (motion, listening, image, all) ->
    metric names in registry order. Raises ConfigError naming ``--metrics`` for an unknown name."""
    if spec is None:
        return tuple(METRICS)
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    chosen: set[str] = set()
    for raw in names:
        name = raw.strip().lower().replace("-", "_")
        if not name:
            continue
        if name in METRIC_GROUPS:
            chosen.update(METRIC_GROUPS[name])
        elif name in METRICS:
            chosen.add(name)
        else:
            raise ConfigError(f"--metrics: unknown metric {raw.strip()!r}; choose from "
                              f"{', '.join([*METRICS, *METRIC_GROUPS])}")
    if not chosen:
        raise ConfigError("--metrics: the list is empty")
    return tuple(n for n in METRICS if n in chosen)


def parse_baselines(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """None, ``"mean"``, ``"mean,still"`` or a list -> baseline kinds; ConfigError names ``--baseline``."""
    if spec is None:
        return ()
    kinds = [k.strip() for k in (spec.split(",") if isinstance(spec, str) else spec) if k.strip()]
    for kind in kinds:
        if kind not in motion_metrics.BASELINES:
            raise ConfigError(f"--baseline: unknown baseline {kind!r}; choose from "
                              f"{', '.join(motion_metrics.BASELINES)}")
    return tuple(dict.fromkeys(kinds))


def _length_unit(scale: float) -> str:
    if scale == motion_metrics.MM_PER_M:
        return "mm"
    return "m" if scale == 1.0 else f"m x {scale:g}"


def metric_units(convention: str | Convention = "paper") -> dict[str, str]:
    """Unit of every report column under ``convention``, for a face model in metres (FLAME, built-in).

    Expression coefficients are unitless ("coeff"); pose spaces are radians.
    """
    conv = resolve_convention(convention)
    lve, fdd = conv.kwargs("lve"), conv.kwargs("fdd")
    lve_unit = _length_unit(lve.get("scale", motion_metrics.MM_PER_M))
    if lve.get("squared") and lve.get("frame_reduce", "mean") == "mean":
        lve_unit += "^2"
    fdd_unit = _length_unit(fdd.get("scale", motion_metrics.MM_PER_M))
    if fdd.get("quantity") == "squared_norm":
        fdd_unit += "^2"
    mse = conv.kwargs("l2").get("kind") == "mse"
    units = {
        "lve": lve_unit, "fdd": fdd_unit, "mod": _length_unit(conv.kwargs("mod").get("scale", motion_metrics.MM_PER_M)),
        "ba": "", "l2_exp": "coeff^2" if mse else "coeff", "l2_pose": "rad^2" if mse else "rad",
        "fd_exp": "coeff^2", "fd_pose": "rad^2", "variation_exp": "coeff^2", "variation_pose": "rad^2",
        "diversity_exp": "coeff", "diversity_pose": "rad", "pfd_exp": "coeff^2", "pfd_pose": "rad^2",
        "l2_affect": "affect", "psnr": "dB", "ssim": "", "lpips": "", "jaw_r": "", "jaw_deg": "deg",
    }
    units.update({k: "bits" for k in METRICS["sid"].keys})
    return units


# --- the report ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClipProblem:
    """A clip (or file) that could not be (fully) evaluated. ``kind``: missing prediction, no ground
    truth, missing ground truth, unreadable, length mismatch, failed, bad video, video length mismatch."""

    clip_id: str
    kind: str
    message: str


@dataclass
class ClipResult:
    """One evaluated clip.

    n_frames       motion frames evaluated (after alignment); pred_frames / gt_frames: file lengths
    frames         split -> motion frames in it; video_frames: split -> video frames (empty: no video)
    values         source -> split -> metric key -> value (``PREDICTION``, ``baseline:<kind>``,
                   ``GROUND_TRUTH`` for descriptive metrics)
    """

    clip_id: str
    n_frames: int
    pred_frames: int
    gt_frames: int
    frames: dict[str, int]
    video_frames: dict[str, int] = field(default_factory=dict)
    values: Table = field(default_factory=dict)


@dataclass
class EvalReport:
    """Everything ``evaluate`` found; ``to_dict`` is the JSON report, ``print_report`` the table view.

    overall: source -> split -> key -> value (see the module docstring for the aggregation);
    coverage: source -> split -> key -> number of clips that contributed.
    """

    pred_dir: str
    gt_dir: str
    split: str | None
    convention: Convention
    metrics: tuple[str, ...]
    sources: tuple[str, ...]
    face: str
    clips: list[ClipResult]
    problems: list[ClipProblem]
    overall: Table
    coverage: dict[str, dict[str, dict[str, int]]]
    frames: dict[str, int]
    units: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)

    @property
    def keys(self) -> tuple[str, ...]:
        """The report columns of the selected metrics, in registry order."""
        return tuple(k for name in self.metrics for k in METRICS[name].keys)

    @property
    def failed(self) -> bool:
        """True when any clip or file could not be evaluated, or nothing was."""
        return bool(self.problems) or not self.clips

    @property
    def exit_code(self) -> int:
        """Status for the command line: 0 when every clip was evaluated, else 1."""
        return 1 if self.failed else 0

    def unavailable(self) -> dict[str, str]:
        """Metric key -> reason, for every selected key the prediction has no overall value for."""
        out: dict[str, str] = {}
        for split, values in self.overall.get(PREDICTION, {}).items():
            for key, value in values.items():
                if isinstance(value, Unavailable) and key not in out:
                    out[key] = value.reason if split == key_splits(key)[0] else f"{value.reason} ({split} frames)"
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON report: settings, rules, units, definitions, problems, overall and per-clip values."""
        conv = self.convention
        return {
            "pred_dir": self.pred_dir, "gt_dir": self.gt_dir, "split": self.split,
            "convention": {"name": conv.name, "reproduces": conv.reproduces, "summary": conv.summary,
                           "overrides": {m: dict(kw) for m, kw in conv.overrides.items()}},
            "face_model": self.face,
            "metrics": list(self.metrics),
            "sources": list(self.sources),
            "rules": dict(RULES),
            "units": {k: self.units[k] for k in self.keys},
            "definitions": {name: {"definition": METRICS[name].definition, "keys": list(METRICS[name].keys),
                                   "level": METRICS[name].level, "splits": list(METRICS[name].splits),
                                   "better": METRICS[name].better} for name in self.metrics},
            "frames": self.frames,
            "n_clips": len(self.clips),
            "exit_code": self.exit_code,
            "problems": [{"clip": p.clip_id, "kind": p.kind, "message": p.message} for p in self.problems],
            "overall": _jsonable(self.overall),
            "coverage": self.coverage,
            "clips": [{"clip": c.clip_id, "n_frames": c.n_frames, "pred_frames": c.pred_frames,
                       "gt_frames": c.gt_frames, "frames": c.frames, "video_frames": c.video_frames,
                       "values": _jsonable(c.values)} for c in self.clips],
            "files": self.files,
        }


def key_splits(key: str) -> tuple[str, ...]:
    """The splits a report column is computed on."""
    return KEY_SPEC[key].splits


def _jsonable(x: Any) -> Any:
    """Values -> JSON: Unavailable -> {"unavailable": reason}; +-inf / nan -> "inf" / "-inf" / "nan"."""
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, Unavailable):
        return {"unavailable": x.reason}
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


# --- pairing -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pairing:
    """pairs: (id, prediction path, ground-truth path) sorted by id; the ids found on one side only."""

    pairs: tuple[tuple[str, Path, Path], ...]
    missing_prediction: tuple[str, ...]
    no_ground_truth: tuple[str, ...]


def _motion_files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob(f"*{MOTION_SUFFIX}")) if p.is_file() and not p.name.startswith(".")}


def dataset_clip_ids(dataset: Path, split: str | None = None) -> list[str]:
    """Clip ids of a dataset folder's manifest.csv (all, or one split), in manifest order."""
    table = read_manifest(dataset, flag="--gt")
    if split is not None:
        present = sorted(set(table["split"]))
        table = table[table["split"] == split]
        if table.empty:
            raise InputError(f"--split: {dataset / MANIFEST} has no clip in split {split!r} "
                             f"(it has {', '.join(present)})")
    return [str(i) for i in table["id"]]


def pair_files(pred_dir: str | Path, gt_dir: str | Path, split: str | None = None) -> Pairing:
    """Match ``pred_dir/<id>.npz`` with the ground truth by name (module docstring, "Pairing")."""
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    if not pred_dir.is_dir():
        raise InputError(f"--pred: {pred_dir} is not a folder")
    if not gt_dir.is_dir():
        raise InputError(f"--gt: {gt_dir} is not a folder")
    preds = _motion_files(pred_dir)
    if not preds:
        raise InputError(f"--pred: {pred_dir} holds no {MOTION_SUFFIX} motion files")
    if (gt_dir / MANIFEST).is_file():
        gts = {i: gt_dir / CLIPS_DIR / f"{i}{MOTION_SUFFIX}" for i in dataset_clip_ids(gt_dir, split)}
    elif split is not None:
        raise ConfigError(f"--split: {gt_dir} is not a dataset folder (no {MANIFEST}); drop --split or point --gt "
                          "at the dataset")
    else:
        gts = _motion_files(gt_dir)
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
    ``ALIGN_TOLERANCE_S`` x fps frames (12 at 25 fps); else AlignmentError naming both lengths
    (``what`` names the two sides in the message)."""
    tolerance = int(ALIGN_TOLERANCE_S * fps)
    if abs(n_pred - n_gt) > tolerance:
        raise AlignmentError(f"{what[0]} has {n_pred} frames, {what[1]} {n_gt}: they differ by more than "
                             f"{tolerance} frames ({ALIGN_TOLERANCE_S} s)")
    n = min(n_pred, n_gt)
    if n < 1:
        raise InputError("the clip has no frames")
    return n


# --- videos --------------------------------------------------------------------------------------
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


# --- one clip --------------------------------------------------------------------------------------
@dataclass
class _Clip:
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


def _load_pair(clip_id: str, pred_path: Path, gt_path: Path, speaker_dir: Path | None) -> _Clip:
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
    return _Clip(clip_id, pred.motion[:n], gt.motion[:n], gt.shape, masks, gt.fps, pred.n_frames, gt.n_frames,
                 speaker)


def _listening_values(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, names: Sequence[str],
                      conv: Convention, affect_estimator: Any, fps: float) -> dict[str, Value]:
    """Per-clip listening-family values on the masked frames."""
    out: dict[str, Value] = {}
    p_exp, p_pose = listen_metrics.expression_pose(pred[mask])
    g_exp, g_pose = listen_metrics.expression_pose(gt[mask])
    spaces = {"exp": (p_exp, g_exp), "pose": (p_pose, g_pose)}
    few = Unavailable(f"needs at least {MIN_DISTRIBUTION_FRAMES} listening frames")
    enough = int(mask.sum()) >= MIN_DISTRIBUTION_FRAMES
    for space, (p, g) in spaces.items():
        if "l2" in names:
            out[f"l2_{space}"] = listen_metrics.l2_distance(p, g, **conv.kwargs("l2"))
        if "variation" in names:
            out[f"variation_{space}"] = listen_metrics.variation(p) if enough else few
        if "diversity" in names:
            out[f"diversity_{space}"] = listen_metrics.diversity(p) if enough else few
    if "l2_affect" in names:
        out["l2_affect"] = listen_metrics.l2_affect(pred[mask], gt[mask], affect_estimator, fps=fps)
    return out


@dataclass
class _Geometry:
    """Cache of the ground truth's vertex geometry per clip and the neutral upper face."""

    gt: motion_metrics.MetricGeometry
    template_upper: np.ndarray | None


def _clip_values(clip: _Clip, pred: np.ndarray, geo: _Geometry | None,
                 pred_geo: motion_metrics.MetricGeometry | None, names: Sequence[str], conv: Convention,
                 affect_estimator: Any) -> dict[str, dict[str, Value]]:
    """split -> key -> value of one prediction (model or baseline) for the per-clip metrics.

    ``geo`` / ``pred_geo``: the ground truth's and the prediction's vertex geometry (None when no
    vertex metric is selected)."""
    vertex = [n for n in motion_metrics.VERTEX_METRICS if n in names]
    out: dict[str, dict[str, Value]] = {}
    for split in SPLITS:
        mask = clip.masks[split]
        if not mask.any():
            continue
        values: dict[str, Value] = {}
        if vertex and geo is not None and pred_geo is not None:
            values.update(motion_metrics.geometry_metrics(
                pred_geo, geo.gt, pred, clip.gt, convention=conv, fps=clip.fps, frames=mask,
                template_upper=geo.template_upper, metrics=vertex))
        if "ba" in names:
            values["ba"] = (motion_metrics.beat_alignment(pred, clip.gt, fps=clip.fps, frames=mask, **conv.kwargs("ba"))
                            if clip.gt.shape[0] >= 2 else Unavailable("BA needs at least 2 frames"))
        if split in LISTENING_ONLY:
            values.update(_listening_values(pred, clip.gt, mask, names, conv, affect_estimator, clip.fps))
        out[split] = values
    return out


def _reference_values(clip: _Clip, names: Sequence[str]) -> dict[str, dict[str, Value]]:
    """The ground truth's own Variation and Diversity (per clip, listening frames)."""
    wanted = [n for n in ("variation", "diversity") if n in names]
    out: dict[str, dict[str, Value]] = {}
    for split in LISTENING_ONLY:
        mask = clip.masks[split]
        if wanted and mask.any():
            out[split] = _listening_values(clip.gt, clip.gt, mask, wanted, resolve_convention(None), None, clip.fps)
    return out


# --- overall ---------------------------------------------------------------------------------------
def _aggregate(clips: Sequence[ClipResult], source: str, split: str, key: str) -> tuple[Value, int]:
    """Overall value of a frame/video/clip-level key (module docstring) and the clips it used."""
    spec = KEY_SPEC[key]
    values, weights, reasons = [], [], []
    for c in clips:
        v = c.values.get(source, {}).get(split, {}).get(key)
        if isinstance(v, Unavailable):
            reasons.append(v.reason)
        if not isinstance(v, float):
            continue
        weight = c.video_frames.get(split, 0) if spec.level == "video" else c.frames.get(split, 0)
        if weight > 0:
            values.append(v)
            weights.append(weight)
    if not values:
        reason = reasons[0] if reasons else f"no clip has {split} frames"
        return Unavailable(reason), 0
    if spec.level == "clip":
        return float(np.mean(values)), len(values)
    w = np.asarray(weights, dtype=np.float64)
    return float((np.asarray(values) * w).sum() / w.sum()), len(values)


def _pooled(clips: Sequence[_Clip], preds: Sequence[np.ndarray], split: str, names: Sequence[str],
            conv: Convention, sid_fits: dict[str, dict[str, np.ndarray]]) -> dict[str, Value]:
    """SID, FD and P-FD on the frames of ``split`` of all clips pooled. ``sid_fits``: split -> SID
    centres on the pooled ground truth, filled on first use (the same for every source)."""
    out: dict[str, Value] = {}
    picked = [(c, p[c.masks[split]], c.gt[c.masks[split]]) for c, p in zip(clips, preds, strict=True)
              if c.masks[split].any()]
    if not picked:
        return {k: Unavailable(f"no {split} frames") for n in names for k in METRICS[n].keys}
    pred_all = np.concatenate([p for _, p, _ in picked])
    gt_all = np.concatenate([g for _, _, g in picked])
    if "sid" in names:
        kw = conv.kwargs("sid")
        if kw.get("fit_on", "gt") == "gt":
            if split not in sid_fits:
                sid_fits[split] = motion_metrics.sid_centers(gt_all, k=kw.get("k"),
                                                             seed=kw.get("seed", motion_metrics.SID_SEED))
            kw["centers"] = sid_fits[split]
        out.update(motion_metrics.speaker_identity_diversity(pred_all, gt_all, **kw))
    if "jaw" in names:
        out.update(jaw_opening_stats(pred_all, gt_all))
    few = Unavailable(f"needs at least {MIN_DISTRIBUTION_FRAMES} {split} frames")
    if "fd" in names:
        if len(gt_all) < MIN_DISTRIBUTION_FRAMES:
            out.update({k: few for k in METRICS["fd"].keys})
        else:
            spaces = zip(METRICS["fd"].keys, listen_metrics.expression_pose(pred_all),
                         listen_metrics.expression_pose(gt_all), strict=True)
            out.update({k: listen_metrics.frechet_distance(p, g) for k, p, g in spaces})
    if "pfd" in names:
        with_speaker = [(c, p, g) for c, p, g in picked if c.speaker is not None]
        if not with_speaker:
            missing = Unavailable("P-FD needs the speaker's motion: pass speaker_dir (ehead eval --speaker DIR)")
            out.update({k: missing for k in METRICS["pfd"].keys})
        elif sum(len(g) for _, _, g in with_speaker) < MIN_DISTRIBUTION_FRAMES:
            out.update({k: few for k in METRICS["pfd"].keys})
        else:
            parts = [np.concatenate(x) for x in zip(*[(p, g, c.speaker[c.masks[split]]) for c, p, g in with_speaker],
                                                     strict=True)]
            spaces = zip(METRICS["pfd"].keys, *(listen_metrics.expression_pose(x) for x in parts), strict=True)
            out.update({k: listen_metrics.paired_frechet_distance(lp, lg, sp) for k, lp, lg, sp in spaces})
    return out


# --- the pipeline ----------------------------------------------------------------------------------
def _default_face(device: torch.device) -> FaceModel:
    """FLAME when ``EHEAD_FLAME`` is set, else the built-in procedural head (both in metres)."""
    from ehead_cli.face.loading import load_face_model

    return load_face_model(device=device)


def evaluate(pred_dir: str | Path, gt_dir: str | Path, metrics: str | Sequence[str] | None = None, *,
             convention: str | Convention = "paper", out_dir: str | Path | None = None,
             baseline: str | Sequence[str] | None = None, face: FaceModel | None = None,
             image_dirs: tuple[str | Path, str | Path] | None = None, split: str | None = None,
             speaker_dir: str | Path | None = None, affect_estimator: Callable[[np.ndarray], np.ndarray] | None = None,
             lpips_model: Any = None, device: str | torch.device | None = None,
             max_plots: int = MAX_CLIP_PLOTS, progress: Callable[[str], None] | None = None) -> EvalReport:
    """Evaluate predicted motion against ground truth; see the module docstring for every rule.

    pred_dir, gt_dir   folders of ``<id>.npz`` motion files (gt_dir may be a dataset folder; ``split``
                       then selects train / val / test)
    metrics            names or groups (``parse_metrics``); None = all, unavailable ones reported as such
    convention         ``--convention`` name(s), see ``ehead_cli.metrics.conventions``
    out_dir            write report.json, per_clip.csv, summary.png and plots/<id>.png there
    baseline           None, one of mean / still / shuffled, or several
    face               face model for the vertex metrics (default: ``load_face_model()``, FLAME from
                       EHEAD_FLAME, else the built-in head; FLAME gives numbers comparable with the
                       papers). Its unit must be metres for the mm units to hold.
    image_dirs         (prediction videos, ground-truth videos), ``<id>.mp4`` in each
    speaker_dir        the interlocutor's ``<id>.npz`` motion, for P-FD
    affect_estimator   (T, 115) -> (T, A) affect, for L2 Affect
    lpips_model        a loaded ``LPIPSVGG`` (default: ``load_lpips()`` from EHEAD_VGG / EHEAD_LPIPS)
    device             where the default face model and LPIPS run (default: cuda when available); a
                       ``face`` passed in stays where it is
    progress           called with one line per clip (e.g. a console's print)
    """
    conv = resolve_convention(convention)
    names = parse_metrics(metrics)
    kinds = parse_baselines(baseline)
    units = metric_units(conv)
    pairing = pair_files(pred_dir, gt_dir, split)
    speaker_path = Path(speaker_dir) if speaker_dir is not None else None
    if speaker_path is not None and not speaker_path.is_dir():
        raise InputError(f"--speaker: {speaker_path} is not a folder")
    if image_dirs is not None:
        for flag, folder in zip(("--pred-video", "--gt-video"), image_dirs, strict=True):
            if folder is None or not Path(folder).is_dir():
                raise InputError(f"{flag}: {folder} is not a folder (give both --pred-video and --gt-video)")
    problems = [ClipProblem(i, "missing prediction", f"{Path(pred_dir) / (i + MOTION_SUFFIX)} does not exist")
                for i in pairing.missing_prediction]
    problems += [ClipProblem(i, "no ground truth", f"{Path(pred_dir) / (i + MOTION_SUFFIX)} has no ground truth "
                             f"in {gt_dir}" + (f" (split {split})" if split else "")) for i in pairing.no_ground_truth]

    loaded: list[_Clip] = []
    for clip_id, pred_path, gt_path in pairing.pairs:
        if not gt_path.is_file():  # a dataset manifest lists a clip whose file is gone
            problems.append(ClipProblem(clip_id, "missing ground truth", f"{gt_path} is listed in {MANIFEST} "
                                        "but does not exist"))
            continue
        try:
            loaded.append(_load_pair(clip_id, pred_path, gt_path, speaker_path))
        except AlignmentError as err:
            problems.append(ClipProblem(clip_id, "length mismatch", f"{clip_id}: {err}"))
        except InputError as err:
            problems.append(ClipProblem(clip_id, "unreadable", str(err)))

    plot_ids = {c.clip_id for c in loaded[:max_plots]} if out_dir is not None else set()
    vertex_needed = any(n in VERTEX_METRICS for n in names)
    if (vertex_needed or plot_ids) and face is None and loaded:
        face = _default_face(resolve_device(device))
    sources = (PREDICTION, *(BASELINE_PREFIX + k for k in kinds))
    if any(n in DESCRIPTIVE for n in names):
        sources = (*sources, GROUND_TRUTH)
    gts = [c.gt for c in loaded]
    predictions: dict[str, list[np.ndarray]] = {PREDICTION: [c.pred for c in loaded]}
    for kind in kinds:
        predictions[BASELINE_PREFIX + kind] = motion_metrics.baseline_motion(kind, gts) if gts else []
    if GROUND_TRUTH in sources:
        predictions[GROUND_TRUTH] = gts

    image_names = [n for n in ("psnr", "ssim", "lpips") if n in names]
    if "lpips" in image_names and image_dirs is not None and lpips_model is None:
        lpips_model = image_metrics.load_lpips()
    if lpips_model is not None and not isinstance(lpips_model, Unavailable):
        lpips_model = lpips_model.to(resolve_device(device))

    results: list[ClipResult] = []
    evaluated: list[_Clip] = []
    plot_data: dict[str, dict[str, Any]] = {}
    for index, clip in enumerate(loaded):
        if progress is not None:
            progress(f"evaluating {clip.clip_id} ({clip.gt.shape[0]} frames)")
        try:
            with_plot = clip.clip_id in plot_ids
            result, plot = _evaluate_clip(clip, {s: predictions[s][index] for s in sources},
                                          face if vertex_needed or with_plot else None, names, conv,
                                          affect_estimator, with_plot=with_plot)
            if image_names:
                problem = _add_image_values(result, clip, image_names, image_dirs, lpips_model)
                if problem is not None:
                    problems.append(problem)
        except (EheadError, ValueError) as err:
            problems.append(ClipProblem(clip.clip_id, "failed", f"{clip.clip_id}: {err}"))
            continue
        results.append(result)
        evaluated.append(clip)
        if plot is not None:
            plot_data[clip.clip_id] = plot

    overall, coverage = _overall(results, evaluated, predictions, loaded, sources, names, conv)
    frames = {s: int(sum(r.frames[s] for r in results)) for s in SPLITS}
    report = EvalReport(str(pred_dir), str(gt_dir), split, conv, names, sources,
                        face.name if face is not None else "none", results, problems, overall, coverage, frames,
                        units)
    if out_dir is not None:
        write_reports(report, out_dir, plot_data)
    return report


def jaw_opening_stats(pred: np.ndarray, gt: np.ndarray) -> dict[str, Value]:
    """jaw_r: Pearson r of the jaw angles of (N, 115) prediction and ground truth (Unavailable when
    either is constant); jaw_deg: the prediction's mean jaw angle in degrees."""
    p, g = _jaw_degrees(pred), _jaw_degrees(gt)
    if len(p) < 2 or p.std() < 1e-9 or g.std() < 1e-9:
        r: Value = Unavailable("jaw_r needs jaw angles that vary on both sides")
    else:
        r = float(np.corrcoef(p, g)[0, 1])
    return {"jaw_r": r, "jaw_deg": float(p.mean())}


def _jaw_degrees(motion: np.ndarray) -> np.ndarray:
    """(T, 115) -> (T,) jaw rotation angle in degrees (norm of the axis-angle): how far the jaw opens."""
    return np.degrees(np.linalg.norm(np.asarray(motion, dtype=np.float64)[:, JAW], axis=1))


def _evaluate_clip(clip: _Clip, preds: Mapping[str, np.ndarray], face: FaceModel | None, names: Sequence[str],
                   conv: Convention, affect_estimator: Any, *, with_plot: bool) -> tuple[ClipResult, dict | None]:
    """Per-clip values of every source, and the series of its jaw-opening plot (``with_plot``).

    The ground truth's geometry is built once and shared by every source."""
    geo = None
    if face is not None:
        geo = _Geometry(motion_metrics.metric_geometry(face, clip.shape, clip.gt),
                        motion_metrics.fdd_template_upper(face, clip.shape, conv))
    result = ClipResult(clip.clip_id, clip.gt.shape[0], clip.pred_frames, clip.gt_frames,
                        {s: int(m.sum()) for s, m in clip.masks.items()})
    openings = {GROUND_TRUTH: geo.gt.openings()} if with_plot and geo is not None else {}
    for source, pred in preds.items():
        if source == GROUND_TRUTH:
            result.values[source] = _reference_values(clip, names)
            continue
        pred_geo = motion_metrics.metric_geometry(face, clip.shape, pred) if geo is not None else None
        result.values[source] = _clip_values(clip, pred, geo, pred_geo, names, conv, affect_estimator)
        if openings and pred_geo is not None:
            openings[source] = pred_geo.openings()
    if not openings:
        return result, None
    jaw = {GROUND_TRUTH: _jaw_degrees(clip.gt), **{s: _jaw_degrees(p) for s, p in preds.items() if s != GROUND_TRUTH}}
    return result, {"openings": openings, "jaw": jaw, "states": np.where(clip.masks["speaking"], SPEAK, LISTEN),
                    "fps": clip.fps}


def _add_image_values(result: ClipResult, clip: _Clip, names: Sequence[str],
                      image_dirs: tuple[str | Path, str | Path] | None, lpips_model: Any) -> ClipProblem | None:
    """Fill the clip's image metrics (or their Unavailable reasons); a ClipProblem for a broken video."""
    values = result.values[PREDICTION]

    def mark(why: Unavailable) -> None:
        for split in SPLITS:
            if clip.masks[split].any():
                values.setdefault(split, {}).update({n: why for n in names})

    if image_dirs is None:
        mark(Unavailable("no videos given: pass image_dirs (ehead eval --pred-video DIR --gt-video DIR)"))
        return None
    pred_video = Path(image_dirs[0]) / f"{clip.clip_id}{VIDEO_SUFFIX}"
    gt_video = Path(image_dirs[1]) / f"{clip.clip_id}{VIDEO_SUFFIX}"
    missing = [str(p) for p in (pred_video, gt_video) if not p.is_file()]
    if missing:
        mark(Unavailable(f"no video pair: {', '.join(missing)} missing"))
        return None
    run = [n for n in names if not (n == "lpips" and isinstance(lpips_model, Unavailable))]
    if "lpips" in names and isinstance(lpips_model, Unavailable):
        mark(lpips_model)
    try:
        per_frame, n = video_metrics(pred_video, gt_video, run, lpips_model, clip.gt.shape[0], clip.fps)
    except InputError as err:
        mark(Unavailable(f"video not evaluated: {err}"))
        kind = "video length mismatch" if isinstance(err, AlignmentError) else "bad video"
        return ClipProblem(clip.clip_id, kind, f"{clip.clip_id}: {err}")
    for split in SPLITS:
        mask = clip.masks[split][:n]
        if not mask.any():
            continue
        result.video_frames[split] = int(mask.sum())
        values.setdefault(split, {}).update({k: float(v[mask].mean()) for k, v in per_frame.items()})
    return None


def _overall(results: Sequence[ClipResult], evaluated: Sequence[_Clip], predictions: Mapping[str, list[np.ndarray]],
             loaded: Sequence[_Clip], sources: Sequence[str], names: Sequence[str],
             conv: Convention) -> tuple[Table, dict[str, dict[str, dict[str, int]]]]:
    """source -> split -> key overall values and the number of clips behind each."""
    order = {c.clip_id: i for i, c in enumerate(loaded)}
    sid_fits: dict[str, dict[str, np.ndarray]] = {}
    overall: Table = {}
    coverage: dict[str, dict[str, dict[str, int]]] = {}
    for source in sources:
        preds = [predictions[source][order[c.clip_id]] for c in evaluated]
        overall[source], coverage[source] = {}, {}
        for split in SPLITS:
            values: dict[str, Value] = {}
            counts: dict[str, int] = {}
            pooled_names = [n for n in names if METRICS[n].level == "pooled" and split in METRICS[n].splits]
            if source == GROUND_TRUTH:
                pooled_names = [n for n in pooled_names if n in DESCRIPTIVE]
            if evaluated and pooled_names:
                pooled = _pooled(evaluated, preds, split, pooled_names, conv, sid_fits)
                values.update(pooled)
                n_with = sum(1 for c in evaluated if c.masks[split].any())
                counts.update({k: n_with for k in pooled})
            elif pooled_names:
                values.update({k: Unavailable("no clip was evaluated") for n in pooled_names for k in METRICS[n].keys})
                counts.update({k: 0 for n in pooled_names for k in METRICS[n].keys})
            for name in names:
                spec = METRICS[name]
                if spec.level == "pooled" or split not in spec.splits:
                    continue
                if source == GROUND_TRUTH and name not in DESCRIPTIVE:
                    continue
                if source != PREDICTION and spec.level == "video":
                    continue
                for key in spec.keys:
                    if not results:
                        values[key], counts[key] = Unavailable("no clip was evaluated"), 0
                    else:
                        values[key], counts[key] = _aggregate(results, source, split, key)
            if values:
                overall[source][split] = {k: values[k] for k in _ordered(values, names)}
                coverage[source][split] = counts
    return overall, coverage


def _ordered(values: Mapping[str, Value], names: Sequence[str]) -> list[str]:
    return [k for n in names for k in METRICS[n].keys if k in values]


# --- reports ---------------------------------------------------------------------------------------
def _column(key: str, split: str) -> str:
    return key if split == "all" else f"{key}_{split}"


def per_clip_frame(report: EvalReport) -> pd.DataFrame:
    """One row per (clip, source) with status, frame counts and every per-clip value (``<key>`` for
    all frames, ``<key>_speaking`` / ``<key>_listening``); failed clips get a row with their message."""
    rows = []
    keys = [k for k in report.keys if KEY_SPEC[k].level != "pooled"]
    for c in report.clips:
        for source in report.sources:
            if source not in c.values:
                continue
            row: dict[str, Any] = {"clip": c.clip_id, "source": source, "status": "ok", "frames": c.n_frames,
                                   "pred_frames": c.pred_frames, "gt_frames": c.gt_frames,
                                   "speaking_frames": c.frames["speaking"], "listening_frames": c.frames["listening"]}
            for key in keys:
                for split in key_splits(key):
                    v = c.values[source].get(split, {}).get(key)
                    row[_column(key, split)] = v if isinstance(v, float) else None
            rows.append(row)
    for p in report.problems:
        rows.append({"clip": p.clip_id, "source": PREDICTION, "status": f"{p.kind}: {p.message}"})
    columns = ["clip", "source", "status", "frames", "pred_frames", "gt_frames", "speaking_frames",
               "listening_frames"] + [_column(k, s) for k in keys for s in key_splits(k)]
    return pd.DataFrame(rows, columns=columns)


def write_reports(report: EvalReport, out_dir: str | Path, plot_data: Mapping[str, Mapping[str, Any]] | None = None,
                  ) -> dict[str, str]:
    """Write report.json, per_clip.csv, summary.png and plots/<id>.png into ``out_dir`` (atomically);
    records and returns {kind: path}."""
    from ehead_cli import plots

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out: {out} exists and is not a folder")
    files: dict[str, str] = {}
    with atomic_path(out / PER_CLIP_CSV) as tmp:
        per_clip_frame(report).to_csv(tmp, index=False)
    files["per_clip_csv"] = str(out / PER_CLIP_CSV)
    summary = plots.summary_chart(out / SUMMARY_PNG, report)
    if summary is not None:
        files["summary_png"] = str(summary)
    clip_plots = []
    for clip_id, data in (plot_data or {}).items():
        path = out / PLOTS_DIR / f"{_safe_name(clip_id)}.png"
        plots.jaw_opening_plot(path, clip_id, data["openings"], data["jaw"], data["states"], data["fps"])
        clip_plots.append(str(path))
    if clip_plots:
        files["clip_plots"] = str(out / PLOTS_DIR)
    files["report_json"] = str(out / REPORT_JSON)
    report.files = dict(files)
    with atomic_path(out / REPORT_JSON) as tmp:
        tmp.write_text(json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n")
    return files


def _safe_name(clip_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", clip_id)


# --- console view ----------------------------------------------------------------------------------
def format_value(value: Value | None) -> str:
    """A table cell: 4 significant digits, ``n/a`` for Unavailable, ``-`` for not computed."""
    if value is None:
        return "-"
    if isinstance(value, Unavailable):
        return "n/a"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def _heading(key: str) -> str:
    """The metric key with ↓ (lower is better) or ↑ (higher is better)."""
    return key + {"lower": " ↓", "higher": " ↑"}.get(KEY_SPEC[key].better, "")


def print_report(report: EvalReport, console: Any, *, max_clips: int = PRINT_CLIPS) -> None:
    """Rich tables: overall per split (metric x source), per clip (first ``max_clips``; columns with a
    value), the unavailable metrics with their reasons, and the problems."""
    from rich.table import Table as RichTable

    conv = report.convention
    console.print(f"convention: {conv.name}" + (f" ({conv.reproduces})" if conv.reproduces else "")
                  + f"; face model: {report.face}; clips: {len(report.clips)} evaluated, "
                  f"{len(report.problems)} problem(s); frames: {report.frames['all']} "
                  f"({report.frames['speaking']} speaking, {report.frames['listening']} listening)")
    for split in SPLITS:
        sources = [src for src in report.sources if split in report.overall.get(src, {})]
        rows = [k for k in report.keys if split in key_splits(k)]
        if not sources or not rows:
            continue
        n_clips = sum(1 for c in report.clips if c.frames.get(split))
        table = RichTable(title=f"overall, {split} frames ({report.frames[split]} frames, {n_clips} clips)")
        table.add_column("metric")
        table.add_column("unit")
        for source in sources:
            table.add_column(source, justify="right")
        for key in rows:
            table.add_row(_heading(key), report.units.get(key, ""),
                          *[format_value(report.overall[src][split].get(key)) for src in sources])
        console.print(table)

    keys = [k for k in report.keys if KEY_SPEC[k].level != "pooled"
            and any(isinstance(c.values.get(PREDICTION, {}).get(key_splits(k)[0], {}).get(k), float)
                    for c in report.clips)]
    if report.clips and keys:
        table = RichTable(title=f"per clip ({PREDICTION}; speaking/listening values are in {PER_CLIP_CSV})")
        table.add_column("clip")
        table.add_column("frames", justify="right")
        table.add_column("speak/listen", justify="right")
        for key in keys:
            table.add_column(_heading(key) + ("" if "all" in key_splits(key) else "\n(listening)"), justify="right")
        for c in report.clips[:max_clips]:
            cells = [format_value(c.values.get(PREDICTION, {}).get(key_splits(k)[0], {}).get(k)) for k in keys]
            table.add_row(c.clip_id, str(c.n_frames), f"{c.frames['speaking']}/{c.frames['listening']}", *cells)
        console.print(table)
        if len(report.clips) > max_clips:
            console.print(f"... {len(report.clips) - max_clips} more clips in {PER_CLIP_CSV}")

    unavailable = report.unavailable()
    if unavailable:
        table = RichTable(title="unavailable metrics")
        table.add_column("metric")
        table.add_column("reason")
        for key, reason in unavailable.items():
            table.add_row(key, reason)
        console.print(table)
    if report.problems:
        table = RichTable(title="problems (exit status 1)")
        for col in ("clip", "kind", "message"):
            table.add_column(col)
        for p in report.problems:
            table.add_row(p.clip_id, p.kind, p.message)
        console.print(table)
    for kind, path in report.files.items():
        console.print(f"{kind}: {path}")
