"""Face models: FLAME (from the user's licensed file) and the built-in procedural head."""

from ehead_cli.face.base import FaceModel
from ehead_cli.face.builtin import BuiltinHead
from ehead_cli.face.flame import FlameModel, load_flame
from ehead_cli.face.loading import flame_configured, load_face_model

__all__ = ["BuiltinHead", "FaceModel", "FlameModel", "flame_configured", "load_face_model", "load_flame"]
