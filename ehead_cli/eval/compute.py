"""Per-clip values: every selected metric of every source (the prediction, baselines, the ground
truth's descriptive values) on one aligned clip, split into all / speaking / listening frames. Which
metrics are per clip, and on which splits, is the convention's protocol (``registry.metric_specs``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ehead_cli.errors import InputError
from ehead_cli.eval.frame_sets import SET_METRICS, frame_set_values
from ehead_cli.eval.images import VIDEO_SUFFIX, video_metrics
from ehead_cli.eval.pairing import AlignmentError, LoadedClip
from ehead_cli.eval.registry import DESCRIPTIVE, FRAME_SPLITS, GROUND_TRUTH, PREDICTION, MetricSpec, Value, metric_specs
from ehead_cli.eval.report import ClipProblem, ClipResult
from ehead_cli.face.base import FaceModel
from ehead_cli.io.dataset import FRAMES_SUFFIX
from ehead_cli.layout import LISTEN, SPEAK
from ehead_cli.metrics import listening as listen_metrics
from ehead_cli.metrics.beat import beat_alignment
from ehead_cli.metrics.clip import geometry_metrics
from ehead_cli.metrics.conventions import Convention, Unavailable
from ehead_cli.metrics.jaw import jaw_degrees
from ehead_cli.metrics.vertex import VERTEX_METRICS, MetricGeometry, fdd_template_upper, metric_geometry


def _set_values(clip: LoadedClip, pred: np.ndarray, split: str, names: Sequence[str], conv: Convention,
                specs: dict[str, MetricSpec]) -> dict[str, Value]:
    """The per-clip distribution metrics (``frame_sets``) of ``split``: those whose level is not pooled."""
    wanted = [n for n in names if n in SET_METRICS and specs[n].level != "pooled" and split in specs[n].splits]
    if not wanted:
        return {}
    mask = clip.masks[split]
    speaker = clip.speaker[mask] if clip.speaker is not None else None
    return frame_set_values([(pred[mask], clip.gt[mask], speaker)], wanted, conv, split)


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
    specs = metric_specs(conv)
    out: dict[str, dict[str, Value]] = {}
    for split in FRAME_SPLITS:
        mask = clip.masks[split]
        if not mask.any():
            continue
        values: dict[str, Value] = {}
        vertex = [n for n in VERTEX_METRICS if n in names and split in specs[n].splits]
        if vertex and geo is not None and pred_geo is not None:
            values.update(geometry_metrics(
                pred_geo, geo.gt, pred, clip.gt, convention=conv, fps=clip.fps, frames=mask,
                template_upper=geo.template_upper, metrics=vertex))
        if "ba" in names and split in specs["ba"].splits:
            values["ba"] = (beat_alignment(pred, clip.gt, fps=clip.fps, frames=mask, **conv.kwargs("ba"))
                            if clip.gt.shape[0] >= 2 else Unavailable("BA needs at least 2 frames"))
        values.update(_set_values(clip, pred, split, names, conv, specs))
        if "l2_affect" in names and split in specs["l2_affect"].splits:
            values["l2_affect"] = listen_metrics.l2_affect(pred[mask], clip.gt[mask], affect_estimator, fps=clip.fps)
        out[split] = values
    return out


def _reference_values(clip: LoadedClip, names: Sequence[str], conv: Convention) -> dict[str, dict[str, Value]]:
    """The ground truth's own per-clip descriptive values (Variation, Diversity; SID where per clip)."""
    specs = metric_specs(conv)
    wanted = [n for n in names if n in DESCRIPTIVE]
    out: dict[str, dict[str, Value]] = {}
    for split in FRAME_SPLITS:
        if clip.masks[split].any():
            values = _set_values(clip, clip.gt, split, wanted, conv, specs)
            if values:
                out[split] = values
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
            result.values[source] = _reference_values(clip, names, conv)
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
        mark(Unavailable("no videos given: pass --pred-video DIR --gt-video DIR (image_dirs in the API)"))
        return None
    pred_video = Path(image_dirs[0]) / f"{clip.clip_id}{VIDEO_SUFFIX}"
    gt_video = Path(image_dirs[1]) / f"{clip.clip_id}{VIDEO_SUFFIX}"
    if not gt_video.is_file() and (Path(image_dirs[1]) / f"{clip.clip_id}{FRAMES_SUFFIX}").is_file():
        gt_video = Path(image_dirs[1]) / f"{clip.clip_id}{FRAMES_SUFFIX}"  # a dataset's clips/: its frames
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
