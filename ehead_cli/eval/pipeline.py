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
``LENGTH_TOLERANCE_S`` (0.5 s = 12 frames at 25 fps) both are cut to the shorter (the end of a clip
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
frames only; every other metric on all three splits. A ``convention`` that reproduces another
codebase may change a metric's level, splits and coefficient spaces (its protocol, see
``ehead_cli.metrics.conventions``): DualTalk, for one, averages per-clip FD, P-FD, SID and MSE
plainly over clips, on all frames. ``report.json`` lists the level and splits each metric used.

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

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ehead_cli.devices import resolve_device
from ehead_cli.errors import EheadError, InputError
from ehead_cli.eval.aggregate import overall_values
from ehead_cli.eval.compute import add_image_values, evaluate_clip
from ehead_cli.eval.pairing import AlignmentError, LoadedClip, load_pair, pair_files
from ehead_cli.eval.registry import (
    BASELINE_PREFIX,
    DESCRIPTIVE,
    FRAME_SPLITS,
    GROUND_TRUTH,
    PREDICTION,
    VERTEX_METRICS,
    metric_units,
    parse_baselines,
    parse_metrics,
)
from ehead_cli.eval.report import ClipProblem, ClipResult, EvalReport
from ehead_cli.eval.write import MAX_CLIP_PLOTS, write_reports
from ehead_cli.face.base import FaceModel
from ehead_cli.io.dataset import MANIFEST
from ehead_cli.metrics import image as image_metrics
from ehead_cli.metrics.baselines import baseline_motion
from ehead_cli.metrics.conventions import Convention, Unavailable, resolve_convention


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
    # clips on one side only are not evaluated but are no failure either: a few predictions are
    # routinely scored against a whole dataset
    unpaired = {"no prediction": pairing.missing_prediction, "no ground truth": pairing.no_ground_truth}
    problems: list[ClipProblem] = []

    loaded: list[LoadedClip] = []
    for clip_id, pred_path, gt_path in pairing.pairs:
        if not gt_path.is_file():  # a dataset manifest lists a clip whose file is gone
            problems.append(ClipProblem(clip_id, "missing ground truth", f"{gt_path} is listed in {MANIFEST} "
                                        "but does not exist"))
            continue
        try:
            loaded.append(load_pair(clip_id, pred_path, gt_path, speaker_path))
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
        predictions[BASELINE_PREFIX + kind] = baseline_motion(kind, gts) if gts else []
    if GROUND_TRUTH in sources:
        predictions[GROUND_TRUTH] = gts

    image_names = [n for n in ("psnr", "ssim", "lpips") if n in names]
    if "lpips" in image_names and image_dirs is not None and lpips_model is None:
        lpips_model = image_metrics.load_lpips()
    if lpips_model is not None and not isinstance(lpips_model, Unavailable):
        lpips_model = lpips_model.to(resolve_device(device))

    results: list[ClipResult] = []
    evaluated: list[LoadedClip] = []
    plot_data: dict[str, dict[str, Any]] = {}
    for index, clip in enumerate(loaded):
        if progress is not None:
            progress(f"evaluating {clip.clip_id} ({clip.gt.shape[0]} frames)")
        try:
            with_plot = clip.clip_id in plot_ids
            result, plot = evaluate_clip(clip, {s: predictions[s][index] for s in sources},
                                          face if vertex_needed or with_plot else None, names, conv,
                                          affect_estimator, with_plot=with_plot)
            if image_names:
                problem = add_image_values(result, clip, image_names, image_dirs, lpips_model)
                if problem is not None:
                    problems.append(problem)
        except (EheadError, ValueError) as err:
            problems.append(ClipProblem(clip.clip_id, "failed", f"{clip.clip_id}: {err}"))
            continue
        results.append(result)
        evaluated.append(clip)
        if plot is not None:
            plot_data[clip.clip_id] = plot

    overall, coverage = overall_values(results, evaluated, predictions, loaded, sources, names, conv)
    frames = {s: int(sum(r.frames[s] for r in results)) for s in FRAME_SPLITS}
    report = EvalReport(str(pred_dir), str(gt_dir), split, conv, names, sources,
                        face.name if face is not None else "none", results, problems, overall, coverage, frames,
                        units, unpaired=unpaired)
    if out_dir is not None and results:  # a report of no clip would read like a result
        write_reports(report, out_dir, plot_data)
    return report
