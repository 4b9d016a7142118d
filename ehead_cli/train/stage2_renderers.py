"""Stage II's renderers: the run's renderers from ``--avatar`` values (through the registry,
``avatar.renderers.trainable_renderer``), which clip each one renders, and each written as an avatar
folder (as it starts, under ``RUN2/renderers/``, and refined, in the checkpoint's ``avatars/``)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ehead_cli.avatar.folder import IDENTITY, MANIFEST, REFERENCE_PNG, save_avatar
from ehead_cli.avatar.kinds import kind_of
from ehead_cli.avatar.renderers import BUILTIN, trainable_renderer
from ehead_cli.errors import ConfigError
from ehead_cli.io.dataset import Clip
from ehead_cli.render.clip_camera import ClipCamera

RENDERERS_DIR = "renderers"  # RUN2/renderers/<name>/: the renderers as they started


@dataclass
class RendererSpec:
    """A renderer of the run: ``name``; ``renderer`` (NeuralAvatar or MeshAvatar); the identity
    ``shape`` (300,) and ``reference`` (115,) its avatar folder holds; ``config`` the folder's
    config.json sections to keep (fit, crop, sources, ...); ``source`` where it came from (a path or
    "builtin"); ``folder`` its starting copy in the run."""

    name: str
    renderer: nn.Module
    shape: np.ndarray
    reference: np.ndarray
    config: dict[str, Any]
    source: str
    folder: Path

    @property
    def kind(self) -> str:
        return kind_of(self.renderer)


def write_renderer(out: Path, spec: RendererSpec, extra: dict[str, Any] | None = None) -> Path:
    """``spec``'s renderer (its current weights) as an avatar folder ``out``."""
    src = Path(spec.source)
    files = {}
    if spec.source != BUILTIN and (src / REFERENCE_PNG).is_file():
        files[REFERENCE_PNG] = lambda p: shutil.copyfile(src / REFERENCE_PNG, p)
    stage2 = (extra or {}).get("stage2")
    files["AVATAR_CARD.md"] = lambda p: p.write_text(_card(spec, stage2))
    licence = _licence(spec)
    return save_avatar(out, spec.renderer, spec.shape, spec.reference, {**spec.config, **(extra or {})}, files,
                       licence)


def _licence(spec: RendererSpec) -> str:
    if spec.source == BUILTIN:
        return "Apache-2.0 (this project): ehead's built-in head"
    import json

    try:
        entries = json.loads((Path(spec.source) / MANIFEST).read_text())["files"]
        return str(entries[IDENTITY]["licence"])
    except (OSError, ValueError, KeyError, TypeError):
        from ehead_cli.avatar.folder import USER_LICENCE

        return USER_LICENCE


def _card(spec: RendererSpec, stage2: dict[str, Any] | None) -> str:
    what = ("ehead's built-in mesh renderer (the face model's mesh, Lambert-shaded; learnable per-vertex albedo)"
            if spec.kind == "mesh" else f"a neural avatar renderer, from {Path(spec.source).name}")
    done = (f"Refined by Stage II (ehead train --stage 2) up to step {stage2.get('step')}, with the DiT of the same "
            f"checkpoint." if stage2 else "As it entered Stage II (before any refinement).")
    return f"# {spec.name}\n\n{what}.\n\n{done}\n"


def renderer_specs(avatars: list[str], out: Path, face, camera: ClipCamera | None, train_clips: list[Clip],
                   device: torch.device, flame: str | None) -> list[RendererSpec]:
    """The run's renderers from ``--avatar`` values: avatar folders (deep copies: the loaded folder
    stays as it is) or ``builtin`` (through ``camera``, the first training clip's frames camera)."""
    specs: list[RendererSpec] = []
    if not avatars:
        raise ConfigError("--stage 2 needs --avatar AVATAR_DIR (an ehead avatar fit folder) or --avatar builtin")
    if BUILTIN in avatars and len(avatars) > 1:
        raise ConfigError("--avatar builtin renders every clip: give it alone")
    for value in avatars:
        renderer, loaded = trainable_renderer(value, face, camera, device, flame)
        if loaded is None:  # builtin: a new mesh-kind renderer, the identity of the first training clip
            first = train_clips[0]
            spec = RendererSpec(BUILTIN, renderer, first.shape.copy(),
                                np.median(first.motion, axis=0).astype(np.float32),
                                {"meta": {"note": "the built-in mesh renderer"}}, BUILTIN,
                                out / RENDERERS_DIR / BUILTIN)
        else:
            keep = {k: v for k, v in loaded.config.items() if k not in ("format", "version", "face", "renderer",
                                                                        "camera", "stage2")}
            name = loaded.path.name
            if any(s.name == name for s in specs):
                raise ConfigError(f"--avatar {value}: two avatars are named {name}; rename one folder")
            spec = RendererSpec(name, renderer, loaded.shape.copy(),
                                loaded.reference.copy(), keep, str(loaded.path), out / RENDERERS_DIR / name)
        specs.append(spec)
    return specs


def assign_renderers(clips: list[Clip], specs: list[RendererSpec]) -> tuple[dict[str, str], list[str]]:
    """{clip id: renderer name} (module docstring) and the ids of the clips no renderer matches."""
    if len(specs) == 1:
        return {c.id: specs[0].name for c in clips}, []
    by_source = {}
    for s in specs:
        for src in s.config.get("sources", []):
            by_source.setdefault(str(src.get("file")), s.name)
    names = {s.name for s in specs}
    out, missing = {}, []
    for c in clips:
        name = by_source.get(str(c.meta.get("source"))) or (c.id if c.id in names else None)
        if name is None:
            missing.append(c.id)
        else:
            out[c.id] = name
    return out, missing
