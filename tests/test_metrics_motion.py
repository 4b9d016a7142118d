"""Motion metrics (LVE, FDD, MOD, BA, SID), the head-pose-free vertex glue, conventions, baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ehead_cli.errors import ConfigError
from ehead_cli.face.base import MOUTH_LOWER_INNER, MOUTH_UPPER_INNER, N_LANDMARKS, FaceModel
from ehead_cli.geometry import axis_angle_to_matrix
from ehead_cli.layout import EXPR, JAW, MOTION_DIM, MOTION_FPS, N_EXPR, N_SHAPE, ROT, TRANS
from ehead_cli.metrics.baselines import baseline_motion
from ehead_cli.metrics.beat import (
    BA_EMPTY_BOTH,
    BA_EMPTY_ONE,
    beat_alignment,
    beat_alignment_score,
    detect_beats,
    head_angular_speed,
)
from ehead_cli.metrics.clip import clip_motion_metrics
from ehead_cli.metrics.conventions import CONVENTIONS, resolve_convention
from ehead_cli.metrics.kmeans import assign, kmeans
from ehead_cli.metrics.sid import SID_K, speaker_identity_diversity
from ehead_cli.metrics.vertex import (
    face_dynamics_deviation,
    lip_vertex_error,
    motion_to_vertices,
    mouth_opening_difference,
    template_vertices,
)

N_VERTS = 40
LIPS = list(range(0, 8))  # 0-3 upper lip, 4-7 lower lip
JAW_VERTS = list(range(4, 12))  # lower lip + chin follow the jaw
UPPER = list(range(20, 36))
UPPER_LIP_V, LOWER_LIP_V = 1, 5


class TinyFace(FaceModel):
    """A 40-vertex random 'head' (metres): shape + expression blendshapes, a jaw rotation about a
    pivot, then the global rotation and translation, like FLAME's order of operations."""

    name = "tiny"

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        template = torch.rand(N_VERTS, 3, generator=g) * 0.1 - 0.05
        template[0:4] = torch.tensor([[x, -0.030, 0.05] for x in (-0.02, -0.007, 0.007, 0.02)])
        template[4:8] = torch.tensor([[x, -0.040, 0.05] for x in (-0.02, -0.007, 0.007, 0.02)])
        template[20:36, 1] = template[20:36, 1].abs() * 0.4 + 0.02  # forehead / eyes: y > 0.02
        self.register_buffer("template", template)
        self.register_buffer("shapedirs", torch.randn(N_SHAPE, N_VERTS, 3, generator=g) * 1e-4)
        self.register_buffer("exprdirs", torch.randn(N_EXPR, N_VERTS, 3, generator=g) * 1e-3)
        self.register_buffer("jaw_pivot", torch.tensor([0.0, -0.01, -0.03]))
        self.register_buffer("faces", torch.tensor([[i, (i + 1) % N_VERTS, (i + 2) % N_VERTS] for i in range(N_VERTS)]))
        self.register_buffer("vertex_colors", torch.full((N_VERTS, 3), 0.5))
        lmk = torch.arange(N_LANDMARKS) % N_VERTS  # triangle i starts at vertex i
        lmk[MOUTH_UPPER_INNER], lmk[MOUTH_LOWER_INNER] = UPPER_LIP_V, LOWER_LIP_V
        self.register_buffer("lmk_faces", lmk)
        self.register_buffer("lmk_bary", torch.tensor([1.0, 0.0, 0.0]).expand(N_LANDMARKS, 3).clone())
        self.register_buffer("mask_lips", torch.tensor(LIPS))
        self.register_buffer("mask_upper_face", torch.tensor(UPPER))

    def _vertices(self, shape: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        v = self.template + torch.einsum("ns,svc->nvc", shape, self.shapedirs)
        v = v + torch.einsum("ne,evc->nvc", motion[:, EXPR], self.exprdirs)
        r_jaw = axis_angle_to_matrix(motion[:, JAW])
        jaw = (v[:, JAW_VERTS] - self.jaw_pivot) @ r_jaw.transpose(1, 2) + self.jaw_pivot
        v = torch.cat([v[:, :4], jaw, v[:, 12:]], 1)
        return v @ axis_angle_to_matrix(motion[:, ROT]).transpose(1, 2) + motion[:, None, TRANS]


def random_motion(t: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.zeros(t, MOTION_DIM)
    m[:, EXPR] = torch.randn(t, N_EXPR, generator=g)
    m[:, JAW] = torch.rand(t, 3, generator=g) * torch.tensor([0.3, 0.05, 0.05])
    m[:, ROT] = torch.randn(t, 3, generator=g) * 0.2
    m[:, TRANS] = torch.randn(t, 3, generator=g) * 0.01
    return m


@pytest.fixture(scope="module")
def face() -> TinyFace:
    return TinyFace()


@pytest.fixture(scope="module")
def shape() -> torch.Tensor:
    return torch.randn(N_SHAPE, generator=torch.Generator().manual_seed(7))


# --- LVE ----------------------------------------------------------------------------------------
def _lve_case() -> tuple[np.ndarray, np.ndarray]:
    """2 frames, 4 vertices (0-2 are lips); per-frame lip errors [1, 2, 3] and [0, 5, 1] metres."""
    gt = np.zeros((2, 4, 3))
    pred = np.zeros((2, 4, 3))
    pred[0, :3, 0] = [1.0, 2.0, 3.0]
    pred[1, :3, 1] = [0.0, 5.0, 1.0]
    pred[:, 3] = 100.0  # not a lip vertex: must not count
    return pred, gt


def test_lve_hand_computed():
    pred, gt = _lve_case()
    assert lip_vertex_error(pred, gt, [0, 1, 2], scale=1.0) == pytest.approx(4.0)  # (3 + 5) / 2
    assert lip_vertex_error(pred * 1e-3, gt, [0, 1, 2]) == pytest.approx(4.0)  # mm -> m, default x1000
    assert lip_vertex_error(pred, gt, [0, 1, 2], scale=1.0, frames=[1]) == pytest.approx(5.0)


def test_lve_conventions_hand_computed():
    pred, gt = _lve_case()
    lips = [0, 1, 2]
    ct = resolve_convention("codetalker-lve").kwargs("lve")  # squared, no mm scaling
    assert lip_vertex_error(pred, gt, lips, **ct) == pytest.approx((9 + 25) / 2)
    rms = resolve_convention("lve-rms").kwargs("lve")  # sqrt(mean max d^2), mm
    assert lip_vertex_error(pred * 1e-3, gt, lips, **rms) == pytest.approx(math.sqrt(17.0))


def test_lve_of_rigidly_shifted_lips_is_the_shift(face, shape):
    v_gt = motion_to_vertices(face, shape, random_motion(6, seed=1))
    shift = torch.tensor([0.001, 0.002, 0.002])  # |shift| = 3 mm
    v_pred = v_gt.clone()
    v_pred[:, LIPS] += shift
    assert lip_vertex_error(v_pred, v_gt, face.mask("lips")) == pytest.approx(3.0, rel=1e-4)


# --- FDD ----------------------------------------------------------------------------------------
def _fdd_case() -> tuple[np.ndarray, np.ndarray]:
    """One upper-face vertex: ground truth at x = 1, 2, 3 m, prediction still at x = 1."""
    gt = np.zeros((3, 1, 3))
    gt[:, 0, 0] = [1.0, 2.0, 3.0]
    pred = np.zeros((3, 1, 3))
    pred[:, 0, 0] = 1.0
    return pred, gt


def test_fdd_hand_computed():
    pred, gt = _fdd_case()
    # gt displacement from frame 1: 0, 1, 2 -> sigma = sqrt(((-1)^2 + 0 + 1^2) / 3); prediction: 0
    expected = math.sqrt(2.0 / 3.0)
    assert face_dynamics_deviation(pred, gt, [0], scale=1.0) == pytest.approx(expected)
    assert face_dynamics_deviation(gt, pred, [0], scale=1.0) == pytest.approx(expected)  # absolute value
    assert face_dynamics_deviation(pred * 1e-3, gt * 1e-3, [0]) == pytest.approx(expected)  # in mm
    assert face_dynamics_deviation(gt, gt, [0], scale=1.0) == 0.0


def test_fdd_codetalker_hand_computed():
    pred, gt = _fdd_case()
    kw = resolve_convention("codetalker-fdd").kwargs("fdd")
    template = np.zeros((1, 3))
    # squared norms from the template: gt 1, 4, 9 (mean 14/3) -> population std sqrt(98/9) = 7 sqrt(2) / 3;
    # prediction 1, 1, 1 -> 0; signed gt - pred
    expected = 7.0 * math.sqrt(2.0) / 3.0
    assert face_dynamics_deviation(pred, gt, [0], template=template, **kw) == pytest.approx(expected)
    assert face_dynamics_deviation(gt, pred, [0], template=template, **kw) == pytest.approx(-expected)


# --- MOD ----------------------------------------------------------------------------------------
def test_mod_hand_computed():
    def landmarks(openings_m: list[float]) -> np.ndarray:
        lm = np.zeros((len(openings_m), N_LANDMARKS, 3))
        lm[:, MOUTH_LOWER_INNER, 1] = -np.asarray(openings_m)
        lm[:, 30] = 5.0  # any other landmark is ignored
        return lm

    pred, gt = landmarks([0.011, 0.009]), landmarks([0.010, 0.012])
    assert mouth_opening_difference(pred, gt) == pytest.approx((1.0 + 3.0) / 2)  # mm
    assert mouth_opening_difference(pred, gt, frames=np.array([False, True])) == pytest.approx(3.0)


# --- the head pose never counts -------------------------------------------------------------------
@pytest.mark.parametrize("convention", ["paper", "codetalker"])
def test_global_head_pose_changes_no_vertex_metric(face, shape, convention):
    gt = random_motion(8, seed=2)
    pred = gt.clone()
    pred[:, EXPR] += 0.5 * torch.randn(8, N_EXPR, generator=torch.Generator().manual_seed(3))
    pred[:, JAW] *= 0.5
    moved = pred.clone()
    moved[:, ROT] = torch.randn(8, 3, generator=torch.Generator().manual_seed(4)) * 0.5
    moved[:, TRANS] += 0.05
    # the face model itself does react to the head pose, so the invariance below is not vacuous
    assert not torch.allclose(face(shape[None], pred), face(shape[None], moved))
    a = clip_motion_metrics(face, shape, pred, gt, convention=convention)
    b = clip_motion_metrics(face, shape, moved, gt, convention=convention)
    for key in ("lve", "fdd", "mod"):
        assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
    assert a["lve"] > 0 and a["mod"] > 0
    same_face = gt.clone()
    same_face[:, ROT] += 0.3
    zero = clip_motion_metrics(face, shape, same_face, gt, convention=convention)
    assert zero["lve"] == pytest.approx(0.0, abs=1e-4)
    assert zero["fdd"] == pytest.approx(0.0, abs=1e-4)
    assert zero["mod"] == pytest.approx(0.0, abs=1e-4)


def test_template_vertices_are_the_neutral_face(face, shape):
    neutral = template_vertices(face, shape)
    expected = face.template + torch.einsum("s,svc->vc", shape, face.shapedirs)
    assert torch.allclose(neutral, expected, atol=1e-7)


# --- BA -----------------------------------------------------------------------------------------
def test_head_angular_speed_of_a_constant_spin():
    step = 0.04  # rad per frame about z -> 0.04 x 25 = 1 rad/s
    rot = np.zeros((10, 3))
    rot[:, 2] = step * np.arange(10)
    assert np.allclose(head_angular_speed(rot, MOTION_FPS), 1.0, atol=1e-6)


def test_dynamic_peak_beats_hand_case():
    speed = np.full(60, 0.2)
    speed[30] = 1.0
    assert np.allclose(detect_beats(speed), [(30 + 0.5) / MOTION_FPS])
    assert detect_beats(np.full(60, 0.01) + 0.01 * (np.arange(60) % 2)).size == 0  # below min_speed


def test_bailando_beats_are_speed_minima():
    speed = np.abs(np.arange(41) - 20.0) * 0.1  # a V with its valley at sample 20
    assert np.allclose(detect_beats(speed, detector="bailando_minima"), [20.5 / MOTION_FPS])


def test_ba_score_hand_computed():
    assert beat_alignment_score([0.4, 1.2, 2.0], [0.4, 1.2, 2.0]) == pytest.approx(1.0)
    assert beat_alignment_score([1.0], [1.1]) == pytest.approx(math.exp(-0.5))  # 0.1 s off, sigma 0.1 s
    # pred [1, 2] vs gt [1]: pred side (1 + exp(-50)) / 2, gt side 1
    assert beat_alignment_score([1.0, 2.0], [1.0]) == pytest.approx(0.5 * ((1 + math.exp(-50)) / 2 + 1))
    assert beat_alignment_score([], []) == BA_EMPTY_BOTH == 1.0
    assert beat_alignment_score([1.0], []) == beat_alignment_score([], [1.0]) == BA_EMPTY_ONE == 0.0


def test_ba_bailando_convention_hand_computed():
    kw = resolve_convention("bailando-ba").kwargs("ba")
    sigma = kw["sigma_frames"] / MOTION_FPS  # 3 frames = 0.12 s
    # one-sided over the ground-truth beats [1.0, 1.12]: (1 + exp(-0.5)) / 2; the extra pred beat is free
    score = beat_alignment_score([1.0, 3.0], [1.0, 1.0 + sigma], sigma_s=sigma, symmetric=kw["symmetric"])
    assert score == pytest.approx((1 + math.exp(-0.5)) / 2)


@pytest.mark.parametrize("convention", ["paper", "bailando-ba"])
def test_ba_of_identical_motion_is_one(convention):
    t = np.arange(200)
    motion = np.zeros((200, MOTION_DIM))
    motion[:, ROT.start] = 0.2 * np.sin(2 * np.pi * t / 40) * (1 + 0.5 * np.sin(2 * np.pi * t / 97))  # nods
    kw = resolve_convention(convention).kwargs("ba")
    beats = detect_beats(head_angular_speed(motion[:, ROT]), detector=kw.get("detector", "dynamic_peaks"))
    assert beats.size > 3
    assert beat_alignment(motion, motion, **kw) == pytest.approx(1.0)
    shifted = np.roll(motion, 5, axis=0)
    assert beat_alignment(shifted, motion, **kw) < 1.0


def test_ba_restricted_to_selected_frames():
    t = np.arange(200)
    gt = np.zeros((200, MOTION_DIM))
    gt[:, ROT.start] = 0.2 * np.sin(2 * np.pi * t / 40) * (1 + 0.5 * np.sin(2 * np.pi * t / 97))
    pred = gt.copy()
    pred[100:] = gt[99]  # the prediction freezes half-way: no beats after frame 100
    assert beat_alignment(pred, gt, frames=t < 70) == pytest.approx(1.0)
    assert beat_alignment(pred, gt, frames=t >= 110) == BA_EMPTY_ONE


# --- SID ----------------------------------------------------------------------------------------
def _two_blob_motion(n_a: int, n_b: int) -> np.ndarray:
    m = np.zeros((n_a + n_b, MOTION_DIM))
    m[n_a:, JAW] = 1.0
    m[n_a:, EXPR] = 1.0
    m[n_a:, ROT] = 1.0
    return m


def test_sid_hand_computed():
    gt = _two_blob_motion(10, 10)
    one = speaker_identity_diversity(_two_blob_motion(6, 0), gt, k=2)
    assert one["sid"] == 0.0  # every prediction in one cluster (clamped from -log2(1 + eps))
    half = speaker_identity_diversity(_two_blob_motion(3, 3), gt, k=2)
    assert half["sid"] == pytest.approx(1.0, abs=1e-6)
    assert half["sid_jaw"] == half["sid_exp50"] == half["sid_rot"] == pytest.approx(1.0, abs=1e-6)


def test_sid_dualtalk_convention_hand_computed():
    pred = _two_blob_motion(2, 2)  # DualTalk fits K-Means on the prediction ...
    gt = _two_blob_motion(6, 2)  # ... and measures the ground truth's histogram: 3/4, 1/4
    kw = resolve_convention("dualtalk-sid").kwargs("sid")
    p = np.array([0.75, 0.25])
    expected = float(-(p * np.log2(p + kw["eps"])).sum())
    assert speaker_identity_diversity(pred, gt, k=2, **kw)["sid"] == pytest.approx(expected, abs=1e-9)
    assert speaker_identity_diversity(pred, gt, k=2)["sid"] == pytest.approx(1.0, abs=1e-6)  # paper


def test_sid_stays_within_zero_and_log2_k():
    rng = np.random.default_rng(0)
    gt, pred = rng.normal(size=(300, MOTION_DIM)), rng.normal(size=(200, MOTION_DIM)) * 0.3
    out = speaker_identity_diversity(pred, gt)
    for group, k in SID_K.items():
        assert 0.0 <= out[f"sid_{group}"] <= math.log2(k)
    assert out["sid"] == pytest.approx(np.mean([out[f"sid_{g}"] for g in SID_K]))


def test_kmeans_recovers_separated_blobs_deterministically():
    rng = np.random.default_rng(1)
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = np.concatenate([c + rng.normal(scale=0.1, size=(30, 2)) for c in centers])
    a, b = kmeans(x, 3, seed=5), kmeans(x, 3, seed=5)
    assert np.array_equal(a.labels, b.labels)
    for block in range(3):
        assert len(set(a.labels[block * 30 : (block + 1) * 30])) == 1
    assert len(set(a.labels)) == 3
    assert np.array_equal(assign(centers, a.centers), a.labels[[0, 30, 60]])
    few = kmeans(np.zeros((4, 2)), 3)  # fewer distinct points than clusters
    assert few.inertia == 0.0


# --- conventions and baselines ----------------------------------------------------------------
def test_conventions_resolve_combine_and_reject():
    assert resolve_convention(None).name == "paper" and resolve_convention("paper").kwargs("lve") == {}
    both = resolve_convention("codetalker-fdd,dualtalk-sid")
    assert both.kwargs("fdd")["reference"] == "template" and both.kwargs("sid")["fit_on"] == "pred"
    with pytest.raises(ConfigError, match="--convention"):
        resolve_convention("faceformer")
    with pytest.raises(ConfigError, match="conflicts"):
        resolve_convention("codetalker-lve,lve-rms")
    for conv in CONVENTIONS.values():
        assert conv.summary and (conv.name in ("paper", "lve-rms") or conv.reproduces)


def test_baselines_hand_computed():
    a = np.zeros((3, MOTION_DIM), np.float32)
    a[:, 0] = [1.0, 2.0, 3.0]
    b = np.zeros((2, MOTION_DIM), np.float32)
    b[:, 0] = [10.0, 20.0]
    mean = baseline_motion("mean", [a, b])
    assert [m.shape for m in mean] == [(3, MOTION_DIM), (2, MOTION_DIM)]
    assert np.allclose(mean[0][:, 0], 36.0 / 5) and np.allclose(mean[1][:, 0], 36.0 / 5)
    still = baseline_motion("still", [a, b])
    assert np.allclose(still[0][:, 0], 1.0) and np.allclose(still[1][:, 0], 10.0)
    shuffled = baseline_motion("shuffled", [a, b])
    assert np.allclose(shuffled[0][:, 0], [10.0, 20.0, 10.0]) and np.allclose(shuffled[1][:, 0], [1.0, 2.0])
    assert np.allclose(baseline_motion("shuffled", [a])[0][:, 0], [3.0, 1.0, 2.0])
    with pytest.raises(ConfigError, match="--baseline"):
        baseline_motion("zero", [a])
