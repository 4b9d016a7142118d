"""Overall values: per-clip values aggregated over clips by each metric's level (frame-weighted,
per clip, or pooled over all clips' frames).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ehead_cli.eval.pairing import LoadedClip
from ehead_cli.eval.registry import (
    DESCRIPTIVE,
    FRAME_SPLITS,
    GROUND_TRUTH,
    KEY_SPEC,
    METRICS,
    MIN_DISTRIBUTION_FRAMES,
    PREDICTION,
    Table,
    Value,
)
from ehead_cli.eval.report import ClipResult
from ehead_cli.metrics import listening as listen_metrics
from ehead_cli.metrics.conventions import Convention, Unavailable
from ehead_cli.metrics.jaw import jaw_opening_stats
from ehead_cli.metrics.sid import SID_SEED, sid_centers, speaker_identity_diversity


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


def _pooled(clips: Sequence[LoadedClip], preds: Sequence[np.ndarray], split: str, names: Sequence[str],
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
                sid_fits[split] = sid_centers(gt_all, k=kw.get("k"), seed=kw.get("seed", SID_SEED))
            kw["centers"] = sid_fits[split]
        out.update(speaker_identity_diversity(pred_all, gt_all, **kw))
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


def overall_values(results: Sequence[ClipResult], evaluated: Sequence[LoadedClip],
                   predictions: Mapping[str, list[np.ndarray]], loaded: Sequence[LoadedClip], sources: Sequence[str],
                   names: Sequence[str], conv: Convention) -> tuple[Table, dict[str, dict[str, dict[str, int]]]]:
    """source -> split -> key overall values and the number of clips behind each."""
    order = {c.clip_id: i for i, c in enumerate(loaded)}
    sid_fits: dict[str, dict[str, np.ndarray]] = {}
    overall: Table = {}
    coverage: dict[str, dict[str, dict[str, int]]] = {}
    for source in sources:
        preds = [predictions[source][order[c.clip_id]] for c in evaluated]
        overall[source], coverage[source] = {}, {}
        for split in FRAME_SPLITS:
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
