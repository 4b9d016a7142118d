"""VQ-VAE evaluation metrics of the mm-listener supplement, section 7: reconstruction, commitment,
perplexity."""

from __future__ import annotations

from typing import Any

import numpy as np

from ehead_cli.metrics.arrays import as_float64


def reconstruction_error(recon: Any, target: Any, *, kind: str = "l2") -> float:
    """Rec.: distance of the decoded motion to the ground truth, both (T, D) coefficient frames.

    l2 (default): (1/T) sum_t || recon_t - target_t ||_2 (the L2 of section 6);
    mse:          mean over frames and dims of (recon - target)^2.
    """
    r, t = as_float64(recon), as_float64(target)
    if r.shape != t.shape:
        raise ValueError(f"reconstruction: {r.shape} vs {t.shape}")
    if kind == "l2":
        return float(np.linalg.norm((r - t).reshape(r.shape[0], -1), axis=1).mean())
    if kind == "mse":
        return float(((r - t) ** 2).mean())
    raise ValueError(f"reconstruction: unknown kind {kind!r} (l2 or mse)")


def commitment(z_e: Any, z_q: Any) -> float:
    """Commit.: MSE between the encoder output z_e and the quantiser output z_q, any equal shapes:
    mean over all elements of (z_e - z_q)^2 (the unweighted L_commit of supp. eq. 3, per element)."""
    a, b = as_float64(z_e), as_float64(z_q)
    if a.shape != b.shape:
        raise ValueError(f"commitment: {a.shape} vs {b.shape}")
    return float(((a - b) ** 2).mean())


def code_usage(codes: Any, codebook_size: int) -> np.ndarray:
    """(...) integer token ids -> (codebook_size,) usage probabilities p_k = n_k / N."""
    c = as_float64(codes).astype(np.int64).reshape(-1)
    if c.size == 0:
        raise ValueError("perplexity: no tokens")
    if c.min() < 0 or c.max() >= codebook_size:
        raise ValueError(f"perplexity: token ids must lie in [0, {codebook_size})")
    return np.bincount(c, minlength=codebook_size) / c.size


def perplexity(codes: Any, codebook_size: int) -> float:
    """PPL.: exp(H), H = -sum_k p_k ln p_k the entropy (nats) of the token distribution.

    1 when a single token is used, ``codebook_size`` when all are used equally (the usual VQ-VAE
    perplexity; "higher = closer to a uniform use of the codebook").
    """
    p = code_usage(codes, codebook_size)
    nz = p[p > 0]
    return float(np.exp(-(nz * np.log(nz)).sum()))
