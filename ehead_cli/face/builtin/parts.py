"""The built-in head's parts, built onto one mesh in a fixed order: the skin grid with its hair
cap and slits, the eyelids, the eyeballs, the ears and the mouth cavity; then the per-vertex
labels of the assembled mesh (``HeadMesh``) that the colours, the rig and the blendshapes read.

- Skin: one closed grid of rays cast from the vertical axis onto the implicit surface
  (``surface``); a hair cap is the skin pushed outward above a hairline. The mouth and the eyes
  are slits: the grid vertices along the slit row are doubled, one copy for the upper lip or lid
  and one for the lower.
- Eyelids: the skin around each eye slit reshaped onto a sphere around the eyeball
  (``LID_RADIUS``), with margins e(t) = peak * (1 - t^2)^p across the eye.
- Eyeballs (sclera, iris, pupil): UV spheres turned about their centres by the eye poses.
- Ears: closed thin shells.
- Mouth: a dark pouch hanging from the lip slit, its upper sheet with the upper incisors and the
  palate, its lower sheet (which follows the jaw) with the lower incisors and the tongue.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ehead_cli.face.builtin.falloff import smoothstep
from ehead_cli.face.builtin.proportions import (
    AXIS_Z,
    BLINK_MEET,
    BOTTOM_FAN_Y,
    CAVITY_BACK,
    CAVITY_LOWER,
    CAVITY_UPPER,
    CORNEA_BULGE,
    EAR_FLARE_DEG,
    EAR_HALF_HEIGHT,
    EAR_HALF_WIDTH,
    EAR_LATERAL,
    EAR_MEDIAL,
    EAR_PART,
    EAR_ROOT,
    EAR_SEGMENTS,
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
    HAIR_RAMP,
    HAIR_THICKNESS,
    HAIRLINE_AZIMUTH_DEG,
    HAIRLINE_Y,
    IRIS_DEG,
    LID_BLEND_START,
    LID_BOTTOM_DEG,
    LID_CENTER_DEG,
    LID_HALF_WIDTH_DEG,
    LID_PATCH_HALF_WIDTH,
    LID_RADIUS,
    LID_TOP_DEG,
    LOWER_MARGIN_DEG,
    MOUTH_CORNER_DEG,
    MOUTH_PART,
    SKIN_PART,
    TOP_FAN_Y,
    UPPER_MARGIN_DEG,
)
from ehead_cli.face.builtin.surface import azimuth_deg, cast, direction
from ehead_cli.face.builtin.topology import MeshBuilder, SkinGrid, face_normals, fan, strip, strips

# =====================================================================================================
# Skin
# =====================================================================================================


@dataclass(frozen=True)
class Skin:
    """The skin grid's vertex ids. ``grid[r, c]`` is a vertex id and ``below[r, c]`` the id the row
    beneath uses, which differs only on the slit rows, where the lower lip and the lower eyelids
    have their own copies."""

    grid: np.ndarray  # (R, C) int
    below: np.ndarray  # (R, C) int
    crown: int  # closes the top fan
    base: int  # closes the neck cut
    hair_height: np.ndarray  # (R, C) metres above the hairline (negative below)
    mouth_cols: np.ndarray  # columns strictly between the mouth corners
    mouth_corners: tuple[int, int]  # vertex ids: right (-x), left (+x)
    eye_cols: dict[int, np.ndarray]  # side (+1 left eye, -1 right) -> columns strictly between its corners


def above_hairline(p: np.ndarray) -> np.ndarray:
    """Metres above the hairline (negative below) of points p (..., 3)."""
    return p[..., 1] - np.interp(azimuth_deg(p), HAIRLINE_AZIMUTH_DEG, HAIRLINE_Y)


def add_skin(mesh: MeshBuilder, layout: SkinGrid) -> Skin:
    """Cast the grid's rays, thicken the hair cap, double the slit rows and join the rows."""
    R, C = layout.shape
    dirs = direction(layout.az[None, :], layout.row_el[:, None])  # (R, C, 3)
    origins = np.zeros((R, C, 3))
    origins[..., 1] = layout.row_y[:, None]
    origins[..., 2] = AXIS_Z
    pts = origins + cast(origins.reshape(-1, 3), dirs.reshape(-1, 3)).reshape(R, C, 1) * dirs
    # hair: the skin pushed outward, thickening over the first 3 cm above the hairline
    hair_height = above_hairline(pts)  # (R, C)
    pts = pts + (HAIR_THICKNESS * smoothstep(0.0, HAIR_RAMP, hair_height))[..., None] * dirs
    # the crown and the neck cut close with one vertex each
    crown_p = np.array([[0.0, TOP_FAN_Y, AXIS_Z]])
    crown_p[0, 1] += cast(crown_p, np.array([[0.0, 1.0, 0.0]]))[0] + HAIR_THICKNESS
    base_p = np.array([[0.0, BOTTOM_FAN_Y, AXIS_Z]])
    base_p[0, 1] -= cast(base_p, np.array([[0.0, -1.0, 0.0]]))[0]

    grid = mesh.add(pts.reshape(-1, 3)).reshape(R, C)
    crown, base = mesh.add(crown_p)[0], mesh.add(base_p)[0]
    below = grid.copy()
    row = layout.mouth_row
    mouth_cols = np.arange(layout.col(-MOUTH_CORNER_DEG) + 1, layout.col(MOUTH_CORNER_DEG))
    mouth_corners = (grid[row, layout.col(-MOUTH_CORNER_DEG)], grid[row, layout.col(MOUTH_CORNER_DEG)])
    below[row, mouth_cols] = mesh.add(pts[row, mouth_cols])
    eye_cols = {}
    for side in (1, -1):  # left eye (+x), right eye (-x)
        a, b = sorted((layout.col(side * EYE_CORNERS_DEG[0]), layout.col(side * EYE_CORNERS_DEG[1])))
        eye_cols[side] = np.arange(a + 1, b)
        below[layout.eye_row, a + 1:b] = mesh.add(pts[layout.eye_row, a + 1:b])

    for r in range(R - 1):
        mesh.add_faces(strip(below[r], grid[r + 1]))
    mesh.add_faces(fan(crown, grid[0]))
    mesh.add_faces(fan(base, below[-1])[:, [1, 0, 2]])
    return Skin(grid, below, crown, base, hair_height, mouth_cols, mouth_corners, eye_cols)


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
# Eyeballs and ears
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


@dataclass(frozen=True)
class Ear:
    ids: np.ndarray  # vertex ids of the shell
    root: np.ndarray  # (3,) the front edge, where it joins the head


def add_ears(mesh: MeshBuilder) -> dict[int, Ear]:
    """Closed thin shells: a lateral sheet with a bowl (concha) and a rim (helix), a flat
    medial sheet, joined at the rim."""
    phi = np.arange(EAR_SEGMENTS) * 2 * np.pi / EAR_SEGMENTS
    flare = np.radians(EAR_FLARE_DEG)
    ears = {}
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
        lateral_centre = mesh.add(centre - 0.0025 * normal)[0]
        lateral = [mesh.add(centre + u * outline + h * normal) for u, h in EAR_LATERAL]
        rim = mesh.add(centre + outline + 0.0015 * normal)
        medial = [mesh.add(centre + u * outline - (0.002 + 0.004 * (1 - u)) * normal) for u in EAR_MEDIAL]
        medial_centre = mesh.add(centre - 0.007 * normal)[0]
        rings = [*lateral, rim, *medial]
        faces = np.concatenate([fan(lateral_centre, lateral[0]), strips(rings), fan(medial_centre, medial[-1])])
        # the lateral sheet faces outward, the medial sheet toward the head
        is_lateral = np.isin(faces, np.concatenate([[lateral_centre], *lateral, rim])).all(1)
        flip = (face_normals(mesh.vertices(), faces) @ normal) * np.where(is_lateral, 1.0, -1.0) < 0
        faces[flip] = faces[flip][:, ::-1]
        mesh.add_faces(faces)
        ears[side] = Ear(np.concatenate([[lateral_centre], *lateral, rim, *medial, [medial_centre]]), root)
    return ears


# =====================================================================================================
# Mouth cavity
# =====================================================================================================


@dataclass(frozen=True)
class Cavity:
    upper: list[np.ndarray]  # vertex ids of each ring of CAVITY_UPPER (the corners excluded)
    lower: list[np.ndarray]  # ... of CAVITY_LOWER
    back: np.ndarray  # ... of CAVITY_BACK
    corners: np.ndarray  # (2,) the cavity's own copies of the right and left mouth corners


def add_mouth(mesh: MeshBuilder, layout: SkinGrid, skin: Skin) -> Cavity:
    """A pouch hanging from the lip slit: rings of ``CAVITY_UPPER`` from the upper lip and of
    ``CAVITY_LOWER`` from the lower lip, meeting at ``CAVITY_BACK``. Every ring ends on the mouth
    corners; the cavity has its own copies of them, since a corner shared with the skin would take
    its normal mostly from the cavity's many triangles there (a bright or dark speck on the lips)."""
    V = mesh.vertices()
    slit = np.concatenate([[skin.mouth_corners[0]], skin.grid[layout.mouth_row, skin.mouth_cols],
                           [skin.mouth_corners[1]]])
    margin = V[slit]  # (M, 3) from the right corner to the left
    corners = mesh.add(margin[[0, -1]])
    upper = np.concatenate([[corners[0]], slit[1:-1], [corners[1]]])
    lower = np.concatenate([[corners[0]], skin.below[layout.mouth_row, skin.mouth_cols], [corners[1]]])
    bulge = 1 - np.linspace(-1.0, 1.0, len(margin)) ** 2  # rings close toward the corners

    def ring(depth: float, height: float, x_scale: float, ends: np.ndarray) -> np.ndarray:
        p = margin.copy()
        p[:, 0] *= x_scale
        p[:, 2] -= depth
        p[:, 1] += height * bulge
        return np.concatenate([[ends[0]], mesh.add(p[1:-1]), [ends[-1]]])

    up_rings = [upper] + [ring(*level[:3], upper) for level in CAVITY_UPPER]
    lo_rings = [lower] + [ring(*level[:3], upper) for level in CAVITY_LOWER]
    back_ring = ring(*CAVITY_BACK[:3], upper)
    V = mesh.vertices()
    inside = margin.mean(0) - np.array([0.0, 0.0, 0.02])
    for rings in (up_rings + [back_ring], lo_rings + [back_ring]):
        faces = strips(rings, closed=False)
        faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
        # one orientation per sheet, toward the inside of the mouth on the whole (the teeth face
        # forward, so a per-triangle test would turn them away from the viewer)
        if ((inside - V[faces].mean(1)) * face_normals(V, faces)).sum() < 0:
            faces = faces[:, ::-1]
        mesh.add_faces(faces)
    return Cavity([r[1:-1] for r in up_rings[1:]], [r[1:-1] for r in lo_rings[1:]], back_ring[1:-1], corners)


# =====================================================================================================
# The assembled mesh
# =====================================================================================================


@dataclass(frozen=True)
class HeadMesh:
    """The built head's template mesh and its per-vertex labels, read by the colours, the rig and
    the blendshapes."""

    layout: SkinGrid
    skin: Skin
    lids: dict[int, Lid]
    eyeballs: dict[int, Eyeball]
    ears: dict[int, Ear]
    cavity: Cavity
    P: np.ndarray  # (V, 3) float64 template vertices, metres
    faces: np.ndarray  # (F, 3) int
    part: np.ndarray  # (V,) SKIN_PART, EYE_LEFT_PART, ...
    is_grid: np.ndarray  # (V,) bool: a skin-grid vertex (either slit copy, the crown, the neck base)
    cavity_upper: np.ndarray  # vertex ids of every upper cavity ring
    cavity_lower: np.ndarray  # ... lower
    lip_side: np.ndarray  # (V,) +1 upper side of the mouth slit, -1 lower side, 0 elsewhere


def build_mesh() -> HeadMesh:
    """Build every part onto one mesh (the order fixes the vertex ids) and label the vertices."""
    mesh, layout = MeshBuilder(), SkinGrid()
    skin = add_skin(mesh, layout)
    lids = shape_eyelids(mesh, layout, skin)
    eyeballs = add_eyeballs(mesh)
    ears = add_ears(mesh)
    cavity = add_mouth(mesh, layout, skin)
    V = mesh.vertices()
    part = np.full(len(V), SKIN_PART)
    for ball in eyeballs.values():
        part[ball.ids] = ball.part
    for ear in ears.values():
        part[ear.ids] = EAR_PART
    cavity_upper, cavity_lower = np.concatenate(cavity.upper), np.concatenate(cavity.lower)
    part[np.concatenate([cavity_upper, cavity_lower, cavity.back, cavity.corners])] = MOUTH_PART
    is_grid = np.zeros(len(V), bool)
    is_grid[np.concatenate([skin.grid.ravel(), skin.below.ravel(), [skin.crown, skin.base]])] = True
    lip_side = _lip_side(len(V), layout, skin, cavity_upper, cavity_lower)
    return HeadMesh(layout, skin, lids, eyeballs, ears, cavity, V, mesh.faces(), part, is_grid,
                    cavity_upper, cavity_lower, lip_side)


def _lip_side(n: int, layout: SkinGrid, skin: Skin, cavity_upper: np.ndarray, cavity_lower: np.ndarray) -> np.ndarray:
    """(V,) +1 on the upper-lip side of the mouth slit (skin rows above it, the upper copies and
    the upper cavity), -1 on the lower side, 0 on the slit row outside the mouth and elsewhere."""
    side = np.zeros(n)
    rows = np.arange(len(layout.row_y))[:, None]
    C = len(layout.az)
    side[skin.grid[(rows < layout.mouth_row).repeat(C, 1)]] = 1.0
    side[skin.grid[(rows > layout.mouth_row).repeat(C, 1)]] = -1.0
    side[skin.grid[layout.mouth_row, skin.mouth_cols]] = 1.0
    side[skin.below[layout.mouth_row, skin.mouth_cols]] = -1.0
    side[cavity_upper] = 1.0
    side[cavity_lower] = -1.0
    return side
