"""Which renderer draws: the one place that turns a renderer source into a ``render.base.FrameRenderer``.

Sources (``SOURCES``, tried in order, registered as data):

* ``builtin``: the mesh renderer (``render.Renderer``) of the built-in head, or of FLAME when a FLAME
  path is given (``--flame`` or ``EHEAD_FLAME``), at ``size`` px, framing the neutral head (or
  through a clip's camera: ``framed``);
* an avatar folder (``ehead avatar fit``, or a refined renderer a Stage-II run wrote): its fitted
  renderer of the kind its config names (``avatar.kinds``: neural or mesh), at its own size;
* a Stage-II checkpoint (or its run folder): the refined renderer it holds under ``avatars/``
  (``avatar.folder.checkpoint_avatar``).

``renderer_from(source)`` gives the renderer of a source; the commands ask through
``job_renderer`` (a generation's ``Avatar``: its folder's renderer, else the mesh renderer framed by
its clip's camera) and ``motion_renderer`` (``ehead render``: the renderer and the identity it
draws); Stage II and ``ehead bench --stage2`` take a trainable copy through ``trainable_renderer``
(``builtin`` -> a new mesh-kind avatar through the frames' camera; a folder -> a copy of its renderer
that trains while the loaded folder stays as it is). A new source is one ``register_source``; a new
kind of trainable renderer is one ``avatar.kinds.register_kind``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ehead_cli.avatar.folder import LoadedAvatar, checkpoint_avatar, load_avatar
from ehead_cli.avatar.kinds import MESH, build_renderer
from ehead_cli.errors import InputError
from ehead_cli.face.base import FaceModel
from ehead_cli.render.clip_camera import ClipCamera
from ehead_cli.render.renderer import DEFAULT_SIZE, Renderer

BUILTIN = "builtin"

Flame = str | os.PathLike | None


# --- the mesh renderer of a face model --------------------------------------------------------------------
def builtin_renderer(size: int = DEFAULT_SIZE, flame: Flame = None, device: str | torch.device = "cpu",
                     camera: ClipCamera | None = None) -> Renderer:
    """The mesh renderer of the built-in head (FLAME when ``flame`` or EHEAD_FLAME is set) at ``size``
    px on ``device``; through ``camera``'s square view when given (a prepared clip's camera)."""
    from ehead_cli.face import load_face_model

    renderer = Renderer(load_face_model(None if flame in (None, "") else flame, device=device), size=size)
    return renderer if camera is None else framed(renderer, camera)


def framed(renderer: Renderer, camera: ClipCamera) -> Renderer:
    """The mesh ``renderer`` seen through a clip's ``camera`` (its square view at the same size)."""
    size = renderer.mesh.height
    return Renderer(renderer.face_model, size, camera=camera.square(size), light=renderer.mesh.light,
                    background=renderer.mesh.background, batch_size=renderer.batch_size,
                    cull_backfaces=renderer.mesh.cull_backfaces)


def builtin_camera(face: FaceModel, size: int) -> ClipCamera:
    """The camera of ``builtin_renderer`` (framing the neutral head of ``face``) as a clip camera of
    ``size`` px square images: what the mesh-kind avatar sees through when no video gives one."""
    return ClipCamera.from_camera(Renderer(face, size=size).mesh.camera, size, size)


# --- sources ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RendererSource:
    """name; ``matches(value)``: whether a value names this source; ``open(value, size, device,
    flame)`` -> its renderer; ``describe``: one line for the docs."""

    name: str
    matches: Callable[[str], bool]
    open: Callable[[str, int, str | torch.device, Flame], Any]
    describe: str


SOURCES: list[RendererSource] = []  # tried in order, then FALLBACK


def register_source(source: RendererSource) -> RendererSource:
    """Add a source, tried after those registered before it and before the avatar-folder fallback."""
    if any(s.name == source.name for s in SOURCES):
        raise ValueError(f"a renderer source named {source.name!r} is registered already")
    SOURCES.append(source)
    return source


def _folder_format(value: str) -> str | None:
    from ehead_cli.io.checkpoint import read_format

    return read_format(value) if Path(value).expanduser().is_dir() else None


def _is_checkpoint(value: str) -> bool:
    from ehead_cli.model.checkpoint import CHECKPOINT_FORMAT

    return _folder_format(value) == CHECKPOINT_FORMAT.name


def checkpoint_folder_avatar(value: str | os.PathLike) -> Path:
    """The avatar folder of a Stage-II checkpoint's refined renderer; InputError naming the checkpoint
    when it holds none (a Stage-I checkpoint)."""
    path = checkpoint_avatar(value)
    if path is None:
        raise InputError(f"{value}: a checkpoint without a refined renderer (only a Stage-II checkpoint of ehead "
                         f"train --stage 2 holds one)")
    return path


register_source(RendererSource(
    BUILTIN, lambda v: v == BUILTIN,
    lambda v, size, device, flame: builtin_renderer(size, flame, device),
    "the built-in head's mesh renderer (FLAME's with --flame) at --size px"))
register_source(RendererSource(
    "checkpoint", _is_checkpoint,
    lambda v, size, device, flame: load_avatar(checkpoint_folder_avatar(v), device, flame).renderer,
    "a Stage-II checkpoint's refined renderer (its avatars/ folder)"))
FALLBACK = RendererSource(
    "avatar", lambda v: True,  # anything else is read as an avatar folder: load_avatar names what is wrong
    lambda v, size, device, flame: load_avatar(v, device, flame).renderer,
    "an avatar folder's fitted renderer, at its own size")


def source_of(value: str | os.PathLike) -> RendererSource:
    """The registered source ``value`` names; anything no source claims is read as an avatar folder."""
    value = str(value)
    return next((s for s in SOURCES if s.matches(value)), FALLBACK)


def renderer_from(source: str | os.PathLike, size: int = DEFAULT_SIZE, device: str | torch.device = "cpu",
                  flame: Flame = None):
    """The renderer of ``source`` (module docstring): "builtin", an avatar folder or a Stage-II
    checkpoint; one InputError line naming the path when it is none of them."""
    return source_of(source).open(str(source), size, device, flame)


def avatar_or_refined(avatar: str | os.PathLike | None, checkpoint: str | os.PathLike | None) -> Path | None:
    """Who a command animates when ``--avatar`` is not given: the refined renderer's folder of a
    Stage-II ``checkpoint`` (what ``ehead generate`` and ``ehead serve`` render with), else None (the
    built-in head); a given ``avatar`` wins."""
    if avatar is not None:
        return Path(avatar)
    return checkpoint_avatar(checkpoint) if checkpoint is not None else None


# --- what the commands ask for --------------------------------------------------------------------------------
def job_renderer(avatar=None, flame: Flame = None, size: int = DEFAULT_SIZE, device: str | torch.device = "cpu",
                 frame_clip: bool = True):
    """The renderer of a generation whose identity is ``avatar`` (a ``avatar.identity.Avatar`` or
    None): its avatar folder's renderer; else the mesh renderer at ``size`` (FLAME with ``flame``),
    through the clip's camera when the avatar came from a prepared clip and ``frame_clip``."""
    if avatar is not None and avatar.renderer is not None:
        return avatar.renderer
    return renderer_for(avatar if frame_clip else None, builtin_renderer(size, flame, device))


def renderer_for(avatar, default):
    """The renderer of a job whose avatar is ``avatar`` (an ``avatar.identity.Avatar`` or None) in a run
    whose renderer is ``default``: the avatar folder's own renderer; else ``default`` framed by the
    clip's camera when the avatar came from a prepared clip and ``default`` is a mesh renderer."""
    if avatar is None:
        return default
    if avatar.renderer is not None:
        return avatar.renderer
    if avatar.camera is not None and isinstance(default, Renderer):
        return framed(default, avatar.camera)
    return default


def motion_renderer(shape: np.ndarray, camera: ClipCamera | None, avatar: str | os.PathLike | None = None,
                    flame: Flame = None, size: int = DEFAULT_SIZE, device: str | torch.device = "cpu"
                    ) -> tuple[Any, np.ndarray]:
    """``ehead render``'s (renderer, identity shape) for a motion file of identity ``shape`` and clip
    ``camera``: with ``avatar`` (an avatar folder, or a Stage-II checkpoint) its renderer and its own
    identity (the renderer was fitted on it); else the mesh renderer at ``size``, framed by
    ``camera`` when the motion has one, and ``shape``."""
    if avatar is not None:
        from ehead_cli.avatar.identity import Avatar

        path = checkpoint_folder_avatar(avatar) if _is_checkpoint(str(avatar)) else avatar
        person = Avatar.load(path, device=device, flame=flame)
        if person.renderer is None:
            raise InputError(f"{avatar}: not an avatar folder (--avatar takes the output of ehead avatar fit)")
        return person.renderer, person.shape
    return builtin_renderer(size, flame, device, camera), shape


def trainable_renderer(source: str | os.PathLike, face: FaceModel, camera: ClipCamera,
                       device: str | torch.device = "cpu", flame: Flame = None
                       ) -> tuple[Any, LoadedAvatar | None]:
    """A renderer to train (Stage II) and the avatar folder it came from: ``builtin`` -> a new mesh-kind
    avatar of ``face`` through ``camera`` (None); an avatar folder or a Stage-II checkpoint -> a copy
    of its renderer in training mode (the loaded folder, shared by jobs, stays as it is)."""
    if str(source) == BUILTIN:
        return build_renderer(MESH, face, camera).to(device), None
    path = checkpoint_folder_avatar(source) if _is_checkpoint(str(source)) else source
    loaded = load_avatar(path, device=device, flame=flame)
    return copy.deepcopy(loaded.renderer).train(), loaded


__all__ = ["avatar_or_refined", "BUILTIN", "SOURCES", "RendererSource", "builtin_camera", "builtin_renderer",
           "checkpoint_folder_avatar", "framed", "job_renderer", "motion_renderer", "register_source",
           "renderer_for", "renderer_from", "source_of", "trainable_renderer"]
