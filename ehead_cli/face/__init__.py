"""Face models: FLAME (from the user's licensed file) and the built-in procedural head."""

from ehead_cli.face.base import FaceModel

__all__ = ["FaceModel"]
