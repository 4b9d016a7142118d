"""One clip's LVE, FDD, MOD and BA under a ``--convention``: the vertex metrics of
``metrics.vertex`` on head-pose-free geometry and the beat alignment of ``metrics.beat``.

SID is not per clip in the paper: call ``metrics.sid.speaker_identity_diversity`` on pooled frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ehead_cli.face.base import FaceModel
from ehead_cli.layout import MOTION_FPS
from ehead_cli.metrics.arrays import frame_mask
from ehead_cli.metrics.beat import beat_alignment
from ehead_cli.metrics.conventions import Convention, Unavailable, resolve_convention
from ehead_cli.metrics.vertex import (
    VERTEX_METRICS,
    MetricGeometry,
    face_dynamics_deviation,
    fdd_template_upper,
    lip_vertex_error,
    metric_geometry,
    mouth_opening_difference,
)

CLIP_METRICS = (*VERTEX_METRICS, "ba")


def _all_indices(x: np.ndarray) -> np.ndarray:
    return np.arange(x.shape[1])


def geometry_metrics(pred: MetricGeometry, gt: MetricGeometry, pred_motion: Any, gt_motion: Any, *,
                     convention: str | Convention = "paper", fps: float = MOTION_FPS, frames: Any = None,
                     template_upper: Any = None,
                     metrics: Sequence[str] = CLIP_METRICS) -> dict[str, float | Unavailable]:
    """LVE, FDD, MOD (from ``metric_geometry``) and BA (from the motions) of one clip.

    pred_motion, gt_motion (T, 115). ``frames`` restricts every metric to a subset (see each
    function). ``template_upper`` (U, 3): the neutral upper-face vertices, needed only by a
    convention whose FDD uses ``reference="template"``. ``metrics``: the subset of
    lve/fdd/mod/ba to compute. FDD is ``Unavailable`` when its standard deviation (``ddof``) has
    too few frames.
    """
    conv = resolve_convention(convention)
    out: dict[str, float | Unavailable] = {}
    if "lve" in metrics:
        out["lve"] = lip_vertex_error(pred.lips, gt.lips, _all_indices(gt.lips), frames=frames, **conv.kwargs("lve"))
    if "fdd" in metrics:
        fdd_kw = conv.kwargs("fdd")
        if fdd_kw.get("reference") == "template":
            if template_upper is None:
                raise ValueError("FDD: this convention measures from the template; pass template_upper (U, 3)")
            fdd_kw["template"] = template_upper
        ddof = fdd_kw.get("ddof", 0)
        if frame_mask(frames, gt.n_frames).sum() > ddof:
            out["fdd"] = face_dynamics_deviation(pred.upper, gt.upper, _all_indices(gt.upper), frames=frames, **fdd_kw)
        else:
            out["fdd"] = Unavailable(f"FDD with ddof {ddof} needs at least {ddof + 1} frames")
    if "mod" in metrics:
        out["mod"] = mouth_opening_difference(pred.landmarks, gt.landmarks, frames=frames, **conv.kwargs("mod"))
    if "ba" in metrics:
        out["ba"] = beat_alignment(pred_motion, gt_motion, fps=fps, frames=frames, **conv.kwargs("ba"))
    return out


def clip_motion_metrics(face: FaceModel, shape: Any, pred_motion: Any, gt_motion: Any, *,
                        convention: str | Convention = "paper", fps: float = MOTION_FPS,
                        frames: Any = None) -> dict[str, float | Unavailable]:
    """LVE, FDD, MOD (mm for a metre-unit face model) and BA of one clip under a convention.

    shape (300,) is the ground truth's identity, used for both; pred_motion, gt_motion (T, 115).
    ``frames`` restricts every metric to a subset (see each function). SID is not per clip: call
    ``speaker_identity_diversity`` on the pooled frames.
    """
    conv = resolve_convention(convention)
    return geometry_metrics(metric_geometry(face, shape, pred_motion), metric_geometry(face, shape, gt_motion),
                            pred_motion, gt_motion, convention=conv, fps=fps, frames=frames,
                            template_upper=fdd_template_upper(face, shape, conv))
