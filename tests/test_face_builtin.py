"""The built-in procedural head: construction, rig, named components, landmarks and masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ehead_cli.errors import AssetError
from ehead_cli.face.base import MOUTH_LOWER_INNER, MOUTH_UPPER_INNER, N_LANDMARKS
from ehead_cli.face.builtin import BuiltinHead, build_head_arrays
from ehead_cli.face.builtin import proportions as bh
from ehead_cli.face.flame import ENV_FLAME
from ehead_cli.face.loading import load_face_model
from ehead_cli.layout import EXPR, EYE_LEFT, EYE_RIGHT, JAW, MOTION_DIM, N_EXPR, N_SHAPE, ROT, TRANS

MM = 1e-3


@pytest.fixture(scope="module")
def head() -> BuiltinHead:
    return BuiltinHead()


def _verts(head: BuiltinHead, shape=None, **pose) -> torch.Tensor:
    """(V, 3) vertices for named expression coefficients and pose entries (jaw=..., rot=...)."""
    motion = torch.zeros(MOTION_DIM)
    slots = {"jaw": JAW, "eye_left": EYE_LEFT, "eye_right": EYE_RIGHT, "rot": ROT, "trans": TRANS}
    for key, value in pose.items():
        if key in slots:
            motion[slots[key]] = torch.tensor(value, dtype=torch.float32)
        else:
            motion[EXPR][getattr(bh, key)] = value
    shape = torch.zeros(N_SHAPE) if shape is None else shape
    with torch.no_grad():
        return head(shape, motion)


def _lmk(head: BuiltinHead, v: torch.Tensor) -> torch.Tensor:
    return head.landmarks(v)


def test_deterministic_and_light():
    a, b = build_head_arrays.__wrapped__(), build_head_arrays.__wrapped__()  # two constructions, bypassing the cache
    for name in ("vertices", "faces", "colors", "shapedirs", "exprdirs", "skin_weights", "lmk_vertices", "part"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.masks.keys() == b.masks.keys() and all(np.array_equal(a.masks[k], b.masks[k]) for k in a.masks)
    assert 3000 <= len(a.vertices) <= 6000
    assert a.faces.min() >= 0 and a.faces.max() < len(a.vertices)
    assert np.isfinite(a.vertices).all() and ((a.colors >= 0) & (a.colors <= 1)).all()


def test_finite_vertices_and_batching(head):
    g = torch.Generator().manual_seed(0)
    shape = torch.randn(2, 1, N_SHAPE, generator=g) * 2
    motion = torch.randn(2, 3, MOTION_DIM, generator=g) * 0.3
    v = head(shape, motion)
    assert v.shape == (2, 3, head.n_vertices, 3) and torch.isfinite(v).all()
    torch.testing.assert_close(v[1, 2], head(shape[1, 0], motion[1, 2]))


def test_skin_faces_point_outward(head):
    """Counter-clockwise from outside, as the renderer's back-face culling expects."""
    v, f = head.v_template, head.faces
    skin = (head.vertex_part[f] == bh.SKIN_PART).all(1)
    tri = v[f[skin]]
    normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    centre = tri.mean(1)
    axis = torch.zeros_like(centre)
    axis[:, 1] = centre[:, 1].clamp(bh.BOTTOM_FAN_Y, bh.TOP_FAN_Y)
    axis[:, 2] = bh.AXIS_Z
    outward = ((centre - axis) * normal).sum(1) > 0
    assert outward.float().mean() > 0.97


def test_jaw_moves_lips_not_forehead(head):
    rest, open_ = _verts(head), _verts(head, jaw=[0.3, 0.0, 0.0])
    moved = (open_ - rest).norm(dim=1)
    lips = head.mask("lips")
    assert moved[lips].max() > 8 * MM
    forehead = (head.v_template[:, 1] > 0.03) & (head.v_template[:, 2] > 0.0)
    assert forehead.sum() > 50 and moved[forehead].max() < 1e-6
    assert moved[head.vertex_part == bh.EAR_PART].max() < 1e-6
    # the chin goes down
    chin = head.lmk_vertices[8]
    assert open_[chin, 1] < rest[chin, 1] - 8 * MM


def test_inner_lip_landmarks_separate_when_the_jaw_opens(head):
    def gap(v):
        lmk = _lmk(head, v)
        return (lmk[MOUTH_UPPER_INNER] - lmk[MOUTH_LOWER_INNER]).norm()

    assert gap(_verts(head)) < 1e-6  # the lips meet at rest
    assert gap(_verts(head, jaw=[0.25, 0.0, 0.0])) > 10 * MM
    assert gap(_verts(head, EXPR_LIPS_PART=1.0)) > 3 * MM


def test_blink_closes_the_eyelids(head):
    pairs = [(37, 41), (38, 40), (43, 47), (44, 46)]  # upper and lower lid landmarks

    def openings(v):
        lmk = _lmk(head, v)
        return torch.stack([(lmk[a] - lmk[b]).norm() for a, b in pairs])

    rest, half, closed = openings(_verts(head)), openings(_verts(head, EXPR_BLINK=0.5)), \
        openings(_verts(head, EXPR_BLINK=1.0))
    assert (rest > 6 * MM).all()
    assert (half < rest).all() and (closed < 0.1 * MM).all()


def test_named_expressions_move_their_regions(head):
    rest = _lmk(head, _verts(head))
    right, left = 48, 54  # mouth corners: right at -x, left at +x

    smile = _lmk(head, _verts(head, EXPR_SMILE=1.0))
    assert (smile[[right, left], 1] - rest[[right, left], 1] > 3 * MM).all()  # corners up
    assert smile[left, 0] - smile[right, 0] > rest[left, 0] - rest[right, 0] + 4 * MM  # and apart

    stretch = _lmk(head, _verts(head, EXPR_LIP_STRETCH=1.0))
    assert stretch[left, 0] - stretch[right, 0] > rest[left, 0] - rest[right, 0] + 6 * MM

    pucker = _lmk(head, _verts(head, EXPR_LIP_ROUND=1.0))
    assert pucker[left, 0] - pucker[right, 0] < rest[left, 0] - rest[right, 0] - 6 * MM  # corners in
    assert (pucker[[51, 57], 2] > rest[[51, 57], 2] + 4 * MM).all()  # lips forward

    brows = list(range(17, 27))
    raised = _lmk(head, _verts(head, EXPR_BROW_RAISE=1.0))
    assert (raised[brows, 1] - rest[brows, 1] > 3 * MM).all()

    frown = _lmk(head, _verts(head, EXPR_BROW_FROWN=1.0))
    assert (frown[[21, 22], 1] < rest[[21, 22], 1] - 1.5 * MM).all()  # inner brows down
    assert frown[22, 0] - frown[21, 0] < rest[22, 0] - rest[21, 0] - 2 * MM  # and together

    sideways = _lmk(head, _verts(head, EXPR_MOUTH_SIDEWAYS=1.0))
    assert (sideways[[right, left], 0] > rest[[right, left], 0] + 2 * MM).all()


def test_expression_components_are_local_and_plausible(head):
    """Each component at +-1 moves the face by millimetres (the blink: the lid's travel) and leaves
    the back of the head alone; the unnamed ones are smaller than the named ones."""
    dirs = head.exprdirs.view(N_EXPR, -1, 3)  # metres per unit
    peak = dirs.norm(dim=-1).amax(1)
    assert (peak > 0.2 * MM).all() and (peak < 10 * MM).all()
    back = head.v_template[:, 2] < -0.05
    assert dirs[:, back].norm(dim=-1).max() < 1e-4
    assert peak[bh.N_NAMED_EXPR:].max() < peak[: bh.N_NAMED_EXPR].min()
    assert peak[-1] < peak[bh.N_NAMED_EXPR]  # decreasing magnitude


def test_shape_components_are_plausible(head):
    dirs = head.shapedirs.view(N_SHAPE, -1, 3)
    assert (dirs.norm(dim=-1).amax(1) * 3 < 15 * MM).all()  # +-3 moves nothing by more than 1.5 cm
    shape = torch.zeros(N_SHAPE)
    shape[bh.SHAPE_HEAD_WIDTH] = 3.0
    wide, rest = _verts(head, shape=shape), _verts(head)
    assert np.ptp(wide[:, 0].numpy()) > np.ptp(rest[:, 0].numpy()) + 3 * MM
    # eyeballs stay spheres of the same radius under any identity
    shape = torch.randn(N_SHAPE, generator=torch.Generator().manual_seed(1)) * 3
    v = _verts(head, shape=shape)
    for part in (bh.EYE_LEFT_PART, bh.EYE_RIGHT_PART):
        ball = v[head.vertex_part == part]
        radii = (ball - ball.mean(0)).norm(dim=1)
        ref = head.v_template[head.vertex_part == part]
        torch.testing.assert_close(radii, (ref - ref.mean(0)).norm(dim=1), atol=1e-6, rtol=0)


def test_eye_pose_moves_only_its_eyeball(head):
    rest = _verts(head)
    for slot, part in (("eye_left", bh.EYE_LEFT_PART), ("eye_right", bh.EYE_RIGHT_PART)):
        turned = _verts(head, **{slot: [0.1, 0.4, 0.0]})
        moved = (turned - rest).norm(dim=1) > 1e-7
        assert moved.any() and torch.equal(moved, moved & (head.vertex_part == part))
        ball = head.vertex_part == part
        centre = head.joints(torch.zeros(1, N_SHAPE), torch.zeros(1, N_EXPR))[0, 1 if part == bh.EYE_LEFT_PART else 2]
        torch.testing.assert_close((turned[ball] - centre).norm(dim=1), (rest[ball] - centre).norm(dim=1))
    # a positive yaw turns the gaze toward +x, the subject's left
    pupil = head.vertex_part == bh.EYE_LEFT_PART
    front = torch.argmax(torch.where(pupil, rest[:, 2], torch.tensor(-1.0)))
    assert _verts(head, eye_left=[0.0, 0.4, 0.0])[front, 0] > rest[front, 0] + 3 * MM


def test_global_rotation_is_rigid(head):
    idx = torch.arange(0, head.n_vertices, 7)
    pose = {"jaw": [0.2, 0.0, 0.0], "EXPR_SMILE": 1.0}
    a = _verts(head, **pose)[idx]
    b = _verts(head, rot=[0.3, -0.6, 0.2], trans=[0.01, 0.02, -0.03], **pose)[idx]

    def pairwise(v):
        return (v[:, None] - v[None]).norm(dim=-1)

    torch.testing.assert_close(pairwise(a), pairwise(b), atol=2e-6, rtol=0)
    assert (a - b).norm(dim=1).max() > 0.02


def test_motion_gradients_are_finite(head):
    motion = (torch.randn(2, MOTION_DIM, generator=torch.Generator().manual_seed(2)) * 0.2).requires_grad_()
    head(torch.zeros(N_SHAPE), motion).square().sum().backward()
    assert torch.isfinite(motion.grad).all() and motion.grad[:, JAW].abs().sum() > 0


def test_masks_and_landmarks(head):
    lips, upper = head.mask("lips"), head.mask("upper_face")
    assert lips.numel() > 20 and upper.numel() > 200
    assert not set(lips.tolist()) & set(upper.tolist())
    eyes = (head.vertex_part == bh.EYE_LEFT_PART) | (head.vertex_part == bh.EYE_RIGHT_PART)
    assert not eyes[upper].any() and not eyes[lips].any()
    assert {int(head.lmk_vertices[MOUTH_UPPER_INNER]), int(head.lmk_vertices[MOUTH_LOWER_INNER])} <= set(lips.tolist())
    v = head.v_template
    assert v[upper, 1].min() > v[lips, 1].max()  # the upper face lies above the lips
    # landmarks follow the mesh and sit where the iBUG layout puts them
    lmk = head.landmarks(v)
    assert lmk.shape == (N_LANDMARKS, 3)
    torch.testing.assert_close(lmk, v[head.lmk_vertices])
    assert lmk[0, 0] < -0.05 and lmk[16, 0] > 0.05 and abs(lmk[8, 0]) < 1e-3  # jaw line, chin in the middle
    assert lmk[36, 0] < lmk[39, 0] < 0 < lmk[42, 0] < lmk[45, 0]  # eye corners
    assert int(lmk[:, 2].argmax()) == 30  # the nose tip is in front
    assert lmk[27:31, 1].diff().lt(0).all()  # the nose bridge runs down
    assert lmk[17:27, 1].min() > lmk[36:48, 1].max() > lmk[30, 1] > lmk[48:68, 1].max() > lmk[8, 1]
    with pytest.raises(KeyError):
        head.mask("nose")


def test_load_face_model_default_and_flame(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_FLAME, raising=False)
    assert isinstance(load_face_model(), BuiltinHead)
    monkeypatch.setenv(ENV_FLAME, str(tmp_path / "missing.pkl"))
    with pytest.raises(AssetError, match=ENV_FLAME):
        load_face_model()
    monkeypatch.setenv(ENV_FLAME, "")
    assert isinstance(load_face_model(), BuiltinHead)
