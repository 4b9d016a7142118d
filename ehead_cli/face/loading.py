"""Pick the face model: FLAME when one is configured, the built-in procedural head otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ehead_cli.errors import ConfigError
from ehead_cli.face.base import FaceModel
from ehead_cli.face.builtin import BuiltinHead
from ehead_cli.face.flame import ENV_FLAME, load_flame


def flame_configured(flame: str | Path | None = None) -> bool:
    """True when ``flame`` or the ``EHEAD_FLAME`` environment variable names a FLAME model."""
    return bool(flame is not None and str(flame)) or bool(os.environ.get(ENV_FLAME, ""))


def load_face_model(flame: str | Path | None = None, device: str | torch.device = "cpu",
                    landmarks: str | Path | None = None, masks: str | Path | None = None) -> FaceModel:
    """The built-in head when neither ``flame`` (``--flame``) nor ``EHEAD_FLAME`` is set, FLAME
    otherwise (``AssetError`` if that path is wrong), with ``landmarks`` / ``masks``
    (``--flame-landmarks`` / ``--flame-masks``) for FLAME. The model is in eval mode on ``device``."""
    if not flame_configured(flame):
        given = [f for f, v in (("--flame-landmarks", landmarks), ("--flame-masks", masks)) if v]
        if given:
            raise ConfigError(f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} for FLAME: pass --flame "
                              "PATH (or set EHEAD_FLAME) too")
        return BuiltinHead().to(device).eval()
    model = load_flame(flame, landmarks, masks)
    return model.to(device).eval()
