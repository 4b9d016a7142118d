"""The built-in head's colours (linear RGB albedo per vertex) and the painted regions the
landmarks and masks reuse: the lip vermilion, the brows and the hair."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ehead_cli.face.builtin.eyes import lid_points
from ehead_cli.face.builtin.falloff import bump, smoothstep
from ehead_cli.face.builtin.mesh import HeadMesh
from ehead_cli.face.builtin.proportions import (
    BROWS,
    CAVITY_BACK,
    CAVITY_LOWER,
    CAVITY_UPPER,
    CHEEK_BLUSH,
    HAIR,
    IRIS,
    IRIS_DEG,
    IRIS_RIM,
    LASH_LINE,
    LIPS,
    MOUTH_Y,
    PUPIL,
    PUPIL_DEG,
    SCLERA,
    SKIN,
    UPPER_LID_SHADE,
    VERMILION_RAMP,
)


@dataclass(frozen=True)
class Appearance:
    colors: np.ndarray  # (V, 3) float64 in [0, 1]
    lip_vertices: np.ndarray  # ids painted as vermilion (both lips)
    brow_vertices: np.ndarray  # ids more than 30 % brow colour
    hair: np.ndarray  # (V,) hair amount in [0, 1]


def brow_curve(ax: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Brow centre height (m) and half thickness at |x| = ax: an arch, thicker toward the nose."""
    u = np.clip((ax - 0.011) / 0.043, 0, 1)
    return 0.0205 + 0.0075 * np.sin(np.pi * np.clip(u * 0.85 + 0.08, 0, 1)) - 0.004 * u**2, 0.0042 - 0.0022 * u


def paint_head(head: HeadMesh) -> Appearance:
    """Skin with a little blush, lips, brows, hair above the hairline, lash lines, the eyes' iris
    and pupil, the ears, and the mouth cavity's rings in their own colours."""
    P = head.P
    x, y, z = P[:, 0], P[:, 1], P[:, 2]
    col = np.tile(np.asarray(SKIN, float), (len(P), 1))
    grid = head.is_grid

    def paint(amount: np.ndarray, rgb) -> None:
        a = np.clip(amount, 0.0, 1.0)[:, None]
        col[:] = (1 - a) * col + a * np.asarray(rgb)

    cheeks = sum(bump(P, (s * CHEEK_BLUSH[0], *CHEEK_BLUSH[1:]), 0.014) for s in (1, -1))
    paint(0.08 * cheeks * grid, LIPS)  # the cheeks a little pinker
    # lips: the vermilion between the slit and the lip borders
    upper_h = 0.0085 * np.clip(1 - (x / 0.028) ** 2, 0, 1) ** 0.55 - 0.0013 * np.exp(-0.5 * (x / 0.0035) ** 2)
    lower_h = 0.0090 * np.clip(1 - (x / 0.027) ** 2, 0, 1) ** 0.5
    dy = y - MOUTH_Y
    near = grid & (z > 0.06) & (np.abs(x) < 0.028)
    lip_up = near & (head.lip_side >= 0) & (dy >= -1e-9) & (dy <= upper_h + 1e-4)
    lip_lo = near & (head.lip_side <= 0) & (dy <= 1e-9) & (-dy <= lower_h + 1e-4)
    lip_vertices = np.flatnonzero(lip_up | lip_lo)
    # the colour ramps linearly across the border over about one grid row, so the interpolated
    # colour's half-way line follows the border between the rows instead of stepping with them
    upper = near & (head.lip_side >= 0) & (dy >= -1e-9)
    lower = near & (head.lip_side <= 0) & (dy <= 1e-9)
    amount = np.where(upper, 0.5 + (upper_h - dy) / VERMILION_RAMP, 0.0)
    amount = np.maximum(amount, np.where(lower, 0.5 + (lower_h + dy) / VERMILION_RAMP, 0.0))
    paint(amount, LIPS)
    # brows: an arch above each eye, thicker at the inner end
    ax = np.abs(x)
    brow_y, brow_half = brow_curve(ax)
    brow = grid & (ax > 0.010) & (ax < 0.056) & (z > 0.04)
    amount = brow * np.clip(1.2 - np.abs(y - brow_y) / brow_half, 0, 1) * (1 - smoothstep(0.05, 0.058, ax))
    paint(amount, BROWS)
    brow_vertices = np.flatnonzero(amount > 0.3)
    # hair above the hairline
    hair = np.zeros(len(P))
    hair[head.skin.grid.ravel()] = smoothstep(-0.005, 0.005, head.skin.hair_height.ravel())
    hair[head.skin.crown] = 1.0
    paint(hair, HAIR)
    # The upper lids face the key light above, and nothing here casts the brow's shadow, so bare skin
    # there renders paler than the forehead: shade them toward the margin, fading out up the lid and
    # past the eye corners (the lid patch's own blend weights).
    for side, lid in head.lids.items():
        _, w = lid_points(side, lid.t, lid.s, lid.up)
        shade = np.zeros(len(P))
        shade[lid.ids] = UPPER_LID_SHADE * w * lid.up * (1 - lid.s)
        col *= 1 - shade[:, None]
    # a dark lash line along each upper lid margin
    for lid in head.lids.values():
        lash = np.zeros(len(P))
        lash[lid.ids[lid.up & (lid.s < 1e-9) & (np.abs(lid.t) <= 1.0)]] = 0.85
        paint(lash, LASH_LINE)
    for ball in head.eyeballs.values():
        polar = ball.polar_deg[:, None]
        col[ball.ids] = np.select([polar <= PUPIL_DEG, polar <= PUPIL_DEG + 5, polar <= IRIS_DEG - 4,
                                   polar <= IRIS_DEG + 0.5], [PUPIL, IRIS_RIM, IRIS, IRIS_RIM], SCLERA)
    for ear in head.ears.values():
        col[ear.ids] = 0.97 * np.asarray(SKIN) + 0.03 * np.asarray(LIPS)
    for rings, levels in ((head.cavity.upper, CAVITY_UPPER), (head.cavity.lower, CAVITY_LOWER)):
        for ids, level in zip(rings, levels, strict=True):
            col[ids] = level[3]
    col[head.cavity.back] = CAVITY_BACK[3]
    col[head.cavity.corners] = CAVITY_UPPER[0][3]
    return Appearance(np.clip(col, 0, 1), lip_vertices, brow_vertices, hair)
