"""The built-in head's linear bases: 300 identity (shape) and 100 expression blendshapes.

The basis vectors are metres of displacement per unit coefficient. The named components (listed in
``proportions``) move a few millimetres per unit, so +-1 is a clear, plausible expression and +-3
of shape a plausible other person; ``EXPR_BLINK`` = 1 closes the eyes exactly. The other
components are smooth random fields seeded by ``SEED``, whose peak displacement decreases with the
index (expression: 2 mm at index 11 down to 0.6 mm at 99; shape: 2.5 mm at index 14 down to
0.5 mm at 299). Eyeballs move only as wholes (shape) or not at all (expression: eye pose only).
"""

from __future__ import annotations

import numpy as np

from ehead_cli.face.builtin.eyes import lid_offsets
from ehead_cli.face.builtin.falloff import bump, smoothstep, sq_dist
from ehead_cli.face.builtin.mesh import HeadMesh
from ehead_cli.face.builtin.proportions import (
    EXPR_BLINK,
    EXPR_BROW_FROWN,
    EXPR_BROW_RAISE,
    EXPR_CHEEK_PUFF,
    EXPR_LIP_ROUND,
    EXPR_LIP_STRETCH,
    EXPR_LIPS_PART,
    EXPR_MOUTH_SIDEWAYS,
    EXPR_NOSE_WRINKLE,
    EXPR_SMILE,
    EXPR_SQUINT,
    EYE_CENTER,
    EYE_LEFT_PART,
    EYE_RIGHT_PART,
    MOUTH_Y,
    N_NAMED_EXPR,
    N_NAMED_SHAPE,
    SEED,
    SHAPE_BROW_RIDGE,
    SHAPE_CHEEK_FULLNESS,
    SHAPE_CHIN_LENGTH,
    SHAPE_EAR_SIZE,
    SHAPE_EYE_SPACING,
    SHAPE_FOREHEAD_SLOPE,
    SHAPE_HEAD_DEPTH,
    SHAPE_HEAD_HEIGHT,
    SHAPE_HEAD_WIDTH,
    SHAPE_JAW_WIDTH,
    SHAPE_LIP_FULLNESS,
    SHAPE_MOUTH_WIDTH,
    SHAPE_NOSE_PROJECTION,
    SHAPE_NOSE_SIZE,
    SQUINT_DEG,
)
from ehead_cli.layout import N_EXPR, N_SHAPE


def _rigid_eyes(head: HeadMesh, D: np.ndarray) -> np.ndarray:
    """(K, V, 3) displacements with each eyeball moved as a whole (its mean displacement)."""
    for ball in head.eyeballs.values():
        D[:, ball.ids] = D[:, ball.ids].mean(1, keepdims=True)
    return D


def shape_basis(head: HeadMesh) -> np.ndarray:
    """(V, 3, 300): the named identity components, then smooth random fields."""
    P = head.P
    x, y, z = P[:, 0], P[:, 1], P[:, 2]
    S = np.zeros((N_SHAPE, len(P), 3))
    front = smoothstep(0.0, 0.05, z)
    S[SHAPE_HEAD_WIDTH, :, 0] = 0.03 * x  # 3 % per unit, ~2 mm at the ears
    S[SHAPE_HEAD_HEIGHT, :, 1] = 0.025 * y  # 2.5 % per unit
    S[SHAPE_HEAD_DEPTH, :, 2] = 0.025 * np.minimum(z - 0.02, 0.0)  # the back of the skull, 2.5 %
    S[SHAPE_JAW_WIDTH, :, 0] = 0.06 * x * smoothstep(-0.03, -0.09, y)  # 6 % of the lower face
    nose = bump(P, (0.0, -0.018, 0.095), (0.014, 0.022, 0.016))
    S[SHAPE_NOSE_SIZE] = 0.10 * (P - np.array([0.0, -0.012, 0.082])) * nose[:, None]  # 10 %
    for s in (1, -1):  # each eye region 1.5 mm outward, eyeball and lids together
        d = np.linalg.norm(P - np.array([s * EYE_CENTER[0], *EYE_CENTER[1:]]), axis=1)
        S[SHAPE_EYE_SPACING, :, 0] += s * 0.0015 * (1 - smoothstep(0.016, 0.032, d))
    S[SHAPE_MOUTH_WIDTH, :, 0] = 0.12 * x * bump(P, (0.0, MOUTH_Y, 0.085), (0.02, 0.012, 0.02))
    lip = bump(P, (0.0, MOUTH_Y, 0.088), (0.018, 0.009, 0.012))
    S[SHAPE_LIP_FULLNESS, :, 2] = 0.0015 * lip  # 1.5 mm forward
    S[SHAPE_LIP_FULLNESS, :, 1] = 0.0012 * lip * head.lip_side  # each lip 1.2 mm taller
    S[SHAPE_CHIN_LENGTH, :, 1] = -0.003 * smoothstep(-0.075, -0.11, y) * front  # 3 mm down
    S[SHAPE_FOREHEAD_SLOPE, :, 2] = 0.003 * smoothstep(0.02, 0.09, y) * front  # 3 mm forward
    for s in (1, -1):
        cheek = bump(P, (s * 0.045, -0.035, 0.055), (0.016, 0.02, 0.02))
        S[SHAPE_CHEEK_FULLNESS] += cheek[:, None] * np.array([s * 0.0025, 0.0, 0.001])
    S[SHAPE_NOSE_PROJECTION, :, 2] = 0.003 * bump(P, (0.0, -0.03, 0.105), (0.01, 0.012, 0.012))
    for ear in head.ears.values():
        S[SHAPE_EAR_SIZE, ear.ids] = 0.08 * (P[ear.ids] - ear.root)  # 8 % larger
    S[SHAPE_BROW_RIDGE, :, 2] = 0.002 * bump(P, (0.0, 0.027, 0.085), (0.05, 0.008, 0.02))
    # the rest: sums of three Gaussian fields (2-5 cm wide), peak 2.5 mm falling as 1/sqrt(k)
    rng = np.random.default_rng(SEED)
    n = N_SHAPE - N_NAMED_SHAPE
    centres = P[rng.choice(np.flatnonzero(head.is_grid), size=(n, 3))]  # (n, 3, 3)
    sigma = rng.uniform(0.02, 0.05, size=(n, 3))
    vectors = rng.normal(size=(n, 3, 3))
    d2 = sq_dist(centres.reshape(-1, 3), P).reshape(n, 3, -1)  # (n, 3, V)
    field = np.einsum("njv,njc->nvc", np.exp(-0.5 * d2 / sigma[..., None] ** 2), vectors)
    peak = np.linalg.norm(field, axis=-1).max(1)[:, None, None]
    k = np.arange(N_NAMED_SHAPE, N_SHAPE)[:, None, None]
    S[N_NAMED_SHAPE:] = field / peak * 0.0025 * np.sqrt(N_NAMED_SHAPE / k)
    return _rigid_eyes(head, S).transpose(1, 2, 0)


def expression_basis(head: HeadMesh) -> np.ndarray:
    """(V, 3, 100): the named expressions, then small localised random bumps."""
    P = head.P
    E = np.zeros((N_EXPR, len(P), 3))
    mouth = (0.0, MOUTH_Y, 0.088)
    for s, corner in ((-1, head.skin.mouth_corners[0]), (1, head.skin.mouth_corners[1])):
        g = bump(P, P[corner], (0.011, 0.011, 0.014))
        # smile: corners 4.5 mm up, 3.5 mm out per unit; the cheeks rise 2 mm
        E[EXPR_SMILE] += g[:, None] * np.array([s * 0.0035, 0.0045, -0.0015])
        E[EXPR_SMILE] += bump(P, (s * 0.036, -0.035, 0.07), 0.014)[:, None] * np.array([s * 0.001, 0.002, 0.0015])
        E[EXPR_LIP_STRETCH] += g[:, None] * np.array([s * 0.005, -0.0015, -0.0015])  # corners 5 mm out
        brow = bump(P, (s * 0.028, 0.026, 0.08), (0.022, 0.014, 0.02))
        E[EXPR_BROW_RAISE, :, 1] += 0.0065 * brow  # 6.5 mm up
        inner = bump(P, (s * 0.014, 0.024, 0.085), (0.011, 0.011, 0.015))
        E[EXPR_BROW_FROWN] += inner[:, None] * np.array([-s * 0.0025, -0.003, 0.001])  # 3 mm down, 2.5 in
        puff = bump(P, (s * 0.042, -0.052, 0.06), (0.014, 0.016, 0.016))
        E[EXPR_CHEEK_PUFF] += puff[:, None] * np.array([s * 0.005, 0.0, 0.0025])  # 5 mm out
        E[EXPR_NOSE_WRINKLE, :, 1] += 0.0025 * bump(P, (s * 0.012, -0.028, 0.092), 0.009)  # 2.5 mm up
        E[EXPR_SQUINT, :, 1] += 0.001 * bump(P, (s * 0.032, -0.022, 0.07), 0.01)
    g = bump(P, mouth, (0.020, 0.014, 0.02))
    E[EXPR_LIP_ROUND, :, 0] = -0.35 * P[:, 0] * g  # corners ~4 mm toward the middle
    E[EXPR_LIP_ROUND, :, 2] = 0.007 * g  # lips 7 mm forward
    part = bump(P, mouth, (0.022, 0.010, 0.03))
    E[EXPR_LIPS_PART, :, 1] = 0.0025 * part * head.lip_side  # each lip 2.5 mm away from the slit
    E[EXPR_NOSE_WRINKLE, :, 1] += 0.001 * part * (head.lip_side > 0)
    E[EXPR_MOUTH_SIDEWAYS, :, 0] = 0.005 * bump(P, mouth, (0.025, 0.018, 0.025))  # 5 mm toward +x
    E[EXPR_BLINK] = lid_offsets(P, head.lids, closed=1.0)  # 1.0 closes the lids exactly
    E[EXPR_SQUINT] += lid_offsets(P, head.lids, lower_raise_deg=SQUINT_DEG)
    # the rest: one Gaussian bump each (0.8-1.8 cm wide) on the face, peak 2 mm * (11 / k)^0.6
    rng = np.random.default_rng(SEED + 1)
    n = N_EXPR - N_NAMED_EXPR
    face = np.flatnonzero(head.is_grid & (P[:, 2] > 0.03) & (P[:, 1] > -0.115) & (P[:, 1] < 0.05))
    centres = P[rng.choice(face, size=n)]
    sigma = rng.uniform(0.008, 0.018, size=n)
    vectors = rng.normal(size=(n, 3))
    d2 = sq_dist(centres, P)  # (n, V)
    field = np.exp(-0.5 * d2 / sigma[:, None] ** 2)[..., None] * vectors[:, None]
    k = np.arange(N_NAMED_EXPR, N_EXPR)[:, None, None]
    peak = np.linalg.norm(field, axis=-1).max(1)[:, None, None]
    E[N_NAMED_EXPR:] = field / peak * 0.002 * (N_NAMED_EXPR / k) ** 0.6
    E[:, (head.part == EYE_LEFT_PART) | (head.part == EYE_RIGHT_PART)] = 0.0  # eyes turn only by eye pose
    return E.transpose(1, 2, 0)
