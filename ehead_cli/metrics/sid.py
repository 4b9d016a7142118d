"""Speaker Identity Diversity (SID) of EmbodiedHead supplementary B.2, eqs. 14-15: the entropy
(bits, within [0, log2 K]) of the K-Means cluster histogram of generated coefficients, per group
(jaw, the first 50 expression coefficients, head rotation), averaged over the groups.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ehead_cli.layout import EXPR, JAW, ROT
from ehead_cli.metrics.arrays import as_float64
from ehead_cli.metrics.kmeans import assign, kmeans

SID_EPS = 1e-8
SID_EXPR_DIMS = 50  # "the first 50 dominant dimensions of expression"
# K per group. The paper takes SID from DualTalk [28] without giving K; DualTalk's metric.py uses
# 40 clusters for expression and 10 for jaw and for head pose, so those are the defaults.
SID_K: Mapping[str, int] = {"jaw": 10, "exp50": 40, "rot": 10}
SID_SEED = 0


def sid_features(motion: Any) -> dict[str, np.ndarray]:
    """(N, 115) frames -> the three SID groups: jaw (N, 3), exp50 (N, 50), rot (N, 3)."""
    m = as_float64(motion)
    return {"jaw": m[:, JAW], "exp50": m[:, EXPR][:, :SID_EXPR_DIMS], "rot": m[:, ROT]}


def cluster_entropy(labels: Any, k: int, *, eps: float = SID_EPS) -> float:
    """Eq. 14 in bits: -sum_c p_c log2(p_c + eps), p_c = n_c / N over K clusters.

    Clamped at 0: with eps a one-cluster histogram gives -log2(1 + eps), about -1.4e-8.
    """
    lab = as_float64(labels).astype(np.int64).reshape(-1)
    p = np.bincount(lab, minlength=k)[:k] / max(lab.size, 1)
    return float(max(0.0, -(p * np.log2(p + eps)).sum()))


def sid_component(pred_features: Any, gt_features: Any, k: int, *, fit_on: str = "gt", eps: float = SID_EPS,
                  seed: int = SID_SEED) -> float:
    """SID_k of one group (eq. 14): K-Means with ``k`` clusters fitted (seeded k-means++) on the
    ground-truth frames (N, D), the predicted frames (M, D) assigned, entropy of their histogram.
    ``fit_on="pred"`` swaps the roles (DualTalk's code). Bits, within [0, log2 k]."""
    fit, other = (as_float64(gt_features), as_float64(pred_features))
    if fit_on == "pred":
        fit, other = other, fit
    elif fit_on != "gt":
        raise ValueError(f"SID: unknown fit_on {fit_on!r} (gt or pred)")
    centers = kmeans(fit, k, seed=seed).centers
    return cluster_entropy(assign(other, centers), k, eps=eps)


def _sid_ks(k: int | Mapping[str, int] | None) -> dict[str, int]:
    return dict(SID_K) if k is None else ({g: int(k) for g in SID_K} if isinstance(k, int) else {**SID_K, **k})


def sid_centers(gt_motion: Any, *, k: int | Mapping[str, int] | None = None,
                seed: int = SID_SEED) -> dict[str, np.ndarray]:
    """The K-Means centres SID fits on ground-truth frames (N, 115), per group: fit once, pass as
    ``speaker_identity_diversity(..., centers=...)`` to score several predictions against them."""
    ks, fg = _sid_ks(k), sid_features(gt_motion)
    return {g: kmeans(fg[g], ks[g], seed=seed).centers for g in SID_K}


def speaker_identity_diversity(pred_motion: Any, gt_motion: Any, *, k: int | Mapping[str, int] | None = None,
                               fit_on: str = "gt", eps: float = SID_EPS, seed: int = SID_SEED,
                               centers: Mapping[str, np.ndarray] | None = None) -> dict[str, float]:
    """SID, EmbodiedHead eqs. 14-15: mean of SID_jaw, SID_exp50, SID_rot, in bits.

    pred_motion (M, 115) and gt_motion (N, 115) are pools of frames (one clip, or a whole test set
    concatenated: the paper fits K-Means on "the ground truth feature distribution"). ``k``: one K
    for all groups or a mapping per group; default ``SID_K`` (jaw 10, exp50 40, rot 10).
    ``centers``: ``sid_centers(gt_motion, k=k, seed=seed)`` computed beforehand (``fit_on="gt"`` only).
    Returns {"sid", "sid_jaw", "sid_exp50", "sid_rot"}.
    """
    ks = _sid_ks(k)
    fp, fg = sid_features(pred_motion), sid_features(gt_motion)
    if centers is not None:
        if fit_on != "gt":
            raise ValueError("SID: precomputed centers are fitted on the ground truth (fit_on='gt')")
        out = {f"sid_{g}": cluster_entropy(assign(fp[g], centers[g]), ks[g], eps=eps) for g in SID_K}
    else:
        out = {f"sid_{g}": sid_component(fp[g], fg[g], ks[g], fit_on=fit_on, eps=eps, seed=seed) for g in SID_K}
    out["sid"] = float(np.mean([out[f"sid_{g}"] for g in SID_K]))
    return out
