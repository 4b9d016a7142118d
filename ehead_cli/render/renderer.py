"""Mesh and face-model renderers: vertices -> shaded RGB images, batched and differentiable.

``MeshRenderer`` draws any triangle mesh with per-vertex colours. ``Renderer`` wraps a
``FaceModel``: (shape, motion) frames -> images, with a camera that frames the model's neutral head,
as float tensors for training or as uint8 frames for video.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ehead_cli.face.base import FaceModel
from ehead_cli.layout import MOTION_DIM, N_SHAPE
from ehead_cli.render.antialias import EdgeTopology, antialias, edge_topology
from ehead_cli.render.base import FrameSource, check_frames, to_uint8
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
        self._views: dict[Camera, MeshRenderer] = {}  # images(camera=...): one mesh renderer per camera

    @property
    def device(self) -> torch.device:
        return self.face_model.faces.device

    def _neutral_vertices(self) -> torch.Tensor:
        with torch.no_grad():
            zeros_shape = torch.zeros(N_SHAPE, device=self.device)
            return self.face_model(zeros_shape, torch.zeros(MOTION_DIM, device=self.device))

    def images(self, shape: torch.Tensor, motion: torch.Tensor, camera: Camera | None = None) -> Rendered:
        """Differentiable. shape (300,) or (N, 300), motion (N, 115) -> Rendered with (N, H, W, 3);
        ``camera`` (of H x W images) replaces the renderer's own for this call."""
        return self._images(*check_frames(shape, motion, self.device), camera)

    def _images(self, shape: torch.Tensor, motion: torch.Tensor, camera: Camera | None = None) -> Rendered:
        """``images`` of already validated (1 or N, 300) and (N, 115) float32 on the device."""
        vertices = self.face_model(shape, motion)  # (N, V, 3)
        return self._mesh(camera)(vertices, self.face_model.faces, self.face_model.vertex_colors)

    def _mesh(self, camera: Camera | None) -> MeshRenderer:
        """The mesh renderer through ``camera`` (the renderer's own when None), kept per camera."""
        if camera is None or camera is self.mesh.camera:
            return self.mesh
        if camera not in self._views:
            m = self.mesh
            self._views[camera] = MeshRenderer(m.height, m.width, camera, m.light, m.background,
                                               cull_backfaces=m.cull_backfaces, max_pairs=m.max_pairs,
                                               antialias=m.antialias)
        return self._views[camera]

    # --- the FrameRenderer interface (render.base) -----------------------------------------------
    @property
    def size(self) -> int:
        return self.mesh.height

    @property
    def needs(self) -> str:
        return self.face_model.name

    def frame_images(self, shape: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        return self._images(shape, motion).image


def is_closed(faces: torch.Tensor) -> bool:
    """True when every edge of the (F, 3) triangle mesh is shared by exactly two triangles."""
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).sort(dim=1).values
    _, counts = torch.unique(edges, dim=0, return_counts=True)
    return bool((counts == 2).all())


_frames = check_frames  # the old private name (kept for callers outside the package)
__all__ = ["BACKGROUND", "DEFAULT_SIZE", "RENDER_BATCH", "FrameSource", "MeshRenderer", "Rendered", "Renderer",
           "check_frames", "is_closed", "to_uint8"]
