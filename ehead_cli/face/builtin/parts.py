"""The built-in head's skin, ears and mouth cavity, each added onto one mesh (``topology.MeshBuilder``).

- Skin: one closed grid of rays cast from the vertical axis onto the implicit surface
  (``surface``); a hair cap is the skin pushed outward above a hairline. The mouth and the eyes
  are slits: the grid vertices along the slit row are doubled, one copy for the upper lip or lid
  and one for the lower.
- Ears: closed thin shells.
- Mouth: a dark pouch hanging from the lip slit, its upper sheet with the upper incisors and the
  palate, its lower sheet (which follows the jaw) with the lower incisors and the tongue.

The eyelids and eyeballs are ``eyes``; ``mesh.build_mesh`` adds every part in a fixed order and
labels the assembled mesh's vertices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ehead_cli.face.builtin.falloff import smoothstep
from ehead_cli.face.builtin.proportions import (
    AXIS_Z,
    BOTTOM_FAN_Y,
    CAVITY_BACK,
    CAVITY_LOWER,
    CAVITY_UPPER,
    EAR_FLARE_DEG,
    EAR_HALF_HEIGHT,
    EAR_HALF_WIDTH,
    EAR_LATERAL,
    EAR_MEDIAL,
    EAR_ROOT,
    EAR_SEGMENTS,
    EYE_CORNERS_DEG,
    HAIR_RAMP,
    HAIR_THICKNESS,
    HAIRLINE_AZIMUTH_DEG,
    HAIRLINE_Y,
    MOUTH_CORNER_DEG,
    TOP_FAN_Y,
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
# Ears
# =====================================================================================================


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
