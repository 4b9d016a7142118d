"""Many processes (``torchrun``): which process this is, and averaging a value over all of them."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0, the process that writes every file."""
        return self.rank == 0


def init_distributed(device: str) -> Dist:
    """Join the process group torchrun set up (WORLD_SIZE > 1): NCCL on CUDA, gloo on the CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def setup_processes(device: str | None) -> tuple[Dist, torch.device]:
    """The process group (``init_distributed``) and this process's device: ``device`` (default cuda
    when available), on CUDA with many processes the local rank's GPU."""
    from ehead_cli.devices import resolve_device

    name = str(resolve_device(device))
    dd = init_distributed(name)
    if name.startswith("cuda") and dd.world > 1:
        name = f"cuda:{dd.local_rank}"
        torch.cuda.set_device(dd.local_rank)
    return dd, torch.device(name)


def all_mean(x: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.world > 1:
        x = x.clone()
        dist.all_reduce(x)
        x /= d.world
    return x


def all_sum_(x: torch.Tensor, d: Dist) -> torch.Tensor:
    """Sum ``x`` over the processes in place (a no-op in one process)."""
    if d.world > 1:
        dist.all_reduce(x)
    return x


def barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()
