"""Importers for the public listener datasets' layouts -> a dyadic dataset folder (``listener.data``).

Both datasets store DECA / EMOCA FLAME codes: 50 expression coefficients and a 6-dim pose, [global
head rotation (3, axis-angle), jaw (3, axis-angle)] (DECA's ``posecode``). Mapping into ehead's
115-dim layout (``ehead_cli.layout``), per frame:

    exp[0:50]   -> expression[0:50]    (FLAME's first 50 expression components; 50-99 stay 0)
    pose[0:3]   -> head rotation [109:112]
    pose[3:6]   -> jaw [100:103]
    eyes [103:109], head translation [112:115] -> 0 (neither dataset has them)
    shape (300,) -> 0 (the datasets give no identity shape; FLAME renders the mean head)

Frame rates are resampled to 25 fps by linear interpolation of the coefficients (the small
rotations of a face make that adequate for axis-angle vectors). The expression coefficients are
FLAME's, so render imported clips with FLAME (``--flame``): the built-in head's expression
components 0-10 are its own named shapes, not FLAME's.

DualTalk: one NPZ per side of a clip with ``exp`` (T, 50) and ``pose`` (T, 6), and the speaker's audio.
The clips are listed explicitly (``DyadSource``: id, listener NPZ, speaker NPZ, speaker audio, split,
listener identity), e.g. from a CSV with those columns (``sources_from_csv``).

Learning to Listen: ``<person>/<split>/p{0,1}_list_faces_clean_deca.npy`` (N, 64, 184) when p0 / p1
listens, ``p{1,0}_speak_faces_clean_deca.npy`` (N, 64, 184) the other person speaking at the same
time, 184 = expression 50 + pose 6 + DECA detail 128, at 30 fps. Sequence i of p0_list goes with
sequence i of p1_speak (and p1_list with p0_speak). Its audio ships only as 128 mel features, not a
waveform: the imported clips get a silent audio track unless ``audio_dir`` holds
``<person>_<split>_<side>_<i>.wav`` files, and the manifest's ``audio`` column says which.
"""

from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from ehead_cli.errors import InputError
from ehead_cli.io.atomic import atomic_path
from ehead_cli.io.audio import load_audio
from ehead_cli.io.dataset import DATA_SPLITS
from ehead_cli.io.motionfile import Motion, save_motion
from ehead_cli.layout import (
    EXPR,
    JAW,
    LISTEN,
    MOTION_DIM,
    MOTION_FPS,
    N_SHAPE,
    ROT,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    SPEAK,
)
from ehead_cli.listener.data import CLIPS_DIR, SPEAKER_DIR

DECA_EXP = 50
DECA_POSE = 6
DUALTALK_FPS = 25.0
L2L_FPS = 30.0
L2L_FILES = {"p0": ("p0_list_faces_clean_deca.npy", "p1_speak_faces_clean_deca.npy"),
             "p1": ("p1_list_faces_clean_deca.npy", "p0_speak_faces_clean_deca.npy")}


def deca_to_motion(exp: np.ndarray, pose: np.ndarray, fps: float, source: str = "input") -> np.ndarray:
    """(T, 50) expression and (T, 6) [rotation, jaw] at ``fps`` -> (T', 115) float32 at 25 fps."""
    exp, pose = np.asarray(exp, np.float64), np.asarray(pose, np.float64)
    if exp.ndim != 2 or exp.shape[1] != DECA_EXP or pose.ndim != 2 or pose.shape[1] != DECA_POSE:
        raise InputError(f"{source}: expected exp (T, {DECA_EXP}) and pose (T, {DECA_POSE}), got {exp.shape} and "
                         f"{pose.shape}")
    if len(exp) != len(pose) or len(exp) < 2:
        raise InputError(f"{source}: exp and pose need the same number (>= 2) of frames, got {len(exp)} and "
                         f"{len(pose)}")
    if not (np.isfinite(exp).all() and np.isfinite(pose).all()):
        raise InputError(f"{source}: exp or pose contains NaN or infinite values")
    motion = np.zeros((len(exp), MOTION_DIM))
    motion[:, EXPR.start: EXPR.start + DECA_EXP] = exp
    motion[:, ROT] = pose[:, :3]
    motion[:, JAW] = pose[:, 3:]
    return resample(motion, fps, MOTION_FPS).astype(np.float32)


def resample(x: np.ndarray, fps_in: float, fps_out: float) -> np.ndarray:
    """(T, D) at ``fps_in`` -> (round(T fps_out / fps_in), D) by linear interpolation in time."""
    if fps_in == fps_out:
        return x
    T = len(x)
    n = max(1, int(round(T * fps_out / fps_in)))
    src = np.minimum(np.arange(n) * fps_in / fps_out, T - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, T - 1)
    w = (src - lo)[:, None]
    return x[lo] * (1 - w) + x[hi] * w


def _write_clip(out: Path, cid: str, listener: np.ndarray, speaker: np.ndarray, wave: np.ndarray | None) -> int:
    """Write one clip; the audio is cut or padded (silence) to the motion's length. Returns T."""
    T = min(len(listener), len(speaker))
    n = T * SAMPLES_PER_FRAME
    wave = np.zeros(n, np.float32) if wave is None else np.pad(wave[:n], (0, max(0, n - len(wave))))
    with atomic_path(out / CLIPS_DIR / f"{cid}.flac") as tmp:
        sf.write(str(tmp), np.clip(wave, -1, 1), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    shape = np.zeros(N_SHAPE, np.float32)
    save_motion(out / CLIPS_DIR / f"{cid}.npz", Motion(listener[:T], shape, np.full(T, LISTEN, np.int8), MOTION_FPS))
    save_motion(out / SPEAKER_DIR / f"{cid}.npz", Motion(speaker[:T], shape, np.full(T, SPEAK, np.int8), MOTION_FPS))
    return T


def _write_manifest(out: Path, rows: list[dict]) -> pd.DataFrame:
    if not rows:
        raise InputError("no clip was imported")
    table = pd.DataFrame(rows)
    with atomic_path(out / "manifest.csv") as tmp:
        table.to_csv(tmp, index=False)
    return table


# --- DualTalk ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DyadSource:
    """One DualTalk clip: the listener's and the speaker's NPZ (``exp`` (T, 50), ``pose`` (T, 6)), the
    speaker's audio, the split and the listener's identity."""

    id: str
    listener: Path
    speaker: Path
    audio: Path
    split: str = "train"
    identity: str | None = None


def read_dualtalk_npz(path: Path, fps: float = DUALTALK_FPS) -> np.ndarray:
    """A DualTalk side's NPZ -> (T', 115) at 25 fps (object arrays refused: no unpickling)."""
    if not path.is_file():
        raise InputError(f"{path}: DualTalk NPZ not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("exp", "pose") if k not in z.files]
            if missing:
                raise InputError(f"{path}: missing key(s) {', '.join(missing)} (a DualTalk side has exp and pose)")
            exp, pose = z["exp"], z["pose"]
    except InputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise InputError(f"{path}: not a readable NPZ file ({err})") from None
    return deca_to_motion(exp, pose, fps, str(path))


def sources_from_csv(path: str | Path) -> list[DyadSource]:
    """``id,listener,speaker,audio[,split,identity]`` rows, paths relative to the CSV's folder."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: clip list not found")
    out = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        need = {"id", "listener", "speaker", "audio"}
        if not need <= set(reader.fieldnames or ()):
            raise InputError(f"{path}: needs the columns {', '.join(sorted(need))} (has {reader.fieldnames})")
        for line, row in enumerate(reader, start=2):
            split = (row.get("split") or "train").strip()
            if split not in DATA_SPLITS:
                raise InputError(f"{path}:{line}: split {split!r} is not one of {', '.join(DATA_SPLITS)}")
            out.append(DyadSource(row["id"].strip(), path.parent / row["listener"], path.parent / row["speaker"],
                                  path.parent / row["audio"], split, (row.get("identity") or "").strip() or None))
    return out


def import_dualtalk(sources: list[DyadSource], out: str | Path, fps: float = DUALTALK_FPS) -> pd.DataFrame:
    """Write ``sources`` as a dyadic dataset folder ``out``; returns the manifest."""
    out = Path(out)
    rows = []
    for s in sources:
        lis, spk = read_dualtalk_npz(s.listener, fps), read_dualtalk_npz(s.speaker, fps)
        if abs(len(lis) - len(spk)) > 1:
            raise InputError(f"{s.listener} and {s.speaker}: {len(lis)} vs {len(spk)} frames at 25 fps")
        T = _write_clip(out, s.id, lis, spk, load_audio(s.audio))
        rows.append({"id": s.id, "split": s.split, "duration": T / MOTION_FPS, "n_frames": T,
                     "identity": s.identity or s.id, "audio": "speaker", "source": "DualTalk"})
    return _write_manifest(out, rows)


# --- Learning to Listen ----------------------------------------------------------------------------------
def _read_l2l(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{path}: Learning-to-Listen file not found")
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable .npy array ({err})") from None
    if a.ndim != 3 or a.shape[2] < DECA_EXP + DECA_POSE:
        raise InputError(f"{path}: expected (N, frames, 184) DECA features, got {a.shape}")
    return a


def import_learning2listen(split_dir: str | Path, out: str | Path, person: str, split: str = "train",
                           audio_dir: str | Path | None = None, fps: float = L2L_FPS,
                           out_split: str | None = None) -> pd.DataFrame:
    """Both directions of one L2L split folder (``<person>/<split>/``) into the dyadic folder ``out``,
    clip ids ``<person>_<split>_<side>_<i>`` (side = who listens); ``out_split`` (default ``split``
    when it is train/val/test, else train) is the clips' split. Clips already in ``out``'s manifest
    are kept, so several persons / splits can be imported into one folder."""
    split_dir, out = Path(split_dir), Path(out)
    target = out_split or (split if split in DATA_SPLITS else "train")
    rows = []
    for side, (list_name, speak_name) in L2L_FILES.items():
        lis_all, spk_all = _read_l2l(split_dir / list_name), _read_l2l(split_dir / speak_name)
        if lis_all.shape[:2] != spk_all.shape[:2]:
            raise InputError(f"{split_dir}: {list_name} {lis_all.shape} and {speak_name} {spk_all.shape} do not pair")
        for i in range(lis_all.shape[0]):
            cid = f"{person}_{split}_{side}_{i:05d}"
            where = f"{split_dir} sequence {i}"
            wave, audio = None, "silent (L2L ships mel features only)"
            if audio_dir is not None and (Path(audio_dir) / f"{cid}.wav").is_file():
                wave, audio = load_audio(Path(audio_dir) / f"{cid}.wav"), "speaker"
            lis = deca_to_motion(lis_all[i, :, :DECA_EXP], lis_all[i, :, DECA_EXP: DECA_EXP + DECA_POSE], fps, where)
            spk = deca_to_motion(spk_all[i, :, :DECA_EXP], spk_all[i, :, DECA_EXP: DECA_EXP + DECA_POSE], fps, where)
            T = _write_clip(out, cid, lis, spk, wave)
            rows.append({"id": cid, "split": target, "duration": T / MOTION_FPS, "n_frames": T,
                         "identity": f"{person}" if side == "p0" else f"{person}_partner", "audio": audio,
                         "source": "Learning to Listen"})
    if (out / "manifest.csv").is_file():
        old = pd.read_csv(out / "manifest.csv", dtype={"id": str})
        rows = [r for r in old.to_dict("records") if r["id"] not in {x["id"] for x in rows}] + rows
    return _write_manifest(out, rows)
