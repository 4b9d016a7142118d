"""The built-in head's rig and annotations: linear-blend-skinning weights (head, jaw, eyes), the
vertex sets whose means are the joints, the 68 landmarks and the named vertex masks.

The jaw takes over below the lip slit over a band that widens toward the ears and fades below the
mandible's lower border; the hinge is the mean of skin vertices in front of both ears (like FLAME's
J_regressor, joint centres are vertex means of the shaped mesh).
"""

from __future__ import annotations

import numpy as np

from ehead_cli.face.base import N_LANDMARKS
from ehead_cli.face.builtin.appearance import Appearance, brow_curve
from ehead_cli.face.builtin.falloff import smoothstep
from ehead_cli.face.builtin.mesh import HeadMesh
from ehead_cli.face.builtin.proportions import (
    EAR_PART,
    EYE_CORNERS_DEG,
    EYE_LEFT_JOINT,
    EYE_RIGHT_JOINT,
    HEAD_JOINT,
    JAW_BAND,
    JAW_BAND_WIDENING,
    JAW_BORDER_Y,
    JAW_HINGE_SKIN,
    JAW_JOINT,
    JAW_LINE,
    LANDMARK_TIE,
    MOUTH_CORNER_DEG,
    MOUTH_PART,
    MOUTH_Y,
)
from ehead_cli.face.builtin.surface import azimuth_deg


def skin_weights(head: HeadMesh) -> np.ndarray:
    """(V, 4) weights of the head, jaw, left-eye and right-eye joints."""
    P, skin, row = head.P, head.skin, head.layout.mouth_row
    az = azimuth_deg(P)
    # below the mouth line the jaw takes over, over a band that widens toward the ears
    band = JAW_BAND + JAW_BAND_WIDENING * np.clip(az - MOUTH_CORNER_DEG, 0, None)
    jaw = smoothstep(0.0, 1.0, 0.5 + (MOUTH_Y - P[:, 1]) / band)
    jaw *= 1 - smoothstep(75.0, 110.0, az)  # nothing behind the jaw angle
    # the neck stays: the weight fades below the mandible's lower border, which rises from the
    # chin toward the jaw angle
    border = JAW_BORDER_Y[0] + (JAW_BORDER_Y[1] - JAW_BORDER_Y[0]) * smoothstep(20.0, 75.0, az)
    jaw *= 1 - smoothstep(0.0, 0.03, border - P[:, 1])
    # the slit decides exactly: upper copies stay, lower copies follow the jaw
    jaw[skin.grid[row, skin.mouth_cols]] = 0.0
    jaw[skin.below[row, skin.mouth_cols]] = 1.0
    jaw[list(skin.mouth_corners)] = 0.5
    jaw[head.part == MOUTH_PART] = 0.0
    jaw[head.cavity_lower] = 1.0
    jaw[head.cavity.back] = 0.5
    jaw[head.cavity.corners] = 0.5  # like the skin's corners
    jaw[head.part == EAR_PART] = 0.0
    W = np.zeros((len(P), 4))
    W[:, HEAD_JOINT], W[:, JAW_JOINT] = 1 - jaw, jaw
    for side, joint in ((1, EYE_LEFT_JOINT), (-1, EYE_RIGHT_JOINT)):
        ids = head.eyeballs[side].ids
        W[ids] = 0.0
        W[ids, joint] = 1.0
    return W


def joint_anchors(head: HeadMesh) -> tuple[np.ndarray, ...]:
    """Vertex sets whose means are the jaw hinge, the eye centres and the neck pivot."""
    skin = np.flatnonzero(head.is_grid)
    hinge = []
    for side in (1, -1):  # skin just in front of each ear: their mean lies on the hinge axis
        d = np.linalg.norm(head.P[skin] - np.array([side * JAW_HINGE_SKIN[0], *JAW_HINGE_SKIN[1:]]), axis=1)
        hinge.extend(skin[np.argsort(d)[:3]])
    return (np.array(hinge), head.eyeballs[1].equator, head.eyeballs[-1].equator,
            head.skin.below[head.layout.neck_row])


def _front(P: np.ndarray, xy, candidates: np.ndarray) -> int:
    """The candidate nearest (x, y) in a frontal view; among near ties the one in front."""
    P = P[candidates]
    d2 = (P[:, 0] - xy[0]) ** 2 + (P[:, 1] - xy[1]) ** 2
    close = np.flatnonzero(d2 <= d2.min() + LANDMARK_TIE**2)
    return int(candidates[close[np.argmax(P[close, 2])]])


def _lip_border(P: np.ndarray, x: float, lip_ids: np.ndarray, top: bool) -> int:
    """The outermost lip vertex (top of the upper lip or bottom of the lower) nearest x."""
    P = P[lip_ids]
    column = np.flatnonzero(np.abs(P[:, 0] - x) <= np.abs(P[:, 0] - x).min() + 1e-6)
    best = column[np.argmax(P[column, 1])] if top else column[np.argmin(P[column, 1])]
    return int(lip_ids[best])


def landmarks(head: HeadMesh, look: Appearance) -> np.ndarray:
    """(68,) vertex ids in the iBUG 68-point layout (point 0 on the subject's right, -x)."""
    P, skin, layout = head.P, head.skin, head.layout
    lmk = np.zeros(N_LANDMARKS, np.int64)
    face = np.flatnonzero(head.is_grid & (P[:, 2] > -0.01) & (look.hair < 0.5))
    # 0-16 jaw line: from the right ear round the chin to the left ear
    for k, a in enumerate(np.linspace(np.pi, 0.0, 17)):
        lmk[k] = _front(P, (JAW_LINE[0] * np.cos(a), JAW_LINE[1] - JAW_LINE[2] * np.sin(a)), face)
    # 17-21 right brow outer -> inner, 22-26 left brow inner -> outer
    for k, bx in enumerate(np.linspace(0.050, 0.014, 5)):
        by = float(brow_curve(np.array([bx]))[0][0])
        lmk[17 + k] = _front(P, (-bx, by), face)
        lmk[26 - k] = _front(P, (bx, by), face)
    # 27-30 nose bridge to tip, 31-35 the nostril base from right to left
    for k, ny in enumerate((0.010, -0.003, -0.016, -0.031)):
        lmk[27 + k] = _front(P, (0.0, ny), face)
    for k, (nx, ny) in enumerate(((-0.014, -0.041), (-0.007, -0.044), (0.0, -0.045), (0.007, -0.044),
                                  (0.014, -0.041))):
        lmk[31 + k] = _front(P, (nx, ny), face)
    # 36-41 right eye, 42-47 left eye: the corners and the lid margins a third of the way in
    for side, base in ((-1, 36), (1, 42)):
        inner = skin.grid[layout.eye_row, layout.col(side * EYE_CORNERS_DEG[0])]
        outer = skin.grid[layout.eye_row, layout.col(side * EYE_CORNERS_DEG[1])]
        cols = skin.eye_cols[side]
        t = (np.degrees(np.abs(layout.az[cols])) - np.mean(EYE_CORNERS_DEG)) / (np.ptp(EYE_CORNERS_DEG) / 2)
        c_out, c_in = cols[np.argmin(np.abs(t - 1 / 3))], cols[np.argmin(np.abs(t + 1 / 3))]
        up, lo = skin.grid[layout.eye_row], skin.below[layout.eye_row]
        if side == -1:  # 36 outer, 37-38 upper outer -> inner, 39 inner, 40-41 lower inner -> outer
            lmk[base:base + 6] = [outer, up[c_out], up[c_in], inner, lo[c_in], lo[c_out]]
        else:  # 42 inner, 43-44 upper inner -> outer, 45 outer, 46-47 lower outer -> inner
            lmk[base:base + 6] = [inner, up[c_in], up[c_out], outer, lo[c_out], lo[c_in]]
    # 48-59 outer lip contour (48 right corner, 54 left), 60-67 inner contour on the slit
    lips = look.lip_vertices
    lmk[48], lmk[54] = skin.mouth_corners
    for k, ux in enumerate((-0.017, -0.008, 0.0, 0.008, 0.017)):
        lmk[49 + k] = _lip_border(P, ux, lips[head.lip_side[lips] > 0], top=True)
    for k, lx in enumerate((0.015, 0.007, 0.0, -0.007, -0.015)):
        lmk[55 + k] = _lip_border(P, lx, lips[head.lip_side[lips] < 0], top=False)
    cols, row = skin.mouth_cols, layout.mouth_row
    xs = P[skin.grid[row, cols], 0]
    near = [cols[np.argmin(np.abs(xs - x))] for x in (-0.009, 0.0, 0.009)]
    lmk[60], lmk[64] = skin.grid[row, cols[0]], skin.grid[row, cols[-1]]
    lmk[61:64] = skin.grid[row, near]
    lmk[65:68] = skin.below[row, near[::-1]]
    return lmk


def masks(head: HeadMesh, look: Appearance) -> dict[str, np.ndarray]:
    """The named vertex masks: ``lips`` (vermilion and slit) and ``upper_face`` (lids, forehead, brows)."""
    skin, row = head.skin, head.layout.mouth_row
    lips = np.concatenate([look.lip_vertices, skin.grid[row, skin.mouth_cols], skin.below[row, skin.mouth_cols],
                           list(skin.mouth_corners)])
    lids = np.concatenate([lid.ids for lid in head.lids.values()])
    forehead = head.is_grid & (head.P[:, 1] > 0.012) & (azimuth_deg(head.P) < 60) & (look.hair < 0.5)
    upper = np.concatenate([lids, np.flatnonzero(forehead), look.brow_vertices])
    return {"lips": np.unique(lips).astype(np.int64), "upper_face": np.unique(upper).astype(np.int64)}
