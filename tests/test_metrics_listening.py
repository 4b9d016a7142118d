"""Listening metrics of mm-listener section 6: L2, FD, Variation, Diversity, P-FD, L2 Affect."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.linalg

from ehead_cli.layout import EXPR, JAW, MOTION_DIM, ROT
from ehead_cli.metrics import listening as L
from ehead_cli.metrics.conventions import Unavailable, resolve_convention


def test_l2_and_its_mse_convention_hand_computed():
    gt = np.zeros((2, 2))
    pred = np.array([[3.0, 4.0], [0.0, 1.0]])  # per-frame distances 5 and 1
    assert L.l2_distance(pred, gt) == pytest.approx(3.0)
    kw = resolve_convention("dualtalk-l2").kwargs("l2")
    assert L.l2_distance(pred, gt, **kw) == pytest.approx((9 + 16 + 0 + 1) / 4)


def test_frechet_distance_hand_computed():
    a = np.array([[-1.0], [0.0], [1.0]])  # mean 0, unbiased variance 1
    assert L.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-12)
    assert L.frechet_distance(a + 3.0, a) == pytest.approx(9.0)  # ||mu1 - mu2||^2
    # variances 1 and 4: 1 + 4 - 2 sqrt(1 x 4) = 1
    assert L.frechet_distance(2.0 * a, a) == pytest.approx(1.0)


def test_frechet_distance_of_a_sample_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(400, 12)) @ np.random.default_rng(1).normal(size=(12, 12))
    assert L.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert L.frechet_distance(x, x + 0.5) == pytest.approx(12 * 0.25, rel=1e-6)


def test_frechet_distance_warns_on_a_large_imaginary_residue(monkeypatch):
    real_sqrtm = scipy.linalg.sqrtm
    monkeypatch.setattr(scipy.linalg, "sqrtm", lambda m: real_sqrtm(m) + 0.5j * np.eye(m.shape[0]))
    a = np.array([[-1.0], [0.0], [1.0]])
    with pytest.warns(RuntimeWarning, match="imaginary"):
        assert L.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-12)
    monkeypatch.setattr(scipy.linalg, "sqrtm", lambda m: real_sqrtm(m) + 1e-9j * np.eye(m.shape[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L.frechet_distance(a, a)  # rounding-size residue: no warning


def test_paired_fd_sees_broken_listener_speaker_pairing():
    rng = np.random.default_rng(2)
    speaker = rng.normal(size=(300, 3))
    listener = speaker @ rng.normal(size=(3, 3)) + 0.1 * rng.normal(size=(300, 3))  # reacts to the speaker
    shuffled = listener[rng.permutation(300)]  # same frame distribution, pairing lost
    assert L.frechet_distance(shuffled, listener) == pytest.approx(0.0, abs=1e-9)
    assert L.paired_frechet_distance(listener, listener, speaker) == pytest.approx(0.0, abs=1e-6)
    assert L.paired_frechet_distance(shuffled, listener, speaker) > 1.0


def test_variation_and_diversity_hand_computed():
    assert L.variation(np.array([[0.0, 1.0], [2.0, 1.0]])) == pytest.approx(0.5)  # var 1 and 0
    simplex = 3.0 * np.eye(6)  # every pair of distinct frames is 3 sqrt(2) apart
    assert L.diversity(simplex) == pytest.approx(3.0 * math.sqrt(2.0))
    x = np.random.default_rng(3).normal(size=(50, 4))
    assert L.diversity(x, seed=5) == L.diversity(x, seed=5) != L.diversity(x, seed=6)


def test_l2_affect_hand_computed_and_unavailable():
    gt = np.zeros((60, MOTION_DIM))
    pred = gt.copy()
    pred[:, EXPR.start] = 0.3
    pred[:30, EXPR.start + 1] = 1.0  # dim 1 is not read by the estimator
    assert isinstance(L.l2_affect(pred, gt), Unavailable)
    first_expr = lambda m: m[:, EXPR][:, :1]  # noqa: E731 - a toy affect estimator
    assert L.l2_affect(pred, gt, first_expr) == pytest.approx(0.3)
    ramp = gt.copy()
    ramp[:, EXPR.start] = np.arange(60) / 25.0  # windowed means differ from gt's (0) by the window centre
    centres = (np.arange(60 - 25 + 1) + 12) / 25.0
    assert L.l2_affect(ramp, gt, first_expr) == pytest.approx(centres.mean())


def test_listening_metrics_keys_and_pose_space():
    rng = np.random.default_rng(4)
    gt, speaker = rng.normal(size=(80, MOTION_DIM)), rng.normal(size=(80, MOTION_DIM))
    exp, pose = L.expression_pose(gt)
    assert np.array_equal(exp, gt[:, EXPR]) and np.array_equal(pose, np.concatenate([gt[:, ROT], gt[:, JAW]], 1))
    out = L.listening_metrics(gt, gt, speaker)
    assert out["l2_exp"] == 0.0 and out["fd_pose"] == pytest.approx(0.0, abs=1e-6)
    assert out["pfd_exp"] == pytest.approx(0.0, abs=1e-5) and isinstance(out["l2_affect"], Unavailable)
    assert isinstance(L.listening_metrics(gt, gt)["pfd_pose"], Unavailable)
    mse = L.listening_metrics(gt + 1.0, gt, convention="dualtalk")
    assert mse["l2_exp"] == pytest.approx(1.0) and L.listening_metrics(gt + 1.0, gt)["l2_exp"] == pytest.approx(10.0)
