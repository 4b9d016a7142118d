"""Choosing a torch device from a ``--device`` flag, and synchronising it around timed work."""

from __future__ import annotations

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
