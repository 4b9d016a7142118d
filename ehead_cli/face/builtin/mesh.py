"""The built-in head's template mesh: every part added in a fixed order (which fixes the vertex ids),
then the per-vertex labels of the assembled mesh (``HeadMesh``) that the colours, the rig and the
blendshapes read. Order: the skin grid with its hair cap and slits, the eyelids, the eyeballs, the
ears and the mouth cavity (``parts``, ``eyes``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ehead_cli.face.builtin.eyes import Eyeball, Lid, add_eyeballs, shape_eyelids
from ehead_cli.face.builtin.parts import Cavity, Ear, Skin, add_ears, add_mouth, add_skin
from ehead_cli.face.builtin.proportions import EAR_PART, MOUTH_PART, SKIN_PART
from ehead_cli.face.builtin.topology import MeshBuilder, SkinGrid


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
