"""The built-in head as a face model: ``HeadArrays`` (everything it is made of), their cached
construction (``build_head_arrays``) and ``BuiltinHead``, the ``FaceModel`` that poses them.

Motion -> mesh: ``v = template + S shape + E expr``, then linear blend skinning with a head and a
jaw joint, rigid eyeball rotations about their centres, then the global rotation about the neck
pivot and the translation. Joint centres are vertex means of the shaped mesh, like FLAME's
J_regressor.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from ehead_cli.face.base import N_LANDMARKS, FaceModel
from ehead_cli.face.builtin.appearance import paint_head
from ehead_cli.face.builtin.blendshapes import expression_basis, shape_basis
from ehead_cli.face.builtin.mesh import build_mesh
from ehead_cli.face.builtin.proportions import HEAD_JOINT, NECK_PIVOT
from ehead_cli.face.builtin.rig import joint_anchors, landmarks, masks, skin_weights
from ehead_cli.geometry import axis_angle_to_matrix
from ehead_cli.layout import EXPR, EYE_LEFT, EYE_RIGHT, JAW, ROT, TRANS


@dataclass(frozen=True)
class HeadArrays:
    """Everything the built-in head is made of (numpy, V vertices, F triangles)."""

    vertices: np.ndarray  # (V, 3) float32 template, metres
    faces: np.ndarray  # (F, 3) int64, counter-clockwise seen from outside
    colors: np.ndarray  # (V, 3) float32 in [0, 1]
    shapedirs: np.ndarray  # (V, 3, 300) float32, metres per unit coefficient
    exprdirs: np.ndarray  # (V, 3, 100) float32, metres per unit coefficient
    skin_weights: np.ndarray  # (V, 4) float32: head, jaw, left eye, right eye
    joint_anchors: tuple[np.ndarray, ...]  # vertex ids averaged into the jaw, left eye, right eye, neck pivot
    lmk_vertices: np.ndarray  # (68,) int64 vertex of each landmark
    masks: dict[str, np.ndarray]  # "lips", "upper_face" -> int64 vertex ids
    part: np.ndarray  # (V,) int64 SKIN_PART, EYE_LEFT_PART, ...


@functools.lru_cache(maxsize=1)
def build_head_arrays() -> HeadArrays:
    """Construct the built-in head: deterministic, cached per process (``build_head_arrays.__wrapped__()``
    builds a fresh one)."""
    head = build_mesh()
    look = paint_head(head)
    return HeadArrays(
        vertices=head.P.astype(np.float32),
        faces=head.faces.astype(np.int64),
        colors=look.colors.astype(np.float32),
        shapedirs=shape_basis(head).astype(np.float32),
        exprdirs=expression_basis(head).astype(np.float32),
        skin_weights=skin_weights(head).astype(np.float32),
        joint_anchors=joint_anchors(head),
        lmk_vertices=landmarks(head, look),
        masks=masks(head, look),
        part=head.part.astype(np.int64),
    )


class BuiltinHead(FaceModel):
    """The procedural head as a ``FaceModel`` (see ``ehead_cli.face.builtin``).

    Extra buffers: ``v_template`` (V, 3); ``shapedirs`` (300, V*3) and ``exprdirs`` (100, V*3);
    ``skin_weights`` (V, 4) head/jaw/left eye/right eye; ``joint_regressor`` (4, V) giving the jaw
    hinge, the eye centres and the neck pivot as vertex means; ``vertex_part`` (V,) SKIN_PART, ...;
    ``lmk_vertices`` (68,) the vertex of each landmark.
    """

    name = "builtin"

    def __init__(self) -> None:
        super().__init__()
        a = build_head_arrays()
        V = a.vertices.shape[0]
        t = torch.from_numpy
        self._register_blendshapes(a.vertices, a.shapedirs, a.exprdirs)
        self.register_buffer("skin_weights", t(a.skin_weights.copy()))
        self.register_buffer("faces", t(a.faces.copy()))
        self.register_buffer("vertex_colors", t(a.colors.copy()))
        self.register_buffer("vertex_part", t(a.part.copy()))
        # a landmark is the corner of a triangle touching its vertex
        first_face = np.full(V, -1, np.int64)
        corner = np.zeros(V, np.int64)
        for k in (2, 1, 0):  # the last write wins: the first corner of the last face listed
            first_face[a.faces[:, k]] = np.arange(len(a.faces))
            corner[a.faces[:, k]] = k
        lmk_bary = np.zeros((N_LANDMARKS, 3), np.float32)
        lmk_bary[np.arange(N_LANDMARKS), corner[a.lmk_vertices]] = 1.0
        self.register_buffer("lmk_faces", t(first_face[a.lmk_vertices]))
        self.register_buffer("lmk_bary", t(lmk_bary))
        self.register_buffer("lmk_vertices", t(a.lmk_vertices.copy()))
        for name in self.mask_names:
            self.register_buffer(f"mask_{name}", t(a.masks[name].copy()))
        J = np.zeros((len(a.joint_anchors), V), np.float32)
        for j, ids in enumerate(a.joint_anchors):
            J[j, ids] = 1.0 / len(ids)
        self.register_buffer("joint_regressor", t(J))  # (4, V): jaw hinge, left eye, right eye, neck pivot

    def joints(self, shape: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """(N, 300), (N, 100) -> (N, 4, 3): jaw hinge, left and right eye centres, neck pivot."""
        return torch.einsum("jv,nvc->njc", self.joint_regressor, self._shaped(shape, expression))

    def _vertices(self, shape: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        dtype = self.v_template.dtype
        shape, motion = shape.to(dtype), motion.to(dtype)
        v = self._shaped(shape, motion[:, EXPR])  # (N, V, 3)
        J = torch.einsum("jv,nvc->njc", self.joint_regressor, v)  # (N, 4, 3)
        # jaw and eyes turn about their own centres; the head joint stays
        R = axis_angle_to_matrix(torch.stack([motion[:, JAW], motion[:, EYE_LEFT], motion[:, EYE_RIGHT]], 1))
        centres = J[:, :NECK_PIVOT, None]  # (N, 3, 1, 3)
        turned = torch.einsum("njab,njvb->njva", R, v[:, None] - centres) + centres  # (N, 3, V, 3)
        w = self.skin_weights
        v = w[:, HEAD_JOINT, None] * v + torch.einsum("vj,njvc->nvc", w[:, HEAD_JOINT + 1:], turned)
        # the whole head turns rigidly about the neck pivot, then moves
        pivot = J[:, NECK_PIVOT, None]  # (N, 1, 3)
        Rg = axis_angle_to_matrix(motion[:, ROT])
        return (v - pivot) @ Rg.transpose(1, 2) + pivot + motion[:, None, TRANS]
