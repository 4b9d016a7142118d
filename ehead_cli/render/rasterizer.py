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

Triangles not wholly between the near and far planes are dropped (no clipping); a head in front
of the camera never has one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# A pixel centre counts as inside when all its barycentric weights are >= -BARY_EPS. The tolerance
# absorbs float rounding on edges shared by two triangles, so no pixel between them is missed
# (no cracks); the few pixels both then claim are settled by the z-buffer.
BARY_EPS = 1e-5
MIN_DOUBLE_AREA = 1e-10  # px^2; triangles with a smaller |2 x signed area| are degenerate
DEPTH_SCALE = float((1 << 31) - 1)  # normalised depth quantisation in the packed key, finer than float32
INDEX_BITS = 32  # low bits of the packed key hold the triangle index over the whole batch
EMPTY_KEY = torch.iinfo(torch.int64).max
MAX_PAIRS = 1 << 23  # (triangle, pixel) candidates per chunk: ~8M pairs, a few hundred MB of temporaries
# Triangles whose box fits in a tile x tile block are tested on the whole block by broadcasting
# (cheap, some wasted pixels); larger boxes are enumerated pixel by pixel.
TILES = (2, 4, 8, 16)


@dataclass(frozen=True)
class Fragments:
    """The visible triangle of every covered pixel, for a batch of B images of H x W.

    pix:   (P,) int64 flat index into B*H*W (row-major: batch, row, column), ascending
    face:  (P,) int64 index of the visible triangle in ``faces``
    batch: (P,) int64 image index of each covered pixel
    """

    pix: torch.Tensor
    face: torch.Tensor
    batch: torch.Tensor
    size: tuple[int, int, int]  # (B, H, W)

    def mask(self) -> torch.Tensor:
        """(B, H, W) bool coverage."""
        B, H, W = self.size
        m = torch.zeros(B * H * W, dtype=torch.bool, device=self.pix.device)
        m[self.pix] = True
        return m.view(B, H, W)

    def pixel_centres(self, dtype: torch.dtype) -> torch.Tensor:
        """(P, 2) pixel-centre coordinates (x, y) of the covered pixels."""
        _, H, W = self.size
        within = self.pix % (H * W)
        return torch.stack([within % W, within // W], dim=-1).to(dtype) + 0.5


@torch.no_grad()
def rasterize(
    screen: torch.Tensor,
    depth: torch.Tensor,
    faces: torch.Tensor,
    height: int,
    width: int,
    near: float,
    far: float,
    cull_backfaces: bool = False,
    max_pairs: int = MAX_PAIRS,
) -> Fragments:
    """Visible triangle per pixel.

    screen: (B, V, 2) pixel coordinates (x right, y down), from ``Camera.project``
    depth:  (B, V) distance along the optical axis, metres
    faces:  (F, 3) int64 vertex indices, counter-clockwise seen from outside
    near, far: depth range in metres; triangles not wholly inside it are dropped
    cull_backfaces: drop triangles facing away from the camera (exact for closed meshes)
    """
    B, V, _ = screen.shape
    F = faces.shape[0]
    H, W = height, width
    if B * F >= 1 << (INDEX_BITS - 1):
        raise ValueError(f"too many triangles in one batch ({B} x {F}); render in smaller batches")
    corners = _flat_corners(faces.to(screen.device), B, V)  # (B*F*3,)
    xy = screen.reshape(-1, 2).index_select(0, corners).view(B * F, 3, 2)
    z = depth.reshape(-1).index_select(0, corners).view(B * F, 3)
    e1 = xy[:, 1] - xy[:, 0]  # (B*F, 2)
    e2 = xy[:, 2] - xy[:, 0]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]  # (B*F,) twice the signed area
    keep = (z.amin(1) >= near) & (z.amax(1) <= far) & (det.abs() > MIN_DOUBLE_AREA) & torch.isfinite(det)
    if cull_backfaces:
        # counter-clockwise in the world is clockwise on a y-down screen: front faces have det < 0
        keep &= det < 0

    # Candidate box: the pixels whose centres (i + 0.5, j + 0.5) lie in the triangle's bounding
    # box, clamped to the image. Origin (i0, j0), size bw x bh.
    bound = float(max(H, W) + 1)
    lo = torch.ceil(xy.amin(1).clamp(-1.0, bound) - 0.5).long().clamp_min(0)  # (B*F, 2)
    hi = torch.floor(xy.amax(1).clamp(-1.0, bound) - 0.5).long()
    bw = (hi[:, 0].clamp_max(W - 1) - lo[:, 0] + 1).clamp_min(0)
    bh = (hi[:, 1].clamp_max(H - 1) - lo[:, 1] + 1).clamp_min(0)
    side = torch.maximum(bw, bh) * (keep & (bw > 0) & (bh > 0))  # 0 for triangles with nothing to draw

    # w0, w1, w2 and normalised depth are affine in the pixel position, so each is
    # base + a * tx + b * ty at pixel (i0 + tx, j0 + ty): coef (B*F, 4 values, 3 = base, a, b).
    inv_det = 1.0 / det
    a1, b1 = e2[:, 1] * inv_det, -e2[:, 0] * inv_det
    a2, b2 = -e1[:, 1] * inv_det, e1[:, 0] * inv_det
    dx0 = lo[:, 0].to(xy.dtype) + 0.5 - xy[:, 0, 0]
    dy0 = lo[:, 1].to(xy.dtype) + 0.5 - xy[:, 0, 1]
    w1 = a1 * dx0 + b1 * dy0
    w2 = a2 * dx0 + b2 * dy0
    # normalised depth 1/z mapped to [0, 1] over [near, far]: affine in screen space; smaller is nearer
    zn = (1.0 / near - 1.0 / z) / (1.0 / near - 1.0 / far)  # (B*F, 3)
    dz1, dz2 = zn[:, 1] - zn[:, 0], zn[:, 2] - zn[:, 0]
    coef = torch.stack(
        [
            1.0 - w1 - w2, -a1 - a2, -b1 - b2,
            w1, a1, b1,
            w2, a2, b2,
            zn[:, 0] + w1 * dz1 + w2 * dz2, a1 * dz1 + a2 * dz2, b1 * dz1 + b2 * dz2,
        ],
        dim=1,
    ).view(B * F, 4, 3)

    # The z-buffer has TILE_PAD spare rows and columns per image, so a tile that sticks out past
    # the right or bottom edge writes there instead of wrapping onto the next row.
    Hp, Wp = H + TILES[-1], W + TILES[-1]
    zbuf = torch.full((B * Hp * Wp,), EMPTY_KEY, dtype=torch.int64, device=screen.device)
    first = torch.arange(B, device=screen.device).repeat_interleave(F) * (Hp * Wp) + lo[:, 1] * Wp + lo[:, 0]
    smaller = 0
    for tile in TILES:
        tri = ((side > smaller) & (side <= tile)).nonzero().squeeze(1)
        if tri.numel() > 0:
            _tile_pass(zbuf, tri, coef.index_select(0, tri), first.index_select(0, tri), tile, Wp, max_pairs)
        smaller = tile
    tri = (side > smaller).nonzero().squeeze(1)
    if tri.numel() > 0:
        _box_pass(
            zbuf, tri, coef.index_select(0, tri), first.index_select(0, tri),
            bw.index_select(0, tri), bh.index_select(0, tri), Wp, max_pairs,
        )

    zbuf = zbuf.view(B, Hp, Wp)[:, :H, :W].reshape(-1)
    pix = (zbuf != EMPTY_KEY).nonzero().squeeze(1)
    winner = zbuf.index_select(0, pix) & ((1 << INDEX_BITS) - 1)
    return Fragments(pix=pix, face=winner % F, batch=winner // F, size=(B, H, W))


def _tile_pass(
    zbuf: torch.Tensor, tri: torch.Tensor, coef: torch.Tensor, first: torch.Tensor, tile: int, pitch: int,
    max_pairs: int,
) -> None:
    """Test a fixed tile x tile block of pixels for each of the triangles ``tri`` (T,), whose boxes
    fit in it; pure broadcasting, no gathers. coef (T, 4, 3); first (T,) buffer index of the box
    origin; pitch: z-buffer row length."""
    ty, tx = torch.meshgrid(torch.arange(tile, device=tri.device), torch.arange(tile, device=tri.device),
                            indexing="ij")
    basis = torch.stack([torch.ones_like(tx), tx, ty]).reshape(3, -1).to(coef.dtype)  # (3, tile^2)
    offset = (ty * pitch + tx).reshape(-1)  # (tile^2,)
    step = max(1, max_pairs // (tile * tile))
    for s in range(0, tri.numel(), step):
        c = coef[s : s + step]
        values = (c.reshape(-1, 3) @ basis).view(c.shape[0], 4, -1)  # (t, w0 w1 w2 depth, tile^2)
        _fold(zbuf, values[:, :3].amin(1), values[:, 3], tri[s : s + step, None], first[s : s + step, None] + offset)


def _box_pass(
    zbuf: torch.Tensor, tri: torch.Tensor, coef: torch.Tensor, first: torch.Tensor, bw: torch.Tensor,
    bh: torch.Tensor, pitch: int, max_pairs: int,
) -> None:
    """Test exactly the bw x bh box pixels of each large triangle ``tri`` (T,), enumerated as
    (triangle, pixel) pairs in chunks of at most ``max_pairs``, cut anywhere, even inside a box."""
    counts = bw * bh
    ends = counts.cumsum(0)
    starts = ends - counts
    total = int(ends[-1])
    for s in range(0, total, max_pairs):
        pair = torch.arange(s, min(s + max_pairs, total), device=tri.device)
        local = torch.searchsorted(ends, pair, right=True)  # (N,) which triangle
        within = pair - starts.index_select(0, local)
        width = bw.index_select(0, local)
        row, col = within // width, within % width
        c = coef.index_select(0, local)  # (N, 4, 3)
        values = c[:, :, 0] + c[:, :, 1] * col[:, None].to(c.dtype) + c[:, :, 2] * row[:, None].to(c.dtype)
        _fold(zbuf, values[:, :3].amin(1), values[:, 3], tri.index_select(0, local),
              first.index_select(0, local) + row * pitch + col)


def _fold(zbuf: torch.Tensor, min_bary: torch.Tensor, depth: torch.Tensor, tri: torch.Tensor,
          index: torch.Tensor) -> None:
    """Keep, per pixel, the nearest candidate inside its triangle. All arguments broadcast together:
    min_bary = smallest barycentric weight, depth normalised to [0, 1], tri = global triangle
    index, index = z-buffer position."""
    quant = (depth.clamp(0.0, 1.0) * DEPTH_SCALE).long()
    key = torch.where(min_bary >= -BARY_EPS, (quant << INDEX_BITS) | tri, EMPTY_KEY)
    zbuf.scatter_reduce_(0, index.reshape(-1), key.reshape(-1), reduce="amin")


def barycentrics(
    frags: Fragments, screen: torch.Tensor, depth: torch.Tensor, faces: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable perspective-correct barycentric weights of the covered pixels.

    screen (B, V, 2) and depth (B, V) as given to ``rasterize`` but with autograd history.
    Returns weights (P, 3) and the flat vertex indices (P, 3) into B*V they weight.
    """
    V = screen.shape[1]
    vid = faces.to(screen.device).index_select(0, frags.face) + frags.batch[:, None] * V  # (P, 3)
    flat = vid.reshape(-1)
    xy = screen.reshape(-1, 2).index_select(0, flat).view(-1, 3, 2)  # (P, 3, 2)
    z = depth.reshape(-1).index_select(0, flat).view(-1, 3)  # (P, 3)
    p = frags.pixel_centres(screen.dtype)
    e1 = xy[:, 1] - xy[:, 0]
    e2 = xy[:, 2] - xy[:, 0]
    d = p - xy[:, 0]
    inv_det = 1.0 / (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    w1 = (d[:, 0] * e2[:, 1] - d[:, 1] * e2[:, 0]) * inv_det
    w2 = (e1[:, 0] * d[:, 1] - e1[:, 1] * d[:, 0]) * inv_det
    screen_w = torch.stack([1.0 - w1 - w2, w1, w2], dim=-1)
    # attributes are affine on the triangle in 3-D, so in screen space weight each corner by 1/z
    q = screen_w / z
    return q / q.sum(-1, keepdim=True), vid


def interpolate(attr: torch.Tensor, weights: torch.Tensor, vid: torch.Tensor) -> torch.Tensor:
    """(B, V, C) or shared (V, C) per-vertex attributes, (P, 3) weights, (P, 3) flat indices into
    B*V -> (P, C)."""
    if attr.dim() == 2:
        vid = vid % attr.shape[0]
    C = attr.shape[-1]
    corner = attr.reshape(-1, C).index_select(0, vid.reshape(-1)).view(-1, 3, C)  # (P, 3, C)
    return corner[:, 0] * weights[:, 0:1] + corner[:, 1] * weights[:, 1:2] + corner[:, 2] * weights[:, 2:3]


def _flat_corners(faces: torch.Tensor, batch: int, n_vertices: int) -> torch.Tensor:
    """(F, 3) faces -> (batch*F*3,) indices of every triangle corner into the flattened (batch*V)."""
    offsets = torch.arange(batch, device=faces.device)[:, None] * n_vertices  # (B, 1)
    return (faces.reshape(1, -1) + offsets).reshape(-1)
