"""The distribution metrics of ``ehead eval`` on one set of frames: SID, jaw opening, L2, FD, P-FD,
Variation and Diversity of a prediction against its ground truth (and the speaker's motion).

One function serves both ways a metric can be aggregated (``registry.MetricSpec.level``): per clip
(``compute`` passes one clip's frames of a split; the overall value then averages the clips) and
pooled (``aggregate`` passes every clip's frames of the split, concatenated once here). Which way a
metric goes, its splits and its coefficient spaces come from the convention (``metric_specs``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ehead_cli.eval.registry import MIN_DISTRIBUTION_FRAMES, Value, metric_specs
from ehead_cli.metrics import listening as listen_metrics
from ehead_cli.metrics.conventions import Convention, Unavailable
from ehead_cli.metrics.jaw import jaw_opening_stats
from ehead_cli.metrics.sid import SID_SEED, sid_centers, speaker_identity_diversity

SET_METRICS = ("sid", "jaw", "l2", "fd", "pfd", "variation", "diversity")

# one clip's frames of a set: prediction (n, 115), ground truth (n, 115), the speaker (n, 115) or None
Segment = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


def frame_set_values(segments: Sequence[Segment], names: Sequence[str], conv: Convention, what: str, *,
                     sid_cache: dict[str, Mapping[str, np.ndarray]] | None = None) -> dict[str, Value]:
    """Values of the metrics ``names`` (among ``SET_METRICS``) on the frames of ``segments`` pooled.

    ``what`` names the set in Unavailable reasons (the split, e.g. "listening"). ``sid_cache``: SID
    centres fitted on the ground truth, keyed by ``what`` and filled on first use, so that every
    source of a pooled split is scored against the same clusters.
    """
    specs = metric_specs(conv)
    if not segments:
        return {k: Unavailable(f"no {what} frames") for n in names for k in specs[n].keys}
    pred = np.concatenate([p for p, _, _ in segments])  # (N, 115)
    gt = np.concatenate([g for _, g, _ in segments])
    few = Unavailable(f"needs at least {MIN_DISTRIBUTION_FRAMES} {what} frames")
    enough = len(gt) >= MIN_DISTRIBUTION_FRAMES
    out: dict[str, Value] = {}

    def per_space(metric: str, score: Callable[..., Value], *motions: np.ndarray) -> None:
        parts = [listen_metrics.split_spaces(m, conv.space_set(metric)) for m in motions]
        out.update({f"{metric}_{space}": score(*(p[space] for p in parts)) for space in parts[0]})

    if "sid" in names:
        kw = conv.kwargs("sid")
        if kw.get("fit_on", "gt") == "gt" and sid_cache is not None:
            if what not in sid_cache:
                sid_cache[what] = sid_centers(gt, k=kw.get("k"), seed=kw.get("seed", SID_SEED))
            kw["centers"] = sid_cache[what]
        out.update(speaker_identity_diversity(pred, gt, **kw))
    if "jaw" in names:
        out.update(jaw_opening_stats(pred, gt))
    if "l2" in names:
        kw = conv.kwargs("l2")
        per_space("l2", lambda p, g: listen_metrics.l2_distance(p, g, **kw), pred, gt)
    if "fd" in names:
        per_space("fd", lambda p, g: listen_metrics.frechet_distance(p, g) if enough else few, pred, gt)
    if "variation" in names:
        kw = conv.kwargs("variation")
        per_space("variation", lambda p: listen_metrics.variation(p, **kw) if enough else few, pred)
    if "diversity" in names:
        kw = conv.kwargs("diversity")
        per_space("diversity", lambda p: listen_metrics.diversity_if_enough(p, **kw) if enough else few, pred)
    if "pfd" in names:
        out.update(_paired(segments, specs["pfd"].keys, conv, what))
    return out


def _paired(segments: Sequence[Segment], keys: Sequence[str], conv: Convention, what: str) -> dict[str, Any]:
    """P-FD on the segments that have the speaker's motion (the others cannot pair)."""
    with_speaker = [(p, g, s) for p, g, s in segments if s is not None]
    if not with_speaker:
        missing = Unavailable("P-FD needs the speaker's motion: pass --speaker DIR (speaker_dir in the API)")
        return {k: missing for k in keys}
    if sum(len(g) for _, g, _ in with_speaker) < MIN_DISTRIBUTION_FRAMES:
        return {k: Unavailable(f"needs at least {MIN_DISTRIBUTION_FRAMES} {what} frames") for k in keys}
    parts = [listen_metrics.split_spaces(np.concatenate(x), conv.space_set("pfd")) for x in zip(*with_speaker,
                                                                                                strict=True)]
    return {f"pfd_{space}": listen_metrics.paired_frechet_distance(*(p[space] for p in parts)) for space in parts[0]}
