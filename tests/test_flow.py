"""Rectified-flow maths with known answers; rotations; motion magnitude."""

from __future__ import annotations

import math

import pytest
import torch

from ehead_cli.errors import ConfigError
from ehead_cli.geometry import axis_angle_to_matrix, euler_to_matrix, geodesic_angle, matrix_to_axis_angle
from ehead_cli.layout import EXPR, JAW, ROT, TRANS
from ehead_cli.model.flow import GROUP_WEIGHTS, endpoint, euler_sample, flow_loss, pose_smoothness, sample_path
from ehead_cli.model.stats import MotionStats, motion_magnitude


def test_path_is_straight():
    x1 = torch.randn(4, 10, 115)
    p = sample_path(x1, torch.Generator().manual_seed(0))
    t = p.t.view(-1, 1, 1)
    torch.testing.assert_close(p.x_t, (1 - t) * p.x0 + t * x1)
    torch.testing.assert_close(p.dx_t, x1 - p.x0)
    torch.testing.assert_close(endpoint(p.x_t, p.t, p.dx_t), x1)  # eq. 7 is exact on the straight path


@pytest.mark.parametrize("steps", [1, 4, 25])
def test_euler_recovers_x1_under_the_exact_velocity(steps):
    """For a single data point the exact field is v(x, t) = (x1 - x) / (1 - t); Euler from t = 0
    lands on x1 in any number of steps (one step is the endpoint estimate)."""
    x1 = torch.randn(3, 100, 115, dtype=torch.float64)
    x0 = torch.randn_like(x1)
    out = euler_sample(lambda x, t: (x1 - x) / (1 - t).view(-1, 1, 1), x0, steps)
    torch.testing.assert_close(out, x1)


def test_euler_constant_velocity_and_step_range():
    x0 = torch.zeros(2, 5, 3)
    out = euler_sample(lambda x, t: torch.ones_like(x), x0, 7)
    torch.testing.assert_close(out, torch.ones_like(x0))
    with pytest.raises(ConfigError, match=r"--steps must be in 1\.\.25, got 0"):  # a user error, not a bug
        euler_sample(lambda x, t: x, x0, 0)
    with pytest.raises(ConfigError, match="got 26"):
        euler_sample(lambda x, t: x, x0, 26)


def test_group_weighted_loss_by_hand():
    x1 = torch.zeros(1, 4, 115)
    p = sample_path(x1, t=torch.tensor([0.5]))
    v = p.dx_t.clone()
    v[..., EXPR] += 1.0  # error 1 in each of 100 expression dims, every frame
    v[..., JAW] += 2.0  # error 2 in each of 3 jaw dims
    out = flow_loss(v, p, smooth_weight=0.0, reduction="sum")
    assert out["expression"].item() == pytest.approx(100.0)  # summed over dims, per frame
    assert out["jaw"].item() == pytest.approx(12.0)
    assert out["eye"].item() == 0 and out["rotation"].item() == 0
    assert out["loss"].item() == pytest.approx(0.6 * 100 + 0.1 * 12)
    mean = flow_loss(v, p, smooth_weight=0.0)  # the default: averaged over each group's dimensions
    assert mean["expression"].item() == pytest.approx(1.0) and mean["jaw"].item() == pytest.approx(4.0)
    assert mean["loss"].item() == pytest.approx(0.6 * 1 + 0.1 * 4)
    assert GROUP_WEIGHTS == {"expression": 0.6, "jaw": 0.1, "eye": 0.1, "rotation": 0.1, "translation": 0.1}


def test_pose_smoothness_only_on_rotation_and_translation():
    x = torch.zeros(1, 3, 115)
    x[0, 1, EXPR] = 5.0
    x[0, 1, JAW] = 5.0
    assert pose_smoothness(x).item() == 0
    x[0, 2, ROT.start] = 1.0
    x[0, 1, TRANS.start] = 2.0
    # frame 0->1: trans 2 -> 4; frame 1->2: rot 1 and trans -2 -> 1 + 4
    assert pose_smoothness(x).item() == pytest.approx(4 + 5)
    assert pose_smoothness(x, "mean").item() == pytest.approx((4 + 5) / 6)


def test_smoothness_is_taken_on_the_endpoint_estimate():
    x1 = torch.zeros(1, 3, 115)
    p = sample_path(x1, t=torch.tensor([0.25]))
    v = p.dx_t.clone()
    v[0, 1, ROT.start] += 1.0  # the endpoint moves by (1 - t) at frame 1
    out = flow_loss(v, p, smooth_weight=0.1, reduction="sum")
    assert out["smooth"].item() == pytest.approx(2 * 0.75**2 / 3)
    assert flow_loss(v, p, reduction="mean")["smooth"].item() == pytest.approx(2 * 0.75**2 / 3 / 6)


def test_known_rotations_give_known_geodesic_angles():
    z = torch.zeros(3)
    for angle in (0.0, 0.1, 1.0, 2.5, math.pi - 1e-3):
        for axis in (torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 0]), torch.tensor([1.0, 2.0, -2.0]) / 3):
            aa = axis * angle
            assert geodesic_angle(z, aa).item() == pytest.approx(angle, abs=1e-5)
            assert geodesic_angle(aa, aa).item() == pytest.approx(0.0, abs=1e-3)
    a, b = torch.tensor([0, 0.3, 0]), torch.tensor([0, -0.2, 0])
    assert geodesic_angle(a, b).item() == pytest.approx(0.5, abs=1e-6)
    # 90 deg about x then 90 deg about y: composition is a 120 deg rotation
    ry = axis_angle_to_matrix(torch.tensor([0, math.pi / 2, 0]))
    R = ry @ axis_angle_to_matrix(torch.tensor([math.pi / 2, 0, 0]))
    assert geodesic_angle(z, matrix_to_axis_angle(R)).item() == pytest.approx(2 * math.pi / 3, abs=1e-5)
    Re = euler_to_matrix(torch.tensor(0.2), torch.tensor(0.0), torch.tensor(0.0))
    torch.testing.assert_close(Re, axis_angle_to_matrix(torch.tensor([0.2, 0, 0])))


def test_axis_angle_round_trip_and_finite_gradient_at_rest():
    aa = torch.randn(500, 3, dtype=torch.float64)
    aa = aa / aa.norm(dim=-1, keepdim=True) * torch.rand(500, 1, dtype=torch.float64) * 3.1
    torch.testing.assert_close(matrix_to_axis_angle(axis_angle_to_matrix(aa)), aa)
    x = torch.zeros(3, requires_grad=True)
    (axis_angle_to_matrix(x) @ torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_motion_magnitude_and_normalisation():
    T = 11
    m = torch.zeros(T, 115)
    m[:, ROT.start + 1] = torch.arange(T) * 0.02  # yaw grows 0.02 rad per frame
    m[:, TRANS.start] = torch.arange(T) * 0.003  # x grows 3 mm per frame
    raw = motion_magnitude(m)
    torch.testing.assert_close(raw, torch.tensor([0.02, 0.003]), atol=1e-6, rtol=1e-4)
    stats = MotionStats([0.0] * 115, [1.0] * 115, [0.0, 0.0], [0.04, 0.006])
    torch.testing.assert_close(stats.normalize_magnitude(raw), torch.tensor([0.5, 0.5]), atol=1e-5, rtol=1e-4)
    assert stats.normalize_magnitude(torch.tensor([1.0, -1.0])).tolist() == [1.0, 0.0]
    x = torch.randn(4, 115)
    s = MotionStats([0.5] * 115, [2.0] * 115, [0, 0], [1, 1])
    torch.testing.assert_close(s.denormalize(s.normalize(x)), x)
