"""Z-buffered triangle rasterisation in pure PyTorch, batched, on CPU and CUDA.

Two passes, like nvdiffrast without antialiasing:

1. ``rasterize`` (discrete, no gradient) decides which triangle is visible at each pixel centre.
   Each triangle's candidate pixels are those of its screen bounding box. Triangles whose box fits
   in a 2, 4, 8 or 16 px square tile (all of them for a head at 256-512 px) are tested on the
   whole tile at once: the barycentric weights and the depth are affine in the pixel position, so
   one small matrix product per tile size evaluates them for every (triangle, pixel) pair, with
   no gathers and no Python loop over triangles. Larger boxes are enumerated pixel by pixel with
   ``searchsorted`` over the box areas. The pairs inside their triangle are resolved per pixel with
   one ``scatter_reduce(amin)`` on a packed int64 key ``depth << 32 | triangle``, which keeps the
   nearest triangle and breaks depth ties by the lower index. Pairs are processed in chunks of at
   most ``max_pairs`` so memory stays bounded whatever the triangle sizes and the batch.
2. ``barycentrics`` (differentiable) recomputes, for the winning triangle of every covered pixel,
   the perspective-correct barycentric weights from the projected vertices. Gradients therefore
   flow from pixel values to vertex positions and attributes; the visibility itself is piecewise
   constant, so silhouettes and occlusion boundaries carry no gradient.

Per-vertex and per-pixel data are channel-major, (C, N) with N the long axis: PyTorch's CPU
kernels run several times faster over long contiguous rows than over (N, 3) rows.

Triangles not wholly between the near and far planes are dropped (no clipping); a head in front
of the camera never has one.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import torch

# A pixel centre counts as inside when all its barycentric weights are >= -BARY_EPS. The tolerance
# absorbs float rounding on edges shared by two triangles, so no pixel between them is missed
# (no cracks); the few pixels both then claim are settled by the z-buffer.
BARY_EPS = 1e-5
MIN_DOUBLE_AREA = 1e-10  # px^2; triangles with a smaller |2 x signed area| are degenerate
# Depth in the packed key: 1/z mapped affinely from [near, far] onto [DEPTH_LO, DEPTH_LO + DEPTH_SPAN],
# as fine as the float32 depth itself. The margins below and above keep the small excursions of
# pixels just outside an edge (within BARY_EPS) positive and below 2^31 without a clamp.
DEPTH_LO = float(1 << 29)
DEPTH_SPAN = float(1 << 30)
INDEX_BITS = 32  # low bits of the packed key hold the triangle index
EMPTY_KEY = torch.iinfo(torch.int64).max
# (triangle, pixel) candidates tested per chunk. On a CPU, chunks that fit in the caches run faster;
# on a GPU, big chunks keep it busy (8M pairs: a few hundred MB of temporaries).
MAX_PAIRS_CPU = 1 << 16
MAX_PAIRS_GPU = 1 << 23
# Triangles whose box fits in a w x h block, w and h from TILE_SIDES, are tested on the whole block
# by broadcasting (cheap, a few wasted pixels); larger boxes are enumerated pixel by pixel.
TILE_SIDES = (1, 2, 4, 8, 16)
MIN_TILE_TRIANGLES = 64  # a tile class with fewer triangles joins the exact pass (saves a dozen kernel calls)


@dataclass(frozen=True)
class Fragments:
    """The visible triangle of every covered pixel, for a batch of B images of H x W.

    mask:  (B, H, W) bool coverage
    batch, row, col: (P,) int64 image index and pixel position of each covered pixel, in
           row-major order (batch, then row, then column)
    face:  (P,) int64 index of the visible triangle in ``faces``
    """

    mask: torch.Tensor
    batch: torch.Tensor
    row: torch.Tensor
    col: torch.Tensor
    face: torch.Tensor

    @property
    def pix(self) -> torch.Tensor:
        """(P,) flat index of each covered pixel into B*H*W."""
        _, H, W = self.mask.shape
        return (self.batch * H + self.row) * W + self.col


@torch.no_grad()
def rasterize(
    points: torch.Tensor,
    faces: torch.Tensor,
    height: int,
    width: int,
    near: float,
    far: float,
    cull_backfaces: bool = False,
    max_pairs: int | None = None,
) -> Fragments:
    """Visible triangle per pixel.

    points: (3, B, V) rows pixel x (right), pixel y (down), depth in metres along the optical
            axis, from ``Camera.project_channels``
    faces:  (F, 3) int64 vertex indices, counter-clockwise seen from outside
    near, far: depth range in metres; triangles not wholly inside it are dropped
    cull_backfaces: drop triangles facing away from the camera (exact for closed meshes)
    max_pairs: candidates per chunk; default MAX_PAIRS_CPU or MAX_PAIRS_GPU by device
    """
    _, B, V = points.shape
    F = faces.shape[0]
    H, W = height, width
    device, dtype = points.device, points.dtype
    if max_pairs is None:
        max_pairs = MAX_PAIRS_CPU if device.type == "cpu" else MAX_PAIRS_GPU
    if F >= 1 << INDEX_BITS:
        raise ValueError(f"too many triangles ({F}); at most 2^{INDEX_BITS}")
    corner = points.reshape(3, B * V).index_select(1, corner_index(faces.to(device), B, V))
    (x0, x1, x2), (y0, y1, y2), (z0, z1, z2) = corner.view(3, 3, B * F)  # (B*F,) each
    e1x, e1y, e2x, e2y = x1 - x0, y1 - y0, x2 - x0, y2 - y0
    det = e1x * e2y - e1y * e2x  # (B*F,) twice the signed area
    zmin, zmax = torch.minimum(torch.minimum(z0, z1), z2), torch.maximum(torch.maximum(z0, z1), z2)
    keep = (zmin >= near) & (zmax <= far) & (det.abs() > MIN_DOUBLE_AREA) & torch.isfinite(det)
    if cull_backfaces:
        # counter-clockwise in the world is clockwise on a y-down screen: front faces have det < 0
        keep &= det < 0

    # Candidate box: the pixels whose centres (i + 0.5, j + 0.5) lie in the triangle's bounding
    # box, clamped to the image. Origin (i0, j0), size bw x bh.
    bound = float(max(H, W) + 1)
    i0 = torch.ceil(torch.minimum(torch.minimum(x0, x1), x2).clamp(-1.0, bound) - 0.5).long().clamp_min(0)
    j0 = torch.ceil(torch.minimum(torch.minimum(y0, y1), y2).clamp(-1.0, bound) - 0.5).long().clamp_min(0)
    i1 = torch.floor(torch.maximum(torch.maximum(x0, x1), x2).clamp(-1.0, bound) - 0.5).long().clamp_max(W - 1)
    j1 = torch.floor(torch.maximum(torch.maximum(y0, y1), y2).clamp(-1.0, bound) - 0.5).long().clamp_max(H - 1)
    bw, bh = i1 - i0 + 1, j1 - j0 + 1
    keep &= (bw > 0) & (bh > 0)

    # w0, w1, w2 and the depth key are affine in the pixel position, so each is base + a tx + b ty
    # at pixel (i0 + tx, j0 + ty): coef (12, B*F) = 4 values x (base, a, b).
    inv_det = 1.0 / det
    a1, b1 = e2y * inv_det, -e2x * inv_det
    a2, b2 = -e1y * inv_det, e1x * inv_det
    dx0 = i0.to(dtype) + 0.5 - x0
    dy0 = j0.to(dtype) + 0.5 - y0
    w1 = a1 * dx0 + b1 * dy0
    w2 = a2 * dx0 + b2 * dy0
    scale = DEPTH_SPAN / (1.0 / near - 1.0 / far)
    d0, d1, d2 = ((1.0 / near - 1.0 / z) * scale + DEPTH_LO for z in (z0, z1, z2))
    dz1, dz2 = d1 - d0, d2 - d0
    coef = torch.stack([
        1.0 - w1 - w2, -a1 - a2, -b1 - b2,
        w1, a1, b1,
        w2, a2, b2,
        d0 + w1 * dz1 + w2 * dz2, a1 * dz1 + a2 * dz2, b1 * dz1 + b2 * dz2,
    ])

    # The z-buffer has spare rows and columns after each image, so a tile sticking out past the
    # right or bottom edge writes there instead of wrapping onto the next row.
    pad = TILE_SIDES[-1]
    Hp, Wp = H + pad, W + pad
    zbuf = torch.full((B * Hp * Wp,), EMPTY_KEY, dtype=torch.int64, device=device)
    first = torch.arange(B, device=device).repeat_interleave(F) * (Hp * Wp) + j0 * Wp + i0  # box origins
    face = torch.arange(F, device=device).repeat(B)  # (B*F,) the key stores the face within its image

    # Sort the drawable triangles into tile classes: the smallest TILE_SIDES entry covering the
    # box width, the one covering its height. Boxes too wide or too tall for any tile, and classes
    # too sparse to be worth a pass of their own, are enumerated exactly in one box pass.
    sides = torch.tensor(TILE_SIDES, device=device)
    n = len(TILE_SIDES) + 1  # the last class index of each axis means "too big"
    tri = keep.nonzero().squeeze(1)
    cls = torch.searchsorted(sides, bw.index_select(0, tri)) * n + torch.searchsorted(sides, bh.index_select(0, tri))
    cls, order = cls.sort()
    tri = tri.index_select(0, order)
    counts = torch.bincount(cls, minlength=n * n).tolist()
    stops = itertools.accumulate(counts)
    sel_coef, sel_first, sel_face = coef.index_select(1, tri), first.index_select(0, tri), face.index_select(0, tri)
    exact = []  # (start, stop) ranges of ``tri`` for the box pass
    for k, (count, stop) in enumerate(zip(counts, stops, strict=True)):
        start = stop - count
        cw, ch = divmod(k, n)
        if count == 0:
            continue
        if count < MIN_TILE_TRIANGLES or cw == n - 1 or ch == n - 1:
            exact.append((start, stop))
            continue
        _tile_pass(zbuf, sel_coef[:, start:stop], sel_first[start:stop], sel_face[start:stop],
                   TILE_SIDES[cw], TILE_SIDES[ch], Wp, max_pairs)
    if exact:
        idx = torch.cat([torch.arange(a, b, device=device) for a, b in exact])
        big = tri.index_select(0, idx)
        _box_pass(zbuf, sel_coef.index_select(1, idx), sel_first.index_select(0, idx), sel_face.index_select(0, idx),
                  bw.index_select(0, big), bh.index_select(0, big), Wp, max_pairs)

    zbuf = zbuf.view(B, Hp, Wp)
    mask = zbuf[:, :H, :W] != EMPTY_KEY
    b, row, col = mask.nonzero().T.contiguous()
    winner = zbuf.view(-1).index_select(0, (b * Hp + row) * Wp + col) & ((1 << INDEX_BITS) - 1)
    return Fragments(mask=mask, batch=b, row=row, col=col, face=winner)


def _tile_pass(
    zbuf: torch.Tensor, coef: torch.Tensor, first: torch.Tensor, face: torch.Tensor, tile_w: int, tile_h: int,
    pitch: int, max_pairs: int,
) -> None:
    """Test a fixed tile_w x tile_h block of pixels for each of T triangles whose boxes fit in it:
    pure broadcasting, no gathers. coef (12, T); first (T,) z-buffer index of each box origin;
    face (T,) triangle index; pitch: z-buffer row length."""
    basis, offset = _tile(tile_w, tile_h, pitch, coef.dtype, coef.device)  # (S, 3), (S, 1)
    step = max(1, max_pairs // (tile_w * tile_h))
    for s in range(0, coef.shape[1], step):
        c = coef[:, s : s + step]
        w0, w1, w2, depth = basis @ c.reshape(4, 3, -1)  # (S, t) each
        min_bary = torch.minimum(torch.minimum(w0, w1), w2)
        _fold(zbuf, min_bary, depth, face[None, s : s + step], first[None, s : s + step] + offset)


@functools.lru_cache(maxsize=64)
def _tile(tile_w: int, tile_h: int, pitch: int, dtype: torch.dtype, device: torch.device):
    """(S, 3) columns 1, tx, ty of a tile's S = tile_w*tile_h pixels, and their (S, 1) z-buffer offsets."""
    ty, tx = torch.meshgrid(torch.arange(tile_h, device=device), torch.arange(tile_w, device=device),
                            indexing="ij")
    basis = torch.stack([torch.ones_like(tx), tx, ty], -1).reshape(-1, 3).to(dtype)
    return basis, (ty * pitch + tx).reshape(-1, 1)


def _box_pass(
    zbuf: torch.Tensor, coef: torch.Tensor, first: torch.Tensor, face: torch.Tensor, bw: torch.Tensor,
    bh: torch.Tensor, pitch: int, max_pairs: int,
) -> None:
    """Test exactly the bw x bh box pixels of each of T large triangles, enumerated as (triangle,
    pixel) pairs in chunks of at most ``max_pairs``, cut anywhere, even inside a box. coef (12, T)."""
    counts = bw * bh
    ends = counts.cumsum(0)
    starts = ends - counts
    total = int(ends[-1])
    for s in range(0, total, max_pairs):
        pair = torch.arange(s, min(s + max_pairs, total), device=coef.device)
        local = torch.searchsorted(ends, pair, right=True)  # (N,) which triangle
        within = pair - starts.index_select(0, local)
        width = bw.index_select(0, local)
        row, col = within // width, within % width
        base, a, b = coef.index_select(1, local).view(4, 3, -1).unbind(1)  # (4, N) each
        w0, w1, w2, depth = base + a * col.to(coef.dtype) + b * row.to(coef.dtype)
        min_bary = torch.minimum(torch.minimum(w0, w1), w2)
        index = first.index_select(0, local) + row * pitch + col
        _fold(zbuf, min_bary, depth, face.index_select(0, local), index)


def _fold(zbuf: torch.Tensor, min_bary: torch.Tensor, depth: torch.Tensor, face: torch.Tensor,
          index: torch.Tensor) -> None:
    """Keep, per pixel, the nearest candidate inside its triangle. All arguments broadcast together:
    min_bary = smallest barycentric weight, depth key, face = triangle index, index = z-buffer position."""
    key = torch.where(min_bary >= -BARY_EPS, (depth.long() << INDEX_BITS) | face, EMPTY_KEY)
    zbuf.scatter_reduce_(0, index.reshape(-1), key.reshape(-1), reduce="amin")


def barycentrics(frags: Fragments, points: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable perspective-correct barycentric weights of the covered pixels.

    points: (3, B, V) as given to ``rasterize`` but with autograd history.
    Returns weights (3, P) and the flat vertex indices (3, P) into B*V they weight.
    """
    _, B, V = points.shape
    vid = faces.to(points.device).T.index_select(1, frags.face) + frags.batch * V  # (3 corners, P)
    (x0, x1, x2), (y0, y1, y2), (z0, z1, z2) = points.reshape(3, B * V).index_select(1, vid.reshape(-1)).view(
        3, 3, -1)
    px = frags.col.to(points.dtype) + 0.5
    py = frags.row.to(points.dtype) + 0.5
    e1x, e1y, e2x, e2y = x1 - x0, y1 - y0, x2 - x0, y2 - y0
    dx, dy = px - x0, py - y0
    inv_det = 1.0 / (e1x * e2y - e1y * e2x)
    w1 = (dx * e2y - dy * e2x) * inv_det
    w2 = (e1x * dy - e1y * dx) * inv_det
    # attributes are affine on the triangle in 3-D, so in screen space weight each corner by 1/z
    q0, q1, q2 = (1.0 - w1 - w2) / z0, w1 / z1, w2 / z2
    return torch.stack([q0, q1, q2]) / (q0 + q1 + q2), vid


def interpolate(attr: torch.Tensor, weights: torch.Tensor, vid: torch.Tensor) -> torch.Tensor:
    """(C, B*V) channel-major vertex attributes, (3, P) weights, (3, P) flat vertex indices -> (C, P)."""
    C = attr.shape[0]
    a0, a1, a2 = attr.index_select(1, vid.reshape(-1)).view(C, 3, -1).unbind(1)  # (C, P) each
    return a0 * weights[0] + a1 * weights[1] + a2 * weights[2]


def corner_index(faces: torch.Tensor, batch: int, n_vertices: int) -> torch.Tensor:
    """(F, 3) faces -> (3*batch*F,) indices into the flattened (batch*V) of corner 0 of every
    triangle of every image, then corner 1, then corner 2."""
    offsets = torch.arange(batch, device=faces.device)[:, None] * n_vertices  # (B, 1)
    return (faces.T[:, None, :] + offsets[None]).reshape(-1)
