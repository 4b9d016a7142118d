"""A prepared clip's files, its ``.json`` marker, the resume check and ``manifest.csv``.

A clip is ``clips/<id>.flac``, ``.npz``, ``.states.csv``, ``.scores.csv`` and, written last,
``.json`` (source, settings, summary): its presence marks the clip finished. ``is_finished`` says
whether a clip was finished from the very same source file (path, size, modification time) with
the same settings, so a rerun skips it; ``write_manifest`` rebuilds ``manifest.csv`` from every
finished clip's ``.json`` (``ehead_cli.io.dataset`` reads it).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ehead_cli.io.dataset import MANIFEST, frames_files, split_for
from ehead_cli.io.dataset import clips_dir as dataset_clips_dir
from ehead_cli.io.dataset import write_manifest as write_manifest_file
from ehead_cli.prepare.methods import PrepareOptions

CLIP_SUFFIXES = {"audio": ".flac", "motion": ".npz", "states": ".states.csv", "scores": ".scores.csv",
                 "info": ".json"}


def source_fingerprint(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def clip_files(clips_dir: Path, clip_id: str) -> dict[str, Path]:
    return {k: clips_dir / f"{clip_id}{suffix}" for k, suffix in CLIP_SUFFIXES.items()}


def read_clip_info(path: Path) -> dict | None:
    """A clip's ``.json``, or None when it is missing, unreadable or not a clip's."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("source"), dict) else None


def is_finished(clips_dir: Path, clip_id: str, source: Path, options: PrepareOptions) -> bool:
    """True when clip ``clip_id`` was finished from this very ``source`` with these settings."""
    files = list(clip_files(clips_dir, clip_id).values())
    if options.frame_size:
        files += frames_files(clips_dir.parent, clip_id)
    info = read_clip_info(clips_dir / f"{clip_id}.json")
    return (info is not None and info["source"] == source_fingerprint(source)
            and info.get("settings") == options.settings() and all(p.is_file() for p in files))


def manifest_row(info: dict) -> dict:
    """The manifest row of a finished clip's ``.json``."""
    row = {"id": info["id"], "split": split_for(info["id"]), "duration": float(info["duration"]),
           "n_frames": int(info["n_frames"]), "source": Path(info["source"]["path"]).name,
           "states": info["settings"]["states"], "tracker": info["settings"]["tracker"],
           "speak_fraction": round(float(info["speak_fraction"]), 4)}
    for key in ("face_found", "landmark_rmse_px"):
        if key in info:
            row[key] = round(float(info[key]), 4)
    return row


def write_manifest(out_dir: Path) -> pd.DataFrame:
    """Rebuild ``manifest.csv`` from every finished clip in ``out_dir/clips`` (atomically)."""
    rows = []
    clips_dir = dataset_clips_dir(out_dir)
    for path in sorted(clips_dir.glob("*.json")):
        info = read_clip_info(path)
        if info is None or info.get("id") != path.stem:
            continue
        if all(p.is_file() for p in clip_files(clips_dir, path.stem).values()):
            rows.append(manifest_row(info))
    manifest = pd.DataFrame(rows)
    if rows:
        write_manifest_file(out_dir, manifest)
    else:  # no finished clip: no manifest (a header-only one would look like a dataset)
        (out_dir / MANIFEST).unlink(missing_ok=True)
    return manifest
