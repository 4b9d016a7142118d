"""Lambertian plus ambient shading under one directional light, and smooth vertex normals.

Normals are interpolated per pixel (Phong interpolation) and the Lambert term is evaluated per
pixel, so a few-thousand-vertex head looks smooth at 512 px. Everything is differentiable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

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

    def unit_direction(self, dtype: torch.dtype, device=None) -> torch.Tensor:
        """(3,) unit vector toward the light."""
        d = torch.tensor(self.direction, dtype=dtype, device=device)
        return d / d.norm().clamp_min(_NORMAL_EPS)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(B, V, 3) vertices, (F, 3) counter-clockwise faces -> (B, V, 3) unit outward normals,
    the area-weighted mean of the adjacent face normals."""
    B, V, _ = vertices.shape
    faces = faces.to(vertices.device)
    corners = (faces.reshape(1, -1) + torch.arange(B, device=faces.device)[:, None] * V).reshape(-1)
    tri = vertices.reshape(-1, 3).index_select(0, corners).view(-1, 3, 3)  # (B*F, 3 corners, 3 xyz)
    face_n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # (B*F, 3), |n| = 2 x area
    # each face adds its normal to its three corners: one scatter over all B*F*3 corners
    per_corner = face_n[:, None, :].expand(-1, 3, -1).reshape(-1, 3)
    normals = vertices.new_zeros(B * V, 3).index_add(0, corners, per_corner).view(B, V, 3)
    return normals / normals.norm(dim=-1, keepdim=True).clamp_min(_NORMAL_EPS)


def lambert(colors: torch.Tensor, normals: torch.Tensor, light: Light) -> torch.Tensor:
    """(..., 3) albedo in [0, 1], (..., 3) normals (any length) -> (..., 3) shaded colour in [0, 1]."""
    n = normals / normals.norm(dim=-1, keepdim=True).clamp_min(_NORMAL_EPS)
    cos = (n @ light.unit_direction(n.dtype, n.device)).clamp_min(0.0)
    return (colors * (light.ambient + light.diffuse * cos)[..., None]).clamp(0.0, 1.0)
