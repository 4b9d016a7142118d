"""The kinds of trainable renderer an avatar folder can hold, registered as data.

A kind is its name (``config.json`` ``renderer.kind``), its config class (``from_dict(d, source)``,
``to_dict()``, a ``size``), the class of its renderer and how to build one from a face model, the
camera it sees the person through (S x S) and its config. Two are registered:

* ``neural``: the person-specific neural renderer of ``ehead avatar fit`` (``avatar.neural``); its
  config has no ``kind`` field (the folders written before kinds existed are neural);
* ``mesh``: the face model's mesh with a learnable per-vertex albedo (``avatar.mesh``), what Stage II
  trains for ``--avatar builtin``.

``avatar.folder`` reads a folder's renderer through ``kind_of_section``; Stage II and the bench
build the mesh kind through ``build_renderer``; ``kind_of`` names the kind of an instance (the
Stage-II checkpoint records it). A new trainable renderer (a ``render.base.FrameSource`` with
``cfg``, ``camera``, ``face`` and ``trainable_state_dict``) is one ``register_kind`` call here;
``avatar.renderers`` turns sources ("builtin", a folder, a checkpoint) into renderers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ehead_cli.avatar.config import NeuralConfig
from ehead_cli.avatar.mesh import KIND as MESH
from ehead_cli.avatar.mesh import MeshAvatar, MeshConfig
from ehead_cli.avatar.neural import NeuralAvatar
from ehead_cli.errors import ConfigError
from ehead_cli.face.base import FaceModel
from ehead_cli.render.clip_camera import ClipCamera

NEURAL = "neural"


@dataclass(frozen=True)
class RendererKind:
    """name; ``config``: its config class; ``renderer``: the class of its instances; ``build(face,
    camera, cfg)`` -> a renderer; ``at_size(S)`` -> a config for S px when the kind has a default
    (None: it needs a fitted config); ``describe``: one line for the cards."""

    name: str
    config: type
    renderer: type
    build: Callable[[FaceModel, ClipCamera, Any], Any]
    at_size: Callable[[int], Any] | None
    describe: str


KINDS: dict[str, RendererKind] = {}


def register_kind(kind: RendererKind) -> RendererKind:
    KINDS[kind.name] = kind
    return kind


register_kind(RendererKind(NEURAL, NeuralConfig, NeuralAvatar, NeuralAvatar, None,
                           "a neural avatar renderer (features on the face model's surface and a U-Net)"))
register_kind(RendererKind(MESH, MeshConfig, MeshAvatar, MeshAvatar, MeshConfig,
                           "ehead's built-in mesh renderer (the face model's mesh, Lambert-shaded; learnable "
                           "per-vertex albedo)"))


def kind_named(name: str) -> RendererKind:
    """The registered kind ``name``; ConfigError listing the known ones."""
    if name not in KINDS:
        raise ConfigError(f"unknown renderer kind {name!r} (known: {', '.join(sorted(KINDS))})")
    return KINDS[name]


def kind_of_section(section: dict[str, Any], source: str) -> tuple[RendererKind, Any]:
    """A ``config.json`` ``renderer`` section -> (its kind, its config); ConfigError, TypeError or
    ValueError when it is not one."""
    if not isinstance(section, dict):
        raise TypeError(f"the renderer section is a {type(section).__name__}, not a table")
    kind = kind_named(str(section.get("kind", NEURAL)))
    return kind, kind.config.from_dict({k: v for k, v in section.items() if k != "kind"}, source)


def kind_of(renderer: Any) -> str:
    """The registered kind name of a renderer instance; ConfigError for one no kind makes."""
    for kind in KINDS.values():
        if isinstance(renderer, kind.renderer):
            return kind.name
    raise ConfigError(f"{type(renderer).__name__} is not a registered trainable renderer kind")


def build_renderer(name: str, face: FaceModel, camera: ClipCamera, cfg: Any = None):
    """A new renderer of kind ``name`` seen through ``camera``; ``cfg`` defaults to the kind's at the
    camera's size."""
    kind = kind_named(name)
    if cfg is None:
        if kind.at_size is None:
            raise ConfigError(f"a {name} renderer needs its fitted config (make one with ehead avatar fit)")
        cfg = kind.at_size(camera.height)
    return kind.build(face, camera, cfg)
