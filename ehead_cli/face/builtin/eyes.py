"""The built-in head's eyes: the eyelids shaped from the skin around each eye slit, and the eyeballs.

- Eyelids: the skin around each eye slit (``parts.add_skin``) reshaped onto a sphere around the
  eyeball (``LID_RADIUS``), with margins e(t) = peak * (1 - t^2)^p across the eye; ``lid_offsets``
  moves them for a blink, which the blendshapes read, and ``lid_points`` gives the lid surface the
  colours draw on.
- Eyeballs (sclera, iris, pupil): UV spheres turned about their centres by the eye poses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ehead_cli.face.builtin.falloff import smoothstep
from ehead_cli.face.builtin.parts import Skin
from ehead_cli.face.builtin.proportions import (
    BLINK_MEET,
    CORNEA_BULGE,
    EQUATOR,
    EYE_CENTER,
    EYE_CORNERS_DEG,
    EYE_LEFT_PART,
    EYE_PATCH_BOTTOM,
    EYE_PATCH_TOP,
    EYE_RADIUS,
    EYE_RIGHT_PART,
    EYE_Y,
    EYEBALL_RINGS_DEG,
    EYEBALL_SEGMENTS,
    IRIS_DEG,
    LID_BLEND_START,
    LID_BOTTOM_DEG,
    LID_CENTER_DEG,
    LID_HALF_WIDTH_DEG,
    LID_PATCH_HALF_WIDTH,
    LID_RADIUS,
    LID_TOP_DEG,
    LOWER_MARGIN_DEG,
    UPPER_MARGIN_DEG,
)
from ehead_cli.face.builtin.surface import direction
from ehead_cli.face.builtin.topology import MeshBuilder, SkinGrid, face_normals, fan, strips

# =====================================================================================================
# Eyelids
# =====================================================================================================


@dataclass(frozen=True)
class Lid:
    """One eye's lid patch: vertex ids with their lid coordinates and their skin before reshaping."""

    ids: np.ndarray  # (P,) vertex ids
    t: np.ndarray  # (P,) across the eye: -1 inner corner, +1 outer
    s: np.ndarray  # (P,) from the margin (0) to the patch edge (1)
    up: np.ndarray  # (P,) bool, upper lid
    skin: np.ndarray  # (P, 3) the skin grid's points before the lids were shaped


def _lid_coordinates(layout: SkinGrid, skin: Skin, side: int):
    """Vertex ids of one eye's lid patch with their lid coordinates: t across the eye (-1 inner
    corner, +1 outer), s from the margin (0) to the patch edge (1), and upper/lower lid."""
    inner, outer = np.radians(EYE_CORNERS_DEG)
    mid, half = (inner + outer) / 2, (outer - inner) / 2
    ids, ts, ss, up = [], [], [], []
    for r in layout.band_rows:
        y = layout.row_y[r]
        if not EYE_PATCH_BOTTOM - 1e-9 <= y <= EYE_PATCH_TOP + 1e-9:
            continue
        for c in np.flatnonzero(side * layout.az > 0):
            t = (side * layout.az[c] - mid) / half
            if abs(t) > LID_PATCH_HALF_WIDTH:
                continue
            copies = []
            if y >= EYE_Y - 1e-9:
                copies.append((skin.grid[r, c], True, (y - EYE_Y) / (EYE_PATCH_TOP - EYE_Y)))
            if y <= EYE_Y + 1e-9 and (r != layout.eye_row or skin.below[r, c] != skin.grid[r, c]):
                copies.append((skin.below[r, c], False, (EYE_Y - y) / (EYE_Y - EYE_PATCH_BOTTOM)))
            for vid, is_up, s in copies:
                ids.append(vid)
                ts.append(t)
                ss.append(max(s, 0.0))
                up.append(is_up)
    return np.array(ids), np.array(ts), np.array(ss), np.array(up)


def lid_points(side: int, t, s, up, closed: float = 0.0, lower_raise_deg: float = 0.0):
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
    pos = c + LID_RADIUS * direction(np.radians(a), np.radians(e))
    w = (1 - smoothstep(LID_BLEND_START, 1.0, s)) * (1 - smoothstep(1.0, LID_PATCH_HALF_WIDTH, np.abs(t)))
    return pos, w


def shape_eyelids(mesh: MeshBuilder, layout: SkinGrid, skin: Skin) -> dict[int, Lid]:
    """Reshape the skin around each eye slit onto the lid sphere, open; side -> its lid patch."""
    V = mesh.vertices()
    lids = {}
    for side in (1, -1):
        ids, t, s, up = _lid_coordinates(layout, skin, side)
        before = V[ids].copy()
        pos, w = lid_points(side, t, s, up)
        V[ids] = w[:, None] * pos + (1 - w[:, None]) * before
        lids[side] = Lid(ids, t, s, up, before)
    mesh.set_vertices(V)
    return lids


def lid_offsets(vertices: np.ndarray, lids: dict[int, Lid], **settings) -> np.ndarray:
    """(V, 3) displacement of the lids from the open template ``vertices`` (V, 3) under
    ``lid_points`` settings (closed=..., lower_raise_deg=...)."""
    out = np.zeros_like(vertices)
    for side, lid in lids.items():
        pos, w = lid_points(side, lid.t, lid.s, lid.up, **settings)
        out[lid.ids] = w[:, None] * pos + (1 - w[:, None]) * lid.skin - vertices[lid.ids]
    return out


# =====================================================================================================
# Eyeballs
# =====================================================================================================


@dataclass(frozen=True)
class Eyeball:
    ids: np.ndarray  # (B,) vertex ids: the front pole, the rings, the back pole
    polar_deg: np.ndarray  # (B,) angle of each vertex from the front, degrees
    centre: np.ndarray  # (3,) metres
    part: int  # EYE_LEFT_PART or EYE_RIGHT_PART
    equator: np.ndarray  # the ring whose mean is the eyeball centre


def add_eyeballs(mesh: MeshBuilder) -> dict[int, Eyeball]:
    """UV spheres facing +z; the iris and pupil are rings of constant angle from the front."""
    polar = np.radians(EYEBALL_RINGS_DEG)
    phi = np.arange(EYEBALL_SEGMENTS) * 2 * np.pi / EYEBALL_SEGMENTS
    eyeballs = {}
    for side, part in ((1, EYE_LEFT_PART), (-1, EYE_RIGHT_PART)):
        c = np.array([side * EYE_CENTER[0], EYE_CENTER[1], EYE_CENTER[2]])
        front = mesh.add(c + [0.0, 0.0, EYE_RADIUS + CORNEA_BULGE])[0]
        rings = []
        for th in polar:
            r = EYE_RADIUS + CORNEA_BULGE * smoothstep(0.0, 1.0, 1 - th / np.radians(IRIS_DEG + 2))
            rings.append(mesh.add(c + r * np.stack([np.sin(th) * np.cos(phi), np.sin(th) * np.sin(phi),
                                                    np.full_like(phi, np.cos(th))], -1)))
        back = mesh.add(c - [0.0, 0.0, EYE_RADIUS])[0]
        faces = np.concatenate([fan(front, rings[0]), strips(rings), fan(back, rings[-1])])
        verts = mesh.vertices()
        outward = (face_normals(verts, faces) * (verts[faces].mean(1) - c)).sum(-1) > 0
        faces[~outward] = faces[~outward][:, ::-1]
        mesh.add_faces(faces)
        ids = np.concatenate([[front], *rings, [back]])
        polar_deg = np.concatenate([[0.0], np.repeat(EYEBALL_RINGS_DEG, EYEBALL_SEGMENTS), [180.0]])
        eyeballs[side] = Eyeball(ids, polar_deg, c, part, rings[EQUATOR])
    return eyeballs
