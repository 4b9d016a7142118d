"""Overall values: per-clip values aggregated over clips by each metric's level under the
convention (``registry.metric_specs``): frame-weighted, a plain mean over clips, or computed once on
all clips' frames pooled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ehead_cli.eval.frame_sets import frame_set_values
from ehead_cli.eval.pairing import LoadedClip
from ehead_cli.eval.registry import (
    DESCRIPTIVE,
    FRAME_SPLITS,
    GROUND_TRUTH,
    PREDICTION,
    MetricSpec,
    Table,
    Value,
    metric_specs,
)
from ehead_cli.eval.report import ClipResult
from ehead_cli.metrics.conventions import Convention, Unavailable


def _aggregate(clips: Sequence[ClipResult], source: str, split: str, key: str, spec: MetricSpec) -> tuple[Value, int]:
    """Overall value of a frame/video/clip-level key (module docstring) and the clips it used."""
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


def _pooled(clips: Sequence[LoadedClip], preds: Sequence[np.ndarray], split: str, names: Sequence[str],
            conv: Convention, sid_fits: dict[str, Mapping[str, np.ndarray]]) -> dict[str, Value]:
    """The pooled metrics on the frames of ``split`` of all clips together. ``sid_fits``: split -> SID
    centres on the pooled ground truth, filled on first use (the same for every source)."""
    segments = [(p[c.masks[split]], c.gt[c.masks[split]], None if c.speaker is None else c.speaker[c.masks[split]])
                for c, p in zip(clips, preds, strict=True) if c.masks[split].any()]
    return frame_set_values(segments, names, conv, split, sid_cache=sid_fits)


def overall_values(results: Sequence[ClipResult], evaluated: Sequence[LoadedClip],
                   predictions: Mapping[str, list[np.ndarray]], loaded: Sequence[LoadedClip], sources: Sequence[str],
                   names: Sequence[str], conv: Convention) -> tuple[Table, dict[str, dict[str, dict[str, int]]]]:
    """source -> split -> key overall values and the number of clips behind each."""
    specs = metric_specs(conv)
    order = {c.clip_id: i for i, c in enumerate(loaded)}
    sid_fits: dict[str, Mapping[str, np.ndarray]] = {}
    overall: Table = {}
    coverage: dict[str, dict[str, dict[str, int]]] = {}
    for source in sources:
        preds = [predictions[source][order[c.clip_id]] for c in evaluated]
        overall[source], coverage[source] = {}, {}
        for split in FRAME_SPLITS:
            values: dict[str, Value] = {}
            counts: dict[str, int] = {}
            pooled_names = [n for n in names if specs[n].level == "pooled" and split in specs[n].splits]
            if source == GROUND_TRUTH:
                pooled_names = [n for n in pooled_names if n in DESCRIPTIVE]
            if evaluated and pooled_names:
                pooled = _pooled(evaluated, preds, split, pooled_names, conv, sid_fits)
                values.update(pooled)
                n_with = sum(1 for c in evaluated if c.masks[split].any())
                counts.update({k: n_with for k in pooled})
            elif pooled_names:
                values.update({k: Unavailable("no clip was evaluated") for n in pooled_names for k in specs[n].keys})
                counts.update({k: 0 for n in pooled_names for k in specs[n].keys})
            for name in names:
                spec = specs[name]
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
                        values[key], counts[key] = _aggregate(results, source, split, key, spec)
            if values:
                overall[source][split] = {k: values[k] for k in _ordered(values, names, specs)}
                coverage[source][split] = counts
    return overall, coverage


def _ordered(values: Mapping[str, Value], names: Sequence[str], specs: Mapping[str, MetricSpec]) -> list[str]:
    return [k for n in names for k in specs[n].keys if k in values]
