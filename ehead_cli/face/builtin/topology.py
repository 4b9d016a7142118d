"""Mesh bookkeeping for the built-in head: the growing vertex and triangle lists, the skin grid's
rows and columns, and the triangle patterns that join rows of vertex ids (strips and fans).

The skin grid has rows (top to bottom) and columns (azimuth, toward +x across the front). Rows
above the forehead fan out from one point on the skin-ray axis to the crown (``TOP_FAN_DEG``),
rows over the face are horizontal slices (``BAND_SEGMENTS``, so the eye slits and the mouth are
straight rows) and rows below the lips fan out from one point on the axis under the chin and down
the neck (``BOTTOM_FAN_DEG``): the chin overhangs the neck, so horizontal slices there would jump
from the chin's front to the neck and leave a notch in the chin's outline.
"""

from __future__ import annotations

import numpy as np

from ehead_cli.face.builtin.proportions import (
    AZIMUTH_SEGMENTS,
    BAND_SEGMENTS,
    BOTTOM_FAN_DEG,
    BOTTOM_FAN_Y,
    EYE_Y,
    MOUTH_Y,
    NECK_PIVOT_ROW_DEG,
    TOP_FAN_DEG,
    TOP_FAN_Y,
)


def piecewise(start: float, segments) -> np.ndarray:
    """Values from ``start`` through each (end, intervals) segment, uniform within a segment."""
    out = [start]
    for end, n in segments:
        out.extend(np.linspace(out[-1], end, n + 1)[1:])
    return np.asarray(out)


def strip(top: np.ndarray, bottom: np.ndarray, closed: bool = True) -> np.ndarray:
    """Triangles between two rows of vertex ids (C,), counter-clockwise seen from outside when the
    columns run toward +x across the front and ``top`` lies above ``bottom``."""
    c = np.arange(len(top) if closed else len(top) - 1)
    c2 = (c + 1) % len(top)
    return np.concatenate([np.stack([top[c], bottom[c], bottom[c2]], -1),
                           np.stack([top[c], bottom[c2], top[c2]], -1)])


def strips(rings: list[np.ndarray], closed: bool = True) -> np.ndarray:
    """Triangles joining each row of vertex ids to the next."""
    return np.concatenate([strip(a, b, closed) for a, b in zip(rings[:-1], rings[1:], strict=True)])


def fan(centre: int, ring: np.ndarray) -> np.ndarray:
    """Triangles from one vertex to a closed ring."""
    return np.stack([np.full(len(ring), centre), ring, np.roll(ring, -1)], -1)


def face_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F, 3) unnormalised triangle normals (right-hand rule on the corner order)."""
    tri = verts[faces]
    return np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])


class SkinGrid:
    """Where the skin grid's rays start and point: per row a ray-origin height and an elevation,
    per column an azimuth, and the rows that carry the eye slits, the mouth and the neck pivot."""

    def __init__(self) -> None:
        half = piecewise(0.0, AZIMUTH_SEGMENTS)  # 0 .. 180 degrees
        self.az = np.radians(np.concatenate([-half[::-1][:-1], half[:-1]]))  # (C,) -180 .. <180
        band = piecewise(TOP_FAN_Y, BAND_SEGMENTS)
        n_top = len(TOP_FAN_DEG)
        # every row is one (ray origin height, elevation) for all its columns
        self.row_y = np.concatenate([np.full(n_top, TOP_FAN_Y), band, np.full(len(BOTTOM_FAN_DEG), BOTTOM_FAN_Y)])
        self.row_el = np.radians(np.concatenate([TOP_FAN_DEG, np.zeros(len(band)), BOTTOM_FAN_DEG]))
        self.band_rows = np.arange(n_top, n_top + len(band))
        self.eye_row = n_top + int(np.argmin(np.abs(band - EYE_Y)))
        self.mouth_row = n_top + int(np.argmin(np.abs(band - MOUTH_Y)))
        self.neck_row = n_top + len(band) + BOTTOM_FAN_DEG.index(NECK_PIVOT_ROW_DEG)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns)."""
        return len(self.row_y), len(self.az)

    def col(self, deg: float) -> int:
        """The grid column at exactly ``deg`` degrees of azimuth."""
        c = int(np.argmin(np.abs(self.az - np.radians(deg))))
        if abs(np.degrees(self.az[c]) - deg) > 1e-6:
            raise RuntimeError(f"no grid column at {deg} degrees")
        return c


class MeshBuilder:
    """The vertices and triangles made so far; parts append to it in a fixed order, so vertex ids
    are deterministic."""

    def __init__(self) -> None:
        self._verts: list[np.ndarray] = []
        self._faces: list[np.ndarray] = []
        self.n = 0

    def add(self, verts) -> np.ndarray:
        """Append vertices (N, 3); returns their ids."""
        verts = np.asarray(verts, np.float64).reshape(-1, 3)
        ids = np.arange(self.n, self.n + len(verts))
        self._verts.append(verts)
        self.n += len(verts)
        return ids

    def add_faces(self, faces: np.ndarray) -> None:
        """Append triangles (F, 3) of vertex ids."""
        self._faces.append(faces)

    def vertices(self) -> np.ndarray:
        """(n, 3) all vertices so far (a fresh array; write back with ``set_vertices``)."""
        return np.concatenate(self._verts)

    def set_vertices(self, verts: np.ndarray) -> None:
        """Replace every vertex so far (same count) by ``verts`` (n, 3)."""
        if verts.shape != (self.n, 3):
            raise ValueError(f"expected ({self.n}, 3) vertices, got {verts.shape}")
        self._verts = [verts]

    def faces(self) -> np.ndarray:
        """(F, 3) all triangles so far."""
        return np.concatenate(self._faces)
