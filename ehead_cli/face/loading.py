"""Pick the face model: FLAME when one is configured, the built-in procedural head otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ehead_cli.face.base import FaceModel
from ehead_cli.face.builtin import BuiltinHead
from ehead_cli.face.flame import ENV_FLAME, load_flame


def flame_configured(flame: str | Path | None = None) -> bool:
    """True when ``flame`` or the ``EHEAD_FLAME`` environment variable names a FLAME model."""
    return bool(flame is not None and str(flame)) or bool(os.environ.get(ENV_FLAME, ""))


def load_face_model(flame: str | Path | None = None, device: str | torch.device = "cpu") -> FaceModel:
    """The built-in head when neither ``flame`` (``--flame``) nor ``EHEAD_FLAME`` is set, FLAME
    otherwise (``AssetError`` if that path is wrong). The model is in eval mode on ``device``."""
    model = load_flame(flame) if flame_configured(flame) else BuiltinHead()
    return model.to(device).eval()
