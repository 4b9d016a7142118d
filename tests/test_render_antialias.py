"""Analytic anti-aliasing of silhouettes: exact coverage on straight edges, gradients through the
edge position, batching, the edge topology, and the face renderer's outline."""

from __future__ import annotations

import torch

from ehead_cli.face.builtin import BuiltinHead
from ehead_cli.layout import MOTION_DIM, N_SHAPE, ROT
from ehead_cli.render import Camera, Light, MeshRenderer, Renderer
from ehead_cli.render.antialias import edge_topology

FLAT = Light(ambient=1.0, diffuse=0.0)  # unlit: pixel colour = albedo
BLACK = (0.0, 0.0, 0.0)
S = 32  # px; the front camera maps world x, y in [-1, 1] on z = 0 onto pixels [0, S]


def _camera() -> Camera:
    return Camera(eye=(0.0, 0.0, 1.0), target=(0.0, 0.0, 0.0), fov_deg=90.0, near=0.1, far=10.0)


def _world(px: float, py: float) -> tuple[float, float, float]:
    """The point on z = 0 that projects to pixel coordinates (px, py) (y down)."""
    return (px / (S / 2) - 1.0, 1.0 - py / (S / 2), 0.0)


def _quad(corners_px, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """A quad facing the camera from four pixel-space corners (clockwise on screen = counter-clockwise
    in the world), split into two triangles."""
    v = torch.tensor([_world(*c) for c in corners_px], dtype=dtype)
    return v, torch.tensor([[0, 3, 2], [0, 2, 1]])


def _render(v, f, antialias=True):
    return MeshRenderer(S, camera=_camera(), light=FLAT, background=BLACK, antialias=antialias)(
        v, f, torch.ones(v.shape[-2], 3, dtype=v.dtype))


def _coverage(lo: float, hi: float) -> torch.Tensor:
    """(S,) covered length of each pixel [i, i + 1) by the interval [lo, hi]."""
    i = torch.arange(S, dtype=torch.float64)
    return (torch.minimum(i + 1, torch.tensor(hi)) - torch.maximum(i, torch.tensor(lo))).clamp(0, 1)


def test_axis_aligned_edges_give_each_pixel_its_covered_area():
    x0, x1, y0, y1 = 8.3, 23.8, 10.4, 20.6
    v, f = _quad([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
    img = _render(v, f).image[0, :, :, 0].double()
    expected = _coverage(y0, y1)[:, None] * _coverage(x0, x1)[None]
    corner = torch.zeros(S, S, dtype=torch.bool)  # where two edges meet the 1-D rule is not exact
    for r in (10, 20):
        for c in (8, 23):
            corner[r, c] = True
    torch.testing.assert_close(img[~corner], expected[~corner], atol=1e-5, rtol=0)
    assert ((img > 0.05) & (img < 0.95)).sum() >= 40  # the edge pixels take intermediate values
    plain = _render(v, f, antialias=False).image[0, :, :, 0]
    assert set(plain.unique().tolist()) <= {0.0, 1.0}  # without it every pixel is in or out


def test_slanted_edge_rows_sum_to_the_exact_covered_length():
    """A mostly vertical slanted left edge: each row's blended pixels add up to the covered length
    at the row's centre, which for a straight edge is the exact area of the row."""
    top, bottom = (8.2, 3.0), (12.7, 29.0)
    v, f = _quad([top, (24.5, 3.0), (24.5, 29.0), bottom])
    img = _render(v, f).image[0, :, :, 0].double()
    for row in range(4, 28):
        yc = row + 0.5
        x_left = top[0] + (yc - top[1]) * (bottom[0] - top[0]) / (bottom[1] - top[1])
        torch.testing.assert_close(img[row].sum(), torch.tensor(24.5 - x_left, dtype=torch.float64),
                                   atol=1e-4, rtol=0)


def test_silhouette_position_carries_the_area_gradient():
    """d(sum of pixels)/d(vertex) through the blended edge pixels matches a finite difference."""
    corners = [(8.2, 3.0), (24.5, 3.0), (24.5, 29.0), (12.7, 29.0)]
    v, f = _quad(corners, dtype=torch.float64)
    direction = torch.zeros_like(v)
    direction[[0, 3], 0] = 1.0  # move the slanted left edge to the right
    v = v.clone().requires_grad_()
    _render(v, f).image.sum().backward()
    analytic = (v.grad * direction).sum()
    eps = 1e-4  # world units: 0.0016 px, no pixel centre crossed
    with torch.no_grad():
        plus = _render(v + eps * direction, f).image.sum()
        minus = _render(v - eps * direction, f).image.sum()
    numeric = (plus - minus) / (2 * eps)
    assert numeric < 0  # less covered
    torch.testing.assert_close(analytic, numeric, rtol=1e-4, atol=1e-6)


def test_batched_antialiasing_matches_single_images():
    a, f = _quad([(8.2, 3.0), (24.5, 3.0), (24.5, 29.0), (12.7, 29.0)])
    b, _ = _quad([(3.3, 5.6), (27.1, 7.9), (20.4, 26.2), (6.6, 22.5)])
    batch = _render(torch.stack([a, b]), f).image
    torch.testing.assert_close(batch[0], _render(a, f).image[0])
    torch.testing.assert_close(batch[1], _render(b, f).image[0])


def test_edge_topology_pairs_triangles_and_opposite_corners():
    v, f = _quad([(1, 1), (2, 1), (2, 2), (1, 2)])
    topo = edge_topology(f)
    assert topo.ends.shape == (5, 2) and int((topo.faces[:, 1] < 0).sum()) == 4  # 4 border edges, 1 diagonal
    tetra = torch.tensor([[0, 2, 1], [0, 1, 3], [1, 2, 3], [2, 0, 3]])
    topo = edge_topology(tetra)
    assert topo.ends.shape == (6, 2) and (topo.faces >= 0).all()
    for (a, b), faces, opposite in zip(topo.ends.tolist(), topo.faces.tolist(), topo.opposite.tolist(), strict=True):
        for face, o in zip(faces, opposite, strict=True):
            assert set(tetra[face].tolist()) == {a, b, o}


def test_the_face_renderer_antialiases_the_head_outline():
    head = BuiltinHead()
    motion = torch.zeros(2, MOTION_DIM)
    motion[1, ROT.start + 1] = 0.3  # a turned head too
    smooth = Renderer(head, size=128).images(torch.zeros(N_SHAPE), motion)
    plain = Renderer(head, size=128, antialias=False).images(torch.zeros(N_SHAPE), motion)
    mask = plain.mask
    inside = mask[:, 1:-1, 1:-1]
    outline = inside & ~(mask[:, :-2, 1:-1] & mask[:, 2:, 1:-1] & mask[:, 1:-1, :-2] & mask[:, 1:-1, 2:])
    changed = (smooth.image - plain.image).abs().amax(-1)[:, 1:-1, 1:-1] > 1e-3
    assert outline.sum() > 200
    assert (changed & outline).sum() > 0.4 * outline.sum()  # most outline pixels blend with the background
    assert smooth.image.min() >= 0 and smooth.image.max() <= 1
