"""Seeded K-Means (k-means++ initialisation + Lloyd iterations) in numpy, for the SID metric.

Deterministic for a given seed; float64 throughout. There is deliberately no scikit-learn
dependency: the differences from ``sklearn.cluster.KMeans(n_init=1)`` are the plain (single-trial)
k-means++ seeding and the handling of empty clusters, both documented below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_ITER = 300
TOL = 1e-4  # stop when the summed squared centre shift <= TOL x mean per-dimension data variance


@dataclass(frozen=True)
class KMeansResult:
    """centers (K, D); labels (N,) of the fitted points; inertia = sum of squared distances; n_iter."""

    centers: np.ndarray
    labels: np.ndarray
    inertia: float
    n_iter: int


def squared_distances(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """(N, D), (K, D) -> (N, K) squared Euclidean distances, clipped at 0 against rounding."""
    d = (x * x).sum(1)[:, None] - 2.0 * x @ centers.T + (centers * centers).sum(1)[None, :]
    return np.maximum(d, 0.0)


def assign(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """(N, D) points -> (N,) index of the nearest centre (lowest index on ties)."""
    x = np.asarray(x, dtype=np.float64)
    return squared_distances(x, np.asarray(centers, dtype=np.float64)).argmin(1)


def kmeans_plusplus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): first centre uniform, then each next centre
    drawn with probability proportional to the squared distance to the nearest chosen centre.

    When every point already coincides with a centre (fewer distinct points than ``k``) the remaining
    centres are drawn uniformly; the duplicates simply stay empty clusters.
    """
    n = x.shape[0]
    centers = np.empty((k, x.shape[1]), dtype=np.float64)
    centers[0] = x[rng.integers(n)]
    closest = squared_distances(x, centers[:1])[:, 0]
    for i in range(1, k):
        total = closest.sum()
        idx = rng.choice(n, p=closest / total) if total > 0 else rng.integers(n)
        centers[i] = x[idx]
        closest = np.minimum(closest, squared_distances(x, centers[i : i + 1])[:, 0])
    return centers


def kmeans(x: np.ndarray, k: int, *, seed: int = 0, max_iter: int = MAX_ITER, tol: float = TOL) -> KMeansResult:
    """Fit K-Means to ``x`` (N, D) with ``k`` clusters.

    Lloyd iterations from a seeded k-means++ start; a cluster that loses all its points keeps its
    previous centre (it can win points back later, and an empty cluster costs nothing in SID).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"kmeans needs a non-empty (N, D) array, got shape {x.shape}")
    if k < 1:
        raise ValueError(f"kmeans needs k >= 1, got {k}")
    rng = np.random.default_rng(seed)
    centers = kmeans_plusplus(x, k, rng)
    threshold = tol * float(x.var(0).mean())
    labels = assign(x, centers)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 - n_iter is reported
        new = centers.copy()
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros_like(centers)
        np.add.at(sums, labels, x)
        filled = counts > 0
        new[filled] = sums[filled] / counts[filled, None]
        shift = float(((new - centers) ** 2).sum())
        centers = new
        labels = assign(x, centers)
        if shift <= threshold:
            break
    inertia = float(squared_distances(x, centers)[np.arange(x.shape[0]), labels].sum())
    return KMeansResult(centers, labels, inertia, n_iter)
