"""Rasteriser throughput: a head-sized test mesh and an honest timer (warm-up, device
synchronisation around every timed call, median and best of several repetitions).

``ehead bench`` uses these for its rendering figures; ``python -m ehead_cli.bench.render``
prints a table for the current machine.
"""

from __future__ import annotations

import argparse
import math
import statistics
from dataclasses import asdict, dataclass

import torch

from ehead_cli.bench.timing import time_calls
from ehead_cli.render.camera import Camera
from ehead_cli.render.renderer import MeshRenderer

HEAD_RADII = (0.08, 0.115, 0.1)  # metres: half width, half height, half depth of a head-sized ellipsoid
WARMUP = 3  # untimed calls first: allocator, caches, lazy initialisation
REPEATS = 10


@dataclass(frozen=True)
class RenderTiming:
    """One measurement. fps = frames per second (batch / seconds per call)."""

    device: str
    threads: int
    size: int
    batch: int
    n_triangles: int
    fps_median: float
    fps_best: float
    ms_per_frame_median: float


def ellipsoid_mesh(n_triangles: int = 10_000, radii=HEAD_RADII) -> tuple[torch.Tensor, torch.Tensor]:
    """A closed latitude-longitude ellipsoid with about ``n_triangles`` faces, centred at the origin.
    Returns vertices (V, 3) float32 in metres and faces (F, 3) int64, counter-clockwise outside."""
    # F = 2 * lon * (lat - 1) with lat ~ lon / 2 latitude bands
    n_lon = max(3, round(math.sqrt(n_triangles)))
    n_lat = max(2, round(n_triangles / (2 * n_lon)) + 1)
    lat = torch.linspace(0, math.pi, n_lat + 1)[1:-1]  # interior rings, poles added separately
    lon = torch.linspace(0, 2 * math.pi, n_lon + 1)[:-1]
    la, lo = torch.meshgrid(lat, lon, indexing="ij")
    ring = torch.stack([la.sin() * lo.sin(), la.cos(), la.sin() * lo.cos()], -1).reshape(-1, 3)
    verts = torch.cat([torch.tensor([[0.0, 1.0, 0.0]]), ring, torch.tensor([[0.0, -1.0, 0.0]])])
    verts = verts * torch.tensor(radii)
    j = torch.arange(n_lon)
    jn = (j + 1) % n_lon
    rings = n_lat - 1
    top = torch.stack([torch.zeros_like(j), 1 + j, 1 + jn], -1)
    i = torch.arange(rings - 1)[:, None]
    a, b = 1 + i * n_lon + j, 1 + (i + 1) * n_lon + j
    c, d = 1 + (i + 1) * n_lon + jn, 1 + i * n_lon + jn
    band = torch.cat([torch.stack([a, b, c], -1), torch.stack([a, c, d], -1)], 1).reshape(-1, 3)
    south = verts.shape[0] - 1
    last = 1 + (rings - 1) * n_lon
    bottom = torch.stack([torch.full_like(j, south), last + jn, last + j], -1)
    return verts, torch.cat([top, band, bottom])


def time_render(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    colors: torch.Tensor,
    size: int,
    batch: int,
    camera: Camera | None = None,
    repeats: int = REPEATS,
    antialias: bool = False,
) -> RenderTiming:
    """Time ``MeshRenderer(size, antialias=antialias)`` on ``batch`` copies of (V, 3) ``vertices``
    under no_grad, on their device."""
    device = vertices.device
    renderer = MeshRenderer(size, camera=camera if camera is not None else Camera.framing(vertices),
                            antialias=antialias)
    # slightly different copies, so no batch item is a duplicate of another
    jitter = 1e-3 * torch.randn(batch, 1, 3, device=device, generator=None)
    verts = vertices[None] + jitter
    with torch.no_grad():
        seconds = time_calls(lambda: renderer(verts, faces, colors), device, repeats, WARMUP)
    median = statistics.median(seconds)
    return RenderTiming(
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        threads=torch.get_num_threads(),
        size=size,
        batch=batch,
        n_triangles=int(faces.shape[0]),
        fps_median=batch / median,
        fps_best=batch / min(seconds),
        ms_per_frame_median=1e3 * median / batch,
    )


def main(argv: list[str] | None = None) -> None:
    """Print rasteriser frames/s for a head-sized ellipsoid over sizes and batch sizes."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--triangles", type=int, default=10_000)
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    verts, faces = ellipsoid_mesh(args.triangles)
    verts, faces = verts.to(device), faces.to(device)
    colors = torch.rand(verts.shape[0], 3, device=device)
    for size in (int(s) for s in args.sizes.split(",")):
        for batch in (int(b) for b in args.batches.split(",")):
            print(asdict(time_render(verts, faces, colors, size, batch, repeats=args.repeats)), flush=True)


if __name__ == "__main__":
    main()
