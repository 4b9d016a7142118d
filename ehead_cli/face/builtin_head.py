"""The built-in procedural head: the offline default face model, made entirely by code.

A stylised adult head with FLAME's parameter layout, so every motion file drives it unchanged:
300 identity (shape) and 100 expression blendshapes, a jaw joint, two eyeball joints, a rigid
global rotation about a neck pivot and a translation. Same conventions as FLAME: metres, y up,
the face looks toward +z, x toward the subject's left.

How it is made (all deterministic):
- The skin is one closed grid of rays cast outward from a vertical axis through the head onto a
  smooth implicit surface (a smooth union of ellipsoids: cranium, face, jaw, chin, cheeks, brow
  ridge, nose, lips, eyelid bulges, neck). Rows above the forehead fan out from one point to the
  crown, rows over the face are horizontal slices (so the mouth and the eye slits are straight
  grid rows), rows under the chin fan down the neck. A hair cap is the skin pushed outward above
  a hairline.
- The mouth and the eyes are slits: the grid vertices along the slit row are doubled, one copy
  for the upper lip or lid and one for the lower. Lips part when the jaw turns or with
  ``EXPR_LIPS_PART``; the eyelids are reshaped onto a sphere around each eyeball and close with
  ``EXPR_BLINK``. A dark mouth cavity with teeth and tongue hangs from the lip slit.
- Eyeballs (sclera, iris, pupil) are spheres turned about their centres by the eye poses; the
  ears are closed thin shells.

Motion -> mesh: ``v = template + S shape + E expr``, then linear blend skinning with a head and a
jaw joint (smooth weights on the lower face, the jaw hinge regressed from vertices in front of
the ears), rigid eyeball rotations about their centres, then the global rotation about the neck
pivot and the translation. Joint centres are vertex means of the shaped mesh, like FLAME's
J_regressor.

Units of the coefficients: the basis vectors are metres of displacement per unit coefficient.
The named components move a few millimetres per unit (listed where they are defined), so +-1 is
a clear, plausible expression and +-3 of shape a plausible other person; ``EXPR_BLINK`` = 1
closes the eyes exactly. The other components are small localised deformations whose peak
displacement decreases with the index (expression: 2 mm at index 11 down to 0.6 mm at 99;
shape: 2.5 mm at index 14 down to 0.5 mm at 299).

Size: about 5.7k vertices and 11k triangles; building takes about half a second and is cached
per process (``build_head_arrays``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from ehead_cli.face.base import N_LANDMARKS, FaceModel
from ehead_cli.geometry import axis_angle_to_matrix
from ehead_cli.layout import EXPR, EYE_LEFT, EYE_RIGHT, JAW, N_EXPR, N_SHAPE, ROT, TRANS

# --- named expression components (index into the 100 expression coefficients) --------------------
# (peak displacement per unit coefficient)
EXPR_SMILE = 0  # mouth corners 4.5 mm up and 3.5 mm out, cheeks 2 mm up
EXPR_LIP_ROUND = 1  # pucker: lips 7 mm forward, corners ~4 mm in
EXPR_LIP_STRETCH = 2  # corners 5 mm out, 1.5 mm down
EXPR_LIPS_PART = 3  # upper lip 2.5 mm up, lower 2.5 mm down (the mouth opens without the jaw)
EXPR_BROW_RAISE = 4  # both brows 6.5 mm up
EXPR_BROW_FROWN = 5  # inner brows 3 mm down and 2.5 mm together
EXPR_BLINK = 6  # 1.0 closes both eyelids exactly (the upper lid travels ~8 mm)
EXPR_SQUINT = 7  # lower eyelids 9 degrees up, the skin under the eyes 1 mm up
EXPR_CHEEK_PUFF = 8  # cheeks 5 mm out
EXPR_NOSE_WRINKLE = 9  # nose sides 2.5 mm up, upper lip 1 mm up
EXPR_MOUTH_SIDEWAYS = 10  # the mouth 5 mm toward the subject's left (+x); negative: right
N_NAMED_EXPR = 11

# --- named shape components -------------------------------------------------------------------------
SHAPE_HEAD_WIDTH = 0
SHAPE_HEAD_HEIGHT = 1
SHAPE_HEAD_DEPTH = 2
SHAPE_JAW_WIDTH = 3
SHAPE_NOSE_SIZE = 4
SHAPE_EYE_SPACING = 5
SHAPE_MOUTH_WIDTH = 6
SHAPE_LIP_FULLNESS = 7
SHAPE_CHIN_LENGTH = 8
SHAPE_FOREHEAD_SLOPE = 9
SHAPE_CHEEK_FULLNESS = 10
SHAPE_NOSE_PROJECTION = 11
SHAPE_EAR_SIZE = 12
SHAPE_BROW_RIDGE = 13
N_NAMED_SHAPE = 14

SEED = 20240617  # fixes the unnamed components; changing it changes every unnamed blendshape

# --- proportions (metres) -----------------------------------------------------------------------------
AXIS_Z = -0.010  # the vertical axis the skin rays start from (x = 0)
TOP_FAN_Y = 0.085  # rows above fan out from (0, TOP_FAN_Y, AXIS_Z) to the crown
BOTTOM_FAN_Y = -0.112  # rows below fan out from (0, BOTTOM_FAN_Y, AXIS_Z) down the neck
NECK_CUT_Y = -0.180  # the neck ends in a flat cut here
MAX_RAY = 0.17  # longest skin ray
RAY_STEP = 0.004  # ray-marching step before bisection
MIN_RAY = 0.025  # every skin point is at least this far from its ray origin
EYE_Y = -0.001  # eyelid slit row
MOUTH_Y = -0.067  # lip slit row
EYE_CENTER = (0.031, 0.0005, 0.060)  # left eyeball centre; the right one mirrors x
EYE_RADIUS = 0.0125
LID_RADIUS = 0.0137  # eyelids lie on this sphere around the eyeball centre
EYE_CORNERS_DEG = (12.0, 34.0)  # azimuth of the inner and outer eye corner columns
MOUTH_CORNER_DEG = 16.0  # azimuth of the mouth corner columns
HAIR_THICKNESS = 0.009
# hairline height (m) by azimuth from the front: forehead, temples, the sideburn in front of the
# ear, behind the ear, a level nape
HAIRLINE_AZIMUTH_DEG = (0.0, 30.0, 55.0, 70.0, 76.0, 80.0, 84.0, 92.0, 102.0, 115.0, 130.0, 180.0)
HAIRLINE_Y = (0.072, 0.068, 0.052, 0.030, 0.005, 0.000, 0.018, 0.020, 0.000, -0.045, -0.060, -0.064)
NECK_PIVOT_ROW_DEG = -30.0  # the bottom-fan row whose ring centroid is the neck pivot

# Grid: (segment end, intervals) from 0 to 180 degrees azimuth on each side, and the rows.
AZIMUTH_SEGMENTS = ((EYE_CORNERS_DEG[0], 4), (MOUTH_CORNER_DEG, 2), (EYE_CORNERS_DEG[1], 6),
                    (100.0, 14), (180.0, 7))
TOP_FAN_DEG = (80.0, 70.0, 60.0, 50.0, 40.0, 30.0, 21.0, 13.0, 6.0)  # elevations below the crown pole
BAND_SEGMENTS = ((0.035, 10), (EYE_Y, 11), (-0.022, 6), (-0.050, 8), (MOUTH_Y, 6), (-0.092, 8),
                 (BOTTOM_FAN_Y, 5))  # slice heights from TOP_FAN_Y down, (segment end, intervals)
BOTTOM_FAN_DEG = (-4.0, -8.0, -13.0, -20.0, -30.0, -40.0, -50.0, -60.0, -70.0, -80.0)

# Eyelids: angles about the eyeball centre (degrees). Margins follow e(t) = peak * (1 - t^2)^p
# across the eye, t = -1 inner corner, +1 outer corner.
LID_CENTER_DEG = 8.0  # the eye opening is turned this much outward
LID_HALF_WIDTH_DEG = 60.0
UPPER_MARGIN_DEG = 23.0
LOWER_MARGIN_DEG = 20.0
LID_TOP_DEG = 72.0  # where the upper lid rows end (then they blend into the skin)
LID_BOTTOM_DEG = -62.0
BLINK_MEET = 0.2  # closed lids meet this fraction of the way up from the lower margin
EYE_PATCH_TOP = 0.024  # slice heights where the lid patch ends
EYE_PATCH_BOTTOM = -0.020

HAIR_RAMP = 0.03  # hair reaches its full thickness this far above the hairline
LID_PATCH_HALF_WIDTH = 1.5  # the lid patch spans |t| <= this (t = +-1 at the eye corners)
EYEBALL_RINGS_DEG = (4.0, 9.0, 14.0, 20.0, 25.0, 29.0, 40.0, 60.0, 90.0, 120.0, 150.0)  # from the front
EQUATOR = EYEBALL_RINGS_DEG.index(90.0)  # this ring's mean is the eyeball centre
EYEBALL_SEGMENTS = 16
PUPIL_DEG = 4.5  # angular radius of the pupil seen from the eyeball centre
IRIS_DEG = 25.0
CORNEA_BULGE = 0.0006  # metres the cornea stands out over the iris
SQUINT_DEG = 9.0  # how far EXPR_SQUINT = 1 lifts the lower lid margin
EAR_SEGMENTS = 16
EAR_FLARE_DEG = 28.0  # the back of the ear stands out this much from the head
EAR_ROOT = (0.066, -0.014, -0.004)  # left ear's front edge, where it joins the head
EAR_HALF_WIDTH, EAR_HALF_HEIGHT = 0.017, 0.031
EAR_LATERAL = ((0.25, -0.002), (0.5, -0.0015), (0.72, 0.0015), (0.86, 0.0035), (0.95, 0.0032))  # (u, height)
EAR_MEDIAL = (0.9, 0.6, 0.3)
JAW_BAND = 0.0025  # metres over which the jaw weight rises below the lips
JAW_BAND_WIDENING = 0.0013  # metres more per degree of azimuth beyond the mouth corner
JAW_BORDER_Y = (-0.122, -0.090)  # height of the mandible's lower border under the chin and at the jaw angle
JAW_HINGE_SKIN = (0.066, -0.022, -0.002)  # skin in front of the left ear; the hinge is the mean of both sides
JAW_LINE = (0.066, -0.012, 0.103)  # jaw-line landmarks: half width, top height, depth to the chin
LANDMARK_TIE = 0.0015  # metres: candidates this close in the frontal view count as a tie
CHEEK_BLUSH = (0.04, -0.03, 0.07)

# --- colours (linear RGB albedo) -------------------------------------------------------------------
SKIN = (0.86, 0.67, 0.57)
LIPS = (0.73, 0.40, 0.40)
HAIR = (0.22, 0.15, 0.10)
BROWS = (0.26, 0.18, 0.12)
LASH_LINE = (0.20, 0.13, 0.10)
SCLERA = (0.94, 0.92, 0.88)
IRIS = (0.33, 0.44, 0.55)
IRIS_RIM = (0.16, 0.20, 0.26)
PUPIL = (0.03, 0.03, 0.03)
MOUTH_INSIDE = (0.22, 0.05, 0.06)
THROAT = (0.08, 0.02, 0.02)
TEETH = (0.93, 0.91, 0.84)
TONGUE = (0.62, 0.30, 0.31)
INNER_LIP = (0.60, 0.28, 0.29)

# Mouth cavity rings hanging from the lip slit: (depth behind the slit, height above it at the
# middle, x scale, colour), in metres. The upper incisors face forward just behind the upper lip,
# their tips 3 mm below the slit, hidden by the lower lip until the mouth opens.
CAVITY_UPPER = ((0.0020, 0.0005, 0.97, INNER_LIP), (0.0035, 0.0010, 0.93, TEETH),
                (0.0037, -0.0030, 0.93, TEETH), (0.0065, -0.0025, 0.90, MOUTH_INSIDE),
                (0.015, 0.012, 1.0, MOUTH_INSIDE), (0.032, 0.009, 0.92, THROAT))
CAVITY_LOWER = ((0.0025, -0.0004, 0.97, INNER_LIP), (0.0060, -0.0040, 0.90, TONGUE),
                (0.013, -0.003, 0.95, tuple(0.6 * c for c in TONGUE)), (0.030, -0.006, 0.90, THROAT))
CAVITY_BACK = (0.045, 0.0, 0.6, THROAT)

# vertex parts (``BuiltinHead.vertex_part``)
SKIN_PART, EYE_LEFT_PART, EYE_RIGHT_PART, EAR_PART, MOUTH_PART = 0, 1, 2, 3, 4

# skinning joints: columns of ``skin_weights``, rows of ``joint_regressor`` (the neck pivot is not skinned)
HEAD_JOINT, JAW_JOINT, EYE_LEFT_JOINT, EYE_RIGHT_JOINT = 0, 1, 2, 3
NECK_PIVOT = 3  # row of ``joint_regressor`` after the three rotating joints (jaw, left eye, right eye)

# =====================================================================================================
# Implicit surface
# =====================================================================================================


def _ellipsoid(p: np.ndarray, c, r) -> np.ndarray:
    """Approximate signed distance (metres) to an ellipsoid; p (..., 3)."""
    r = np.asarray(r)
    q = (p - np.asarray(c)) / r
    k0 = np.sqrt(np.einsum("...i,...i->...", q, q))
    q = q / r
    k1 = np.sqrt(np.einsum("...i,...i->...", q, q))
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)


def _capsule(p: np.ndarray, a, b, r: float) -> np.ndarray:
    """Signed distance to the segment a-b thickened by r; p (..., 3)."""
    a, b = np.asarray(a), np.asarray(b)
    ab = b - a
    h = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
    q = p - a - h[..., None] * ab
    return np.sqrt(np.einsum("...i,...i->...", q, q)) - r


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth union of two distance fields with blend radius k (metres)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def _mirror_x(p: np.ndarray) -> np.ndarray:
    """Fold space about x = 0 so one primitive makes both sides."""
    q = p.copy()
    q[..., 0] = np.abs(q[..., 0])
    return q


def head_distance(p: np.ndarray) -> np.ndarray:
    """Signed distance-like field of the bare head (negative inside), p (..., 3) in metres."""
    m = _mirror_x(p)
    d = _ellipsoid(p, (0.0, 0.028, -0.012), (0.075, 0.094, 0.099))  # cranium
    d = _smin(d, _ellipsoid(p, (0.0, -0.030, 0.022), (0.060, 0.066, 0.064)), 0.02)  # midface
    # the mandible narrows toward the chin
    jaw_p = p.copy()
    jaw_p[..., 0] /= np.clip(1.0 + 0.55 * (p[..., 1] + 0.078) / 0.042, 0.5, 1.35)
    d = _smin(d, _ellipsoid(jaw_p, (0.0, -0.078, 0.030), (0.047, 0.040, 0.052)), 0.02)
    d = _smin(d, _ellipsoid(p, (0.0, -0.099, 0.070), (0.020, 0.017, 0.016)), 0.012)  # chin
    d = _smin(d, _ellipsoid(m, (0.040, -0.030, 0.050), (0.026, 0.027, 0.030)), 0.02)  # cheeks
    d = _smin(d, _ellipsoid(m, (0.049, -0.006, 0.045), (0.020, 0.014, 0.026)), 0.016)  # cheekbones
    d = _smin(d, _ellipsoid(p, (0.0, 0.027, 0.060), (0.056, 0.014, 0.025)), 0.012)  # brow ridge
    d = _smin(d, _ellipsoid(p, (0.0, -0.050, 0.071), (0.032, 0.022, 0.022)), 0.01)  # upper jaw
    # eyelid bulges: the lids lie on a sphere around each eyeball
    d = _smin(d, np.linalg.norm(m - np.asarray(EYE_CENTER), axis=-1) - LID_RADIUS, 0.006)
    # nose: a ridge from the root to the tip, the tip and the two wings
    nose = _capsule(p, (0.0, 0.010, 0.079), (0.0, -0.029, 0.104), 0.0)
    t = np.clip((0.010 - p[..., 1]) / 0.039, 0.0, 1.0)
    nose = nose - (0.0050 + 0.0040 * t)
    nose = _smin(nose, _ellipsoid(p, (0.0, -0.031, 0.101), (0.0105, 0.0095, 0.0105)), 0.006)
    nose = _smin(nose, _ellipsoid(m, (0.0125, -0.036, 0.089), (0.0075, 0.0065, 0.0080)), 0.005)
    d = _smin(d, nose, 0.008)
    # lips meet in a groove at MOUTH_Y
    lips = _ellipsoid(p, (0.0, MOUTH_Y + 0.0078, 0.0850), (0.026, 0.0090, 0.0105))
    lips = np.minimum(lips, _ellipsoid(p, (0.0, MOUTH_Y - 0.0080, 0.0825), (0.0225, 0.0078, 0.0105)))
    d = _smin(d, lips, 0.004)
    d = _smin(d, _capsule(p, (0.0, -0.060, -0.030), (0.0, -0.300, -0.015), 0.053), 0.03)  # neck
    return np.maximum(d, NECK_CUT_Y - p[..., 1])


def _cast(origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """(R,) distance along each ray (R, 3) from its origin to where it leaves the head."""
    steps = np.arange(MIN_RAY, MAX_RAY + RAY_STEP, RAY_STEP)
    outside = head_distance(origins[:, None, :] + steps[None, :, None] * dirs[:, None, :]) > 0  # (R, S)
    if outside[:, 0].any() or not outside.any(1).all():
        raise RuntimeError("a skin ray starts outside the head or never leaves it")
    k = outside.argmax(1)
    lo, hi = steps[k - 1], steps[k]
    for _ in range(12):  # bisection: RAY_STEP / 2^12 = 1 um
        mid = 0.5 * (lo + hi)
        out = head_distance(origins + mid[:, None] * dirs) > 0
        hi = np.where(out, mid, hi)
        lo = np.where(out, lo, mid)
    return 0.5 * (lo + hi)


# =====================================================================================================
# Small helpers
# =====================================================================================================


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _bump(p: np.ndarray, c, sigma) -> np.ndarray:
    """Gaussian falloff exp(-|(p - c) / sigma|^2 / 2); p (V, 3), sigma scalar or per axis -> (V,)."""
    q = (p - np.asarray(c)) / np.asarray(sigma)
    return np.exp(-0.5 * (q * q).sum(-1))


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, 3), (B, 3) -> (A, B) squared distances."""
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T, 0.0)


def _piecewise(start: float, segments) -> np.ndarray:
    """Values from ``start`` through each (end, intervals) segment, uniform within a segment."""
    out = [start]
    for end, n in segments:
        out.extend(np.linspace(out[-1], end, n + 1)[1:])
    return np.asarray(out)


def _direction(azimuth: np.ndarray, elevation: np.ndarray) -> np.ndarray:
    """Unit vectors from azimuth (0 = +z, positive toward +x) and elevation (up), in radians."""
    azimuth, elevation = np.broadcast_arrays(azimuth, elevation)
    ce = np.cos(elevation)
    return np.stack([ce * np.sin(azimuth), np.sin(elevation), ce * np.cos(azimuth)], -1)


def _azimuth_deg(p: np.ndarray) -> np.ndarray:
    """|azimuth| in degrees of points (..., 3) about the skin-ray axis, 0 at the front."""
    return np.degrees(np.abs(np.arctan2(p[..., 0], p[..., 2] - AXIS_Z)))


def _strip(top: np.ndarray, bottom: np.ndarray, closed: bool = True) -> np.ndarray:
    """Triangles between two rows of vertex ids (C,), counter-clockwise seen from outside when the
    columns run toward +x across the front and ``top`` lies above ``bottom``."""
    c = np.arange(len(top) if closed else len(top) - 1)
    c2 = (c + 1) % len(top)
    return np.concatenate([np.stack([top[c], bottom[c], bottom[c2]], -1),
                           np.stack([top[c], bottom[c2], top[c2]], -1)])


def _strips(rings: list[np.ndarray], closed: bool = True) -> np.ndarray:
    """Triangles joining each row of vertex ids to the next."""
    return np.concatenate([_strip(a, b, closed) for a, b in zip(rings[:-1], rings[1:], strict=True)])


def _fan(centre: int, ring: np.ndarray) -> np.ndarray:
    """Triangles from one vertex to a closed ring."""
    return np.stack([np.full(len(ring), centre), ring, np.roll(ring, -1)], -1)


def _normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = verts[faces]
    return np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])


# =====================================================================================================
# Construction
# =====================================================================================================


@dataclass(frozen=True)
class HeadArrays:
    """Everything the built-in head is made of (numpy, V vertices, F triangles)."""

    vertices: np.ndarray  # (V, 3) float32 template, metres
    faces: np.ndarray  # (F, 3) int64, counter-clockwise seen from outside
    colors: np.ndarray  # (V, 3) float32 in [0, 1]
    shapedirs: np.ndarray  # (V, 3, 300) float32, metres per unit coefficient
    exprdirs: np.ndarray  # (V, 3, 100) float32, metres per unit coefficient
    skin_weights: np.ndarray  # (V, 4) float32: head, jaw, left eye, right eye
    joint_anchors: tuple[np.ndarray, ...]  # vertex ids averaged into the jaw, left eye, right eye, neck pivot
    lmk_vertices: np.ndarray  # (68,) int64 vertex of each landmark
    masks: dict[str, np.ndarray]  # "lips", "upper_face" -> int64 vertex ids
    part: np.ndarray  # (V,) int64 SKIN_PART, EYE_LEFT_PART, ...


class _Builder:
    """Builds ``HeadArrays`` step by step (see the module docstring for the plan).

    The skin grid has rows (top to bottom) and columns (azimuth, toward +x across the front);
    ``grid[r, c]`` is a vertex id and ``below[r, c]`` the id the row beneath uses, which differs
    only on the slit rows, where the lower lip and the lower eyelids have their own copies.
    """

    def __init__(self) -> None:
        self.verts: list[np.ndarray] = []
        self.faces: list[np.ndarray] = []
        self.n = 0
        half = _piecewise(0.0, AZIMUTH_SEGMENTS)  # 0 .. 180 degrees
        self.az = np.radians(np.concatenate([-half[::-1][:-1], half[:-1]]))  # (C,) -180 .. <180
        band = _piecewise(TOP_FAN_Y, BAND_SEGMENTS)
        n_top = len(TOP_FAN_DEG)
        # every row is one (ray origin height, elevation) for all its columns
        self.row_y = np.concatenate([np.full(n_top, TOP_FAN_Y), band, np.full(len(BOTTOM_FAN_DEG), BOTTOM_FAN_Y)])
        self.row_el = np.radians(np.concatenate([TOP_FAN_DEG, np.zeros(len(band)), BOTTOM_FAN_DEG]))
        self.band_rows = np.arange(n_top, n_top + len(band))
        self.eye_row = n_top + int(np.argmin(np.abs(band - EYE_Y)))
        self.mouth_row = n_top + int(np.argmin(np.abs(band - MOUTH_Y)))
        self.neck_row = n_top + len(band) + BOTTOM_FAN_DEG.index(NECK_PIVOT_ROW_DEG)

    def add(self, verts) -> np.ndarray:
        """Append vertices (N, 3); returns their ids."""
        verts = np.asarray(verts, np.float64).reshape(-1, 3)
        ids = np.arange(self.n, self.n + len(verts))
        self.verts.append(verts)
        self.n += len(verts)
        return ids

    def V(self) -> np.ndarray:
        """(n, 3) all vertices so far (a fresh array; write back with ``set_v``)."""
        return np.concatenate(self.verts)

    def set_v(self, V: np.ndarray) -> None:
        self.verts = [V]

    def col(self, deg: float) -> int:
        """The grid column at exactly ``deg`` degrees of azimuth."""
        c = int(np.argmin(np.abs(self.az - np.radians(deg))))
        if abs(np.degrees(self.az[c]) - deg) > 1e-6:
            raise RuntimeError(f"no grid column at {deg} degrees")
        return c

    # --- skin -----------------------------------------------------------------------------------
    def skin(self) -> None:
        R, C = len(self.row_y), len(self.az)
        dirs = _direction(self.az[None, :], self.row_el[:, None])  # (R, C, 3)
        origins = np.zeros((R, C, 3))
        origins[..., 1] = self.row_y[:, None]
        origins[..., 2] = AXIS_Z
        pts = origins + _cast(origins.reshape(-1, 3), dirs.reshape(-1, 3)).reshape(R, C, 1) * dirs
        # hair: the skin pushed outward, thickening over the first 3 cm above the hairline
        self.hair_height = self._above_hairline(pts)  # (R, C)
        pts = pts + (HAIR_THICKNESS * _smoothstep(0.0, HAIR_RAMP, self.hair_height))[..., None] * dirs
        # the crown and the neck cut close with one vertex each
        crown = np.array([[0.0, TOP_FAN_Y, AXIS_Z]])
        crown[0, 1] += _cast(crown, np.array([[0.0, 1.0, 0.0]]))[0] + HAIR_THICKNESS
        base = np.array([[0.0, BOTTOM_FAN_Y, AXIS_Z]])
        base[0, 1] -= _cast(base, np.array([[0.0, -1.0, 0.0]]))[0]

        self.grid = self.add(pts.reshape(-1, 3)).reshape(R, C)
        self.crown, self.base = self.add(crown)[0], self.add(base)[0]
        self.below = self.grid.copy()
        self.mouth_cols = np.arange(self.col(-MOUTH_CORNER_DEG) + 1, self.col(MOUTH_CORNER_DEG))
        self.mouth_corners = (self.grid[self.mouth_row, self.col(-MOUTH_CORNER_DEG)],  # right (-x)
                              self.grid[self.mouth_row, self.col(MOUTH_CORNER_DEG)])  # left (+x)
        self.below[self.mouth_row, self.mouth_cols] = self.add(pts[self.mouth_row, self.mouth_cols])
        self.eye_cols = {}
        for side in (1, -1):  # left eye (+x), right eye (-x)
            a, b = sorted((self.col(side * EYE_CORNERS_DEG[0]), self.col(side * EYE_CORNERS_DEG[1])))
            self.eye_cols[side] = np.arange(a + 1, b)
            self.below[self.eye_row, a + 1:b] = self.add(pts[self.eye_row, a + 1:b])

        for r in range(R - 1):
            self.faces.append(_strip(self.below[r], self.grid[r + 1]))
        self.faces.append(_fan(self.crown, self.grid[0]))
        self.faces.append(_fan(self.base, self.below[-1])[:, [1, 0, 2]])

    @staticmethod
    def _above_hairline(p: np.ndarray) -> np.ndarray:
        """Metres above the hairline (negative below) of points p (..., 3)."""
        return p[..., 1] - np.interp(_azimuth_deg(p), HAIRLINE_AZIMUTH_DEG, HAIRLINE_Y)

    # --- eyelids and eyeballs -----------------------------------------------------------------------
    def _lid_coordinates(self, side: int):
        """Vertex ids of one eye's lid patch with their lid coordinates: t across the eye (-1 inner
        corner, +1 outer), s from the margin (0) to the patch edge (1), and upper/lower lid."""
        inner, outer = np.radians(EYE_CORNERS_DEG)
        mid, half = (inner + outer) / 2, (outer - inner) / 2
        ids, ts, ss, up = [], [], [], []
        for r in self.band_rows:
            y = self.row_y[r]
            if not EYE_PATCH_BOTTOM - 1e-9 <= y <= EYE_PATCH_TOP + 1e-9:
                continue
            for c in np.flatnonzero(side * self.az > 0):
                t = (side * self.az[c] - mid) / half
                if abs(t) > LID_PATCH_HALF_WIDTH:
                    continue
                copies = []
                if y >= EYE_Y - 1e-9:
                    copies.append((self.grid[r, c], True, (y - EYE_Y) / (EYE_PATCH_TOP - EYE_Y)))
                if y <= EYE_Y + 1e-9 and (r != self.eye_row or self.below[r, c] != self.grid[r, c]):
                    copies.append((self.below[r, c], False, (EYE_Y - y) / (EYE_Y - EYE_PATCH_BOTTOM)))
                for vid, is_up, s in copies:
                    ids.append(vid)
                    ts.append(t)
                    ss.append(max(s, 0.0))
                    up.append(is_up)
        return np.array(ids), np.array(ts), np.array(ss), np.array(up)

    @staticmethod
    def _lid_points(side: int, t, s, up, closed: float = 0.0, lower_raise_deg: float = 0.0):
        """Points on the lid sphere for lid coordinates, and (P,) blend weights toward them.

        closed in [0, 1] moves both margins to where they meet; lower_raise_deg lifts the lower one.
        """
        tc = np.clip(t, -1.0, 1.0)
        shape_u = (1 - tc**2) ** 0.55 * (1 - 0.12 * tc)  # the upper lid peaks a little toward the nose
        shape_l = (1 - tc**2) ** 0.6 * (1 + 0.1 * tc)
        e_u = UPPER_MARGIN_DEG * shape_u
        e_l = (lower_raise_deg - LOWER_MARGIN_DEG) * shape_l
        e_meet = -LOWER_MARGIN_DEG * shape_l + BLINK_MEET * (UPPER_MARGIN_DEG * shape_u + LOWER_MARGIN_DEG * shape_l)
        e_u = e_u + closed * (e_meet - e_u)
        e_l = e_l + closed * (e_meet - e_l)
        e = np.where(up, e_u + (LID_TOP_DEG - e_u) * s, e_l + (LID_BOTTOM_DEG - e_l) * s)
        a = side * (LID_CENTER_DEG + LID_HALF_WIDTH_DEG * tc)
        c = np.array([side * EYE_CENTER[0], EYE_CENTER[1], EYE_CENTER[2]])
        pos = c + LID_RADIUS * _direction(np.radians(a), np.radians(e))
        w = (1 - _smoothstep(0.3, 1.0, s)) * (1 - _smoothstep(1.0, LID_PATCH_HALF_WIDTH, np.abs(t)))
        return pos, w

    def eyelids(self) -> None:
        """Reshape the skin around each eye slit onto the lid sphere, open."""
        V = self.V()
        self.lids = {}
        for side in (1, -1):
            ids, t, s, up = self._lid_coordinates(side)
            skin = V[ids].copy()
            pos, w = self._lid_points(side, t, s, up)
            V[ids] = w[:, None] * pos + (1 - w[:, None]) * skin
            self.lids[side] = (ids, t, s, up, skin)
        self.set_v(V)

    def lid_offsets(self, **settings) -> np.ndarray:
        """(V, 3) displacement of the lids from the open template under ``_lid_points`` settings."""
        V = self.V()
        out = np.zeros_like(V)
        for side, (ids, t, s, up, skin) in self.lids.items():
            pos, w = self._lid_points(side, t, s, up, **settings)
            out[ids] = w[:, None] * pos + (1 - w[:, None]) * skin - V[ids]
        return out

    def eyeballs(self) -> None:
        """UV spheres facing +z; the iris and pupil are rings of constant angle from the front."""
        polar = np.radians(EYEBALL_RINGS_DEG)
        phi = np.arange(EYEBALL_SEGMENTS) * 2 * np.pi / EYEBALL_SEGMENTS
        self.eyeball = {}
        for side, part in ((1, EYE_LEFT_PART), (-1, EYE_RIGHT_PART)):
            c = np.array([side * EYE_CENTER[0], EYE_CENTER[1], EYE_CENTER[2]])
            front = self.add(c + [0.0, 0.0, EYE_RADIUS + CORNEA_BULGE])[0]
            rings = []
            for th in polar:
                r = EYE_RADIUS + CORNEA_BULGE * _smoothstep(0.0, 1.0, 1 - th / np.radians(IRIS_DEG + 2))
                rings.append(self.add(c + r * np.stack([np.sin(th) * np.cos(phi), np.sin(th) * np.sin(phi),
                                                        np.full_like(phi, np.cos(th))], -1)))
            back = self.add(c - [0.0, 0.0, EYE_RADIUS])[0]
            faces = np.concatenate([_fan(front, rings[0]), _strips(rings), _fan(back, rings[-1])])
            verts = self.V()
            outward = (_normals(verts, faces) * (verts[faces].mean(1) - c)).sum(-1) > 0
            faces[~outward] = faces[~outward][:, ::-1]
            self.faces.append(faces)
            ids = np.concatenate([[front], *rings, [back]])
            polar_deg = np.concatenate([[0.0], np.repeat(EYEBALL_RINGS_DEG, EYEBALL_SEGMENTS), [180.0]])
            self.eyeball[side] = (ids, polar_deg, c, part, rings[EQUATOR])

    # --- ears ---------------------------------------------------------------------------------------
    def ears(self) -> None:
        """Closed thin shells: a lateral sheet with a bowl (concha) and a rim (helix), a flat
        medial sheet, joined at the rim."""
        phi = np.arange(EAR_SEGMENTS) * 2 * np.pi / EAR_SEGMENTS
        flare = np.radians(EAR_FLARE_DEG)
        self.ear_ids, self.ear_root = {}, {}
        for side in (1, -1):
            back = np.array([side * np.sin(flare), 0.0, -np.cos(flare)])  # along the ear, backward
            up = np.array([0.0, 1.0, 0.0])
            normal = np.cross(back, up)
            normal *= np.sign(normal[0]) * side  # lateral, a little forward
            root = np.array([side * EAR_ROOT[0], EAR_ROOT[1], EAR_ROOT[2]])
            centre = root + EAR_HALF_WIDTH * back + 0.004 * normal
            lobe = 1 - 0.25 * np.clip(-np.sin(phi), 0, None)  # narrower toward the lobe
            # (E, 3) outline of the ear at unit size in its plane
            outline = np.outer(EAR_HALF_WIDTH * np.cos(phi) * lobe, back) + np.outer(EAR_HALF_HEIGHT * np.sin(phi), up)
            lateral_centre = self.add(centre - 0.0025 * normal)[0]
            lateral = [self.add(centre + u * outline + h * normal) for u, h in EAR_LATERAL]
            rim = self.add(centre + outline + 0.0015 * normal)
            medial = [self.add(centre + u * outline - (0.002 + 0.004 * (1 - u)) * normal) for u in EAR_MEDIAL]
            medial_centre = self.add(centre - 0.007 * normal)[0]
            rings = [*lateral, rim, *medial]
            faces = np.concatenate([_fan(lateral_centre, lateral[0]), _strips(rings), _fan(medial_centre, medial[-1])])
            # the lateral sheet faces outward, the medial sheet toward the head
            is_lateral = np.isin(faces, np.concatenate([[lateral_centre], *lateral, rim])).all(1)
            flip = (_normals(self.V(), faces) @ normal) * np.where(is_lateral, 1.0, -1.0) < 0
            faces[flip] = faces[flip][:, ::-1]
            self.faces.append(faces)
            self.ear_ids[side] = np.concatenate([[lateral_centre], *lateral, rim, *medial, [medial_centre]])
            self.ear_root[side] = root

    # --- mouth cavity -------------------------------------------------------------------------------
    def mouth(self) -> None:
        """A pouch hanging from the lip slit: rings of ``CAVITY_UPPER`` from the upper lip and of
        ``CAVITY_LOWER`` from the lower lip, meeting at ``CAVITY_BACK``; the corners are shared."""
        V = self.V()
        right_c, left_c = self.mouth_corners
        upper = np.concatenate([[right_c], self.grid[self.mouth_row, self.mouth_cols], [left_c]])
        lower = np.concatenate([[right_c], self.below[self.mouth_row, self.mouth_cols], [left_c]])
        margin = V[upper]  # (M, 3) from the right corner to the left
        bulge = 1 - np.linspace(-1.0, 1.0, len(margin)) ** 2  # rings close toward the corners

        def ring(depth: float, height: float, x_scale: float, ends: np.ndarray) -> np.ndarray:
            p = margin.copy()
            p[:, 0] *= x_scale
            p[:, 2] -= depth
            p[:, 1] += height * bulge
            return np.concatenate([[ends[0]], self.add(p[1:-1]), [ends[-1]]])

        up_rings = [upper] + [ring(*level[:3], upper) for level in CAVITY_UPPER]
        lo_rings = [lower] + [ring(*level[:3], upper) for level in CAVITY_LOWER]
        back_ring = ring(*CAVITY_BACK[:3], upper)
        V = self.V()
        inside = margin.mean(0) - np.array([0.0, 0.0, 0.02])
        for rings in (up_rings + [back_ring], lo_rings + [back_ring]):
            faces = _strips(rings, closed=False)
            faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
            # one orientation per sheet, toward the inside of the mouth on the whole (the teeth face
            # forward, so a per-triangle test would turn them away from the viewer)
            if ((inside - V[faces].mean(1)) * _normals(V, faces)).sum() < 0:
                faces = faces[:, ::-1]
            self.faces.append(faces)
        self.cavity = {"upper": [r[1:-1] for r in up_rings[1:]], "lower": [r[1:-1] for r in lo_rings[1:]],
                       "back": back_ring[1:-1]}

    # --- assembly -----------------------------------------------------------------------------------
    def build(self) -> HeadArrays:
        self.skin()
        self.eyelids()
        self.eyeballs()
        self.ears()
        self.mouth()
        V = self.V()
        self.P = V
        self.part = np.full(len(V), SKIN_PART)
        for ids, _, _, part, _ in self.eyeball.values():
            self.part[ids] = part
        for ids in self.ear_ids.values():
            self.part[ids] = EAR_PART
        self.cavity_upper = np.concatenate(self.cavity["upper"])
        self.cavity_lower = np.concatenate(self.cavity["lower"])
        self.part[np.concatenate([self.cavity_upper, self.cavity_lower, self.cavity["back"]])] = MOUTH_PART
        self.is_grid = np.zeros(len(V), bool)
        self.is_grid[np.concatenate([self.grid.ravel(), self.below.ravel(), [self.crown, self.base]])] = True
        self.lip_side = self._lip_side()
        colors = self._colors()
        return HeadArrays(
            vertices=V.astype(np.float32),
            faces=np.concatenate(self.faces).astype(np.int64),
            colors=colors.astype(np.float32),
            shapedirs=self._shape_basis().astype(np.float32),
            exprdirs=self._expression_basis().astype(np.float32),
            skin_weights=self._skin_weights().astype(np.float32),
            joint_anchors=self._joint_anchors(),
            lmk_vertices=self._landmarks(),
            masks=self._masks(),
            part=self.part.astype(np.int64),
        )

    def _lip_side(self) -> np.ndarray:
        """(V,) +1 on the upper-lip side of the mouth slit (skin rows above it, the upper copies and
        the upper cavity), -1 on the lower side, 0 on the slit row outside the mouth and elsewhere."""
        side = np.zeros(len(self.P))
        rows = np.arange(len(self.row_y))[:, None]
        side[self.grid[(rows < self.mouth_row).repeat(len(self.az), 1)]] = 1.0
        side[self.grid[(rows > self.mouth_row).repeat(len(self.az), 1)]] = -1.0
        side[self.grid[self.mouth_row, self.mouth_cols]] = 1.0
        side[self.below[self.mouth_row, self.mouth_cols]] = -1.0
        side[self.cavity_upper] = 1.0
        side[self.cavity_lower] = -1.0
        return side

    # --- appearance ---------------------------------------------------------------------------------
    def _colors(self) -> np.ndarray:
        P = self.P
        x, y, z = P[:, 0], P[:, 1], P[:, 2]
        col = np.tile(np.asarray(SKIN, float), (len(P), 1))
        grid = self.is_grid

        def paint(amount: np.ndarray, rgb) -> None:
            a = np.clip(amount, 0.0, 1.0)[:, None]
            col[:] = (1 - a) * col + a * np.asarray(rgb)

        cheeks = sum(_bump(P, (s * CHEEK_BLUSH[0], *CHEEK_BLUSH[1:]), 0.014) for s in (1, -1))
        paint(0.08 * cheeks * grid, LIPS)  # the cheeks a little pinker
        # lips: the vermilion between the slit and the lip borders
        upper_h = 0.0085 * np.clip(1 - (x / 0.028) ** 2, 0, 1) ** 0.55 - 0.0013 * np.exp(-0.5 * (x / 0.0035) ** 2)
        lower_h = 0.0090 * np.clip(1 - (x / 0.027) ** 2, 0, 1) ** 0.5
        dy = y - MOUTH_Y
        near = grid & (z > 0.06) & (np.abs(x) < 0.028)
        lip_up = near & (self.lip_side >= 0) & (dy >= -1e-9) & (dy <= upper_h + 1e-4)
        lip_lo = near & (self.lip_side <= 0) & (dy <= 1e-9) & (-dy <= lower_h + 1e-4)
        self.lip_vertices = np.flatnonzero(lip_up | lip_lo)
        paint((lip_up | lip_lo).astype(float), LIPS)
        # brows: an arch above each eye, thicker at the inner end
        ax = np.abs(x)
        brow_y, brow_half = _brow_curve(ax)
        brow = grid & (ax > 0.010) & (ax < 0.056) & (z > 0.04)
        amount = brow * np.clip(1.2 - np.abs(y - brow_y) / brow_half, 0, 1) * (1 - _smoothstep(0.05, 0.058, ax))
        paint(amount, BROWS)
        self.brow_vertices = np.flatnonzero(amount > 0.3)
        # hair above the hairline
        hair = np.zeros(len(P))
        hair[self.grid.ravel()] = _smoothstep(-0.005, 0.005, self.hair_height.ravel())
        hair[self.crown] = 1.0
        paint(hair, HAIR)
        self.hair = hair
        # a dark lash line along each upper lid margin
        for ids, t, s, up, _ in self.lids.values():
            lash = np.zeros(len(P))
            lash[ids[up & (s < 1e-9) & (np.abs(t) <= 1.0)]] = 0.85
            paint(lash, LASH_LINE)
        for ids, polar_deg, *_ in self.eyeball.values():
            col[ids] = np.select([polar_deg[:, None] <= PUPIL_DEG, polar_deg[:, None] <= PUPIL_DEG + 5,
                                  polar_deg[:, None] <= IRIS_DEG - 4, polar_deg[:, None] <= IRIS_DEG + 0.5],
                                 [PUPIL, IRIS_RIM, IRIS, IRIS_RIM], SCLERA)
        for ids in self.ear_ids.values():
            col[ids] = 0.97 * np.asarray(SKIN) + 0.03 * np.asarray(LIPS)
        for name, levels in (("upper", CAVITY_UPPER), ("lower", CAVITY_LOWER)):
            for ids, level in zip(self.cavity[name], levels, strict=True):
                col[ids] = level[3]
        col[self.cavity["back"]] = CAVITY_BACK[3]
        return np.clip(col, 0, 1)

    # --- rig ------------------------------------------------------------------------------------------
    def _skin_weights(self) -> np.ndarray:
        """(V, 4) weights of the head, jaw, left-eye and right-eye joints."""
        P = self.P
        az = _azimuth_deg(P)
        # below the mouth line the jaw takes over, over a band that widens toward the ears
        band = JAW_BAND + JAW_BAND_WIDENING * np.clip(az - MOUTH_CORNER_DEG, 0, None)
        jaw = _smoothstep(0.0, 1.0, 0.5 + (MOUTH_Y - P[:, 1]) / band)
        jaw *= 1 - _smoothstep(75.0, 110.0, az)  # nothing behind the jaw angle
        # the neck stays: the weight fades below the mandible's lower border, which rises from the
        # chin toward the jaw angle
        border = JAW_BORDER_Y[0] + (JAW_BORDER_Y[1] - JAW_BORDER_Y[0]) * _smoothstep(20.0, 75.0, az)
        jaw *= 1 - _smoothstep(0.0, 0.03, border - P[:, 1])
        # the slit decides exactly: upper copies stay, lower copies follow the jaw
        jaw[self.grid[self.mouth_row, self.mouth_cols]] = 0.0
        jaw[self.below[self.mouth_row, self.mouth_cols]] = 1.0
        jaw[list(self.mouth_corners)] = 0.5
        jaw[self.part == MOUTH_PART] = 0.0
        jaw[self.cavity_lower] = 1.0
        jaw[self.cavity["back"]] = 0.5
        jaw[self.part == EAR_PART] = 0.0
        W = np.zeros((len(P), 4))
        W[:, HEAD_JOINT], W[:, JAW_JOINT] = 1 - jaw, jaw
        for side, joint in ((1, EYE_LEFT_JOINT), (-1, EYE_RIGHT_JOINT)):
            ids = self.eyeball[side][0]
            W[ids] = 0.0
            W[ids, joint] = 1.0
        return W

    def _joint_anchors(self) -> tuple[np.ndarray, ...]:
        """Vertex sets whose means are the jaw hinge, the eye centres and the neck pivot."""
        skin = np.flatnonzero(self.is_grid)
        hinge = []
        for side in (1, -1):  # skin just in front of each ear: their mean lies on the hinge axis
            d = np.linalg.norm(self.P[skin] - np.array([side * JAW_HINGE_SKIN[0], *JAW_HINGE_SKIN[1:]]), axis=1)
            hinge.extend(skin[np.argsort(d)[:3]])
        return (np.array(hinge), self.eyeball[1][4], self.eyeball[-1][4], self.below[self.neck_row])

    # --- landmarks and masks --------------------------------------------------------------------------
    def _front(self, xy, candidates: np.ndarray) -> int:
        """The candidate nearest (x, y) in a frontal view; among near ties the one in front."""
        P = self.P[candidates]
        d2 = (P[:, 0] - xy[0]) ** 2 + (P[:, 1] - xy[1]) ** 2
        close = np.flatnonzero(d2 <= d2.min() + LANDMARK_TIE**2)
        return int(candidates[close[np.argmax(P[close, 2])]])

    def _landmarks(self) -> np.ndarray:
        """(68,) vertex ids in the iBUG 68-point layout (point 0 on the subject's right, -x)."""
        P = self.P
        lmk = np.zeros(N_LANDMARKS, np.int64)
        face = np.flatnonzero(self.is_grid & (P[:, 2] > -0.01) & (self.hair < 0.5))
        # 0-16 jaw line: from the right ear round the chin to the left ear
        for k, a in enumerate(np.linspace(np.pi, 0.0, 17)):
            lmk[k] = self._front((JAW_LINE[0] * np.cos(a), JAW_LINE[1] - JAW_LINE[2] * np.sin(a)), face)
        # 17-21 right brow outer -> inner, 22-26 left brow inner -> outer
        for k, bx in enumerate(np.linspace(0.050, 0.014, 5)):
            by = float(_brow_curve(np.array([bx]))[0][0])
            lmk[17 + k] = self._front((-bx, by), face)
            lmk[26 - k] = self._front((bx, by), face)
        # 27-30 nose bridge to tip, 31-35 the nostril base from right to left
        for k, ny in enumerate((0.010, -0.003, -0.016, -0.031)):
            lmk[27 + k] = self._front((0.0, ny), face)
        for k, (nx, ny) in enumerate(((-0.014, -0.041), (-0.007, -0.044), (0.0, -0.045), (0.007, -0.044),
                                      (0.014, -0.041))):
            lmk[31 + k] = self._front((nx, ny), face)
        # 36-41 right eye, 42-47 left eye: the corners and the lid margins a third of the way in
        for side, base in ((-1, 36), (1, 42)):
            inner = self.grid[self.eye_row, self.col(side * EYE_CORNERS_DEG[0])]
            outer = self.grid[self.eye_row, self.col(side * EYE_CORNERS_DEG[1])]
            cols = self.eye_cols[side]
            t = (np.degrees(np.abs(self.az[cols])) - np.mean(EYE_CORNERS_DEG)) / (np.ptp(EYE_CORNERS_DEG) / 2)
            c_out, c_in = cols[np.argmin(np.abs(t - 1 / 3))], cols[np.argmin(np.abs(t + 1 / 3))]
            up, lo = self.grid[self.eye_row], self.below[self.eye_row]
            if side == -1:  # 36 outer, 37-38 upper outer -> inner, 39 inner, 40-41 lower inner -> outer
                lmk[base:base + 6] = [outer, up[c_out], up[c_in], inner, lo[c_in], lo[c_out]]
            else:  # 42 inner, 43-44 upper inner -> outer, 45 outer, 46-47 lower outer -> inner
                lmk[base:base + 6] = [inner, up[c_in], up[c_out], outer, lo[c_out], lo[c_in]]
        # 48-59 outer lip contour (48 right corner, 54 left), 60-67 inner contour on the slit
        lips = self.lip_vertices
        lmk[48], lmk[54] = self.mouth_corners
        for k, ux in enumerate((-0.017, -0.008, 0.0, 0.008, 0.017)):
            lmk[49 + k] = self._lip_border(ux, lips[self.lip_side[lips] > 0], top=True)
        for k, lx in enumerate((0.015, 0.007, 0.0, -0.007, -0.015)):
            lmk[55 + k] = self._lip_border(lx, lips[self.lip_side[lips] < 0], top=False)
        cols = self.mouth_cols
        xs = P[self.grid[self.mouth_row, cols], 0]
        near = [cols[np.argmin(np.abs(xs - x))] for x in (-0.009, 0.0, 0.009)]
        lmk[60], lmk[64] = self.grid[self.mouth_row, cols[0]], self.grid[self.mouth_row, cols[-1]]
        lmk[61:64] = self.grid[self.mouth_row, near]
        lmk[65:68] = self.below[self.mouth_row, near[::-1]]
        return lmk

    def _lip_border(self, x: float, lip_ids: np.ndarray, top: bool) -> int:
        """The outermost lip vertex (top of the upper lip or bottom of the lower) nearest x."""
        P = self.P[lip_ids]
        column = np.flatnonzero(np.abs(P[:, 0] - x) <= np.abs(P[:, 0] - x).min() + 1e-6)
        best = column[np.argmax(P[column, 1])] if top else column[np.argmin(P[column, 1])]
        return int(lip_ids[best])

    def _masks(self) -> dict[str, np.ndarray]:
        lips = np.concatenate([self.lip_vertices, self.grid[self.mouth_row, self.mouth_cols],
                               self.below[self.mouth_row, self.mouth_cols], list(self.mouth_corners)])
        lids = np.concatenate([ids for ids, *_ in self.lids.values()])
        forehead = self.is_grid & (self.P[:, 1] > 0.012) & (_azimuth_deg(self.P) < 60) & (self.hair < 0.5)
        upper = np.concatenate([lids, np.flatnonzero(forehead), self.brow_vertices])
        return {"lips": np.unique(lips).astype(np.int64), "upper_face": np.unique(upper).astype(np.int64)}

    # --- blendshapes ----------------------------------------------------------------------------------
    def _rigid_eyes(self, D: np.ndarray) -> np.ndarray:
        """(K, V, 3) displacements with each eyeball moved as a whole (its mean displacement)."""
        for ids, *_ in self.eyeball.values():
            D[:, ids] = D[:, ids].mean(1, keepdims=True)
        return D

    def _shape_basis(self) -> np.ndarray:
        """(V, 3, 300): the named identity components, then smooth random fields."""
        P = self.P
        x, y, z = P[:, 0], P[:, 1], P[:, 2]
        S = np.zeros((N_SHAPE, len(P), 3))
        front = _smoothstep(0.0, 0.05, z)
        S[SHAPE_HEAD_WIDTH, :, 0] = 0.03 * x  # 3 % per unit, ~2 mm at the ears
        S[SHAPE_HEAD_HEIGHT, :, 1] = 0.025 * y  # 2.5 % per unit
        S[SHAPE_HEAD_DEPTH, :, 2] = 0.025 * np.minimum(z - 0.02, 0.0)  # the back of the skull, 2.5 %
        S[SHAPE_JAW_WIDTH, :, 0] = 0.06 * x * _smoothstep(-0.03, -0.09, y)  # 6 % of the lower face
        nose = _bump(P, (0.0, -0.018, 0.095), (0.014, 0.022, 0.016))
        S[SHAPE_NOSE_SIZE] = 0.10 * (P - np.array([0.0, -0.012, 0.082])) * nose[:, None]  # 10 %
        for s in (1, -1):  # each eye region 1.5 mm outward, eyeball and lids together
            d = np.linalg.norm(P - np.array([s * EYE_CENTER[0], *EYE_CENTER[1:]]), axis=1)
            S[SHAPE_EYE_SPACING, :, 0] += s * 0.0015 * (1 - _smoothstep(0.016, 0.032, d))
        S[SHAPE_MOUTH_WIDTH, :, 0] = 0.12 * x * _bump(P, (0.0, MOUTH_Y, 0.085), (0.02, 0.012, 0.02))
        lip = _bump(P, (0.0, MOUTH_Y, 0.088), (0.018, 0.009, 0.012))
        S[SHAPE_LIP_FULLNESS, :, 2] = 0.0015 * lip  # 1.5 mm forward
        S[SHAPE_LIP_FULLNESS, :, 1] = 0.0012 * lip * self.lip_side  # each lip 1.2 mm taller
        S[SHAPE_CHIN_LENGTH, :, 1] = -0.003 * _smoothstep(-0.075, -0.11, y) * front  # 3 mm down
        S[SHAPE_FOREHEAD_SLOPE, :, 2] = 0.003 * _smoothstep(0.02, 0.09, y) * front  # 3 mm forward
        for s in (1, -1):
            cheek = _bump(P, (s * 0.045, -0.035, 0.055), (0.016, 0.02, 0.02))
            S[SHAPE_CHEEK_FULLNESS] += cheek[:, None] * np.array([s * 0.0025, 0.0, 0.001])
        S[SHAPE_NOSE_PROJECTION, :, 2] = 0.003 * _bump(P, (0.0, -0.03, 0.105), (0.01, 0.012, 0.012))
        for s, ids in self.ear_ids.items():
            S[SHAPE_EAR_SIZE, ids] = 0.08 * (P[ids] - self.ear_root[s])  # 8 % larger
        S[SHAPE_BROW_RIDGE, :, 2] = 0.002 * _bump(P, (0.0, 0.027, 0.085), (0.05, 0.008, 0.02))
        # the rest: sums of three Gaussian fields (2-5 cm wide), peak 2.5 mm falling as 1/sqrt(k)
        rng = np.random.default_rng(SEED)
        n = N_SHAPE - N_NAMED_SHAPE
        centres = P[rng.choice(np.flatnonzero(self.is_grid), size=(n, 3))]  # (n, 3, 3)
        sigma = rng.uniform(0.02, 0.05, size=(n, 3))
        vectors = rng.normal(size=(n, 3, 3))
        d2 = _sq_dist(centres.reshape(-1, 3), P).reshape(n, 3, -1)  # (n, 3, V)
        field = np.einsum("njv,njc->nvc", np.exp(-0.5 * d2 / sigma[..., None] ** 2), vectors)
        peak = np.linalg.norm(field, axis=-1).max(1)[:, None, None]
        k = np.arange(N_NAMED_SHAPE, N_SHAPE)[:, None, None]
        S[N_NAMED_SHAPE:] = field / peak * 0.0025 * np.sqrt(N_NAMED_SHAPE / k)
        return self._rigid_eyes(S).transpose(1, 2, 0)

    def _expression_basis(self) -> np.ndarray:
        """(V, 3, 100): the named expressions, then small localised random bumps."""
        P = self.P
        E = np.zeros((N_EXPR, len(P), 3))
        mouth = (0.0, MOUTH_Y, 0.088)
        for s, corner in ((-1, self.mouth_corners[0]), (1, self.mouth_corners[1])):
            g = _bump(P, P[corner], (0.011, 0.011, 0.014))
            # smile: corners 4.5 mm up, 3.5 mm out per unit; the cheeks rise 2 mm
            E[EXPR_SMILE] += g[:, None] * np.array([s * 0.0035, 0.0045, -0.0015])
            E[EXPR_SMILE] += _bump(P, (s * 0.036, -0.035, 0.07), 0.014)[:, None] * np.array([s * 0.001, 0.002, 0.0015])
            E[EXPR_LIP_STRETCH] += g[:, None] * np.array([s * 0.005, -0.0015, -0.0015])  # corners 5 mm out
            brow = _bump(P, (s * 0.028, 0.026, 0.08), (0.022, 0.014, 0.02))
            E[EXPR_BROW_RAISE, :, 1] += 0.0065 * brow  # 6.5 mm up
            inner = _bump(P, (s * 0.014, 0.024, 0.085), (0.011, 0.011, 0.015))
            E[EXPR_BROW_FROWN] += inner[:, None] * np.array([-s * 0.0025, -0.003, 0.001])  # 3 mm down, 2.5 in
            puff = _bump(P, (s * 0.042, -0.052, 0.06), (0.014, 0.016, 0.016))
            E[EXPR_CHEEK_PUFF] += puff[:, None] * np.array([s * 0.005, 0.0, 0.0025])  # 5 mm out
            E[EXPR_NOSE_WRINKLE, :, 1] += 0.0025 * _bump(P, (s * 0.012, -0.028, 0.092), 0.009)  # 2.5 mm up
            E[EXPR_SQUINT, :, 1] += 0.001 * _bump(P, (s * 0.032, -0.022, 0.07), 0.01)
        g = _bump(P, mouth, (0.020, 0.014, 0.02))
        E[EXPR_LIP_ROUND, :, 0] = -0.35 * P[:, 0] * g  # corners ~4 mm toward the middle
        E[EXPR_LIP_ROUND, :, 2] = 0.007 * g  # lips 7 mm forward
        part = _bump(P, mouth, (0.022, 0.010, 0.03))
        E[EXPR_LIPS_PART, :, 1] = 0.0025 * part * self.lip_side  # each lip 2.5 mm away from the slit
        E[EXPR_NOSE_WRINKLE, :, 1] += 0.001 * part * (self.lip_side > 0)
        E[EXPR_MOUTH_SIDEWAYS, :, 0] = 0.005 * _bump(P, mouth, (0.025, 0.018, 0.025))  # 5 mm toward +x
        E[EXPR_BLINK] = self.lid_offsets(closed=1.0)  # 1.0 closes the lids exactly
        E[EXPR_SQUINT] += self.lid_offsets(lower_raise_deg=SQUINT_DEG)
        # the rest: one Gaussian bump each (0.8-1.8 cm wide) on the face, peak 2 mm * (11 / k)^0.6
        rng = np.random.default_rng(SEED + 1)
        n = N_EXPR - N_NAMED_EXPR
        face = np.flatnonzero(self.is_grid & (P[:, 2] > 0.03) & (P[:, 1] > -0.115) & (P[:, 1] < 0.05))
        centres = P[rng.choice(face, size=n)]
        sigma = rng.uniform(0.008, 0.018, size=n)
        vectors = rng.normal(size=(n, 3))
        d2 = _sq_dist(centres, P)  # (n, V)
        field = np.exp(-0.5 * d2 / sigma[:, None] ** 2)[..., None] * vectors[:, None]
        k = np.arange(N_NAMED_EXPR, N_EXPR)[:, None, None]
        peak = np.linalg.norm(field, axis=-1).max(1)[:, None, None]
        E[N_NAMED_EXPR:] = field / peak * 0.002 * (N_NAMED_EXPR / k) ** 0.6
        E[:, (self.part == EYE_LEFT_PART) | (self.part == EYE_RIGHT_PART)] = 0.0  # eyes turn only by eye pose
        return E.transpose(1, 2, 0)


def _brow_curve(ax: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Brow centre height (m) and half thickness at |x| = ax: an arch, thicker toward the nose."""
    u = np.clip((ax - 0.011) / 0.043, 0, 1)
    return 0.0205 + 0.0075 * np.sin(np.pi * np.clip(u * 0.85 + 0.08, 0, 1)) - 0.004 * u**2, 0.0042 - 0.0022 * u


@functools.lru_cache(maxsize=1)
def build_head_arrays() -> HeadArrays:
    """Construct the built-in head: deterministic, cached per process."""
    return _Builder().build()


class BuiltinHead(FaceModel):
    """The procedural head as a ``FaceModel`` (see the module docstring).

    Extra buffers: ``v_template`` (V, 3); ``shapedirs`` (300, V*3) and ``exprdirs`` (100, V*3);
    ``skin_weights`` (V, 4) head/jaw/left eye/right eye; ``joint_regressor`` (4, V) giving the jaw
    hinge, the eye centres and the neck pivot as vertex means; ``vertex_part`` (V,) SKIN_PART, ...;
    ``lmk_vertices`` (68,) the vertex of each landmark.
    """

    name = "builtin"

    def __init__(self) -> None:
        super().__init__()
        a = build_head_arrays()
        V = a.vertices.shape[0]
        t = torch.from_numpy
        self._register_blendshapes(a.vertices, a.shapedirs, a.exprdirs)
        self.register_buffer("skin_weights", t(a.skin_weights.copy()))
        self.register_buffer("faces", t(a.faces.copy()))
        self.register_buffer("vertex_colors", t(a.colors.copy()))
        self.register_buffer("vertex_part", t(a.part.copy()))
        # a landmark is the corner of a triangle touching its vertex
        first_face = np.full(V, -1, np.int64)
        corner = np.zeros(V, np.int64)
        for k in (2, 1, 0):  # the last write wins: the first corner of the last face listed
            first_face[a.faces[:, k]] = np.arange(len(a.faces))
            corner[a.faces[:, k]] = k
        lmk_bary = np.zeros((N_LANDMARKS, 3), np.float32)
        lmk_bary[np.arange(N_LANDMARKS), corner[a.lmk_vertices]] = 1.0
        self.register_buffer("lmk_faces", t(first_face[a.lmk_vertices]))
        self.register_buffer("lmk_bary", t(lmk_bary))
        self.register_buffer("lmk_vertices", t(a.lmk_vertices.copy()))
        for name in self.mask_names:
            self.register_buffer(f"mask_{name}", t(a.masks[name].copy()))
        J = np.zeros((len(a.joint_anchors), V), np.float32)
        for j, ids in enumerate(a.joint_anchors):
            J[j, ids] = 1.0 / len(ids)
        self.register_buffer("joint_regressor", t(J))  # (4, V): jaw hinge, left eye, right eye, neck pivot

    def joints(self, shape: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """(N, 300), (N, 100) -> (N, 4, 3): jaw hinge, left and right eye centres, neck pivot."""
        return torch.einsum("jv,nvc->njc", self.joint_regressor, self._shaped(shape, expression))

    def _vertices(self, shape: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        dtype = self.v_template.dtype
        shape, motion = shape.to(dtype), motion.to(dtype)
        v = self._shaped(shape, motion[:, EXPR])  # (N, V, 3)
        J = torch.einsum("jv,nvc->njc", self.joint_regressor, v)  # (N, 4, 3)
        # jaw and eyes turn about their own centres; the head joint stays
        R = axis_angle_to_matrix(torch.stack([motion[:, JAW], motion[:, EYE_LEFT], motion[:, EYE_RIGHT]], 1))
        centres = J[:, :NECK_PIVOT, None]  # (N, 3, 1, 3)
        turned = torch.einsum("njab,njvb->njva", R, v[:, None] - centres) + centres  # (N, 3, V, 3)
        w = self.skin_weights
        v = w[:, HEAD_JOINT, None] * v + torch.einsum("vj,njvc->nvc", w[:, HEAD_JOINT + 1:], turned)
        # the whole head turns rigidly about the neck pivot, then moves
        pivot = J[:, NECK_PIVOT, None]  # (N, 1, 3)
        Rg = axis_angle_to_matrix(motion[:, ROT])
        return (v - pivot) @ Rg.transpose(1, 2) + pivot + motion[:, None, TRANS]
