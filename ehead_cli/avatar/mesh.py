"""The built-in mesh renderer as a trainable avatar renderer (``--avatar builtin`` in Stage II).

The face model's mesh, rasterised through a clip camera and Lambert-shaded exactly as
``render.Renderer`` does (same light, background, anti-aliasing), with one learnable part: the
per-vertex albedo, initialised to the face model's vertex colours. So at initialisation it draws
the pixels ``ehead generate`` draws (tested), and Stage II can adapt its colours to the frames while
the geometry (the face model) and the light stay fixed. Differentiable with respect to the motion
and the albedo, with the visibility held fixed as for every hard rasteriser (the anti-aliased
silhouettes do carry a gradient; ``render.antialias``).

It is a ``render.base.FrameRenderer`` with the extras of ``avatar.neural.NeuralAvatar``
(``trainable_state_dict``, ``cfg``, ``camera``) so an avatar folder holds either
(``avatar.folder``; ``config.json`` ``renderer.kind`` = "mesh").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ehead_cli.errors import ConfigError
from ehead_cli.face.base import FaceModel
from ehead_cli.model.config import check_fields
from ehead_cli.render.base import FrameSource, check_frames
from ehead_cli.render.clip_camera import ClipCamera
from ehead_cli.render.renderer import RENDER_BATCH, MeshRenderer, Rendered, is_closed

KIND = "mesh"


@dataclass(frozen=True)
class MeshConfig:
    """size: square image side in pixels (the camera's)."""

    size: int = 256

    def validate(self) -> MeshConfig:
        if self.size < 16:
            raise ConfigError(f"mesh renderer size must be >= 16 px, got {self.size}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str) -> MeshConfig:
        d = {k: v for k, v in d.items() if k != "kind"}
        check_fields(cls, d, source, "renderer")
        return cls(**d).validate()


class MeshAvatar(FrameSource, nn.Module):
    """The trainable mesh renderer of ``face`` seen through ``camera`` (S x S) (module docstring)."""

    def __init__(self, face: FaceModel, camera: ClipCamera, cfg: MeshConfig | None = None) -> None:
        super().__init__()
        cfg = (cfg or MeshConfig(camera.height)).validate()
        if (camera.height, camera.width) != (cfg.size, cfg.size):
            raise ValueError(f"the camera describes {camera.height}x{camera.width} images, not {cfg.size}x{cfg.size}")
        self.cfg, self.camera = cfg, camera
        self.face = face.eval().requires_grad_(False)
        self.albedo = nn.Parameter(face.vertex_colors.detach().float().clone())  # (V, 3) in [0, 1]
        self.cull_backfaces = is_closed(face.faces)
        self.batch_size = RENDER_BATCH
        self._meshes: dict[ClipCamera, MeshRenderer] = {}

    @property
    def device(self) -> torch.device:
        return self.albedo.device

    @property
    def size(self) -> int:
        return self.cfg.size

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {"albedo": self.albedo}

    def _mesh(self, camera: ClipCamera) -> MeshRenderer:
        if camera not in self._meshes:  # one per camera: each keeps the mesh's edge topology
            S = self.cfg.size
            if (camera.height, camera.width) != (S, S):
                raise ValueError(f"the camera describes {camera.height}x{camera.width} images, not {S}x{S}")
            self._meshes[camera] = MeshRenderer(S, S, camera, cull_backfaces=self.cull_backfaces, antialias=True)
        return self._meshes[camera]

    def images(self, shape: torch.Tensor, motion: torch.Tensor, camera: ClipCamera | None = None) -> Rendered:
        """Differentiable. shape (300,) or (N, 300), motion (N, 115) head-centred -> Rendered with
        image (N, S, S, 3) in [0, 1]; ``camera`` replaces the avatar's own for this call."""
        shape, motion = check_frames(shape, motion, self.device)
        vertices = self.face(shape, motion)  # (N, V, 3) metres
        return self._mesh(self.camera if camera is None else camera)(vertices, self.face.faces,
                                                                     self.albedo.clamp(0.0, 1.0))

    @property
    def needs(self) -> str:
        return self.face.name

    def frame_images(self, shape: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        return self.images(shape, motion).image
