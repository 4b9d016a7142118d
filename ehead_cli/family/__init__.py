"""Model families behind one interface (``family.base``): EmbodiedHead and the listener, registered
here; ``get_family(name)`` and ``family_of(checkpoint)`` find them."""

from ehead_cli.family.base import (
    DEFAULT_FAMILY,
    FAMILIES,
    ModelFamily,
    Stage,
    family_names,
    family_of,
    family_of_format,
    get_family,
    register,
)
from ehead_cli.family.embodiedhead import EmbodiedHeadFamily
from ehead_cli.family.listener import ListenerFamily

EMBODIEDHEAD = register(EmbodiedHeadFamily())
LISTENER = register(ListenerFamily())

__all__ = ["DEFAULT_FAMILY", "EMBODIEDHEAD", "FAMILIES", "LISTENER", "ModelFamily", "Stage", "family_names",
           "family_of", "family_of_format", "get_family", "register"]
