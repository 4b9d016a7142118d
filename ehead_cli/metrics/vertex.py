"""Vertex metrics of EmbodiedHead (supplementary B.2): LVE (eq. 9), FDD (eqs. 10-11), MOD (eq. 12),
and the head-pose-free geometry they share.

LVE, FDD and MOD compare face-model vertices / landmarks of a prediction and its ground truth after
the global head pose has been removed (``motion_to_vertices``); ``metric_geometry`` keeps only the
lip and upper-face vertices and the landmarks of a long clip.

Units. Vertex metrics take a ``scale`` that converts the face model's length unit to the reported
unit: the default ``MM_PER_M`` = 1000 turns metres (FLAME) into millimetres, so LVE, FDD and MOD
are reported in mm.

All metric functions are pure: they accept numpy arrays or torch tensors and return Python floats
computed in float64. Prediction and ground truth must have the same number of frames (aligning
lengths is the caller's rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ehead_cli.face.base import MOUTH_LOWER_INNER, MOUTH_UPPER_INNER, FaceModel
from ehead_cli.layout import MOTION_DIM, ROT, TRANS
from ehead_cli.metrics.arrays import as_float64, check_same_length, frame_mask
from ehead_cli.metrics.conventions import Convention

MM_PER_M = 1000.0  # metres (FLAME) -> millimetres, the unit of the papers' LVE / FDD / MOD tables
LIP_MASK = "lips"
UPPER_FACE_MASK = "upper_face"
VERTEX_CHUNK_FRAMES = 256  # frames per face-model call: bounds memory to (chunk, V, 3) for long clips
VERTEX_METRICS = ("lve", "fdd", "mod")


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
    p, g = as_float64(pred_vertices), as_float64(gt_vertices)
    check_same_length(p, g, "LVE")
    idx = as_float64(lip_idx).astype(np.int64)
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
    per_frame = per_frame[frame_mask(frames, per_frame.shape[0])]
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
                            ddof: int = 0, signed: bool = False, frames: Any = None) -> float:
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
    ``quantity="squared_norm"``: sigma_i = std_t ||m[t, i]||^2 (unit scale^2);
    ``quantity="summed_xyz"``: sigma_i = std_t (m_x + m_y + m_z)[t, i], the spread of the sum of the
    three coordinates (ARTalk's authors' FDD; motion with dx + dy + dz = 0 is not seen);
    ``ddof``: delta degrees of freedom of every std, divisor T - ddof (0: population, eq. 10; 1: torch);
    ``signed``: mean_i (sigma_i^gt - sigma_i^pred) without the absolute value (CodeTalker's order).
    ``frames``: frames whose spread is measured (the reference stays the clip's first frame).
    """
    p, g = as_float64(pred_vertices), as_float64(gt_vertices)
    check_same_length(p, g, "FDD")
    idx = as_float64(upper_idx).astype(np.int64)
    mask = frame_mask(frames, p.shape[0])
    if reference == "first":
        ref_p, ref_g = p[:1, idx], g[:1, idx]
    elif reference == "template":
        if template is None:
            raise ValueError("FDD: reference='template' needs the template vertices (V, 3)")
        ref_p = ref_g = as_float64(template)[None, idx]
    else:
        raise ValueError(f"FDD: unknown reference {reference!r} (first or template)")
    m_p = ((p[:, idx] - ref_p) * scale)[mask]  # (T', K, 3)
    m_g = ((g[:, idx] - ref_g) * scale)[mask]
    if m_p.shape[0] <= ddof:
        raise ValueError(f"FDD: a std with ddof {ddof} needs more than {ddof} frames, got {m_p.shape[0]}")

    def spread(m: np.ndarray) -> np.ndarray:  # (T', K, 3) -> (K,)
        if quantity == "vector_std":
            return np.sqrt(((m - m.mean(0, keepdims=True)) ** 2).sum(-1).sum(0) / (m.shape[0] - ddof))
        if quantity == "squared_norm":
            return (m**2).sum(-1).std(0, ddof=ddof)
        if quantity == "summed_xyz":
            return m.sum(-1).std(0, ddof=ddof)
        raise ValueError(f"FDD: unknown quantity {quantity!r} (vector_std, squared_norm or summed_xyz)")

    s_p, s_g = spread(m_p), spread(m_g)
    return float((s_g - s_p).mean() if signed else np.abs(s_p - s_g).mean())


# --- MOD (eq. 12) -----------------------------------------------------------------------------
def mouth_openings(landmarks: Any, *, scale: float = MM_PER_M) -> np.ndarray:
    """(T, 68, 3) landmarks -> (T,) d_t = || p[t, 66] - p[t, 62] || x scale (inner lips, 0-based)."""
    lm = as_float64(landmarks)
    return np.linalg.norm(lm[:, MOUTH_LOWER_INNER] - lm[:, MOUTH_UPPER_INNER], axis=-1) * scale


def mouth_opening_difference(pred_landmarks: Any, gt_landmarks: Any, *, scale: float = MM_PER_M,
                             frames: Any = None) -> float:
    """Mouth Opening Difference, EmbodiedHead eq. 12, in mm by default.

    MOD = (1/T) sum_t | d_t^pred - d_t^gt |,  d_t = || p[t, 66] - p[t, 62] ||_2 x scale

    pred_landmarks, gt_landmarks: (T, 68, 3) from ``face.landmarks`` of head-pose-free vertices.
    ``frames``: boolean mask or indices of the frames to average over.
    """
    d_p, d_g = mouth_openings(pred_landmarks, scale=scale), mouth_openings(gt_landmarks, scale=scale)
    check_same_length(d_p, d_g, "MOD")
    return float(np.abs(d_p - d_g)[frame_mask(frames, d_p.shape[0])].mean())


# --- the geometry of one clip, kept small -------------------------------------------------------
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
    m = torch.as_tensor(as_float64(motion))
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
