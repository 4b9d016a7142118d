"""Rectified-flow maths, separate from the network (paper section 3.1, eq. 2-3, 6-7).

Convention: t = 0 is noise, t = 1 is data. x_t = x0 + t (x1 - x0), x0 ~ N(0, I), t ~ U[0, 1];
the target velocity is constant along the straight path, u = x1 - x0. Motion tensors here are
normalised windows (B, T, 115).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ehead_cli.checks import steps as check_steps
from ehead_cli.layout import GROUPS, ROT, TRANS

# Stage-I weights (supplementary B.1), in the order of the layout's loss groups
GROUP_WEIGHTS: dict[str, float] = dict(zip(GROUPS, (0.6, 0.1, 0.1, 0.1, 0.1), strict=True))
SMOOTH_WEIGHT = 0.1
LOSS_TERMS = ("loss", *GROUPS, "smooth")  # what ``flow_loss`` returns, the total first

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class PathSample:
    """One draw from the straight path: x0 noise, x1 data, t (B,), x_t, and the target dx_t = x1 - x0."""

    x0: torch.Tensor
    x1: torch.Tensor
    t: torch.Tensor
    x_t: torch.Tensor
    dx_t: torch.Tensor

    @classmethod
    def between(cls, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> PathSample:
        """The point at time t (B,) on the straight path from x0 to x1 (B, ...)."""
        tt = t.view(-1, *([1] * (x1.dim() - 1)))
        return cls(x0, x1, t, x0 + tt * (x1 - x0), x1 - x0)


def sample_path(x1: torch.Tensor, generator: torch.Generator | None = None,
                t: torch.Tensor | None = None) -> PathSample:
    """Draw x0 ~ N(0, I) and t ~ U[0, 1] per window and interpolate. x1 (B, T, D)."""
    x0 = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
    if t is None:
        t = torch.rand(x1.shape[0], generator=generator, device=x1.device, dtype=x1.dtype)
    return PathSample.between(x0, x1, t)


def endpoint(x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """One-step endpoint estimate x1_hat = x_t + (1 - t) v (eq. 7). t (B,)."""
    return x_t + (1 - t).view(-1, *([1] * (x_t.dim() - 1))) * v


REDUCTIONS = ("mean", "sum")


def pose_smoothness(x: torch.Tensor, reduction: str = "sum", mask: torch.Tensor | None = None) -> torch.Tensor:
    """sum over t of ||p_{t+1} - p_t||^2 on rotation and translation only, per window (B,).
    ``reduction="mean"`` averages over the 6 pose dimensions instead of summing them; ``mask`` (B, T)
    keeps only the pairs whose two frames are both real."""
    pose = torch.cat([x[..., ROT], x[..., TRANS]], dim=-1)
    d2 = (pose[:, 1:] - pose[:, :-1]).pow(2)
    per_pair = d2.mean(dim=2) if reduction == "mean" else d2.sum(dim=2)
    if mask is not None:
        per_pair = per_pair * mask[:, 1:] * mask[:, :-1]
    return per_pair.sum(dim=1)


def flow_loss(v: torch.Tensor, path: PathSample, weights: dict[str, float] | None = None,
              smooth_weight: float = SMOOTH_WEIGHT, reduction: str = "mean",
              mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Stage-I loss (eq. 6): sum_k lambda_k ||v^(k) - u^(k)||^2 + lambda_smooth L_smooth^pose.

    ``reduction`` says how a group's squared error is taken over its dimensions:
    * "mean" (default): averaged over the group's dimensions (a per-group MSE), so the weights
      0.6 / 0.1 / ... set the groups' relative importance whatever their sizes (100 expression
      dimensions against 3 for the jaw);
    * "sum": summed over them, the literal squared L2 norm of eq. 6, under which the 100 expression
      dimensions outweigh the 3 jaw dimensions by a further factor of about 33.
    Both terms are summed over the window's frames as written, then divided by the window length T
    (a constant that keeps the scale independent of T without changing the ratio between the terms),
    and averaged over the batch. The smoothness term is taken on the one-step endpoint x1_hat of the
    prediction (what sampling produces), on rotation and translation only, never on jaw or expression.
    ``mask`` (B, T) leaves padded frames out (their error counts as zero; the divisor stays T).
    Returns {"loss", "<group>" (unweighted, per frame), "smooth" (unweighted, per frame)}.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    weights = GROUP_WEIGHTS if weights is None else weights
    T = v.shape[1]
    err = (v - path.dx_t).pow(2)  # (B, T, D)
    out: dict[str, torch.Tensor] = {}
    total = v.new_zeros(())
    for name, sl in GROUPS.items():
        per_frame = err[..., sl].mean(dim=2) if reduction == "mean" else err[..., sl].sum(dim=2)
        if mask is not None:
            per_frame = per_frame * mask
        g = per_frame.sum(dim=1).mean() / T
        out[name] = g.detach()
        total = total + weights[name] * g
    smooth = pose_smoothness(endpoint(path.x_t, path.t, v), reduction, mask).mean() / T
    out["smooth"] = smooth.detach()
    out["loss"] = total + smooth_weight * smooth
    return out


def time_grid(steps: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Uniform Euler grid 0 = t_0 < ... < t_N = 1, (N + 1,)."""
    check_steps(steps)
    return torch.linspace(0.0, 1.0, steps + 1, device=device, dtype=dtype)


@torch.no_grad()
def euler_sample(velocity: VelocityFn, x0: torch.Tensor, steps: int) -> torch.Tensor:
    """Integrate dx/dt = v(x, t) from t = 0 (noise x0) to t = 1 with N uniform Euler steps.

    ``velocity(x, t)`` takes (B, ...) and (B,) and returns (B, ...). One step is exactly the
    endpoint estimate at t = 0.
    """
    grid = time_grid(steps, x0.device, x0.dtype)
    x = x0
    for i in range(steps):
        t = grid[i].expand(x.shape[0])
        x = x + (grid[i + 1] - grid[i]) * velocity(x, t)
    return x
