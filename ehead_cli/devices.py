"""Choosing a torch device from a ``--device`` flag, the number of CPU threads from ``--threads``,
synchronising a device around timed work, and naming the device a run or a benchmark used."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from ehead_cli.errors import ConfigError


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> cuda when available, else cpu; ``cpu``/``cuda``/``cuda:N`` as asked, with a one-line
    error naming ``--device`` when CUDA is asked for but absent."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = str(device)
    if name.split(":")[0] not in ("cpu", "cuda"):
        raise ConfigError(f"--device must be cpu or cuda, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} was requested but CUDA is not available on this machine")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 matrix products in hardware: CUDA GPUs from Ampere (compute
    capability 8.0) on; older ones (V100, T4) only emulate bf16, slowly. False on the CPU, where
    fp32 is the faster choice for this model."""
    if device.type != "cuda":
        return False
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch without the keyword
        return torch.cuda.get_device_capability(device)[0] >= 8


def autocast_dtype(device: torch.device) -> torch.dtype:
    """The default compute dtype of generation and training on ``device``: bf16 autocast on GPUs
    with native bf16, fp32 everywhere else."""
    return torch.bfloat16 if native_bf16(device) else torch.float32


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer measures it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def processor_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows of it."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return name


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's with the torch thread count: ``AMD EPYC 7B13 (2 threads)``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{processor_name()} ({torch.get_num_threads()} threads)"


THREADS_ENV = "EHEAD_THREADS"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """CPU threads that do not collapse on a shared machine: one per core the 1-minute load average
    says is idle, at least one. torch's own default (every core) makes each thread wait for the
    slowest core, which is a busy one when other work shares the machine (measured on 2 cores: 1
    thread rendered 200 frames in 17 s, 2 threads in 29 s, with one other job running)."""
    cores = _cores()
    try:
        busy = int(os.getloadavg()[0] + 0.5)
    except (AttributeError, OSError):  # no load average on this platform
        busy = 0
    return max(1, min(cores, cores - busy))


def set_threads(requested: int | None = None) -> int:
    """Use ``requested`` CPU threads for torch, else ``EHEAD_THREADS``, else ``default_threads()``.
    Returns the number used."""
    if requested is None and os.environ.get(THREADS_ENV):
        try:
            requested = int(os.environ[THREADS_ENV])
        except ValueError:
            raise ConfigError(f"{THREADS_ENV} must be a whole number of threads, "
                              f"got {os.environ[THREADS_ENV]!r}") from None
        if requested < 1:
            raise ConfigError(f"{THREADS_ENV} must be >= 1, got {requested}")
    n = requested if requested is not None else default_threads()
    torch.set_num_threads(n)
    return n
