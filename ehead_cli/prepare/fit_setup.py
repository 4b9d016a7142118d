"""What ``ehead avatar fit`` fits on, decided before any fitting: the configs from the options, the face
model, the device, the asset paths and the capture — from videos (tracked: ``prepare.capture``), from a
dataset's frames, or the saved capture of an unfinished fit (``--resume``, which must be of the same
videos). It sits with prepare because tracking videos is prepare's; ``avatar.fit.fit_avatar`` then fits.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ehead_cli.assets import ASSETS
from ehead_cli.avatar.capture import Capture, dataset_capture
from ehead_cli.avatar.config import SIZES, FitConfig, NeuralConfig
from ehead_cli.devices import resolve_device
from ehead_cli.errors import ConfigError
from ehead_cli.face.base import FaceModel


@dataclass(frozen=True)
class FitSetup:
    """The arguments of ``fit_avatar`` but the output folder: what to fit, on what, with which weights."""

    capture: Capture
    face: FaceModel
    neural: NeuralConfig
    fit: FitConfig
    device: torch.device
    vgg: str | None
    lpips: str | None


def fit_setup(out: str | os.PathLike, videos: Sequence[str | os.PathLike] = (), data: str | os.PathLike | None = None,
              *, size: int = 256, steps: int | None = None, batch_size: int | None = None, lr: float | None = None,
              seed: int = 0, flame: str | None = None, vgg: str | None = None, lpips: str | None = None,
              resume: bool = False, device: str | None = None,
              progress: Callable[[str], None] | None = None) -> FitSetup:
    """The fit of AVATAR_DIR ``out`` on the ``videos`` of one person or the frames of dataset ``data`` (one
    of them; with ``resume`` the capture saved in ``out``). None: FitConfig's default; ``vgg`` / ``lpips``
    default to EHEAD_VGG / EHEAD_LPIPS. ConfigError / InputError (one line) before any work is done."""
    from ehead_cli.avatar.fit import load_saved_capture
    from ehead_cli.face import load_face_model
    from ehead_cli.prepare.capture import read_capture

    if bool(videos) == (data is not None):
        raise ConfigError("give the VIDEO... of one person, or --data DATASET (a dataset with frames), not both")
    overrides = {k: v for k, v in (("steps", steps), ("batch_size", batch_size), ("lr", lr)) if v is not None}
    fit_cfg = dataclasses.replace(FitConfig(seed=seed), **overrides).validate()
    if size not in SIZES:
        raise ConfigError(f"--size must be one of {', '.join(map(str, SIZES))}, got {size}")
    neural = NeuralConfig(size=size).validate()
    dev = resolve_device(device)
    face = load_face_model(flame, device=dev)
    if resume:
        capture = load_saved_capture(Path(out))
        given = sorted(str(Path(v).expanduser().resolve()) for v in videos)
        if data is None and given != sorted(str(Path(p).resolve()) for p, _ in capture.sources):
            raise ConfigError(f"--resume: {out} was being fitted from other videos "
                              f"({', '.join(Path(p).name for p, _ in capture.sources)})")
    elif data is not None:
        capture = dataset_capture(data, face, fit_cfg.holdout)
        if capture.camera.height != neural.size:
            raise ConfigError(f"--size {neural.size}: the frames of {data} are {capture.camera.height} px")
    else:
        capture = read_capture(list(videos), face, neural.size, fit_cfg.crop_scale, fit_cfg.holdout,
                               progress=progress)
    return FitSetup(capture, face, neural, fit_cfg, dev, vgg or ASSETS["vgg"].configured(),
                    lpips or ASSETS["lpips"].configured())
