"""Mesh and face-model renderers: vertices -> shaded RGB images, batched and differentiable.

``MeshRenderer`` draws any triangle mesh with per-vertex colours. ``Renderer`` wraps a
``FaceModel``: (shape, motion) frames -> images, with a camera that frames the model's neutral head,
as float tensors for training or as uint8 frames for video.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ehead_cli.face.base import FaceModel
from ehead_cli.layout import MOTION_DIM, N_SHAPE
from ehead_cli.render.antialias import EdgeTopology, antialias, edge_topology
from ehead_cli.render.camera import Camera
from ehead_cli.render.rasterizer import Fragments, barycentrics, interpolate, rasterize
from ehead_cli.render.shading import Light, lambert, vertex_normals

BACKGROUND = (0.93, 0.93, 0.95)  # light grey, so the head's silhouette reads on a browser page
DEFAULT_SIZE = 256  # px, the image size of Stage II training
RENDER_BATCH = 16  # frames rasterised together by ``Renderer.render`` / ``iter_frames``


@dataclass(frozen=True)
class Rendered:
    """image (B, H, W, 3) float in [0, 1]; mask (B, H, W) bool coverage; fragments for reuse."""

    image: torch.Tensor
    mask: torch.Tensor
    fragments: Fragments


class MeshRenderer:
    """Rasterise and shade triangle meshes.

    height, width: image size in pixels
    camera: perspective camera (``Camera`` defaults frame a head at the origin)
    light: directional light with ambient term
    background: RGB in [0, 1] of uncovered pixels
    cull_backfaces: skip triangles facing away; exact and faster for closed meshes
    max_pairs: rasteriser chunk size (candidate pairs); None picks one for the device
    antialias: blend the pixels across silhouettes and occlusion edges by the edge's position
        (``render.antialias``); off, each pixel shows what its centre sees (exact coverage)
    """

    def __init__(
        self,
        height: int = DEFAULT_SIZE,
        width: int | None = None,
        camera: Camera | None = None,
        light: Light | None = None,
        background: tuple[float, float, float] = BACKGROUND,
        cull_backfaces: bool = True,
        max_pairs: int | None = None,
        antialias: bool = False,
    ) -> None:
        self.height = int(height)
        self.width = int(width if width is not None else height)
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"image size must be positive, got {self.height} x {self.width}")
        self.camera = camera if camera is not None else Camera()
        self.light = light if light is not None else Light()
        self.background = tuple(float(c) for c in background)
        self.cull_backfaces = cull_backfaces
        self.max_pairs = max_pairs
        self.antialias = antialias
        self._topology: tuple[torch.Tensor, EdgeTopology] | None = None  # (faces, its edges), reused

    def __call__(self, vertices: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor) -> Rendered:
        """vertices (B, V, 3) or (V, 3) in metres; faces (F, 3) int64; colors (V, 3) or (B, V, 3)
        albedo in [0, 1]. Differentiable w.r.t. vertices and colours."""
        if vertices.dim() == 2:
            vertices = vertices[None]
        B, V, _ = vertices.shape
        H, W = self.height, self.width
        world = vertices.reshape(B * V, 3).T  # (3, B*V) channel-major, see rasterizer
        points = self.camera.project_channels(world, H, W).view(3, B, V)  # pixel x, pixel y, depth
        frags = rasterize(points.detach(), faces, H, W, self.camera.near, self.camera.far,
                          self.cull_backfaces, self.max_pairs)
        weights, vid = barycentrics(frags, points, faces)  # (3, P) each
        albedo = colors.to(vertices.dtype).expand(B, V, 3).reshape(B * V, 3).T
        normals = vertex_normals(world.view(3, B, V), faces).view(3, B * V)
        normal_px, albedo_px = interpolate(torch.cat([normals, albedo]), weights, vid).split(3)  # (3, P) each
        shaded = lambert(albedo_px, normal_px, self.light)
        bg = torch.tensor(self.background, dtype=shaded.dtype, device=shaded.device)
        image = bg[:, None].expand(3, B * H * W).index_copy(1, frags.pix, shaded)  # (3, B*H*W)
        if self.antialias:
            # depth (metres) of the visible surface per pixel: perspective-correct weights interpolate it exactly
            z = interpolate(points[2].detach().reshape(1, B * V), weights.detach(), vid)[0]  # (P,)
            depth = torch.full((B * H * W,), torch.inf, dtype=z.dtype, device=z.device).index_copy(0, frags.pix, z)
            image = antialias(image, depth, points, faces, self._edges(faces), H, W)
        return Rendered(image.view(3, B, H, W).permute(1, 2, 3, 0).contiguous(), frags.mask, frags)

    def _edges(self, faces: torch.Tensor) -> EdgeTopology:
        """The edge topology of ``faces``, computed once per faces tensor (face models pass the same
        buffer every call)."""
        if self._topology is None or self._topology[0] is not faces:
            self._topology = (faces, edge_topology(faces))
        return self._topology[1]


class FrameSource:
    """Uint8 video frames from a renderer's float images, ``batch_size`` frames per call: what
    ``Renderer``, ``avatar.mesh.MeshAvatar`` and ``avatar.neural.NeuralAvatar`` share. A subclass
    gives ``batch_size``, ``_frame_hw`` (H, W), ``_frame_inputs`` (checked (N|1, 300), (N, 115) on
    its device) and ``_frame_images`` ((n, H, W, 3) in [0, 1])."""

    batch_size: int

    def _frame_hw(self) -> tuple[int, int]:
        raise NotImplementedError

    def _frame_inputs(self, shape: torch.Tensor, motion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _frame_images(self, shape: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def render(self, shape: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """shape (300,) or (N, 300), motion (N, 115) -> (N, H, W, 3) uint8 on the CPU."""
        chunks = list(self._uint8_batches(shape, motion))
        return torch.cat(chunks) if chunks else torch.zeros(0, *self._frame_hw(), 3, dtype=torch.uint8)

    def iter_frames(self, shape: torch.Tensor, motion: torch.Tensor) -> Iterator[np.ndarray]:
        """Yield (H, W, 3) uint8 frames one by one, rendering ``batch_size`` at a time; feed to
        ``ehead_cli.io.video.write_mp4`` to stream a video without holding it in memory."""
        for batch in self._uint8_batches(shape, motion):
            yield from batch.numpy()

    @torch.no_grad()
    def _uint8_batches(self, shape: torch.Tensor, motion: torch.Tensor) -> Iterator[torch.Tensor]:
        shape, motion = self._frame_inputs(shape, motion)
        for start in range(0, motion.shape[0], self.batch_size):
            stop = start + self.batch_size
            sub_shape = shape if shape.shape[0] == 1 else shape[start:stop]
            yield to_uint8(self._frame_images(sub_shape, motion[start:stop])).cpu()


class Renderer(FrameSource):
    """Render a ``FaceModel``'s (shape, motion) frames.

    face_model: gives ``faces``, ``vertex_colors`` and ``forward(shape, motion) -> vertices``
    size: square image side in pixels
    camera: defaults to one framing the model's neutral head from the front (+z)
    batch_size: frames rasterised together by ``render`` and ``iter_frames``
    cull_backfaces: default (None) culls only when the mesh is closed, where culling is exact;
        through the holes of an open mesh (FLAME's mouth) the inner faces stay visible
    antialias: anti-aliased silhouettes and occlusion edges (``MeshRenderer``), on by default
    """

    def __init__(
        self,
        face_model: FaceModel,
        size: int = DEFAULT_SIZE,
        camera: Camera | None = None,
        light: Light | None = None,
        background: tuple[float, float, float] = BACKGROUND,
        batch_size: int = RENDER_BATCH,
        cull_backfaces: bool | None = None,
        antialias: bool = True,
    ) -> None:
        self.face_model = face_model
        if camera is None:
            camera = Camera.framing(self._neutral_vertices())
        if cull_backfaces is None:
            cull_backfaces = is_closed(face_model.faces)
        self.mesh = MeshRenderer(size, size, camera, light, background, cull_backfaces=cull_backfaces,
                                 antialias=antialias)
        self.batch_size = max(1, int(batch_size))

    @property
    def device(self) -> torch.device:
        return self.face_model.faces.device

    def _neutral_vertices(self) -> torch.Tensor:
        with torch.no_grad():
            zeros_shape = torch.zeros(N_SHAPE, device=self.device)
            return self.face_model(zeros_shape, torch.zeros(MOTION_DIM, device=self.device))

    def images(self, shape: torch.Tensor, motion: torch.Tensor) -> Rendered:
        """Differentiable. shape (300,) or (N, 300), motion (N, 115) -> Rendered with (N, H, W, 3)."""
        return self._images(*_frames(shape, motion, self.device))

    def _images(self, shape: torch.Tensor, motion: torch.Tensor) -> Rendered:
        """``images`` of already validated (1 or N, 300) and (N, 115) float32 on the device."""
        vertices = self.face_model(shape, motion)  # (N, V, 3)
        return self.mesh(vertices, self.face_model.faces, self.face_model.vertex_colors)

    def _frame_hw(self) -> tuple[int, int]:
        return self.mesh.height, self.mesh.width

    def _frame_inputs(self, shape: torch.Tensor, motion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _frames(shape, motion, self.device)

    def _frame_images(self, shape: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        return self._images(shape, motion).image


def is_closed(faces: torch.Tensor) -> bool:
    """True when every edge of the (F, 3) triangle mesh is shared by exactly two triangles."""
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).sort(dim=1).values
    _, counts = torch.unique(edges, dim=0, return_counts=True)
    return bool((counts == 2).all())


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """(..., 3) float in [0, 1] -> uint8 in [0, 255], rounded."""
    return (image.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)


def _frames(shape: torch.Tensor, motion: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate and bring to (1 or N, 300) shape and (N, 115) motion float32 on ``device``."""
    shape = torch.as_tensor(shape, dtype=torch.float32, device=device)
    motion = torch.as_tensor(motion, dtype=torch.float32, device=device)
    if motion.dim() == 1:
        motion = motion[None]
    if shape.dim() == 1:
        shape = shape[None]
    if motion.dim() != 2 or motion.shape[1] != MOTION_DIM:
        raise ValueError(f"motion must be (N, {MOTION_DIM}), got {tuple(motion.shape)}")
    if shape.dim() != 2 or shape.shape[1] != N_SHAPE or shape.shape[0] not in (1, motion.shape[0]):
        raise ValueError(f"shape must be ({N_SHAPE},) or ({motion.shape[0]}, {N_SHAPE}), got {tuple(shape.shape)}")
    return shape, motion
