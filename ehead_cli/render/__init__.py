"""The built-in differentiable mesh renderer: camera, rasteriser, shading, renderers.

``camera`` places a perspective pinhole camera, ``rasterizer`` finds the visible triangle per pixel
and its differentiable barycentric weights, ``shading`` lights the surface, ``antialias`` blends the
pixels across silhouettes and occlusion edges, ``renderer`` puts them together for raw meshes
(``MeshRenderer``) and for face models (``Renderer``, anti-aliased by default); ``base`` is the
interface every renderer of motion offers (``FrameRenderer``: this one and the avatars' alike). Pure PyTorch,
batched, CPU and CUDA.
"""

from ehead_cli.render.base import FrameRenderer, FrameSource, check_frames
from ehead_cli.render.camera import Camera
from ehead_cli.render.rasterizer import Fragments, barycentrics, interpolate, rasterize
from ehead_cli.render.renderer import MeshRenderer, Rendered, Renderer, is_closed, to_uint8
from ehead_cli.render.shading import Light, lambert, vertex_normals

__all__ = [
    "Camera",
    "FrameRenderer",
    "FrameSource",
    "Fragments",
    "Light",
    "MeshRenderer",
    "Rendered",
    "Renderer",
    "barycentrics",
    "check_frames",
    "interpolate",
    "is_closed",
    "lambert",
    "rasterize",
    "to_uint8",
    "vertex_normals",
]
