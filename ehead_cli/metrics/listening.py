"""Listening-head metrics of the mm-listener supplement, section 6 (after Learning to Listen):
L2, Frechet distance (FD), Variation, Diversity, paired FD (P-FD) and L2 Affect.

Every metric works on plain coefficient arrays (frames x dims) and is computed separately for each
coefficient space of a space set (``SPACE_SETS``, ``split_spaces``): the paper's expression and pose
spaces (``expression_pose``), or those of a codebase a ``--convention`` reproduces. Units are those
of the coefficients (FLAME expression coefficients are unitless, poses are radians).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import scipy.linalg

from ehead_cli.layout import EXPR, JAW, MOTION_FPS, ROT
from ehead_cli.metrics.arrays import as_float64
from ehead_cli.metrics.conventions import DEFAULT_SPACES, Convention, Unavailable, resolve_convention

FD_EPS = 1e-6  # added to both covariance diagonals when sqrtm(S1 S2) is not finite (FID reference code)
# Largest |imaginary part| on the diagonal of sqrtm(S1 S2) accepted silently as rounding (the FID
# reference code's atol); above it the real part is still used but a RuntimeWarning is issued.
FD_IMAG_TOL = 1e-3
DIVERSITY_PAIRS = 30
DIVERSITY_SEED = 0
DIVERSITY_SAMPLINGS = ("distinct", "without_replacement")
VARIATION_FORMS = ("mean", "sum", "flat")
AFFECT_WINDOW_S = 1.0

# (T, 115) motion at 25 fps -> (T, A) per-frame affect (e.g. valence/arousal or emotion probabilities)
AffectEstimator = Callable[[np.ndarray], np.ndarray]


def _np2(x: Any, what: str) -> np.ndarray:
    a = as_float64(x)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"{what}: expected a non-empty (frames, dims) array, got shape {a.shape}")
    return a


_EXPR50 = slice(EXPR.start, EXPR.start + 50)  # the 50-coefficient FLAME expression of DualTalk's and DIM's data
# space set -> space name -> the (T, 115) motion slices it reads, side by side. Report keys are <metric>_<space>.
SPACE_SETS: Mapping[str, Mapping[str, tuple[slice, ...]]] = MappingProxyType({
    # mm-listener / L2L: 100 expression coefficients; pose = [head rotation, jaw], L2L's 6-dim pose
    DEFAULT_SPACES: MappingProxyType({"exp": (EXPR,), "pose": (ROT, JAW)}),
    # DualTalk metric/metric.py: exp = pre[:, :50], jaw = pose[:, 3:], head pose = pose[:, :3], each alone
    "dualtalk": MappingProxyType({"exp": (_EXPR50,), "jaw": (JAW,), "rot": (ROT,)}),
    # DIM (Dyadic Interaction Modeling): [pose (6) = EMOCA's global rotation + jaw, 50 expression coefficients]
    "dim": MappingProxyType({"exp": (_EXPR50,), "pose": (ROT, JAW)}),
})
SPACE_UNITS: Mapping[str, str] = MappingProxyType({"exp": "coeff", "pose": "rad", "jaw": "rad", "rot": "rad"})
SPACE_SET_TEXT: Mapping[str, str] = MappingProxyType({
    DEFAULT_SPACES: "exp = the 100 expression coefficients, pose = head rotation + jaw",
    "dualtalk": "exp = the first 50 expression coefficients, jaw = jaw pose, rot = head rotation",
    "dim": "exp = the first 50 expression coefficients, pose = head rotation + jaw",
})


def split_spaces(motion: Any, space_set: str = DEFAULT_SPACES) -> dict[str, np.ndarray]:
    """(T, 115) -> {space name: (T, D_space)} for the spaces of ``space_set`` (``SPACE_SETS``)."""
    if space_set not in SPACE_SETS:
        raise ValueError(f"unknown space set {space_set!r}; choose from {', '.join(SPACE_SETS)}")
    m = _np2(motion, "motion")
    return {name: m[:, parts[0]] if len(parts) == 1 else np.concatenate([m[:, sl] for sl in parts], axis=1)
            for name, parts in SPACE_SETS[space_set].items()}


def expression_pose(motion: Any) -> tuple[np.ndarray, np.ndarray]:
    """(T, 115) -> expression (T, 100) and pose (T, 6) = [head rotation, jaw], as L2L's 6-dim pose."""
    spaces = split_spaces(motion)
    return spaces["exp"], spaces["pose"]


def l2_distance(pred: Any, gt: Any, *, kind: str = "l2") -> float:
    """L2 (mm-listener supp. section 6, "distance to ground truth coefficients"). pred, gt: (T, D).

    l2 (default, L2L's overall_l2): (1/T) sum_t || pred_t - gt_t ||_2
    mse (DualTalk's "mse"):          (1/(T D)) sum_{t,d} (pred_td - gt_td)^2
    """
    p, g = _np2(pred, "L2"), _np2(gt, "L2")
    if p.shape != g.shape:
        raise ValueError(f"L2: prediction {p.shape} and ground truth {g.shape} differ; align lengths first")
    if kind == "l2":
        return float(np.linalg.norm(p - g, axis=1).mean())
    if kind == "mse":
        return float(((p - g) ** 2).mean())
    raise ValueError(f"L2: unknown kind {kind!r} (l2 or mse)")


def gaussian_stats(x: Any) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) samples -> mean (D,) and unbiased covariance (D, D) (np.cov, N - 1), N >= 2."""
    a = _np2(x, "FD")
    if a.shape[0] < 2:
        raise ValueError(f"FD: needs at least 2 frames to estimate a covariance, got {a.shape[0]}")
    return a.mean(0), np.atleast_2d(np.cov(a, rowvar=False))


def frechet_distance_from_stats(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, *,
                                eps: float = FD_EPS, imag_tol: float = FD_IMAG_TOL) -> float:
    """Frechet distance between N(mu1, S1) and N(mu2, S2):

    FD = || mu1 - mu2 ||^2 + tr(S1) + tr(S2) - 2 tr( (S1 S2)^(1/2) )

    The square root is ``scipy.linalg.sqrtm`` (called without the removed ``disp`` argument). Its
    "matrix is singular" LinAlgWarning is silenced, as the FID reference code silenced it with
    ``disp=False``: covariances of fewer frames than dimensions are singular by construction, and the
    result is checked here instead. If it is not finite (near-singular product) both covariances get
    ``eps`` on the diagonal and it is recomputed. Rounding can leave a small imaginary part: the real
    part is used, with a RuntimeWarning when the largest |imag| on the diagonal exceeds ``imag_tol``
    (1e-3). Tiny negative results from rounding are clamped to 0 (FD is a squared distance).
    """
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        residue = float(np.abs(np.diagonal(covmean).imag).max())
        if residue > imag_tol:
            warnings.warn(f"Frechet distance: sqrtm left an imaginary component of {residue:.3g} "
                          f"(> {imag_tol:g}); using the real part", RuntimeWarning, stacklevel=2)
        covmean = covmean.real
    fd = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
    return max(fd, 0.0)


def frechet_distance(pred: Any, gt: Any, **kwargs: Any) -> float:
    """FD (section 6) between the frame distributions of pred (N, D) and gt (M, D), a Gaussian fit to
    each (``gaussian_stats``), then ``frechet_distance_from_stats``."""
    return frechet_distance_from_stats(*gaussian_stats(pred), *gaussian_stats(gt), **kwargs)


def paired_frechet_distance(listener_pred: Any, listener_gt: Any, speaker: Any, **kwargs: Any) -> float:
    """P-FD (section 6): FD between [listener_pred || speaker] and [listener_gt || speaker], all (T, D) frame-aligned,
    concatenated along the feature axis (T, 2D): it rewards listener motion that co-varies with the
    speaker the way the real listener does."""
    lp, lg, s = _np2(listener_pred, "P-FD"), _np2(listener_gt, "P-FD"), _np2(speaker, "P-FD")
    if not (lp.shape[0] == lg.shape[0] == s.shape[0]):
        raise ValueError(f"P-FD: listener and speaker frames differ ({lp.shape[0]}, {lg.shape[0]}, {s.shape[0]})")
    return frechet_distance(np.concatenate([lp, s], 1), np.concatenate([lg, s], 1), **kwargs)


def variation(x: Any, *, form: str = "mean") -> float:
    """Variation (section 6) of (T, D) frames, population variances (ddof 0):

    mean (default, section 6; DualTalk): (1/D) sum_d Var_t(x_td)
    sum  (DIM's calculate_variance):     sum_d Var_t(x_td)
    flat (DIM's printed var_pose / var_exp): Var over all T x D values of x, which also counts the
         spread of the dimensions' means around their common mean
    """
    a = _np2(x, "Variation")
    if form == "mean":
        return float(a.var(0).mean())
    if form == "sum":
        return float(a.var(0).sum())
    if form == "flat":
        return float(a.reshape(-1).var())
    raise ValueError(f"Variation: unknown form {form!r} ({', '.join(VARIATION_FORMS)})")


def min_diversity_frames(*, n_pairs: int = DIVERSITY_PAIRS, sampling: str = "distinct", **_: Any) -> int:
    """The fewest frames ``diversity`` accepts with these keyword arguments (others ignored): 2, or
    n_pairs + 1 when indices are drawn without replacement (DualTalk asserts more frames than pairs)."""
    return n_pairs + 1 if sampling == "without_replacement" else 2


def diversity_if_enough(x: Any, **kwargs: Any) -> float | Unavailable:
    """``diversity(x, **kwargs)``, or ``Unavailable`` naming the frame count it needs."""
    need = min_diversity_frames(**kwargs)
    n = _np2(x, "Diversity").shape[0]
    return diversity(x, **kwargs) if n >= need else Unavailable(f"Diversity needs at least {need} frames, got {n}")


def diversity(x: Any, *, n_pairs: int = DIVERSITY_PAIRS, seed: int = DIVERSITY_SEED,
              sampling: str = "distinct") -> float:
    """Diversity (section 6, after L2L): mean Euclidean distance || x_i - x_j ||_2 over ``n_pairs``
    (30) random frame pairs of (T, D) frames, drawn with ``numpy.random.default_rng(seed)``.

    distinct (default): i uniform over the T frames and j uniform over the other T - 1, so a frame is
        never paired with itself; T >= 2.
    without_replacement (DualTalk's calculate_diversity): i and j are two independent draws of
        ``n_pairs`` distinct frames each (``rng.choice(T, n_pairs, replace=False)``), so i_k == j_k is
        possible; T > n_pairs.
    """
    a = _np2(x, "Diversity")
    t = a.shape[0]
    need = min_diversity_frames(n_pairs=n_pairs, sampling=sampling)
    if t < need:
        raise ValueError(f"Diversity: needs at least {need} frames, got {t}")
    rng = np.random.default_rng(seed)
    if sampling == "distinct":
        i = rng.integers(0, t, n_pairs)
        j = rng.integers(0, t - 1, n_pairs)
        j = j + (j >= i)
    elif sampling == "without_replacement":
        i = rng.choice(t, n_pairs, replace=False)
        j = rng.choice(t, n_pairs, replace=False)
    else:
        raise ValueError(f"Diversity: unknown sampling {sampling!r} ({', '.join(DIVERSITY_SAMPLINGS)})")
    return float(np.linalg.norm(a[i] - a[j], axis=1).mean())


def windowed_mean(x: np.ndarray, window: int) -> np.ndarray:
    """(T, A) -> (T - window + 1, A) means over every window of ``window`` frames (stride 1);
    a single mean over all frames when T < window."""
    if x.shape[0] < window:
        return x.mean(0, keepdims=True)
    c = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, 0)], 0)
    return (c[window:] - c[:-window]) / window


def l2_affect(pred_motion: Any, gt_motion: Any, estimator: AffectEstimator | None = None, *,
              fps: float = MOTION_FPS, window_s: float = AFFECT_WINDOW_S) -> float | Unavailable:
    """L2 Affect (section 6): a_t = estimator(motion) (T, A) for prediction and ground truth; each averaged over
    every 1-second window (sliding by one frame); the mean over windows of || abar_pred - abar_gt ||_2.

    Returns ``Unavailable`` when no estimator is configured (the metric needs an emotion/affect
    recogniser such as EMOCA's, which does not ship with ehead).
    """
    if estimator is None:
        return Unavailable("L2 Affect needs an affect estimator; none is configured")
    p, g = _np2(pred_motion, "L2 Affect"), _np2(gt_motion, "L2 Affect")
    if p.shape != g.shape:
        raise ValueError(f"L2 Affect: prediction {p.shape} and ground truth {g.shape} differ; align lengths first")
    a_p, a_g = _np2(estimator(p), "affect estimator output"), _np2(estimator(g), "affect estimator output")
    if a_p.shape[0] != p.shape[0] or a_p.shape != a_g.shape:
        raise ValueError(f"L2 Affect: the estimator must return one affect row per frame, got {a_p.shape}")
    window = max(1, round(window_s * fps))
    return float(np.linalg.norm(windowed_mean(a_p, window) - windowed_mean(a_g, window), axis=1).mean())


def listening_metrics(pred_motion: Any, gt_motion: Any, speaker_motion: Any = None, *,
                      convention: str | Convention = "paper", affect_estimator: AffectEstimator | None = None,
                      fps: float = MOTION_FPS) -> dict[str, float | Unavailable]:
    """All section-6 metrics of one listener clip (or pooled frames), per space of the convention's
    space set (``_exp``, ``_pose`` for the paper).

    pred_motion, gt_motion: (T, 115) listener motion; speaker_motion: (T, 115) the interlocutor's
    ground truth, needed for P-FD (``Unavailable`` without it). Variation and Diversity describe the
    prediction alone (compare them with the same numbers of the ground truth).
    """
    conv = resolve_convention(convention)
    out: dict[str, float | Unavailable] = {}

    def per_space(metric: str, fn: Callable[..., float | Unavailable], *motions: Any) -> None:
        parts = [split_spaces(m, conv.space_set(metric)) for m in motions]
        for space in parts[0]:
            out[f"{metric}_{space}"] = fn(*(p[space] for p in parts))

    per_space("l2", lambda p, g: l2_distance(p, g, **conv.kwargs("l2")), pred_motion, gt_motion)
    per_space("fd", frechet_distance, pred_motion, gt_motion)
    per_space("variation", lambda p: variation(p, **conv.kwargs("variation")), pred_motion)
    per_space("diversity", lambda p: diversity_if_enough(p, **conv.kwargs("diversity")), pred_motion)
    if speaker_motion is None:
        per_space("pfd", lambda p: Unavailable("P-FD needs the speaker's motion"), pred_motion)
    else:
        per_space("pfd", paired_frechet_distance, pred_motion, gt_motion, speaker_motion)
    out["l2_affect"] = l2_affect(pred_motion, gt_motion, affect_estimator, fps=fps)
    return out
