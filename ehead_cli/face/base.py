"""The interface every face model implements (FLAME and the built-in procedural head).

A face model maps an identity ``shape`` (300) and a ``motion`` frame (115, see ``ehead_cli.layout``)
to mesh vertices. It also carries what the renderer and the metrics need: triangle ``faces``,
per-vertex colours, the 68 facial landmarks (as barycentric coordinates on triangles, which also
covers plain vertex indices) and named vertex masks (``lips``, ``upper_face``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ehead_cli.layout import MOTION_DIM, N_EXPR, N_SHAPE

N_LANDMARKS = 68
MOUTH_UPPER_INNER = 62  # 0-based index in the 68-point layout (MOD, supplementary B.2)
MOUTH_LOWER_INNER = 66


class FaceModel(nn.Module):
    """Base class. Subclasses register these buffers in ``__init__`` and implement ``_vertices``.

    Buffers:
      faces            (F, 3) int64 triangle vertex indices, counter-clockwise seen from outside
      vertex_colors    (V, 3) float32 in [0, 1]
      lmk_faces        (68,) int64 triangle index of each landmark
      lmk_bary         (68, 3) float32 barycentric weights on that triangle
      mask_<name>      (K,) int64 vertex indices for each name in ``mask_names``
    """

    name: str = "face"
    mask_names: tuple[str, ...] = ("lips", "upper_face")

    faces: torch.Tensor
    vertex_colors: torch.Tensor
    lmk_faces: torch.Tensor
    lmk_bary: torch.Tensor

    @property
    def n_vertices(self) -> int:
        return int(self.vertex_colors.shape[0])

    def mask(self, name: str) -> torch.Tensor:
        """Vertex indices (K,) of a named region (``lips``, ``upper_face``, ...)."""
        if name not in self.mask_names:
            raise KeyError(f"{self.name} has no vertex mask {name!r}; it has {', '.join(self.mask_names)}")
        return getattr(self, f"mask_{name}")

    def forward(self, shape: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """(*S, 300) shape, (*M, 115) motion -> (*B, V, 3) vertices, B the broadcast of S and M.

        Typical use: shape (B, 1, 300) with motion (B, T, 115) gives (B, T, V, 3).
        """
        if shape.shape[-1] != N_SHAPE or motion.shape[-1] != MOTION_DIM:
            raise ValueError(f"expected shape (..., {N_SHAPE}) and motion (..., {MOTION_DIM}), "
                             f"got {tuple(shape.shape)} and {tuple(motion.shape)}")
        batch = torch.broadcast_shapes(shape.shape[:-1], motion.shape[:-1])
        shape = shape.expand(*batch, N_SHAPE).reshape(-1, N_SHAPE)
        motion = motion.expand(*batch, MOTION_DIM).reshape(-1, MOTION_DIM)
        verts = self._vertices(shape, motion)  # (N, V, 3)
        return verts.reshape(*batch, verts.shape[-2], 3)

    def _vertices(self, shape: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """(N, 300), (N, 115) -> (N, V, 3). Implemented by each face model."""
        raise NotImplementedError

    # --- linear blendshapes, shared by FLAME and the built-in head ----------------------------
    def _register_blendshapes(self, template: np.ndarray, shapedirs: np.ndarray, exprdirs: np.ndarray) -> None:
        """Buffers ``v_template`` (V, 3), ``shapedirs`` (300, V*3) and ``exprdirs`` (100, V*3) from
        (V, 3), (V, 3, 300) and (V, 3, 100) arrays."""
        V = template.shape[0]
        self.register_buffer("v_template", torch.from_numpy(np.array(template)))
        self.register_buffer("shapedirs", torch.from_numpy(shapedirs.reshape(V * 3, N_SHAPE).T.copy()))
        self.register_buffer("exprdirs", torch.from_numpy(exprdirs.reshape(V * 3, N_EXPR).T.copy()))

    def _shaped(self, shape: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """(N, 300), (N, 100) -> (N, V, 3) template plus identity and expression blendshapes."""
        offsets = shape @ self.shapedirs + expression @ self.exprdirs  # (N, V*3)
        return self.v_template + offsets.view(shape.shape[0], -1, 3)

    def landmarks(self, vertices: torch.Tensor) -> torch.Tensor:
        """(..., V, 3) vertices -> (..., 68, 3) landmarks in the 68-point (iBUG/dlib) layout."""
        tri = vertices[..., self.faces[self.lmk_faces], :]  # (..., 68, 3 corners, 3 xyz)
        return (tri * self.lmk_bary[..., None]).sum(-2)
