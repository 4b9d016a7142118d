"""``ehead prepare``'s inputs: the videos named or found in folders, and a clip id for each.

Clip ids are the file stem with characters outside [A-Za-z0-9_.-] replaced by '_'; a stem taken
by another source (in this run, or a finished clip of the folder) gets '-' and 8 hex digits of its
path's SHA-1.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ehead_cli.errors import InputError
from ehead_cli.io.dataset import clip_id_for
from ehead_cli.prepare.manifest import read_clip_info

MEDIA_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".flv", ".wmv", ".ts",
                  ".mts", ".m2ts", ".3gp", ".ogv")


def find_inputs(inputs: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """(videos, missing): files as given and folders searched recursively for ``MEDIA_SUFFIXES``,
    sorted, duplicates removed; and the inputs that do not exist. InputError when there is no video."""
    inputs = list(inputs)
    found: list[Path] = []
    missing: list[Path] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            found += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in MEDIA_SUFFIXES)
        elif p.is_file():
            found.append(p)
        else:
            missing.append(p)
    unique = list(dict.fromkeys(q.resolve() for q in found))
    if not unique and missing and len(missing) == len(inputs):
        raise InputError(f"{missing[0]}: not found" + (f" (nor {len(missing) - 1} other input(s))"
                                                       if len(missing) > 1 else ""))
    if not unique:
        raise InputError(f"no video files in {', '.join(str(i) for i in inputs) or 'the arguments'} "
                         f"(VIDEO_OR_FOLDER; looked for {', '.join(MEDIA_SUFFIXES)})")
    return unique, missing


def _path_hash(path: Path) -> str:
    return hashlib.sha1(str(path).encode()).hexdigest()[:8]


def assign_ids(sources: Sequence[Path], clips_dir: Path) -> dict[Path, str]:
    """A clip id per source (see the module docstring): the stem unless another source claims it
    (in this run, or a finished clip of the folder)."""
    by_stem: dict[str, list[Path]] = {}
    for s in sources:
        by_stem.setdefault(clip_id_for(s.stem), []).append(s)
    ids = {}
    for stem, group in by_stem.items():
        previous = read_clip_info(clips_dir / f"{stem}.json")
        owner = Path(previous["source"]["path"]) if previous else None
        for s in group:
            shared = len(group) > 1 or (owner is not None and owner != s)
            ids[s] = f"{stem}-{_path_hash(s)}" if shared else stem
    return ids
