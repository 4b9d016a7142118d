"""Per-clip values: every selected metric of every source (the prediction, baselines, the ground
truth's descriptive values) on one aligned clip, split into all / speaking / listening frames.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ehead_cli.errors import InputError
from ehead_cli.eval.images import VIDEO_SUFFIX, video_metrics
from ehead_cli.eval.pairing import AlignmentError, LoadedClip
from ehead_cli.eval.registry import (
    FRAME_SPLITS,
    GROUND_TRUTH,
    LISTENING_ONLY,
    MIN_DISTRIBUTION_FRAMES,
    PREDICTION,
    Value,
)
from ehead_cli.eval.report import ClipProblem, ClipResult
from ehead_cli.face.base import FaceModel
from ehead_cli.layout import LISTEN, SPEAK
from ehead_cli.metrics import listening as listen_metrics
from ehead_cli.metrics.beat import beat_alignment
from ehead_cli.metrics.clip import geometry_metrics
from ehead_cli.metrics.conventions import Convention, Unavailable, resolve_convention
from ehead_cli.metrics.jaw import jaw_degrees
from ehead_cli.metrics.vertex import VERTEX_METRICS, MetricGeometry, fdd_template_upper, metric_geometry


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
class Geometry:
    """Cache of the ground truth's vertex geometry per clip and the neutral upper face."""

    gt: MetricGeometry
    template_upper: np.ndarray | None


def _clip_values(clip: LoadedClip, pred: np.ndarray, geo: Geometry | None,
                 pred_geo: MetricGeometry | None, names: Sequence[str], conv: Convention,
                 affect_estimator: Any) -> dict[str, dict[str, Value]]:
    """split -> key -> value of one prediction (model or baseline) for the per-clip metrics.

    ``geo`` / ``pred_geo``: the ground truth's and the prediction's vertex geometry (None when no
    vertex metric is selected)."""
    vertex = [n for n in VERTEX_METRICS if n in names]
    out: dict[str, dict[str, Value]] = {}
    for split in FRAME_SPLITS:
        mask = clip.masks[split]
        if not mask.any():
            continue
        values: dict[str, Value] = {}
        if vertex and geo is not None and pred_geo is not None:
            values.update(geometry_metrics(
                pred_geo, geo.gt, pred, clip.gt, convention=conv, fps=clip.fps, frames=mask,
                template_upper=geo.template_upper, metrics=vertex))
        if "ba" in names:
            values["ba"] = (beat_alignment(pred, clip.gt, fps=clip.fps, frames=mask, **conv.kwargs("ba"))
                            if clip.gt.shape[0] >= 2 else Unavailable("BA needs at least 2 frames"))
        if split in LISTENING_ONLY:
            values.update(_listening_values(pred, clip.gt, mask, names, conv, affect_estimator, clip.fps))
        out[split] = values
    return out


def _reference_values(clip: LoadedClip, names: Sequence[str]) -> dict[str, dict[str, Value]]:
    """The ground truth's own Variation and Diversity (per clip, listening frames)."""
    wanted = [n for n in ("variation", "diversity") if n in names]
    out: dict[str, dict[str, Value]] = {}
    for split in LISTENING_ONLY:
        mask = clip.masks[split]
        if wanted and mask.any():
            out[split] = _listening_values(clip.gt, clip.gt, mask, wanted, resolve_convention(None), None, clip.fps)
    return out


def evaluate_clip(clip: LoadedClip, preds: Mapping[str, np.ndarray], face: FaceModel | None, names: Sequence[str],
                   conv: Convention, affect_estimator: Any, *, with_plot: bool) -> tuple[ClipResult, dict | None]:
    """Per-clip values of every source, and the series of its jaw-opening plot (``with_plot``).

    The ground truth's geometry is built once and shared by every source."""
    geo = None
    if face is not None:
        geo = Geometry(metric_geometry(face, clip.shape, clip.gt),
                        fdd_template_upper(face, clip.shape, conv))
    result = ClipResult(clip.clip_id, clip.gt.shape[0], clip.pred_frames, clip.gt_frames,
                        {s: int(m.sum()) for s, m in clip.masks.items()})
    openings = {GROUND_TRUTH: geo.gt.openings()} if with_plot and geo is not None else {}
    for source, pred in preds.items():
        if source == GROUND_TRUTH:
            result.values[source] = _reference_values(clip, names)
            continue
        pred_geo = metric_geometry(face, clip.shape, pred) if geo is not None else None
        result.values[source] = _clip_values(clip, pred, geo, pred_geo, names, conv, affect_estimator)
        if openings and pred_geo is not None:
            openings[source] = pred_geo.openings()
    if not openings:
        return result, None
    jaw = {GROUND_TRUTH: jaw_degrees(clip.gt), **{s: jaw_degrees(p) for s, p in preds.items() if s != GROUND_TRUTH}}
    return result, {"openings": openings, "jaw": jaw, "states": np.where(clip.masks["speaking"], SPEAK, LISTEN),
                    "fps": clip.fps}


def add_image_values(result: ClipResult, clip: LoadedClip, names: Sequence[str],
                      image_dirs: tuple[str | Path, str | Path] | None, lpips_model: Any) -> ClipProblem | None:
    """Fill the clip's image metrics (or their Unavailable reasons); a ClipProblem for a broken video."""
    values = result.values[PREDICTION]

    def mark(why: Unavailable) -> None:
        for split in FRAME_SPLITS:
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
    for split in FRAME_SPLITS:
        mask = clip.masks[split][:n]
        if not mask.any():
            continue
        result.video_frames[split] = int(mask.sum())
        values.setdefault(split, {}).update({k: float(v[mask].mean()) for k, v in per_frame.items()})
    return None
