"""3D motion metrics of EmbodiedHead (supplementary B.2): LVE, FDD, MOD, BA and SID.

LVE, FDD and MOD compare face-model vertices / landmarks of a prediction and its ground truth after
the global head pose has been removed (``motion_to_vertices``); BA compares head-rotation beats; SID
measures the diversity of generated coefficients. The trivial ``--baseline`` predictions live here
too (``baseline_motion``).

Units. Motion is at 25 fps (``layout.MOTION_FPS``). Vertex metrics take a ``scale`` that converts
the face model's length unit to the reported unit: the default ``MM_PER_M`` = 1000 turns metres
(FLAME) into millimetres, so LVE, FDD and MOD are reported in mm. BA is unitless in [0, 1]; SID is
in bits, in [0, log2 K].

All metric functions are pure: they accept numpy arrays or torch tensors and return Python floats
computed in float64. Prediction and ground truth must have the same number of frames (aligning
lengths is the caller's rule).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d, uniform_filter1d
from scipy.signal import argrelextrema

from ehead_cli.errors import ConfigError
from ehead_cli.face.base import MOUTH_LOWER_INNER, MOUTH_UPPER_INNER, FaceModel
from ehead_cli.geometry import geodesic_angle
from ehead_cli.layout import EXPR, JAW, MOTION_DIM, MOTION_FPS, ROT, TRANS
from ehead_cli.metrics.conventions import Convention, resolve_convention
from ehead_cli.metrics.kmeans import assign, kmeans

MM_PER_M = 1000.0  # metres (FLAME) -> millimetres, the unit of the papers' LVE / FDD / MOD tables
LIP_MASK = "lips"
UPPER_FACE_MASK = "upper_face"

# --- BA (eq. 13) ----------------------------------------------------------------------------
BA_SIGMA_S = 0.1  # Gaussian kernel width in seconds (B.2)
# Our dynamic threshold (the paper names one but gives no numbers): a beat is a local maximum of the
# smoothed head angular speed that exceeds mean + BEAT_K x std of the speed in a centred window of
# BEAT_WINDOW_S, and BEAT_MIN_SPEED, below which the head counts as still (tracker jitter).
BEAT_WINDOW_S = 1.0
BEAT_K = 0.5
BEAT_MIN_SPEED = 0.05  # rad/s, about 3 degrees per second
BEAT_SMOOTH_FRAMES = 1.0  # Gaussian sigma (frames) applied to the speed before peak picking
BAILANDO_SMOOTH_FRAMES = 5.0  # Bailando calc_db: gaussian_filter(kinetic_vel, 5)
BA_EMPTY_BOTH = 1.0  # neither sequence has a beat: the beat sets are identical
BA_EMPTY_ONE = 0.0  # only one side has beats: nothing is aligned

# --- SID (eqs. 14-15) -------------------------------------------------------------------------
SID_EPS = 1e-8
SID_EXPR_DIMS = 50  # "the first 50 dominant dimensions of expression"
# K per group. The paper takes SID from DualTalk [28] without giving K; DualTalk's metric.py uses
# 40 clusters for expression and 10 for jaw and for head pose, so those are the defaults.
SID_K: Mapping[str, int] = {"jaw": 10, "exp50": 40, "rot": 10}
SID_SEED = 0

BASELINES = ("mean", "still", "shuffled")


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _same_length(pred: np.ndarray, gt: np.ndarray, what: str) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"{what}: prediction {pred.shape} and ground truth {gt.shape} differ; align lengths first")
    if pred.shape[0] == 0:
        raise ValueError(f"{what}: empty sequence")


def _frame_mask(frames: Any, n: int) -> np.ndarray:
    """None -> all frames; a boolean (T,) mask or integer indices -> boolean (T,) mask."""
    if frames is None:
        return np.ones(n, dtype=bool)
    f = np.asarray(frames.cpu() if isinstance(frames, torch.Tensor) else frames)
    if f.dtype == bool:
        if f.shape != (n,):
            raise ValueError(f"frame mask has shape {f.shape}, expected ({n},)")
        mask = f
    else:
        mask = np.zeros(n, dtype=bool)
        mask[f.astype(np.int64)] = True
    if not mask.any():
        raise ValueError("frame selection is empty")
    return mask


# --- from motion to geometry ------------------------------------------------------------------
def remove_head_pose(motion: torch.Tensor, *, keep_translation: bool = False) -> torch.Tensor:
    """(..., 115) -> copy with the global head rotation (and, by default, translation) set to zero."""
    out = motion.clone()
    out[..., ROT] = 0.0
    if not keep_translation:
        out[..., TRANS] = 0.0
    return out


@torch.no_grad()
def motion_to_vertices(face: FaceModel, shape: Any, motion: Any, *, keep_translation: bool = False) -> torch.Tensor:
    """Face-model vertices for LVE / FDD / MOD: shape (300,), motion (T, 115) -> (T, V, 3).

    B.2 evaluates LVE, FDD and MOD "eliminating the influence of global head rotation", so the
    rotation slice is zeroed before the face model runs. The translation is zeroed too: it is the
    other half of the same rigid head transform, and keeping it would add the head-position error
    to every lip vertex (LVE) and head sway to the upper-face dynamics (FDD), which is exactly the
    global motion B.2 removes to "isolate facial expressions". Jaw, eye poses and expression stay.
    Pass the same ``shape`` (the ground truth's) for prediction and ground truth so that identity
    differences do not count.
    """
    buf = face.vertex_colors
    shape_t = torch.as_tensor(shape, dtype=buf.dtype, device=buf.device).reshape(1, -1)
    motion_t = torch.as_tensor(motion, dtype=buf.dtype, device=buf.device)
    if motion_t.ndim != 2 or motion_t.shape[-1] != MOTION_DIM:
        raise ValueError(f"motion must be (T, {MOTION_DIM}), got {tuple(motion_t.shape)}")
    return face(shape_t, remove_head_pose(motion_t, keep_translation=keep_translation))


@torch.no_grad()
def template_vertices(face: FaceModel, shape: Any) -> torch.Tensor:
    """The neutral template (V, 3): identity ``shape`` with all-zero motion (CodeTalker-style FDD)."""
    buf = face.vertex_colors
    zero = torch.zeros(1, MOTION_DIM, dtype=buf.dtype, device=buf.device)
    return motion_to_vertices(face, shape, zero)[0]


def fdd_template_upper(face: FaceModel, shape: Any, conv: Convention) -> np.ndarray | None:
    """The template's upper-face vertices (U, 3) when the convention's FDD measures from the
    template, else None (FDD then measures from the first frame)."""
    if conv.kwargs("fdd").get("reference") != "template":
        return None
    return template_vertices(face, shape)[face.mask(UPPER_FACE_MASK)].cpu().numpy()


# --- LVE (eq. 9) --------------------------------------------------------------------------------
def lip_errors(pred_vertices: Any, gt_vertices: Any, lip_idx: Any, *, scale: float = MM_PER_M,
               squared: bool = False) -> np.ndarray:
    """Per-frame max lip error, (T, V, 3) x2 -> (T,): max_{i in lips} ||v_pred - v_gt|| x scale
    (or its square when ``squared``)."""
    p, g = _np(pred_vertices), _np(gt_vertices)
    _same_length(p, g, "LVE")
    idx = _np(lip_idx).astype(np.int64)
    d2 = (((p[:, idx] - g[:, idx]) * scale) ** 2).sum(-1)  # (T, |lips|)
    worst = d2.max(-1)
    return worst if squared else np.sqrt(worst)


def lip_vertex_error(pred_vertices: Any, gt_vertices: Any, lip_idx: Any, *, scale: float = MM_PER_M,
                     squared: bool = False, frame_reduce: str = "mean", frames: Any = None) -> float:
    """Lip Vertex Error, EmbodiedHead eq. 9 (from MeshTalk/FaceFormer), in mm by default.

    LVE = (1/T) sum_t max_{i in V_lip} || v_pred[t, i] - v_gt[t, i] ||_2 x scale

    pred_vertices, gt_vertices: (T, V, 3) in the face model's unit (metres for FLAME); lip_idx: (K,)
    vertex indices (``face.mask("lips")``); scale: unit conversion, 1000 = metres -> mm.
    Variants: ``squared`` drops the root (CodeTalker; squared units, m^2 when ``scale`` = 1);
    ``frame_reduce="rms"`` gives sqrt((1/T) sum_t max_i ||.||^2). ``frames``: boolean (T,) mask or
    indices of the frames to average over (e.g. the listening frames).
    """
    per_frame = lip_errors(pred_vertices, gt_vertices, lip_idx, scale=scale, squared=squared or frame_reduce == "rms")
    per_frame = per_frame[_frame_mask(frames, per_frame.shape[0])]
    if frame_reduce == "mean":
        return float(per_frame.mean())
    if frame_reduce == "rms":
        if squared:
            raise ValueError("LVE: frame_reduce='rms' already squares; do not combine it with squared=True")
        return float(np.sqrt(per_frame.mean()))
    raise ValueError(f"LVE: unknown frame_reduce {frame_reduce!r} (mean or rms)")


# --- FDD (eqs. 10-11) -----------------------------------------------------------------------------
def face_dynamics_deviation(pred_vertices: Any, gt_vertices: Any, upper_idx: Any, *, scale: float = MM_PER_M,
                            reference: str = "first", template: Any = None, quantity: str = "vector_std",
                            signed: bool = False, frames: Any = None) -> float:
    """Upper-Face Dynamics Deviation, EmbodiedHead eqs. 10-11 (from CodeTalker), in mm by default.

    m[t, i] = (v[t, i] - v[1, i]) x scale                 displacement from frame 1
    sigma_i = sqrt( (1/T) sum_t || m[t, i] - mean_t m[., i] ||_2^2 )
    FDD     = (1/|V_upper|) sum_{i in V_upper} | sigma_i^pred - sigma_i^gt |

    pred_vertices, gt_vertices: (T, V, 3); upper_idx: (K,) indices (``face.mask("upper_face")``).
    sigma_i of eq. 10 does not depend on the reference frame (a constant offset leaves a standard
    deviation unchanged); the reference matters only for the squared-norm variant.

    The output is in ``scale`` units (mm for FLAME): published tables that follow CodeTalker report
    a different quantity, the std of squared norms in m^2, printed x1e-5 or x1e-7. Variants:
    ``reference="template"`` with ``template`` (V, 3): displacement from the neutral mesh;
    ``quantity="squared_norm"``: sigma_i = std_t ||m[t, i]||^2 (population std, unit scale^2);
    ``signed``: mean_i (sigma_i^gt - sigma_i^pred) without the absolute value (CodeTalker's order).
    ``frames``: frames whose spread is measured (the reference stays the clip's first frame).
    """
    p, g = _np(pred_vertices), _np(gt_vertices)
    _same_length(p, g, "FDD")
    idx = _np(upper_idx).astype(np.int64)
    mask = _frame_mask(frames, p.shape[0])
    if reference == "first":
        ref_p, ref_g = p[:1, idx], g[:1, idx]
    elif reference == "template":
        if template is None:
            raise ValueError("FDD: reference='template' needs the template vertices (V, 3)")
        ref_p = ref_g = _np(template)[None, idx]
    else:
        raise ValueError(f"FDD: unknown reference {reference!r} (first or template)")
    m_p = ((p[:, idx] - ref_p) * scale)[mask]  # (T', K, 3)
    m_g = ((g[:, idx] - ref_g) * scale)[mask]

    def spread(m: np.ndarray) -> np.ndarray:
        if quantity == "vector_std":
            return np.sqrt(((m - m.mean(0, keepdims=True)) ** 2).sum(-1).mean(0))
        if quantity == "squared_norm":
            return (m**2).sum(-1).std(0)
        raise ValueError(f"FDD: unknown quantity {quantity!r} (vector_std or squared_norm)")

    s_p, s_g = spread(m_p), spread(m_g)
    return float((s_g - s_p).mean() if signed else np.abs(s_p - s_g).mean())


# --- MOD (eq. 12) -----------------------------------------------------------------------------
def mouth_openings(landmarks: Any, *, scale: float = MM_PER_M) -> np.ndarray:
    """(T, 68, 3) landmarks -> (T,) d_t = || p[t, 66] - p[t, 62] || x scale (inner lips, 0-based)."""
    lm = _np(landmarks)
    return np.linalg.norm(lm[:, MOUTH_LOWER_INNER] - lm[:, MOUTH_UPPER_INNER], axis=-1) * scale


def mouth_opening_difference(pred_landmarks: Any, gt_landmarks: Any, *, scale: float = MM_PER_M,
                             frames: Any = None) -> float:
    """Mouth Opening Difference, EmbodiedHead eq. 12, in mm by default.

    MOD = (1/T) sum_t | d_t^pred - d_t^gt |,  d_t = || p[t, 66] - p[t, 62] ||_2 x scale

    pred_landmarks, gt_landmarks: (T, 68, 3) from ``face.landmarks`` of head-pose-free vertices.
    ``frames``: boolean mask or indices of the frames to average over.
    """
    d_p, d_g = mouth_openings(pred_landmarks, scale=scale), mouth_openings(gt_landmarks, scale=scale)
    _same_length(d_p, d_g, "MOD")
    return float(np.abs(d_p - d_g)[_frame_mask(frames, d_p.shape[0])].mean())


# --- BA (eq. 13) ------------------------------------------------------------------------------
def head_angular_speed(rotation: Any, fps: float = MOTION_FPS) -> np.ndarray:
    """(T, 3) axis-angle head rotations -> (T-1,) angular speed in rad/s:
    speed[t] = geodesic_angle(R_t, R_{t+1}) x fps, the SO(3) angle between successive frames."""
    r = torch.as_tensor(_np(rotation))
    if r.ndim != 2 or r.shape[-1] != 3 or r.shape[0] < 2:
        raise ValueError(f"head rotation must be (T >= 2, 3), got {tuple(r.shape)}")
    return geodesic_angle(r[:-1], r[1:]).numpy() * fps


def speed_sample_times(n: int, fps: float = MOTION_FPS) -> np.ndarray:
    """Time (s) of speed sample t, which lies between frames t and t+1: (t + 0.5) / fps."""
    return (np.arange(n) + 0.5) / fps


def detect_beats(speed: Any, fps: float = MOTION_FPS, *, detector: str = "dynamic_peaks",
                 window_s: float = BEAT_WINDOW_S, k: float = BEAT_K, min_speed: float = BEAT_MIN_SPEED,
                 smooth_frames: float | None = None) -> np.ndarray:
    """Beat times in seconds from a (N,) head angular speed in rad/s (``head_angular_speed``).

    ``dynamic_peaks`` (default): s = speed smoothed by a Gaussian of ``smooth_frames`` (default 1)
    frames; sample t is a beat when s[t-1] < s[t] >= s[t+1] (interior samples only) and
    s[t] > max(mean_w(s)[t] + k x std_w(s)[t], min_speed), where mean_w / std_w are the mean and
    standard deviation over a centred window of ``window_s`` seconds (1 s; edges reflected),
    k = 0.5 and min_speed = 0.05 rad/s.
    ``bailando_minima``: s smoothed by a Gaussian of 5 frames, beats = strict local minima
    (scipy argrelextrema(np.less)), no threshold, as Bailando's calc_db.
    """
    s = _np(speed).reshape(-1)
    times = speed_sample_times(s.shape[0], fps)
    if detector == "dynamic_peaks":
        sigma = BEAT_SMOOTH_FRAMES if smooth_frames is None else smooth_frames
        if sigma > 0:
            s = gaussian_filter1d(s, sigma, mode="nearest")
        if s.shape[0] < 3:
            return np.empty(0)
        window = max(1, round(window_s * fps))
        mean = uniform_filter1d(s, window, mode="reflect")
        std = np.sqrt(np.maximum(uniform_filter1d(s * s, window, mode="reflect") - mean**2, 0.0))
        threshold = np.maximum(mean + k * std, min_speed)
        mid = slice(1, -1)
        peak = (s[mid] > s[:-2]) & (s[mid] >= s[2:]) & (s[mid] > threshold[mid])
        return times[1:-1][peak]
    if detector == "bailando_minima":
        sigma = BAILANDO_SMOOTH_FRAMES if smooth_frames is None else smooth_frames
        s = gaussian_filter1d(s, sigma) if sigma > 0 else s
        return times[argrelextrema(s, np.less)[0]]
    raise ValueError(f"BA: unknown beat detector {detector!r} (dynamic_peaks or bailando_minima)")


def beat_alignment_score(pred_beats: Any, gt_beats: Any, *, sigma_s: float = BA_SIGMA_S,
                         symmetric: bool = True) -> float:
    """Beat Alignment, EmbodiedHead eq. 13, from beat times in seconds.

    BA = 1/2 [ (1/|Bp|) sum_{b in Bp} exp(-min_{b' in Bg} (b - b')^2 / (2 sigma^2))
             + (1/|Bg|) sum_{b' in Bg} exp(-min_{b in Bp} (b' - b)^2 / (2 sigma^2)) ],  sigma = 0.1 s

    ``symmetric=False`` keeps only the second term (Bailando: average over reference beats).
    Empty sets, which eq. 13 leaves undefined: both empty -> 1.0 (identical, beat-free sequences);
    exactly one empty -> 0.0 (no beat can be matched).
    """
    bp, bg = _np(pred_beats).reshape(-1), _np(gt_beats).reshape(-1)
    if bp.size == 0 and bg.size == 0:
        return BA_EMPTY_BOTH
    if bp.size == 0 or bg.size == 0:
        return BA_EMPTY_ONE
    gap2 = (bp[:, None] - bg[None, :]) ** 2  # (|Bp|, |Bg|)
    to_gt = np.exp(-gap2.min(1) / (2 * sigma_s**2)).mean()
    to_pred = np.exp(-gap2.min(0) / (2 * sigma_s**2)).mean()
    return float(0.5 * (to_gt + to_pred) if symmetric else to_pred)


def beat_alignment(pred_motion: Any, gt_motion: Any, *, fps: float = MOTION_FPS, detector: str = "dynamic_peaks",
                   sigma_s: float = BA_SIGMA_S, sigma_frames: float | None = None, symmetric: bool = True,
                   beat_kwargs: Mapping[str, Any] | None = None, frames: Any = None) -> float:
    """BA of two (T, 115) motions: beats of the head angular speed of the ROT slice (rad/s at
    ``fps``), then ``beat_alignment_score``. ``sigma_frames`` (if given) sets sigma = frames / fps.
    ``frames``: keep only the beats of selected frames (speaking/listening splits); beats are still
    detected on the whole clip so the sliding threshold sees the full context."""
    p, g = _np(pred_motion), _np(gt_motion)
    _same_length(p, g, "BA")
    kw = dict(beat_kwargs or {})
    bp = detect_beats(head_angular_speed(p[:, ROT], fps), fps, detector=detector, **kw)
    bg = detect_beats(head_angular_speed(g[:, ROT], fps), fps, detector=detector, **kw)
    if frames is not None:
        mask = _frame_mask(frames, p.shape[0])

        def keep(beats: np.ndarray) -> np.ndarray:
            # a beat at (t + 0.5) / fps belongs to frame t, the first of the pair it was measured on
            return beats[mask[np.clip(np.floor(beats * fps).astype(np.int64), 0, p.shape[0] - 1)]]

        bp, bg = keep(bp), keep(bg)
    sigma = sigma_s if sigma_frames is None else sigma_frames / fps
    return beat_alignment_score(bp, bg, sigma_s=sigma, symmetric=symmetric)


# --- SID (eqs. 14-15) -------------------------------------------------------------------------
def sid_features(motion: Any) -> dict[str, np.ndarray]:
    """(N, 115) frames -> the three SID groups: jaw (N, 3), exp50 (N, 50), rot (N, 3)."""
    m = _np(motion)
    return {"jaw": m[:, JAW], "exp50": m[:, EXPR][:, :SID_EXPR_DIMS], "rot": m[:, ROT]}


def cluster_entropy(labels: Any, k: int, *, eps: float = SID_EPS) -> float:
    """Eq. 14 in bits: -sum_c p_c log2(p_c + eps), p_c = n_c / N over K clusters.

    Clamped at 0: with eps a one-cluster histogram gives -log2(1 + eps), about -1.4e-8.
    """
    lab = _np(labels).astype(np.int64).reshape(-1)
    p = np.bincount(lab, minlength=k)[:k] / max(lab.size, 1)
    return float(max(0.0, -(p * np.log2(p + eps)).sum()))


def sid_component(pred_features: Any, gt_features: Any, k: int, *, fit_on: str = "gt", eps: float = SID_EPS,
                  seed: int = SID_SEED) -> float:
    """SID_k of one group (eq. 14): K-Means with ``k`` clusters fitted (seeded k-means++) on the
    ground-truth frames (N, D), the predicted frames (M, D) assigned, entropy of their histogram.
    ``fit_on="pred"`` swaps the roles (DualTalk's code). Bits, within [0, log2 k]."""
    fit, other = (_np(gt_features), _np(pred_features))
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


# --- one clip, all vertex metrics ---------------------------------------------------------------
VERTEX_CHUNK_FRAMES = 256  # frames per face-model call: bounds memory to (chunk, V, 3) for long clips
VERTEX_METRICS = ("lve", "fdd", "mod")
CLIP_METRICS = (*VERTEX_METRICS, "ba")


@dataclass(frozen=True)
class MetricGeometry:
    """The head-pose-free geometry the vertex metrics read, kept small for long clips.

    lips (T, K, 3) and upper (T, U, 3): the ``lips`` / ``upper_face`` mask vertices; landmarks
    (T, 68, 3); all float32 numpy in the face model's unit (metres for FLAME).
    """

    lips: np.ndarray
    upper: np.ndarray
    landmarks: np.ndarray

    @property
    def n_frames(self) -> int:
        return int(self.lips.shape[0])

    def openings(self, *, scale: float = MM_PER_M) -> np.ndarray:
        """(T,) inner-lip mouth opening d_t (MOD's quantity), in mm by default."""
        return mouth_openings(self.landmarks, scale=scale)


@torch.no_grad()
def metric_geometry(face: FaceModel, shape: Any, motion: Any, *,
                    chunk_frames: int = VERTEX_CHUNK_FRAMES) -> MetricGeometry:
    """``motion_to_vertices`` in chunks of ``chunk_frames``, keeping only the lip and upper-face
    vertices and the 68 landmarks: shape (300,), motion (T, 115) -> ``MetricGeometry``."""
    m = torch.as_tensor(_np(motion))
    if m.ndim != 2 or m.shape[-1] != MOTION_DIM or m.shape[0] == 0:
        raise ValueError(f"motion must be (T >= 1, {MOTION_DIM}), got {tuple(m.shape)}")
    lip_idx, upper_idx = face.mask(LIP_MASK), face.mask(UPPER_FACE_MASK)
    parts: dict[str, list[np.ndarray]] = {"lips": [], "upper": [], "landmarks": []}
    for start in range(0, m.shape[0], chunk_frames):
        v = motion_to_vertices(face, shape, m[start : start + chunk_frames])  # (t, V, 3)
        parts["lips"].append(v[:, lip_idx].float().cpu().numpy())
        parts["upper"].append(v[:, upper_idx].float().cpu().numpy())
        parts["landmarks"].append(face.landmarks(v).float().cpu().numpy())
    return MetricGeometry(**{k: np.concatenate(v, 0) for k, v in parts.items()})


def _all_indices(x: np.ndarray) -> np.ndarray:
    return np.arange(x.shape[1])


def geometry_metrics(pred: MetricGeometry, gt: MetricGeometry, pred_motion: Any, gt_motion: Any, *,
                     convention: str | Convention = "paper", fps: float = MOTION_FPS, frames: Any = None,
                     template_upper: Any = None, metrics: Sequence[str] = CLIP_METRICS) -> dict[str, float]:
    """LVE, FDD, MOD (from ``metric_geometry``) and BA (from the motions) of one clip.

    pred_motion, gt_motion (T, 115). ``frames`` restricts every metric to a subset (see each
    function). ``template_upper`` (U, 3): the neutral upper-face vertices, needed only by a
    convention whose FDD uses ``reference="template"``. ``metrics``: the subset of
    lve/fdd/mod/ba to compute.
    """
    conv = resolve_convention(convention)
    out: dict[str, float] = {}
    if "lve" in metrics:
        out["lve"] = lip_vertex_error(pred.lips, gt.lips, _all_indices(gt.lips), frames=frames, **conv.kwargs("lve"))
    if "fdd" in metrics:
        fdd_kw = conv.kwargs("fdd")
        if fdd_kw.get("reference") == "template":
            if template_upper is None:
                raise ValueError("FDD: this convention measures from the template; pass template_upper (U, 3)")
            fdd_kw["template"] = template_upper
        out["fdd"] = face_dynamics_deviation(pred.upper, gt.upper, _all_indices(gt.upper), frames=frames, **fdd_kw)
    if "mod" in metrics:
        out["mod"] = mouth_opening_difference(pred.landmarks, gt.landmarks, frames=frames, **conv.kwargs("mod"))
    if "ba" in metrics:
        out["ba"] = beat_alignment(pred_motion, gt_motion, fps=fps, frames=frames, **conv.kwargs("ba"))
    return out


def clip_motion_metrics(face: FaceModel, shape: Any, pred_motion: Any, gt_motion: Any, *,
                        convention: str | Convention = "paper", fps: float = MOTION_FPS,
                        frames: Any = None) -> dict[str, float]:
    """LVE, FDD, MOD (mm for a metre-unit face model) and BA of one clip under a convention.

    shape (300,) is the ground truth's identity, used for both; pred_motion, gt_motion (T, 115).
    ``frames`` restricts every metric to a subset (see each function). SID is not per clip: call
    ``speaker_identity_diversity`` on the pooled frames.
    """
    conv = resolve_convention(convention)
    return geometry_metrics(metric_geometry(face, shape, pred_motion), metric_geometry(face, shape, gt_motion),
                            pred_motion, gt_motion, convention=conv, fps=fps, frames=frames,
                            template_upper=fdd_template_upper(face, shape, conv))


# --- baselines (`ehead eval --baseline`) --------------------------------------------------------
def baseline_motion(kind: str, gt_clips: Sequence[Any]) -> list[np.ndarray]:
    """Trivial predictions built from the ground truth, one (T_i, 115) float32 array per clip.

    mean:     every frame is the per-dimension mean of all frames of all ground-truth clips
              (axis-angle slices averaged component-wise, fine for the small angles of a head).
    still:    the clip's own first ground-truth frame, held for all T_i frames.
    shuffled: the ground truth of another clip: clip i gets clip (i + 1) mod N (in the order given),
              cut or looped to T_i frames: plausible motion, not synchronised with the audio. With a
              single clip, its own motion rolled by T // 2 frames instead.
    """
    clips = [_np(c).astype(np.float32) for c in gt_clips]
    if not clips:
        raise ValueError("baseline_motion needs at least one ground-truth clip")
    if kind == "mean":
        mean = np.concatenate(clips, 0).mean(0, dtype=np.float64).astype(np.float32)
        return [np.broadcast_to(mean, c.shape).copy() for c in clips]
    if kind == "still":
        return [np.broadcast_to(c[:1], c.shape).copy() for c in clips]
    if kind == "shuffled":
        if len(clips) == 1:
            return [np.roll(clips[0], clips[0].shape[0] // 2, axis=0)]
        out = []
        for i, c in enumerate(clips):
            src = clips[(i + 1) % len(clips)]
            out.append(src[np.arange(c.shape[0]) % src.shape[0]].copy())
        return out
    raise ConfigError(f"--baseline: unknown baseline {kind!r}; choose from {', '.join(BASELINES)}")
