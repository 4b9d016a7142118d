"""The ``--convention`` variants that reproduce ARTalk's authors' (UniLS), DualTalk's and DIM's metric
code: each definition on arrays with a value computed by hand (or the definition written out), and
each convention's aggregation through ``ehead eval``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import ehead_cli.eval as E
from ehead_cli.errors import ConfigError
from ehead_cli.eval import registry
from ehead_cli.face.builtin import BuiltinHead
from ehead_cli.io.motionfile import Motion, save_motion
from ehead_cli.layout import EXPR, JAW, LISTEN, MOTION_DIM, N_SHAPE, ROT, SPEAK
from ehead_cli.metrics import listening as L
from ehead_cli.metrics.clip import geometry_metrics
from ehead_cli.metrics.conventions import CONVENTIONS, Unavailable, resolve_convention
from ehead_cli.metrics.sid import speaker_identity_diversity
from ehead_cli.metrics.vertex import MetricGeometry, face_dynamics_deviation, lip_vertex_error

CLIP_FRAMES = {"a": 120, "b": 240}  # > 100 frames each: DualTalk's diversity needs them
SPEAKING = 40  # the first frames of every clip are speaking, the rest listening


# --- ARTalk (UniLS calc_val_metrics) -----------------------------------------------------------------
def test_artalk_fdd_hand_computed():
    kw = resolve_convention("artalk-fdd").kwargs("fdd")
    gt = np.zeros((3, 1, 3))
    gt[:, 0, 0] = [0.001, 0.002, 0.003]  # metres: x = 1, 2, 3 mm
    still = np.zeros((3, 1, 3))
    # x + y + z = 1, 2, 3 mm: std with ddof 1 = 1 mm; the still prediction 0; |0 - 1| x 100
    assert face_dynamics_deviation(still, gt, [0], **kw) == pytest.approx(100.0)
    # the paper's FDD of the same motion: population std of the displacement vector, sqrt(2/3) mm
    assert face_dynamics_deviation(still, gt, [0]) == pytest.approx(math.sqrt(2.0 / 3.0))
    # motion with dx + dy + dz = 0 is invisible to the summed-coordinate std
    sideways = np.zeros((3, 1, 3))
    sideways[:, 0, 0], sideways[:, 0, 1] = [0.0, 0.002, 0.004], [0.0, -0.002, -0.004]
    assert face_dynamics_deviation(still, sideways, [0], **kw) == pytest.approx(0.0, abs=1e-9)
    assert face_dynamics_deviation(still, sideways, [0]) > 0.0
    two = np.zeros((2, 1, 3))
    two[1, 0, 2] = 0.002  # z = 0, 2 mm: ddof 1 -> sqrt(2) mm, ddof 0 -> 1 mm
    assert face_dynamics_deviation(np.zeros((2, 1, 3)), two, [0], **kw) == pytest.approx(100.0 * math.sqrt(2.0))
    assert face_dynamics_deviation(np.zeros((2, 1, 3)), two, [0], quantity="summed_xyz") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="ddof 1"):
        face_dynamics_deviation(still[:1], gt[:1], [0], **kw)


def test_artalk_lve_hand_computed_and_single_frame_fdd_unavailable():
    pred, gt = np.zeros((2, 3, 3)), np.zeros((2, 3, 3))
    pred[0, :, 0] = [0.001, 0.002, 0.003]  # worst lip error 3 mm in frame 0, 5 mm in frame 1
    pred[1, :, 1] = [0.0, 0.005, 0.001]
    kw = resolve_convention("artalk-lve").kwargs("lve")
    assert lip_vertex_error(pred, gt, [0, 1, 2], **kw) == pytest.approx(math.sqrt((9 + 25) / 2))  # sqrt mean max^2
    geo = MetricGeometry(lips=gt.astype(np.float32), upper=gt.astype(np.float32), landmarks=np.zeros((2, 68, 3)))
    motion = np.zeros((2, MOTION_DIM))
    out = geometry_metrics(geo, geo, motion, motion, convention="artalk", frames=[1], metrics=("lve", "fdd"))
    assert out["lve"] == 0.0 and isinstance(out["fdd"], Unavailable) and "ddof 1" in out["fdd"].reason


# --- DualTalk (metric/metric.py) ---------------------------------------------------------------------
def test_dualtalk_diversity_is_the_definition_written_out():
    kw = resolve_convention("dualtalk-diversity").kwargs("diversity")
    x = np.random.default_rng(0).normal(size=(130, 4))
    rng = np.random.default_rng(L.DIVERSITY_SEED)
    first = rng.choice(130, 100, replace=False)  # DualTalk: two independent draws without replacement
    second = rng.choice(130, 100, replace=False)
    expected = np.linalg.norm(x[first] - x[second], axis=1).mean()
    assert L.diversity(x, **kw) == pytest.approx(expected)
    assert L.diversity(np.ones((101, 2)), **kw) == 0.0
    assert isinstance(L.diversity_if_enough(x[:100], **kw), Unavailable)  # DualTalk asserts T > 100
    with pytest.raises(ValueError, match="101 frames"):
        L.diversity(x[:100], **kw)


def test_dualtalk_spaces_are_exp50_jaw_and_head_rotation():
    m = np.random.default_rng(1).normal(size=(5, MOTION_DIM))
    spaces = L.split_spaces(m, "dualtalk")
    assert list(spaces) == ["exp", "jaw", "rot"]
    assert np.array_equal(spaces["exp"], m[:, EXPR][:, :50]) and np.array_equal(spaces["jaw"], m[:, JAW])
    assert np.array_equal(spaces["rot"], m[:, ROT])
    dim = L.split_spaces(m, "dim")
    assert np.array_equal(dim["pose"], np.concatenate([m[:, ROT], m[:, JAW]], 1)) and dim["exp"].shape == (5, 50)


# --- DIM (Dyadic Interaction Modeling) ---------------------------------------------------------------
def test_dim_variation_forms_hand_computed():
    x = np.array([[0.0, 10.0], [2.0, 10.0]])  # per-dimension variances 1 and 0
    assert L.variation(x) == pytest.approx(0.5)  # paper / DualTalk: mean over dimensions
    assert L.variation(x, **resolve_convention("dim-variation-sum").kwargs("variation")) == pytest.approx(1.0)
    # flat: values 0, 10, 2, 10 (mean 5.5): (5.5^2 + 4.5^2 + 3.5^2 + 4.5^2) / 4
    flat = resolve_convention("dim-variation-flat").kwargs("variation")
    assert L.variation(x, **flat) == pytest.approx((30.25 + 20.25 + 12.25 + 20.25) / 4)
    with pytest.raises(ValueError, match="form"):
        L.variation(x, form="median")


# --- the conventions' protocol ------------------------------------------------------------------------
def test_protocols_resolve_combine_and_set_columns_and_units():
    for name in CONVENTIONS:  # every convention is computable: its levels are supported by its metrics
        registry.metric_specs(name)
    specs = registry.metric_specs("dualtalk")
    assert specs["fd"].keys == ("fd_exp", "fd_jaw", "fd_rot") and specs["fd"].level == "clip"
    assert specs["l2"].splits == registry.FRAME_SPLITS and specs["sid"].level == "clip"
    assert registry.metric_specs("paper")["fd"].keys == ("fd_exp", "fd_pose")
    assert registry.metric_specs("paper")["fd"].level == "pooled"
    assert registry.metric_specs("artalk")["lve"].level == "clip"
    assert registry.metric_specs("dim-variation-flat")["variation"].level == "pooled"
    units = E.metric_units("dualtalk")
    assert units["l2_jaw"] == "rad^2" and units["fd_exp"] == "coeff^2" and units["diversity_rot"] == "rad"
    assert E.metric_units("artalk")["fdd"] == "mm x 100" and E.metric_units("artalk")["lve"] == "mm"
    both = resolve_convention("dualtalk,artalk")
    assert both.level("lve", "frame") == "clip" and both.space_set("pfd") == "dualtalk"
    with pytest.raises(ConfigError, match="conflicts"):
        resolve_convention("dualtalk,dim-variation-sum")
    assert "scikit-learn" in CONVENTIONS["dualtalk-sid"].summary and "greedy" in CONVENTIONS["dualtalk"].summary
    for conv in CONVENTIONS.values():
        assert conv.name in ("paper", "lve-rms") or "/" in conv.reproduces  # repository + file


# --- aggregation through ehead eval ------------------------------------------------------------------
def _clip(n: int, seed: int) -> Motion:
    rng = np.random.default_rng(seed)
    m = np.zeros((n, MOTION_DIM), np.float32)
    m[:, EXPR] = rng.normal(0, 0.5, (n, 100))
    m[:, JAW] = rng.normal(0, 0.05, (n, 3))
    m[:, ROT] = rng.normal(0, 0.05, (n, 3))
    states = np.where(np.arange(n) < SPEAKING, SPEAK, LISTEN)
    return Motion(m, rng.normal(0, 0.5, N_SHAPE), states)


def _offset(m: Motion, exp0: float, jaw0: float, rot1: float) -> Motion:
    """``m`` + constant offsets: expression 0, jaw x, head rotation y, and a large expression 60
    (outside DualTalk's 50 expression coefficients)."""
    out = m.motion.copy()
    out[:, EXPR.start] += exp0
    out[:, JAW.start] += jaw0
    out[:, ROT.start + 1] += rot1
    out[:, EXPR.start + 60] += 5.0
    return Motion(out, m.shape, m.states)


@pytest.fixture(scope="module")
def offset_set(tmp_path_factory) -> tuple[Path, Path, Path]:
    """gt, pred (= gt + per-clip offsets: clip a exp 1 / jaw 0.1 / rot 0.05, clip b exp 2 / jaw 0.2),
    and the speaker's motion."""
    root = tmp_path_factory.mktemp("conventions")
    gt = {cid: _clip(n, seed) for seed, (cid, n) in enumerate(CLIP_FRAMES.items())}
    pred = {"a": _offset(gt["a"], 1.0, 0.1, 0.05), "b": _offset(gt["b"], 2.0, 0.2, 0.0)}
    speaker = {cid: _clip(n, 10 + seed) for seed, (cid, n) in enumerate(CLIP_FRAMES.items())}
    for folder, clips in (("gt", gt), ("pred", pred), ("speaker", speaker)):
        (root / folder).mkdir()
        for cid, m in clips.items():
            save_motion(root / folder / f"{cid}.npz", m)
    return root / "gt", root / "pred", root / "speaker"


def _overall(report: E.EvalReport, key: str, split: str = "all", source: str = registry.PREDICTION) -> float:
    value = report.overall[source][split][key]
    assert isinstance(value, float), (key, split, value)
    return value


def _per_clip(report: E.EvalReport, key: str, split: str = "all") -> list[float]:
    return [c.values[registry.PREDICTION][split][key] for c in report.clips]


def test_dualtalk_takes_the_plain_mean_of_per_clip_values(offset_set):
    gt, pred, speaker = offset_set
    report = E.evaluate(pred, gt, "l2,fd,pfd,sid,variation,diversity", convention="dualtalk", speaker_dir=speaker)
    assert report.exit_code == 0 and {"l2_exp", "l2_jaw", "l2_rot", "pfd_jaw"} <= set(report.keys)
    # MSE per clip: a = 1/50 (exp), 0.1^2/3 (jaw), 0.05^2/3 (rot); b = 4/50, 0.2^2/3, 0; plain mean
    # over clips (frame-weighted would be (120 x 1 + 240 x 4) / 360 / 50 = 0.06 for exp)
    assert _overall(report, "l2_exp") == pytest.approx((1 + 4) / 50 / 2, rel=1e-4)
    assert _overall(report, "l2_jaw") == pytest.approx((0.01 + 0.04) / 3 / 2, rel=1e-4)
    assert _overall(report, "l2_rot") == pytest.approx(0.0025 / 3 / 2, rel=1e-4)
    # a constant offset c leaves the covariance: FD = P-FD = ||c||^2 per clip, then the plain mean
    assert _per_clip(report, "fd_jaw") == pytest.approx([0.01, 0.04], rel=1e-3, abs=1e-7)
    assert _overall(report, "fd_jaw") == pytest.approx(0.025, rel=1e-3)
    assert _overall(report, "fd_exp") == pytest.approx((1 + 4) / 2, rel=1e-3)  # expression 60 is outside
    assert _overall(report, "pfd_rot") == pytest.approx(0.0025 / 2, rel=1e-3, abs=1e-7)
    assert _overall(report, "fd_jaw", "listening") == pytest.approx(0.025, rel=1e-3)  # every split
    # SID per clip (K-Means fitted on the clip's prediction), Variation, Diversity: plain means
    loaded = {cid: (np.load(pred / f"{cid}.npz")["motion"], np.load(gt / f"{cid}.npz")["motion"]) for cid in "ab"}
    sids = [speaker_identity_diversity(p, g, fit_on="pred", eps=1e-6)["sid"] for p, g in loaded.values()]
    assert _per_clip(report, "sid") == pytest.approx(sids)
    assert _overall(report, "sid") == pytest.approx(np.mean(sids))
    variations = [L.variation(p[:, JAW]) for p, _ in loaded.values()]
    assert _overall(report, "variation_jaw") == pytest.approx(np.mean(variations))
    assert _overall(report, "diversity_exp") == pytest.approx(np.mean(_per_clip(report, "diversity_exp")))
    assert _overall(report, "variation_exp", source=registry.GROUND_TRUTH) == pytest.approx(
        np.mean([L.variation(g[:, EXPR][:, :50]) for _, g in loaded.values()]))
    # dualtalk-l2 alone changes only L2: paper spaces on listening frames, FD pooled over the clips
    alone = E.evaluate(pred, gt, "l2,fd", convention="dualtalk-l2")
    assert "all" not in alone.overall[registry.PREDICTION] and alone.keys == ("l2_exp", "l2_pose", "fd_exp", "fd_pose")
    listening = [(p[SPEAKING:], g[SPEAKING:]) for p, g in loaded.values()]
    pooled = [np.concatenate([L.expression_pose(x)[1] for x in side]) for side in zip(*listening, strict=True)]
    assert _overall(alone, "fd_pose", "listening") == pytest.approx(L.frechet_distance(*pooled))


def test_dim_variation_pools_every_clip(offset_set):
    gt, pred, _ = offset_set
    report = E.evaluate(pred, gt, "variation", convention="dim-variation-flat")
    frames = [np.load(pred / f"{cid}.npz")["motion"][SPEAKING:].astype(np.float64) for cid in "ab"]  # listening
    pooled = np.concatenate(frames)
    pose = np.concatenate([pooled[:, ROT], pooled[:, JAW]], 1)
    assert _overall(report, "variation_pose", "listening") == pytest.approx(np.var(pose.reshape(-1)))
    assert _overall(report, "variation_exp", "listening") == pytest.approx(np.var(pooled[:, EXPR][:, :50]))
    summed = E.evaluate(pred, gt, "variation", convention="dim-variation-sum")
    assert _overall(summed, "variation_pose", "listening") == pytest.approx(pose.var(0).sum())


def test_artalk_averages_clips_plainly(offset_set):
    gt, pred, _ = offset_set
    face = BuiltinHead()
    artalk = E.evaluate(pred, gt, "lve,fdd", convention="artalk", face=face)
    lve = _per_clip(artalk, "lve")
    assert lve[0] != pytest.approx(lve[1])  # different clips, so the weighting matters below
    assert _overall(artalk, "lve") == pytest.approx(np.mean(lve))
    assert _overall(artalk, "fdd", "speaking") == pytest.approx(np.mean(_per_clip(artalk, "fdd", "speaking")))
    rms = E.evaluate(pred, gt, "lve", convention="lve-rms", face=face)  # the same per-clip LVE, frame-weighted
    assert _per_clip(rms, "lve") == pytest.approx(lve)
    weights = np.asarray(list(CLIP_FRAMES.values()), float)
    assert _overall(rms, "lve") == pytest.approx((np.asarray(lve) * weights).sum() / weights.sum())
    assert artalk.units["fdd"] == "mm x 100"
