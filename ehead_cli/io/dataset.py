"""The dataset folder: what ``ehead prepare`` and the sample-data builder write and ``ehead train``
and ``ehead eval`` read. This module is the one place its layout, clip ids and splits are spelled.

    DIR/manifest.csv        id, split (train|val|test), duration, n_frames, [language, identity, ...]
    DIR/clips/<id>.npz      motion NPZ: motion (T, 115), shape (300,), states (T,), fps = 25
    DIR/clips/<id>.flac     the audio the avatar hears (.wav / .flac / .ogg)
    DIR/clips/<id>.frames.mp4   optional, what Stage II trains on: the clip's video as face-centred
                            256 x 256 crops, frame t showing motion frame t (``ehead_cli.io.frames``)
    DIR/clips/<id>.frames.json  the frames' size, count, crop and the crop's camera; written last

Clip ids are letters, digits, '_', '.' and '-' (``CLIP_ID``); ``clip_id_for`` turns a file stem into
one. Splits are ``DATA_SPLITS``; ``split_for`` is the fixed function of the id that ``ehead prepare``
uses (so adding files never moves a clip between splits), with the fractions of ``SPLIT_FRACTIONS``.

A dataset may pair every clip with companion motion in sub-folders (a dyadic dataset's
``DIR/speaker/<id>.npz``, the speaker the listener hears): ``load_index(..., companions=...)`` reads
and length-checks them with the clip.

Length rule: the audio may differ from the motion (and its companions) by at most ``LENGTH_SLACK``
frame (rounding in preparation); the common length is used. Clips shorter than ``MIN_CLIP_FRAMES`` (1 s), unreadable
clips and clips whose lengths disagree are reported by name and left out (``load_index``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from ehead_cli.errors import InputError, first_line
from ehead_cli.io.atomic import atomic_path
from ehead_cli.io.motionfile import Motion, load_motion
from ehead_cli.layout import MOTION_FPS, SAMPLE_RATE, n_frames_for

MANIFEST = "manifest.csv"
CLIPS_DIR = "clips"
MOTION_SUFFIX = ".npz"
AUDIO_SUFFIXES = (".flac", ".wav", ".ogg")
FRAMES_SUFFIX = ".frames.mp4"
FRAMES_META_SUFFIX = ".frames.json"
DATA_SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
LENGTH_SLACK = 1  # frames the audio and motion may differ by
MIN_CLIP_FRAMES = 25  # 1 s: shorter clips carry too little context to learn from
CLIP_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_ID_BAD = re.compile(r"[^A-Za-z0-9_.-]")


def clip_id_for(stem: str) -> str:
    """A file stem as a clip id: characters outside [A-Za-z0-9_.-] become '_'."""
    return _ID_BAD.sub("_", stem) or "clip"


def split_for(clip_id: str) -> str:
    """train / val / test, a fixed function of the id (SHA-1 -> [0, 1): test below the test
    fraction, val below test + val)."""
    u = int(hashlib.sha1(clip_id.encode()).hexdigest()[:8], 16) / 16**8
    test, val = SPLIT_FRACTIONS["test"], SPLIT_FRACTIONS["val"]
    return "test" if u < test else "val" if u < test + val else "train"


def clips_dir(root: str | Path) -> Path:
    return Path(root) / CLIPS_DIR


def motion_path(root: str | Path, clip_id: str) -> Path:
    return clips_dir(root) / f"{clip_id}{MOTION_SUFFIX}"


def frames_files(root: str | Path, clip_id: str) -> tuple[Path, Path]:
    """(the frames MP4, its JSON) of a clip; either may be absent (a clip without frames)."""
    return clips_dir(root) / f"{clip_id}{FRAMES_SUFFIX}", clips_dir(root) / f"{clip_id}{FRAMES_META_SUFFIX}"


def find_audio(folder: Path, clip_id: str) -> Path | None:
    """The clip's audio file in ``folder`` (the first of ``AUDIO_SUFFIXES`` that exists)."""
    for suffix in AUDIO_SUFFIXES:
        p = folder / f"{clip_id}{suffix}"
        if p.is_file():
            return p
    return None


def face_model_of(root: str | Path) -> str:
    """The face model a dataset's motion is for: its prepared clips' ``settings.face`` (the
    ``clips/<id>.json`` that ``ehead prepare`` writes: "builtin" or "flame"); "builtin" for a folder
    without prepared clips (the synthetic sample data)."""
    faces = set()
    for p in clips_dir(root).glob("*.json"):
        try:
            faces.add(json.loads(p.read_text()).get("settings", {}).get("face"))
        except (OSError, ValueError, AttributeError):
            continue
    return "flame" if "flame" in faces else "builtin"


def is_dataset(root: str | Path) -> bool:
    return (Path(root) / MANIFEST).is_file()


def read_manifest(root: Path, flag: str = "--data") -> pd.DataFrame:
    """The validated manifest of a dataset folder; errors name the file, the line, or ``flag``."""
    path = root / MANIFEST
    if not root.is_dir():
        raise InputError(f"{root}: data folder not found ({flag})")
    if not path.is_file():
        raise InputError(f"{root}: no {MANIFEST} in the data folder ({flag}); see `ehead prepare`")
    try:
        df = pd.read_csv(path, dtype={"id": str, "split": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: unreadable manifest ({first_line(err)})") from None
    for col in ("id", "split"):
        if col not in df.columns:
            raise InputError(f"{path}: manifest has no '{col}' column (columns: {', '.join(df.columns)})")
    if df.empty:
        raise InputError(f"{path}: manifest lists no clips")
    for i, row in enumerate(df.itertuples(index=False), start=2):
        if not isinstance(row.id, str) or not CLIP_ID.match(row.id):
            raise InputError(f"{path}:{i}: clip id {row.id!r} must be letters, digits, '_', '.' or '-'")
        if row.split not in DATA_SPLITS:
            raise InputError(f"{path}:{i}: split {row.split!r} of clip {row.id} is not one of "
                             f"{', '.join(DATA_SPLITS)}")
    dup = df["id"][df["id"].duplicated()]
    if len(dup):
        raise InputError(f"{path}: clip id {dup.iloc[0]} is listed twice")
    return df


def write_manifest(root: Path, manifest: pd.DataFrame) -> None:
    """Write ``root/manifest.csv`` atomically (after every clip file it lists exists)."""
    with atomic_path(root / MANIFEST) as tmp:
        manifest.to_csv(tmp, index=False)


def clip_ids(root: Path, split: str | None = None, flag: str = "--data") -> list[str]:
    """Clip ids of the manifest (all, or one split), in manifest order."""
    table = read_manifest(root, flag=flag)
    if split is not None:
        present = sorted(set(table["split"]))
        table = table[table["split"] == split]
        if table.empty:
            raise InputError(f"--split: {root / MANIFEST} has no clip in split {split!r} "
                             f"(it has {', '.join(present)})")
    return [str(i) for i in table["id"]]


@dataclass
class Clip:
    """One clip held in memory: motion (T, 115), shape (300,), states (T,), and its audio file."""

    id: str
    split: str
    audio_path: Path
    motion: np.ndarray
    shape: np.ndarray
    states: np.ndarray
    n_audio_samples: int
    meta: dict = field(default_factory=dict)
    companions: dict[str, Motion] = field(default_factory=dict)  # as read, at least n_frames long

    @property
    def n_frames(self) -> int:
        return int(self.motion.shape[0])


@dataclass
class DatasetIndex:
    root: Path
    clips: list[Clip]
    problems: list[str]

    def split(self, name: str) -> list[Clip]:
        return [c for c in self.clips if c.split == name]


def load_index(root: str | Path, min_frames: int = MIN_CLIP_FRAMES,
               splits: tuple[str, ...] = DATA_SPLITS, companions: Mapping[str, str] | None = None) -> DatasetIndex:
    """Read the manifest and every clip's motion; check lengths. Problem clips are listed in
    ``problems`` (one line each, naming the clip) and left out. ``companions`` {name: sub-folder}:
    motion NPZs ``root/<sub-folder>/<id>.npz`` read with every clip into ``Clip.companions[name]``
    (a dyadic dataset's {"speaker": "speaker"}); a clip without them is a problem too."""
    root = Path(root)
    df = read_manifest(root)
    companions = dict(companions or {})
    clips, problems = [], []
    for row in df.to_dict("records"):
        cid, split = row["id"], row["split"]
        if split not in splits:
            continue
        audio = find_audio(clips_dir(root), cid)
        if audio is None:
            problems.append(f"clip {cid}: no audio file {CLIPS_DIR}/{cid}{{{','.join(AUDIO_SUFFIXES)}}}")
            continue
        try:
            m = load_motion(motion_path(root, cid))
            extra = {name: load_motion(root / sub / f"{cid}{MOTION_SUFFIX}") for name, sub in companions.items()}
            info = sf.info(str(audio))
        except InputError as err:
            problems.append(f"clip {cid}: {err}")
            continue
        except (RuntimeError, sf.LibsndfileError) as err:
            problems.append(f"clip {cid}: unreadable audio {audio.name} ({err})")
            continue
        n_audio = int(round(info.frames * SAMPLE_RATE / info.samplerate))  # in 16 kHz samples
        audio_frames = n_frames_for(n_audio)
        lengths = (m.n_frames, *(c.n_frames for c in extra.values()), audio_frames)
        if max(lengths) - min(lengths) > LENGTH_SLACK:
            if extra:
                names = ", ".join(["motion", *extra, "audio"])
                problems.append(f"clip {cid}: {names} lengths differ ({lengths} frames)")
            else:
                problems.append(f"clip {cid}: audio has {audio_frames} frames but motion/states have {m.n_frames}")
            continue
        T = min(lengths)
        if T < min_frames:
            problems.append(f"clip {cid}: {T} frames ({T / MOTION_FPS:.2f} s) is shorter than the minimum of "
                            f"{min_frames} frames")
            continue
        meta = {k: v for k, v in row.items() if k not in ("id", "split")}
        clips.append(Clip(cid, split, audio, m.motion[:T], m.shape, m.states[:T], n_audio, meta, extra))
    return DatasetIndex(root, clips, problems)
