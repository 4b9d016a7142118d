"""A perspective pinhole camera: look-at placement, vertical field of view, near/far planes.

World coordinates follow FLAME: metres, y up, the face looking toward +z. Camera coordinates are
x right, y up, z = distance in front of the camera along the viewing axis (the depth). Screen coordinates are
pixels with x to the right and y downward; pixel (i, j) covers [i, i+1) x [j, j+1), so its centre
is at (i + 0.5, j + 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Default framing of a human head (about 0.25 m tall) centred near the origin, seen from the front.
HEAD_FOV_DEG = 18.0  # narrow lens: little perspective distortion, like a portrait camera
HEAD_FILL = 0.8  # fraction of the image height the framed object's bounding sphere covers
HEAD_DISTANCE = 1.0  # metres from the origin, used when there is no mesh to frame
NEAR = 0.05  # metres
FAR = 10.0  # metres


@dataclass(frozen=True)
class Camera:
    """Where the camera is and what it sees; all lengths in metres, angles in degrees.

    eye:     camera centre (x, y, z)
    target:  point the optical axis passes through
    up:      world direction that appears upward in the image
    fov_deg: vertical field of view; pixels are square
    near, far: depth range kept by the rasteriser (distance along the optical axis)
    """

    eye: tuple[float, float, float] = (0.0, 0.0, HEAD_DISTANCE)
    target: tuple[float, float, float] = (0.0, 0.0, 0.0)
    up: tuple[float, float, float] = (0.0, 1.0, 0.0)
    fov_deg: float = HEAD_FOV_DEG
    near: float = NEAR
    far: float = FAR

    def __post_init__(self) -> None:
        if not 0.0 < self.fov_deg < 180.0:
            raise ValueError(f"fov_deg must be in (0, 180), got {self.fov_deg}")
        if not 0.0 < self.near < self.far:
            raise ValueError(f"need 0 < near < far, got near={self.near}, far={self.far}")
        axis = [t - e for t, e in zip(self.target, self.eye, strict=True)]
        if math.hypot(*axis) == 0.0:
            raise ValueError("camera eye and target coincide")
        if math.hypot(*_cross(axis, self.up)) == 0.0:
            raise ValueError("camera up vector is parallel to the viewing direction")

    def rotation(self, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
        """(3, 3) world-to-camera rotation; its rows are the camera's right, up and forward axes."""
        eye = torch.tensor(self.eye, dtype=torch.float64)
        forward = torch.tensor(self.target, dtype=torch.float64) - eye
        forward = forward / forward.norm()
        right = torch.linalg.cross(forward, torch.tensor(self.up, dtype=torch.float64))
        right = right / right.norm()
        up = torch.linalg.cross(right, forward)
        return torch.stack([right, up, forward]).to(dtype=dtype, device=device)

    def focal_px(self, height: int) -> float:
        """Focal length in pixels for an image ``height`` pixels tall."""
        return 0.5 * height / math.tan(math.radians(self.fov_deg) / 2)

    def project(self, points: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., 3) world points -> (..., 2) pixel coordinates (x right, y down) and (...,) depth in
        metres. Differentiable."""
        flat = self.project_channels(points.reshape(-1, 3).T, height, width)  # (3, N)
        return flat[:2].T.reshape(*points.shape[:-1], 2), flat[2].reshape(points.shape[:-1])

    def project_channels(self, points: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Channel-major projection: (3, N) world x, y, z rows -> (3, N) rows pixel x, pixel y,
        depth (metres along the optical axis). Differentiable.

        Points behind the camera get finite but meaningless pixel coordinates; the rasteriser drops
        every triangle with a corner nearer than ``near``.
        """
        R = self.rotation(points.dtype, points.device)
        eye = torch.tensor(self.eye, dtype=points.dtype, device=points.device)
        cam = R @ (points - eye[:, None])  # (3, N): right, up, depth
        f = self.focal_px(height)
        inv = 1.0 / cam[2].clamp_min(self.near * 1e-3)  # finite values for points behind the camera
        return torch.stack([0.5 * width + f * cam[0] * inv, 0.5 * height - f * cam[1] * inv, cam[2]])

    @classmethod
    def framing(
        cls,
        vertices: torch.Tensor,
        direction: tuple[float, float, float] = (0.0, 0.0, 1.0),
        fov_deg: float = HEAD_FOV_DEG,
        fill: float = HEAD_FILL,
    ) -> Camera:
        """A camera on ``direction`` from the centre of ``vertices`` (..., V, 3) whose image height
        spans the bounding sphere of all the points, divided by ``fill``. The default direction
        (+z) looks at the front of a FLAME-convention face."""
        pts = vertices.detach().reshape(-1, 3).double().cpu()
        lo, hi = pts.amin(0), pts.amax(0)
        center = (lo + hi) / 2
        radius = float((pts - center).norm(dim=-1).max())
        if not math.isfinite(radius) or radius <= 0.0:
            raise ValueError("cannot frame an empty or degenerate set of vertices")
        half = math.radians(fov_deg) / 2
        # the sphere's silhouette subtends asin(r / d); make that fill * the half field of view
        distance = radius / math.sin(math.atan(fill * math.tan(half)))
        d = torch.tensor(direction, dtype=torch.float64)
        eye = center + distance * d / d.norm()
        return cls(
            eye=tuple(eye.tolist()),
            target=tuple(center.tolist()),
            fov_deg=fov_deg,
            near=max(NEAR * 0.1, (distance - radius) * 0.5),
            far=distance + radius * 4 + 1.0,
        )


def _cross(a, b) -> tuple[float, float, float]:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])
