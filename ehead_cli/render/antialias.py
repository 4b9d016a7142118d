"""Analytic anti-aliasing of silhouettes and occlusion edges, after rasterisation (like nvdiffrast's
``antialias``), batched and differentiable with respect to vertex positions.

A pixel is shaded from its centre only, so a visibility edge is a staircase. Visibility changes only
at contour edges (one adjacent triangle faces the camera, the other away) and at the boundary edges
of an open mesh. For each such edge visible in the image, every pair of neighbouring pixels whose
centres it separates (left-right pairs for a mostly vertical edge, up-down pairs for a mostly
horizontal one) is blended by how far the edge lies from the pixel centres: with t the distance
in pixels from the centre of the pixel on the edge's triangle side (the front pixel) to the edge,
  t < 1/2: the front pixel is partly uncovered, it takes 1/2 - t of the back pixel's colour;
  t > 1/2: the back pixel is partly covered, it takes t - 1/2 of the front pixel's colour.
For an edge that is straight across a pixel and parallel to a pixel side this is exactly the
covered area; for slanted edges it is the usual one-dimensional approximation. The edge counts as
visible at a pair when the front pixel shows a surface at the edge's depth (within
``DEPTH_TOLERANCE``: near a contour the edge's own triangle is often thinner than a pixel, so the
pixel shows its neighbour) and the back pixel nothing nearer. Cost: one pass over the mesh's
edges and a few gathers per crossed pixel pair (a few thousand per frame for a head), far below
supersampling's s^2 times the pixel work.

Gradients flow to the vertex positions through the edge's crossing point, so silhouettes carry
gradient here even though the rasteriser's visibility does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# The front pixel must show a surface within this fraction of the edge's depth (the edge's own
# surface, foreshortened near a contour), and the back pixel nothing nearer than that.
DEPTH_TOLERANCE = 0.01


@dataclass(frozen=True)
class EdgeTopology:
    """The undirected edges of a triangle mesh with the triangles on either side.

    ends:     (E, 2) int64 vertex ids of each edge
    faces:    (E, 2) int64 the adjacent triangles; the second is -1 on a boundary edge
    opposite: (E, 2) int64 the vertex of each adjacent triangle not on the edge (-1 with no triangle)
    Edges shared by more than two triangles (non-manifold) are left out.
    """

    ends: torch.Tensor
    faces: torch.Tensor
    opposite: torch.Tensor


def edge_topology(faces: torch.Tensor) -> EdgeTopology:
    """``EdgeTopology`` of (F, 3) int64 triangles."""
    F = faces.shape[0]
    k = torch.arange(3, device=faces.device)
    a, b, o = faces[:, k], faces[:, (k + 1) % 3], faces[:, (k + 2) % 3]  # (F, 3): each corner's edge
    lo, hi = torch.minimum(a, b).reshape(-1), torch.maximum(a, b).reshape(-1)
    key = lo * (int(faces.max()) + 1) + hi  # (3F,) one integer per undirected edge
    face = torch.arange(F, device=faces.device).repeat_interleave(3)
    key, order = key.sort(stable=True)
    _, counts = torch.unique_consecutive(key, return_counts=True)
    first = torch.cumsum(counts, 0) - counts  # position of each edge's first half-edge in ``order``
    keep = counts <= 2
    first, counts = first[keep], counts[keep]
    second = torch.where(counts == 2, first + 1, first)
    h0, h1 = order[first], order[second]  # half-edge ids (into the 3F corners)
    has_two = counts == 2
    face = torch.stack([face[h0], torch.where(has_two, face[h1], -1)], 1)
    opp = o.reshape(-1)
    opposite = torch.stack([opp[h0], torch.where(has_two, opp[h1], -1)], 1)
    ends = torch.stack([lo[h0], hi[h0]], 1)
    return EdgeTopology(ends=ends, faces=face, opposite=opposite)


def antialias(
    image: torch.Tensor, depth: torch.Tensor, points: torch.Tensor, faces: torch.Tensor, topology: EdgeTopology,
    height: int, width: int,
) -> torch.Tensor:
    """Blend the pixels across visible contour and boundary edges.

    image:  (C, B*H*W) channel-major shaded image (background included)
    depth:  (B*H*W,) depth in metres of the visible surface at each pixel centre, +inf on background
    points: (3, B, V) pixel x, pixel y, depth of the vertices, as given to the rasteriser (autograd
            history kept: the result is differentiable in them)
    Returns the blended (C, B*H*W) image.
    """
    H, W = height, width
    _, B, V = points.shape
    device = image.device
    flat = points.detach().reshape(3, B * V)
    offset = (torch.arange(B, device=device) * V)[:, None]  # (B, 1)

    # facing of every triangle: counter-clockwise in the world is clockwise on the y-down screen
    def corner(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = (faces[:, k][None] + offset).reshape(-1)
        return flat[0, g].view(B, -1), flat[1, g].view(B, -1)

    (x0, y0), (x1, y1), (x2, y2) = corner(0), corner(1), corner(2)
    front = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0) < 0  # (B, F)

    # visibility edges: contour edges and boundary edges; the front triangle is the one facing the
    # camera (of a boundary edge, its only triangle)
    f0, f1 = topology.faces[:, 0], topology.faces[:, 1]
    boundary = f1 < 0
    front0 = front[:, f0]  # (B, E)
    front1 = front[:, f1.clamp_min(0)]
    b, e = ((front0 != front1) | boundary[None]).nonzero().T  # (S,) each: image and edge
    use_second = ~front0[b, e] & ~boundary[e]
    opp = torch.where(use_second, topology.opposite[e, 1], topology.opposite[e, 0])

    # screen positions of the edge ends (differentiable) and of the front triangle's third vertex
    pts = points.reshape(3, B * V)
    base = b * V
    i0, i1 = base + topology.ends[e, 0], base + topology.ends[e, 1]
    p0, p1 = pts[:2, i0], pts[:2, i1]  # (2, S) each
    z0, z1 = flat[2, i0], flat[2, i1]
    po = flat[:2, base + opp]
    d = (p1 - p0).detach()
    major = (d[0].abs() < d[1].abs()).long()  # 0: step along x (a mostly horizontal edge), 1: along y
    minor = 1 - major
    cols = torch.arange(major.shape[0], device=device)
    u0, u1, v0, v1 = p0[major, cols], p1[major, cols], p0[minor, cols], p1[minor, cols]
    uo, vo = po[major, cols], po[minor, cols]
    ud0, ud1, vd0, vd1 = u0.detach(), u1.detach(), v0.detach(), v1.detach()
    extent_u = torch.where(major == 0, W, H)
    extent_v = torch.where(major == 0, H, W)
    du = ud1 - ud0
    du = torch.where(du == 0, torch.ones_like(du), du)
    # the front pixel lies on the side of the third vertex
    front_hi = vo > vd0 + (uo - ud0) * (vd1 - vd0) / du

    # one step per pixel centre c + 0.5 along the major axis in [min(u0, u1), max(u0, u1)), in the image
    start = torch.ceil(torch.minimum(ud0, ud1) - 0.5).clamp_min(0).long()
    stop = torch.minimum(torch.ceil(torch.maximum(ud0, ud1) - 0.5).long(), extent_u)
    count = (stop - start).clamp_min(0)
    k = torch.arange(count.shape[0], device=device).repeat_interleave(count)  # (N,) edge of each step
    if k.numel() == 0:
        return image
    step = torch.arange(k.shape[0], device=device) - (torch.cumsum(count, 0) - count)[k] + start[k]
    # (N,) position along the edge; u1 != u0 wherever there is a step
    s = (step.to(pts.dtype) + 0.5 - u0[k]) / (u1 - u0)[k]
    v_edge = v0[k] + s * (v1 - v0)[k]  # crossing on the minor axis, pixels (differentiable)
    sd = s.detach().clamp(0.0, 1.0)
    z_edge = 1.0 / ((1 - sd) / z0[k] + sd / z1[k])  # 1/z is affine along a projected edge
    lo = torch.floor(v_edge.detach() - 0.5).long()  # the pixel whose centre lies just below the crossing
    pf = torch.where(front_hi[k], lo + 1, lo)
    pb = torch.where(front_hi[k], lo, lo + 1)
    mj = major[k]

    def flat_index(minor_pos: torch.Tensor) -> torch.Tensor:
        col = torch.where(mj == 0, step, minor_pos).clamp(0, W - 1)
        row = torch.where(mj == 0, minor_pos, step).clamp(0, H - 1)
        return (b[k] * H + row) * W + col

    i_f, i_b = flat_index(pf), flat_index(pb)
    # visible where the front pixel shows the edge's surface (about the edge's depth) and the back
    # pixel shows nothing nearer than the edge
    tol = DEPTH_TOLERANCE * z_edge
    visible = (lo >= 0) & (lo + 1 < extent_v[k]) & ((depth[i_f] - z_edge).abs() <= tol) & (depth[i_b] >= z_edge - tol)
    i_f, i_b = i_f[visible], i_b[visible]
    t = (v_edge[visible] - (pf[visible].to(pts.dtype) + 0.5)).abs()  # front pixel centre to the edge, pixels
    # A coarse mesh's contour zigzags, so several contour edges can cross one pixel pair: the
    # outermost crossing (largest t, nearest the back pixel) decides the coverage, once.
    keep = _outermost(i_f, i_b, t.detach())
    i_f, i_b, t = i_f[keep], i_b[keep], t[keep]
    c_f, c_b = image[:, i_f], image[:, i_b]
    to_back = (t - 0.5).clamp_min(0.0)  # coverage of the back pixel by the front surface
    to_front = (0.5 - t).clamp_min(0.0)  # the uncovered part of the front pixel
    # every update reads the unblended colours, so the order of the pairs does not matter
    return image.index_add(1, torch.cat([i_b, i_f]), torch.cat([to_back * (c_f - c_b), to_front * (c_b - c_f)], 1))


def _outermost(i_f: torch.Tensor, i_b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Indices of one crossing per (front pixel, back pixel) pair: the one with the largest t."""
    # the back pixel is a neighbour of the front one, so the difference of their flat indices
    # (one of -W, -1, +1, +W) takes four values: rank it to make one integer key per pair
    _, step = torch.unique(i_b - i_f, return_inverse=True)
    pair, inverse = torch.unique(i_f * 4 + step, return_inverse=True)
    n = pair.shape[0]
    best = t.new_full((n,), -1.0).scatter_reduce(0, inverse, t, reduce="amax")
    index = torch.arange(t.shape[0], device=t.device)
    candidate = t == best[inverse]
    first = torch.full((n,), t.shape[0], device=t.device).scatter_reduce(
        0, inverse[candidate], index[candidate], reduce="amin")
    return first
