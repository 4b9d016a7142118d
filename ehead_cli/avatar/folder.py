"""AVATAR_DIR: a fitted avatar on disk, self-describing and checksummed.

    config.json         {"format": "ehead-avatar", "version", "face" (the face model's name and
                        fingerprint), "renderer" (the config of a kind of ``avatar.kinds``:
                        NeuralConfig, no "kind" field; or for the trainable mesh renderer of Stage
                        II, ``avatar.mesh``, {"kind": "mesh", "size"}), "fit" (FitConfig),
                        "camera" (the crop's ClipCamera), "crop", "sources", "metrics", "meta",
                        and after Stage II "stage2"}
    avatar.safetensors  the renderer's weights: features, U-Net, background (float32); the mesh
                        renderer's per-vertex albedo
    identity.npz        shape (300,) identity and reference (115,) head-centred motion frame: the
                        generation's reference when the avatar is used with ``ehead generate``
    reference.png       the video frame (cropped) that reference frame was tracked from
    heldout.png         held-out frames side by side: real | avatar | mesh
    AVATAR_CARD.md      what it is, where it came from, its held-out metrics, its licence
    MANIFEST.json       {"files": {name: {"size", "sha256", "licence"}}}, the layout of models/'s

The folder is written whole or not at all (a temporary folder renamed into place). Loading checks
the manifest first (a missing or damaged file, truncated weights), then the format, then that the
face model at hand is the one the avatar was fitted on (name, vertex count and a hash of its
triangles); each problem is one InputError or AssetError line naming the file or the flag.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from ehead_cli.avatar.kinds import kind_of_section
from ehead_cli.avatar.neural import NeuralAvatar
from ehead_cli.errors import AssetError, ConfigError, InputError
from ehead_cli.face.base import FaceModel
from ehead_cli.io.atomic import atomic_dir, sha256_file
from ehead_cli.io.checkpoint import check_state, load_weights
from ehead_cli.layout import MOTION_DIM, N_SHAPE
from ehead_cli.render.clip_camera import ClipCamera

FORMAT = "ehead-avatar"
VERSION = 1
CONFIG = "config.json"
WEIGHTS = "avatar.safetensors"
IDENTITY = "identity.npz"
REFERENCE_PNG = "reference.png"
HELDOUT_PNG = "heldout.png"
CARD = "AVATAR_CARD.md"
MANIFEST = "MANIFEST.json"
USER_LICENCE = "fitted from the user's video; it shows the person filmed: use it with their consent"


def face_fingerprint(face: FaceModel) -> dict[str, Any]:
    """The face model's name, vertex count and SHA-256 of its triangle list: what an avatar needs
    to be rendered by the same model it was fitted with."""
    faces = face.faces.detach().cpu().numpy().astype(np.int64)
    return {"name": face.name, "vertices": face.n_vertices, "faces_sha256": hashlib.sha256(faces.tobytes()).hexdigest()}


@dataclass
class LoadedAvatar:
    """An avatar folder in memory: its renderer, identity, reference frame and config."""

    path: Path
    renderer: NeuralAvatar  # or another kind of avatar.kinds (avatar.mesh.MeshAvatar), its interface
    shape: np.ndarray
    reference: np.ndarray
    config: dict[str, Any]

    @property
    def camera(self) -> ClipCamera:
        return self.renderer.camera

    @property
    def face_model(self) -> str:
        return self.config["face"]["name"]


# --- writing -----------------------------------------------------------------------------------------
def save_avatar(out: str | os.PathLike, avatar: NeuralAvatar, shape: np.ndarray, reference: np.ndarray,
                config: dict[str, Any], extra_files: dict[str, Callable[[Path], None]],
                licence: str = USER_LICENCE) -> Path:
    """Write AVATAR_DIR ``out`` atomically. ``config`` adds to the folder's config.json (fit,
    crop, sources, metrics, meta); ``extra_files`` maps a file name to a function writing it
    (the PNGs, the card)."""
    out = Path(out)
    full = {"format": FORMAT, "version": VERSION, "face": face_fingerprint(avatar.face),
            "renderer": avatar.cfg.to_dict(), "camera": avatar.camera.to_dict(), **config}
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in avatar.trainable_state_dict().items()}
    with atomic_dir(out) as tmp:
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": FORMAT})
        (tmp / CONFIG).write_text(json.dumps(full, indent=2) + "\n")
        np.savez(tmp / IDENTITY, shape=np.asarray(shape, np.float32)[:N_SHAPE],
                 reference=np.asarray(reference, np.float32))
        for name, write in extra_files.items():
            write(tmp / name)
        files = {p.name: {"size": p.stat().st_size, "sha256": sha256_file(p), "licence": licence}
                 for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / MANIFEST).write_text(json.dumps({"files": files}, indent=2) + "\n")
    return out


# --- reading -----------------------------------------------------------------------------------------
def verify_folder(path: Path) -> None:
    """InputError naming the first file that is missing or whose size or SHA-256 differs from the
    folder's MANIFEST.json (and when the manifest itself is missing or unreadable)."""
    manifest = path / MANIFEST
    if not manifest.is_file():
        raise InputError(f"{path}: not an avatar folder (no {MANIFEST}; make one with ehead avatar fit)")
    try:
        entries = json.loads(manifest.read_text())["files"]
        items = [(str(name), int(e["size"]), str(e["sha256"])) for name, e in entries.items()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise InputError(f"{manifest}: unreadable avatar manifest ({type(err).__name__})") from None
    for required in (CONFIG, WEIGHTS, IDENTITY):
        if required not in entries:
            raise InputError(f"{manifest}: does not list {required}; the avatar folder is incomplete")
    for name, size, sha in items:
        f = path / name
        if not f.is_file():
            raise InputError(f"{f}: missing (listed in {manifest})")
        if f.stat().st_size != size or sha256_file(f) != sha:
            raise InputError(f"{f}: size or SHA-256 differs from {manifest} (a truncated or damaged copy?)")


def read_avatar_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads((path / CONFIG).read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"{path / CONFIG}: unreadable avatar config ({type(err).__name__})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise InputError(f"{path / CONFIG}: not an ehead avatar config (format {config.get('format')!r})"
                         if isinstance(config, dict) else f"{path / CONFIG}: not an ehead avatar config")
    if config.get("version") != VERSION:
        raise InputError(f"{path / CONFIG}: avatar version {config.get('version')} is not supported (need {VERSION})")
    return config


def _face_model(path: Path, config: dict[str, Any], flame: str | os.PathLike | None) -> FaceModel:
    """The face model the avatar was fitted on, checked against its fingerprint."""
    from ehead_cli.face import BuiltinHead, load_face_model

    want = config.get("face", {})
    name = want.get("name")
    if name == "flame":
        from ehead_cli.face import flame_configured

        if not flame_configured(flame):
            raise AssetError(f"{path}: the avatar was fitted on FLAME; pass --flame PATH or set EHEAD_FLAME")
        face = load_face_model(flame)
    elif name == "builtin":
        if flame not in (None, ""):
            raise InputError(f"{path}: the avatar was fitted on the built-in head, not FLAME; drop --flame")
        face = BuiltinHead().eval()
    else:
        raise InputError(f"{path / CONFIG}: unknown face model {name!r}")
    have = face_fingerprint(face)
    if have != {k: want.get(k) for k in have}:
        raise InputError(f"{path}: the avatar was fitted on a different {name} face model ({want.get('vertices')} "
                         f"vertices, triangles {str(want.get('faces_sha256'))[:12]}) than the one loaded "
                         f"({have['vertices']} vertices, triangles {have['faces_sha256'][:12]})")
    return face


def load_avatar(path: str | os.PathLike, device: str | torch.device = "cpu",
                flame: str | os.PathLike | None = None) -> LoadedAvatar:
    """Verify and load AVATAR_DIR (module docstring); the renderer is in eval mode on ``device``.
    Loading the same unchanged folder again returns the same object (jobs share it)."""
    p = Path(path).expanduser().resolve()
    if not p.is_dir():
        raise InputError(f"{p}: avatar folder not found (--avatar)")
    stamp = (p / MANIFEST).stat().st_mtime_ns if (p / MANIFEST).is_file() else 0
    return _load_cached(p, stamp, str(torch.device(device)), None if flame in (None, "") else str(flame))


@functools.lru_cache(maxsize=8)
def _load_cached(p: Path, _stamp: int, device: str, flame: str | None) -> LoadedAvatar:
    verify_folder(p)
    config = read_avatar_config(p)
    try:
        kind, cfg = kind_of_section(config["renderer"], str(p / CONFIG))
        camera = ClipCamera.from_dict(config["camera"])
    except (KeyError, TypeError, ValueError, ConfigError) as err:
        raise InputError(f"{p / CONFIG}: invalid renderer or camera section ({err})") from None
    face = _face_model(p, config, flame)
    avatar = kind.build(face, camera, cfg)
    state = load_weights(p / WEIGHTS)
    check_state(avatar.trainable_state_dict(), state, p / WEIGHTS)
    avatar.load_state_dict(state, strict=False)
    try:
        with np.load(p / IDENTITY, allow_pickle=False) as z:
            shape, reference = np.asarray(z["shape"], np.float32), np.asarray(z["reference"], np.float32)
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"{p / IDENTITY}: unreadable identity file ({type(err).__name__})") from None
    if shape.shape != (N_SHAPE,) or reference.shape != (MOTION_DIM,):
        raise InputError(f"{p / IDENTITY}: shape must be ({N_SHAPE},) and reference ({MOTION_DIM},)")
    return LoadedAvatar(p, avatar.to(device).eval(), shape, reference, config)


# --- a Stage-II checkpoint's renderer ------------------------------------------------------------------
def checkpoint_avatar(checkpoint: str | os.PathLike) -> Path | None:
    """The refined renderer of a Stage-II checkpoint (or run folder): its avatar folder under
    ``avatars/``, checked against the SHA-256 of its manifest that the checkpoint's config.json
    records (``meta.renderers``); None for a checkpoint without one. InputError when the checkpoint
    holds several (generation needs ``--avatar`` to pick one) or the folder was changed."""
    from ehead_cli.io.checkpoint import CONFIG_NAME, read_config
    from ehead_cli.model.checkpoint import CHECKPOINT_FORMAT

    folder, config = read_config(checkpoint, CHECKPOINT_FORMAT)  # the one reader's run-folder rule
    entries = config.get("meta", {}).get("renderers") or []
    if not entries:
        return None
    if len(entries) > 1:
        names = ", ".join(str(folder / e["folder"]) for e in entries)
        raise InputError(f"{folder}: a Stage-II checkpoint with {len(entries)} refined avatars; choose one with "
                         f"--avatar ({names})")
    path = folder / entries[0]["folder"]
    manifest = path / MANIFEST
    if not manifest.is_file() or sha256_file(manifest) != entries[0].get("manifest_sha256"):
        raise InputError(f"{path}: the refined renderer differs from the one {folder / CONFIG_NAME} records "
                         f"(a damaged or replaced copy?)")
    return path
