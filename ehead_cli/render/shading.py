"""Lambertian plus ambient shading under one directional light, and smooth vertex normals.

Normals are interpolated per pixel (Phong interpolation) and the Lambert term is evaluated per
pixel, so a few-thousand-vertex head looks smooth at 512 px. Everything is differentiable and
channel-major, like the rasteriser: (3, N) with N the long axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ehead_cli.render.rasterizer import corner_index

# Key light above, to the right of and in front of a face looking toward +z (world, y up).
LIGHT_DIRECTION = (0.35, 0.45, 1.0)
AMBIENT = 0.35
DIFFUSE = 0.7
_NORMAL_EPS = 1e-12  # guards the normalisation of zero-area fans and interpolated normals


@dataclass(frozen=True)
class Light:
    """A directional light. ``direction`` points from the surface toward the light (world
    coordinates, need not be unit length); shade = colour x (ambient + diffuse x max(0, n . l))."""

    direction: tuple[float, float, float] = LIGHT_DIRECTION
    ambient: float = AMBIENT
    diffuse: float = DIFFUSE

    def __post_init__(self) -> None:
        if math.hypot(*self.direction) == 0.0:
            raise ValueError("light direction must be non-zero")

    def unit_direction(self) -> tuple[float, float, float]:
        """Unit vector toward the light."""
        n = math.hypot(*self.direction)
        return (self.direction[0] / n, self.direction[1] / n, self.direction[2] / n)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(3, B, V) channel-major vertices, (F, 3) counter-clockwise faces -> (3, B, V) unit outward
    normals, the area-weighted mean of the adjacent face normals."""
    _, B, V = vertices.shape
    F = faces.shape[0]
    corners = corner_index(faces.to(vertices.device), B, V)
    p0, p1, p2 = vertices.reshape(3, B * V).index_select(1, corners).view(3, 3, B * F).unbind(1)  # (3, B*F)
    (ax, ay, az), (bx, by, bz) = p1 - p0, p2 - p0
    face_n = torch.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx])  # (3, B*F), |n| = 2 x area
    # each face adds its normal to its three corners: one scatter over all 3*B*F corners
    normals = vertices.new_zeros(3, B * V).index_add(1, corners, face_n.repeat(1, 3))
    norm = (normals * normals).sum(0).sqrt().clamp_min(_NORMAL_EPS)
    return (normals / norm).view(3, B, V)


def lambert(colors: torch.Tensor, normals: torch.Tensor, light: Light) -> torch.Tensor:
    """(3, P) albedo in [0, 1], (3, P) normals (any length) -> (3, P) shaded colour in [0, 1]."""
    norm = (normals * normals).sum(0).sqrt().clamp_min(_NORMAL_EPS)
    lx, ly, lz = light.unit_direction()
    cos = ((normals[0] * lx + normals[1] * ly + normals[2] * lz) / norm).clamp_min(0.0)
    return (colors * (light.ambient + light.diffuse * cos)).clamp(0.0, 1.0)
