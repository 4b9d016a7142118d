"""The camera of a real clip: a pinhole with its pose, stored next to head-centred motion.

Motion files are head-centred (docs/formats.md): ROT and TRANS say how the head moves about its
rest pose, not where the camera was. A clip that comes from a video keeps that video's camera
here: ``ClipCamera`` maps head-centred world points (FLAME axes: metres, y up, the face looking
toward +z) into the video's image.

Camera coordinates are OpenGL-style, as in the landmark tracker and the GAGAvatar importer: x
right, y up, the camera at the origin looking down -z. ``pose`` is the (4, 4) world-to-camera
transform ``[R | d]``; a point X lands on pixel ``u = cx + f x / (-z)``, ``v = cy - f y / (-z)``
with ``(x, y, z) = R X + d``, square pixels of focal length ``f`` (pixels), principal point
``(cx, cy)`` in pixel coordinates (x right, y down, pixel (i, j) covering [i, i+1) x [j, j+1)).

A ``ClipCamera`` duck-types ``render.Camera`` (``project_channels``, ``near``, ``far``), so the mesh
renderer and the neural avatar rasterise through it unchanged. ``square`` and ``crop`` derive the
camera of a square view of the same image (what the renderers draw), exactly: a crop and a uniform
scale change only the intrinsics.

In a motion NPZ it is two optional arrays: ``camera_pose`` (4, 4) float32 and
``camera_intrinsics`` (5,) float32 = (f, cx, cy, height, width), f and c in pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ehead_cli.render.camera import FAR, NEAR

POSE_KEY = "camera_pose"
INTRINSICS_KEY = "camera_intrinsics"
MIN_DEPTH = 1e-6  # metres; points at or behind the camera get finite, meaningless pixels


@dataclass(frozen=True)
class ClipCamera:
    """pose: (4, 4) world-to-camera, row-major nested tuples; focal: pixels; cx, cy: principal
    point in pixels; height, width: the image it describes (pixels); near, far: metres in front of
    the camera kept by the rasteriser."""

    pose: tuple[tuple[float, ...], ...]
    focal: float
    cx: float
    cy: float
    height: int
    width: int
    near: float = NEAR
    far: float = FAR

    def __post_init__(self) -> None:
        p = np.asarray(self.pose, dtype=np.float64)
        if p.shape != (4, 4) or not np.isfinite(p).all():
            raise ValueError(f"camera pose must be a finite (4, 4) matrix, got shape {p.shape}")
        R = p[:3, :3]
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
            raise ValueError("camera pose rotation is not a rotation matrix")
        if not (self.focal > 0 and self.height > 0 and self.width > 0 and math.isfinite(self.cx)
                and math.isfinite(self.cy)):
            raise ValueError(f"bad camera intrinsics f={self.focal}, c=({self.cx}, {self.cy}), "
                             f"size {self.height}x{self.width}")

    # --- construction and storage ---------------------------------------------------------------
    @classmethod
    def from_rt(cls, R: np.ndarray, d: np.ndarray, focal: float, cx: float, cy: float, height: int,
                width: int) -> ClipCamera:
        """From a (3, 3) world-to-camera rotation, (3,) translation and the intrinsics."""
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = np.asarray(R, np.float64), np.asarray(d, np.float64)
        return cls(_tuple(pose), float(focal), float(cx), float(cy), int(height), int(width))

    @classmethod
    def from_camera(cls, camera, height: int, width: int) -> ClipCamera:
        """The same view as a look-at ``render.Camera`` drawing ``height`` x ``width`` images (its
        rows right, up, forward become OpenGL's x, y, -z): identical pixels and depths."""
        R = camera.rotation(torch.float64).numpy()
        R = np.stack([R[0], R[1], -R[2]])
        d = -R @ np.asarray(camera.eye, np.float64)
        c = cls.from_rt(R, d, camera.focal_px(height), 0.5 * width, 0.5 * height, height, width)
        return cls(c.pose, c.focal, c.cx, c.cy, c.height, c.width, camera.near, camera.far)

    @classmethod
    def from_arrays(cls, pose: np.ndarray, intrinsics: np.ndarray) -> ClipCamera:
        """From the NPZ arrays ``camera_pose`` (4, 4) and ``camera_intrinsics`` (f, cx, cy, H, W)."""
        pose = np.asarray(pose, np.float64)
        k = np.asarray(intrinsics, np.float64).reshape(-1)
        if pose.shape != (4, 4) or k.shape != (5,):
            raise ValueError(f"camera arrays must be (4, 4) and (5,), got {pose.shape} and {k.shape}")
        return cls(_tuple(pose), float(k[0]), float(k[1]), float(k[2]), int(round(k[3])), int(round(k[4])))

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {POSE_KEY: np.asarray(self.pose, np.float32),
                INTRINSICS_KEY: np.array([self.focal, self.cx, self.cy, self.height, self.width], np.float32)}

    def to_dict(self) -> dict:
        return {"pose": [list(r) for r in self.pose], "focal": self.focal, "cx": self.cx, "cy": self.cy,
                "height": self.height, "width": self.width}

    @classmethod
    def from_dict(cls, d: dict) -> ClipCamera:
        return cls(_tuple(np.asarray(d["pose"], np.float64)), float(d["focal"]), float(d["cx"]), float(d["cy"]),
                   int(d["height"]), int(d["width"]))

    @property
    def fov_deg(self) -> float:
        """Vertical field of view in degrees."""
        return math.degrees(2 * math.atan(0.5 * self.height / self.focal))

    # --- derived views ----------------------------------------------------------------------------
    def crop(self, x0: float, y0: float, side: float, size: int) -> ClipCamera:
        """The camera of the square [x0, x0 + side) x [y0, y0 + side) of this image, resampled to
        ``size`` x ``size`` pixels (the crop may reach outside the image)."""
        s = size / side
        return ClipCamera(self.pose, self.focal * s, (self.cx - x0) * s, (self.cy - y0) * s, size, size,
                          self.near, self.far)

    def square(self, size: int) -> ClipCamera:
        """The largest square of this image, centred horizontally on the head's rest position
        (the world origin) and kept inside the image where it fits, at ``size`` pixels."""
        side = float(min(self.height, self.width))
        u, v = self.pixel_of(np.zeros(3))
        x0 = float(np.clip(u - side / 2, 0.0, self.width - side)) if side < self.width else 0.0
        y0 = float(np.clip(v - side / 2, 0.0, self.height - side)) if side < self.height else 0.0
        return self.crop(x0, y0, side, size)

    def pixel_of(self, point: np.ndarray) -> tuple[float, float]:
        """Pixel (u, v) of one world point (3,)."""
        p = np.asarray(self.pose, np.float64)
        x, y, z = p[:3, :3] @ np.asarray(point, np.float64) + p[:3, 3]
        depth = max(-z, MIN_DEPTH)
        return self.cx + self.focal * x / depth, self.cy - self.focal * y / depth

    # --- projection (the interface of render.Camera) ---------------------------------------------------
    def project_channels(self, points: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(3, N) world rows -> (3, N) rows pixel x, pixel y, depth (metres in front of the camera).
        Differentiable. ``height`` x ``width`` must be this camera's image size."""
        if (height, width) != (self.height, self.width):
            raise ValueError(f"this camera describes {self.height}x{self.width} images, asked for "
                             f"{height}x{width}; derive one with square() or crop()")
        pose = torch.tensor(self.pose, dtype=points.dtype, device=points.device)
        cam = pose[:3, :3] @ points + pose[:3, 3:]  # (3, N) OpenGL camera coordinates
        depth = -cam[2]
        inv = 1.0 / depth.clamp_min(MIN_DEPTH)
        return torch.stack([self.cx + self.focal * cam[0] * inv, self.cy - self.focal * cam[1] * inv, depth])


def _tuple(m: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in row) for row in np.asarray(m))
