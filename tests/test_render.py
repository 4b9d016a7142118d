"""The built-in differentiable rasteriser: coverage, occlusion, interpolation, shading, batching,
gradients, and the face-model renderer, on small meshes built here."""

from __future__ import annotations

import math

import pytest
import torch

from ehead_cli.face.base import FaceModel
from ehead_cli.layout import MOTION_DIM, N_SHAPE, TRANS
from ehead_cli.render import Camera, Light, MeshRenderer, Renderer, barycentrics, interpolate, rasterize

FLAT = Light(ambient=1.0, diffuse=0.0)  # unlit: pixel colour = interpolated albedo
BLACK = (0.0, 0.0, 0.0)


# --- small meshes ------------------------------------------------------------------------------
def icosphere(level: int, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit icosphere: (V, 3) vertices, (F, 3) faces counter-clockwise seen from outside."""
    t = (1 + 5**0.5) / 2
    verts = [torch.tensor(p, dtype=torch.float64) for p in [
        (-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t),
        (0, -1, -t), (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]]
    verts = [v / v.norm() for v in verts]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4),
             (11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8),
             (3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    midpoint: dict[tuple[int, int], int] = {}  # edges of one level never reappear in the next

    def mid(a: int, b: int) -> int:
        key = (min(a, b), max(a, b))
        if key not in midpoint:
            m = verts[a] + verts[b]
            verts.append(m / m.norm())
            midpoint[key] = len(verts) - 1
        return midpoint[key]

    for _ in range(level):
        new = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    return torch.stack(verts).to(dtype), torch.tensor(faces)


def square(z: float = 0.0, half: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Square in the plane z facing +z, split along its diagonal into two triangles."""
    v = torch.tensor([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]])
    return v, torch.tensor([[0, 1, 2], [0, 2, 3]])


def front_camera(fov_deg: float = 90.0) -> Camera:
    """Camera at z = 1 looking at the origin: with a 90 degree field of view on an S x S image,
    the plane z = 0 maps x in [-1, 1] onto pixels [0, S]."""
    return Camera(eye=(0.0, 0.0, 1.0), target=(0.0, 0.0, 0.0), fov_deg=fov_deg, near=0.1, far=10.0)


# --- coverage and occlusion --------------------------------------------------------------------
def test_square_covers_exactly_its_pixels_without_a_crack_on_the_diagonal():
    v, f = square()  # x, y in [-0.5, 0.5] -> pixels 8..23 of a 32 px image
    out = MeshRenderer(32, camera=front_camera(), light=FLAT, background=BLACK)(v, f, torch.ones(4, 3))
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[8:24, 8:24] = True
    # pixel centres (i + 0.5, i + 0.5) lie exactly on the shared diagonal: none may be missed
    assert torch.equal(out.mask[0], expected)
    assert torch.equal(out.image[0].amin(-1) == 1.0, expected)


def test_nearer_triangle_wins_whatever_the_order():
    far_v, f = square(z=-0.2)
    near_v, _ = square(z=0.1, half=0.25)
    v = torch.cat([far_v, near_v])
    colors = torch.tensor([[1.0, 0, 0]] * 4 + [[0, 0, 1.0]] * 4)
    r = MeshRenderer(32, camera=front_camera(), light=FLAT, background=BLACK)
    for faces in (torch.cat([f, f + 4]), torch.cat([f + 4, f])):
        img = r(v, faces, colors).image[0]
        assert torch.allclose(img[16, 16], torch.tensor([0.0, 0, 1]))  # near blue square in front
        assert torch.allclose(img[16, 10], torch.tensor([1.0, 0, 0]))  # far red square around it
        assert torch.allclose(img[1, 1], torch.zeros(3))  # background


def test_interpenetrating_triangles_split_along_their_intersection():
    # two triangles crossing at x = 0: left half of A is in front, right half of B is
    a = torch.tensor([[-0.8, -0.8, 0.2], [0.8, -0.8, -0.2], [0.0, 0.8, 0.0]])
    b = a * torch.tensor([1.0, 1.0, -1.0])
    colors = torch.tensor([[1.0, 0, 0]] * 3 + [[0, 1.0, 0]] * 3)
    r = MeshRenderer(64, camera=front_camera(), light=FLAT, cull_backfaces=False)
    img = r(torch.cat([a, b]), torch.tensor([[0, 1, 2], [3, 4, 5]]), colors).image[0]
    assert img[32, 24].argmax() == 0 and img[32, 40].argmax() == 1


def test_closed_mesh_has_no_holes_and_culling_changes_nothing():
    v, f = icosphere(2)
    v = v @ _rotation(0.3, 0.7)  # arbitrary orientation, edges at arbitrary angles
    kw = dict(camera=front_camera(fov_deg=60.0), light=FLAT, background=BLACK)
    culled = MeshRenderer(96, cull_backfaces=True, **kw)(v * 0.5, f, torch.ones_like(v))
    both = MeshRenderer(96, cull_backfaces=False, **kw)(v * 0.5, f, torch.ones_like(v))
    assert torch.equal(culled.image, both.image)
    # every pixel well inside the sphere's silhouette is covered
    f_px = 48 / math.tan(math.radians(30))
    radius_px = f_px * 0.5 / math.sqrt(1 - 0.25)  # silhouette of a sphere of radius 0.5 at distance 1
    yy, xx = torch.meshgrid(torch.arange(96) + 0.5, torch.arange(96) + 0.5, indexing="ij")
    inner = (xx - 48) ** 2 + (yy - 48) ** 2 < (0.85 * radius_px) ** 2
    assert bool(culled.mask[0][inner].all())
    assert not bool(culled.mask[0][(xx - 48) ** 2 + (yy - 48) ** 2 > (1.01 * radius_px) ** 2].any())


def test_triangles_off_screen_or_behind_the_camera():
    v, f = square(half=0.5)
    shifted = v + torch.tensor([0.75, 0.0, 0.0])  # x in [0.25, 1.25]: half leaves the right edge
    r = MeshRenderer(32, camera=front_camera(), light=FLAT)
    mask = r(shifted, f, torch.ones(4, 3)).mask[0]
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[8:24, 20:32] = True  # nothing wraps around onto the next row's left edge
    assert torch.equal(mask, expected)
    behind = v + torch.tensor([0.0, 0.0, 2.0])  # beyond the eye at z = 1
    assert not bool(r(behind, f, torch.ones(4, 3)).mask.any())


def test_large_triangles_and_small_chunks_give_the_same_image():
    v, f = icosphere(1)
    v = torch.cat([v * 0.3, torch.tensor([[-10.0, -10, -0.5], [10, -10, -0.5], [0, 10, -0.5]])])  # huge backdrop
    f = torch.cat([f, torch.tensor([[42, 43, 44]])])
    colors = torch.rand(v.shape[0], 3)
    ref = MeshRenderer(40, camera=front_camera())(v, f, colors)
    chunked = MeshRenderer(40, camera=front_camera(), max_pairs=37)(v, f, colors)
    assert ref.mask.all()
    assert torch.equal(ref.image, chunked.image)


def test_tiled_and_exact_paths_agree(monkeypatch):
    from ehead_cli.render import rasterizer

    v, f = icosphere(3)
    batch = torch.stack([v * 0.45, v @ _rotation(0.5, 1.1) * 0.3 + torch.tensor([0.2, -0.1, 0.0])])
    colors = torch.rand(v.shape[0], 3)
    r = MeshRenderer(80, 72, camera=front_camera())
    tiled = r(batch, f, colors)
    monkeypatch.setattr(rasterizer, "MIN_TILE_TRIANGLES", 10**9)  # every triangle takes the exact path
    exact = r(batch, f, colors)
    assert torch.equal(tiled.fragments.face, exact.fragments.face)
    assert torch.equal(tiled.image, exact.image)


# --- interpolation and shading -----------------------------------------------------------------
def test_colours_interpolate_with_barycentric_weights():
    v = torch.tensor([[-0.8, -0.7, 0.0], [0.8, -0.7, 0.0], [0.0, 0.9, 0.0]])
    f = torch.tensor([[0, 1, 2]])
    rgb = torch.eye(3)  # red, green, blue corners
    out = MeshRenderer(48, camera=front_camera(), light=FLAT)(v, f, rgb)
    # the plane faces the camera, so screen-space barycentrics are the right weights
    screen, _ = front_camera().project(v, 48, 48)
    ys, xs = out.mask[0].nonzero(as_tuple=True)
    p = torch.stack([xs, ys], -1).float() + 0.5
    a, b, c = screen
    det = (b - a)[0] * (c - a)[1] - (b - a)[1] * (c - a)[0]
    w1 = ((p - a)[:, 0] * (c - a)[1] - (p - a)[:, 1] * (c - a)[0]) / det
    w2 = ((b - a)[0] * (p - a)[:, 1] - (b - a)[1] * (p - a)[:, 0]) / det
    expected = torch.stack([1 - w1 - w2, w1, w2], -1)
    assert torch.allclose(out.image[0][ys, xs], expected.clamp(0, 1), atol=1e-4)


def test_interpolation_is_perspective_correct():
    # a floor receding from the camera, black at the near edge and white at the far edge
    v = torch.tensor([[-1.0, -0.3, 0.5], [1.0, -0.3, 0.5], [1.0, -0.3, -3.0], [-1.0, -0.3, -3.0]])
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    colors = torch.tensor([[0.0] * 3, [0.0] * 3, [1.0] * 3, [1.0] * 3])
    cam = front_camera()
    img = MeshRenderer(128, camera=cam, light=FLAT)(v, f, colors).image[0]
    mid_world = torch.tensor([0.0, -0.3, -1.25])  # halfway in 3-D: grey 0.5
    (x, y), _ = cam.project(mid_world, 128, 128)
    value = img[int(y), int(x), 0]
    assert abs(float(value) - 0.5) < 0.03
    # screen-space (affine) interpolation would put 0.5 much nearer the camera
    (_, y_near), _ = cam.project(v[0], 128, 128)
    (_, y_far), _ = cam.project(v[2], 128, 128)
    assert abs(float(img[int((y_near + y_far) / 2), 64, 0]) - 0.5) > 0.1


def test_shading_is_darker_on_faces_turned_from_the_light():
    light = Light(direction=(0.0, 0.0, 1.0), ambient=0.3, diffuse=0.7)
    r = MeshRenderer(64, camera=front_camera(), light=light, background=BLACK)
    values = []
    for angle in (0.0, 0.5, 1.0, 2.0):  # radians about the y axis; 2.0 faces away from the light
        v, f = square(half=0.3)
        v = v @ _rotation(0.0, angle).T
        img = r(v, f, torch.ones(4, 3)).image[0]
        lit = img[r(v, f, torch.ones(4, 3)).mask[0]]
        if angle < math.pi / 2:
            expected = 0.3 + 0.7 * math.cos(angle)
            assert torch.allclose(lit, torch.full_like(lit, expected), atol=1e-4)
        values.append(float(lit.mean()) if lit.numel() else 0.0)
    assert values[0] > values[1] > values[2]
    # a back face is culled; seen from behind without culling it gets only the ambient term
    v, f = square(half=0.3)
    back = MeshRenderer(64, camera=front_camera(), light=light, cull_backfaces=False)(
        v @ _rotation(0.0, 2.5).T, f, torch.ones(4, 3))
    assert torch.allclose(back.image[0][back.mask[0]], torch.tensor(0.3), atol=1e-4)


def test_lit_sphere_is_brighter_towards_the_light():
    v, f = icosphere(3)
    light = Light(direction=(1.0, 0.0, 0.3), ambient=0.2, diffuse=0.8)
    img = MeshRenderer(64, camera=front_camera(60.0), light=light)(v * 0.4, f, torch.ones_like(v)).image[0]
    assert float(img[32, 44].mean()) > float(img[32, 32].mean()) > float(img[32, 20].mean())


# --- batching ----------------------------------------------------------------------------------
def test_batch_equals_per_item():
    v, f = icosphere(2)
    batch = torch.stack([v * 0.4, v * 0.3 + torch.tensor([0.1, 0, 0]), v @ _rotation(0.4, 0.2) * 0.45])
    colors = torch.rand(3, v.shape[0], 3)
    r = MeshRenderer(40, 56, camera=front_camera())
    together = r(batch, f, colors)
    assert together.image.shape == (3, 40, 56, 3) and together.mask.shape == (3, 40, 56)
    for i in range(3):
        alone = r(batch[i], f, colors[i])
        assert torch.allclose(together.image[i], alone.image[0], atol=1e-6)
        assert torch.equal(together.mask[i], alone.mask[0])


# --- gradients ---------------------------------------------------------------------------------
def _small_scene(dtype=torch.float64):
    v, f = icosphere(0, dtype)
    v = (v @ _rotation(0.3, 0.5).to(dtype)) * 0.5
    colors = torch.rand(v.shape[0], 3, dtype=dtype) * 0.6 + 0.2
    return v, f, colors


def test_gradcheck_with_visibility_fixed():
    v, f, colors = _small_scene()
    r = MeshRenderer(10, camera=front_camera(60.0), light=Light(ambient=0.4, diffuse=0.5))
    points = r.camera.project_channels(v.T, 10, 10)[:, None]  # (3, B=1, V)
    frags = rasterize(points, f, 10, 10, r.camera.near, r.camera.far, cull_backfaces=True)
    assert frags.pix.numel() > 20

    def shade(vertices, albedo):
        w, vid = barycentrics(frags, r.camera.project_channels(vertices.T, 10, 10)[:, None], f)
        return interpolate(albedo.T, w, vid)

    assert torch.autograd.gradcheck(shade, (v.clone().requires_grad_(), colors.clone().requires_grad_()))


def test_image_gradient_matches_finite_differences():
    v, f, colors = _small_scene()
    r = MeshRenderer(16, camera=front_camera(60.0), light=Light(ambient=0.4, diffuse=0.5))
    weights = torch.rand(1, 16, 16, 3, dtype=torch.float64)

    def loss(vertices):
        out = r(vertices, f, colors)
        return (out.image * weights).sum(), out.fragments.face

    vv = v.clone().requires_grad_()
    value, faces_seen = loss(vv)
    value.backward()
    assert vv.grad.abs().sum() > 0
    eps = 1e-6
    compared = 0
    for k in range(v.shape[0]):
        for axis in range(3):
            plus, minus = v.clone(), v.clone()
            plus[k, axis] += eps
            minus[k, axis] -= eps
            (l_plus, f_plus), (l_minus, f_minus) = loss(plus), loss(minus)
            # the comparison only holds where the visibility does not change within +-eps
            if not (torch.equal(f_plus, faces_seen) and torch.equal(f_minus, faces_seen)):
                continue
            numeric = (l_plus - l_minus) / (2 * eps)
            assert torch.allclose(vv.grad[k, axis], numeric, rtol=1e-4, atol=1e-6), (k, axis)
            compared += 1
    assert compared >= 24  # most of the 36 coordinates of the 12 vertices


def test_gradients_reach_vertices_and_colours_through_the_face_renderer():
    model = TinyHead()
    r = Renderer(model, size=32)
    motion = torch.zeros(2, MOTION_DIM, requires_grad=True)
    colors = model.vertex_colors.clone().requires_grad_()
    model.vertex_colors = colors
    r.images(torch.zeros(N_SHAPE), motion).image.mean().backward()
    assert motion.grad[:, TRANS].abs().sum() > 0
    assert colors.grad.abs().sum() > 0


# --- face-model renderer -----------------------------------------------------------------------
class TinyHead(FaceModel):
    """A 0.25 m ellipsoidal 'head' centred at the origin; the motion's translation moves it and its
    first expression coefficient widens it."""

    name = "tiny"

    def __init__(self) -> None:
        super().__init__()
        v, f = icosphere(2)
        self.register_buffer("template", v * torch.tensor([0.08, 0.125, 0.1]))
        self.register_buffer("faces", f)
        self.register_buffer("vertex_colors", torch.rand(v.shape[0], 3) * 0.5 + 0.4)

    def _vertices(self, shape: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        widen = 1.0 + 0.1 * motion[:, :1, None] * torch.tensor([1.0, 0.0, 0.0])
        return self.template[None] * widen + motion[:, None, TRANS]


def test_face_renderer_frames_the_head_and_follows_translation():
    model = TinyHead()
    r = Renderer(model, size=64, batch_size=2)
    motion = torch.zeros(5, MOTION_DIM)
    motion[:, TRANS.start] = torch.linspace(-0.05, 0.05, 5)  # metres to the right
    frames = r.render(torch.zeros(N_SHAPE), motion)
    assert frames.shape == (5, 64, 64, 3) and frames.dtype == torch.uint8
    mask = r.images(torch.zeros(N_SHAPE), motion).mask
    centre_x = [float(m.nonzero()[:, 1].float().mean()) for m in mask]
    assert all(a < b for a, b in zip(centre_x, centre_x[1:], strict=False))
    # the neutral head is framed: fully inside the image, filling a good part of its height
    neutral = mask[2]
    assert not neutral[0].any() and not neutral[-1].any() and not neutral[:, 0].any()
    rows = neutral.any(1).nonzero()
    assert 0.6 * 64 < float(rows.max() - rows.min()) < 0.95 * 64
    streamed = list(r.iter_frames(torch.zeros(N_SHAPE), motion))
    assert len(streamed) == 5
    assert all(torch.equal(torch.from_numpy(s), x) for s, x in zip(streamed, frames, strict=True))


def test_culling_is_automatic_only_for_closed_meshes():
    closed = TinyHead()
    assert Renderer(closed, size=16).mesh.cull_backfaces
    open_head = TinyHead()
    open_head.faces = open_head.faces[1:]  # one missing triangle leaves a hole
    assert not Renderer(open_head, size=16).mesh.cull_backfaces


def test_face_renderer_rejects_bad_motion_shapes():
    r = Renderer(TinyHead(), size=16)
    with pytest.raises(ValueError, match="motion"):
        r.render(torch.zeros(N_SHAPE), torch.zeros(3, 7))
    with pytest.raises(ValueError, match="shape"):
        r.render(torch.zeros(2, N_SHAPE), torch.zeros(3, MOTION_DIM))


def test_camera_projects_the_target_to_the_image_centre():
    cam = Camera(eye=(0.3, 0.2, 1.5), target=(0.05, -0.02, 0.1), fov_deg=25.0)
    xy, depth = cam.project(torch.tensor([0.05, -0.02, 0.1]), 120, 160)
    assert torch.allclose(xy, torch.tensor([80.0, 60.0]), atol=1e-4)
    assert abs(float(depth) - math.dist((0.3, 0.2, 1.5), (0.05, -0.02, 0.1))) < 1e-5
    # up in the world is up in the image (smaller row)
    up_xy, _ = cam.project(torch.tensor([0.05, 0.08, 0.1]), 120, 160)
    assert float(up_xy[1]) < 60.0
    with pytest.raises(ValueError):
        Camera(eye=(0.0, 0.0, 0.0), target=(0.0, 0.0, 0.0))


def test_benchmark_mesh_is_closed_outward_and_timed():
    from ehead_cli.bench.render import ellipsoid_mesh, time_render
    from ehead_cli.render import is_closed

    v, f = ellipsoid_mesh(400)
    assert abs(f.shape[0] - 400) <= 40 and is_closed(f)
    tri = v[f]
    outward = (torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]) * tri.mean(1)).sum(-1)
    assert bool((outward > 0).all())
    timing = time_render(v, f, torch.rand(v.shape[0], 3), size=24, batch=2, repeats=2)
    assert timing.batch == 2 and timing.n_triangles == f.shape[0] and timing.fps_best >= timing.fps_median > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    v, f = icosphere(3)
    batch = torch.stack([v * 0.4, v * 0.35 + torch.tensor([0.05, 0.0, 0.0])])
    colors = torch.rand(v.shape[0], 3)
    r = MeshRenderer(64, camera=front_camera(60.0))
    cpu = r(batch, f, colors)
    gpu = r(batch.cuda(), f.cuda(), colors.cuda())
    assert torch.equal(cpu.mask, gpu.mask.cpu())
    assert torch.allclose(cpu.image, gpu.image.cpu(), atol=1e-4)


def _rotation(ax: float, ay: float) -> torch.Tensor:
    """(3, 3) rotation by ``ax`` about x, then ``ay`` about y (radians)."""
    cx, sx, cy, sy = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay)
    rx = torch.tensor([[1.0, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = torch.tensor([[cy, 0, sy], [0, 1.0, 0], [-sy, 0, cy]])
    return ry @ rx
