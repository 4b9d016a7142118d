"""Training data: a dataset folder -> windows of 100 target frames with their 75 history frames.

Dataset folder (what ``ehead prepare`` and the sample-data generator write)::

    DIR/manifest.csv        id, split (train|val|test), duration, n_frames, [language, identity, ...]
    DIR/clips/<id>.npz      motion NPZ: motion (T, 115), shape (300,), states (T,), fps = 25
    DIR/clips/<id>.flac     the audio the avatar hears (.wav / .flac / .ogg)

One training example is a window starting at frame s of a clip:

    x1         (T, 115)   target motion frames [s, s + T), normalised with the dataset statistics
    states     (T,)       their LS states (+1 speak, -1 listen)
    history    (L, 115)   frames [s - L, s), normalised; frames before the clip start are padded
    history_states (L,)   with the reference frame and state -1 (listening): the *history padding
                          rule*, which generation uses for the first window too
    ref        (115,)     a reference frame drawn from the same clip, normalised
    shape      (100,)     the clip's first 100 shape coefficients
    magnitude  (2,)       [m_r, m_t] of the raw target window, normalised to [0, 1] (ehead_cli.model.stats)
    front / wave          the audio of frames [s, s + T) only: the encoder front end (log-mel, 2T x n_mels,
                          sliced from the clip's cached log-mel) when the front end is window-local, else
                          the raw 16 kHz samples (640 T) for the training loop to encode (frozen HuBERT)
    x0, t      (T, 115), ()  the flow's noise and time, drawn here so that every example is a
                          deterministic function of (seed, epoch, index): resuming, worker count and
                          the number of processes never change what a step sees

    mask       (T,)       1 for frames inside the clip, 0 for end padding (left out of the loss)

Short clips: a clip shorter than a window gives one window at its start whose missing frames are
padded the way generation pads its last, partial window (silent audio, listening states) and masked
out of the loss, so every frame of the clip is learnt and the model sees at training time exactly
the padding it meets at the end of every generated clip.

Length rule: the audio may differ from the motion by at most one frame (rounding in preparation);
the common length is used. Clips shorter than ``MIN_CLIP_FRAMES`` (1 s), unreadable clips and
clips whose lengths disagree are reported by name and left out; an empty training split is an error.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch
from torch.utils.data import Dataset

from ehead_cli.errors import InputError
from ehead_cli.io.audio import load_audio
from ehead_cli.io.motionfile import load_motion
from ehead_cli.layout import LISTEN, MOTION_FPS, N_SHAPE_REF, SAMPLE_RATE, SAMPLES_PER_FRAME, n_frames_for
from ehead_cli.model.stats import MotionStats, motion_magnitude

AUDIO_SUFFIXES = (".flac", ".wav", ".ogg")
MANIFEST = "manifest.csv"
SPLITS = ("train", "val", "test")
LENGTH_SLACK = 1  # frames the audio and motion may differ by
MIN_CLIP_FRAMES = 25  # 1 s: shorter clips carry too little context to learn from
_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


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
        raise InputError(f"{path}: unreadable manifest ({str(err).splitlines()[0]})") from None
    for col in ("id", "split"):
        if col not in df.columns:
            raise InputError(f"{path}: manifest has no '{col}' column (columns: {', '.join(df.columns)})")
    if df.empty:
        raise InputError(f"{path}: manifest lists no clips")
    for i, row in enumerate(df.itertuples(index=False), start=2):
        if not isinstance(row.id, str) or not _ID.match(row.id):
            raise InputError(f"{path}:{i}: clip id {row.id!r} must be letters, digits, '_', '.' or '-'")
        if row.split not in SPLITS:
            raise InputError(f"{path}:{i}: split {row.split!r} of clip {row.id} is not one of {', '.join(SPLITS)}")
    dup = df["id"][df["id"].duplicated()]
    if len(dup):
        raise InputError(f"{path}: clip id {dup.iloc[0]} is listed twice")
    return df


def find_audio(clips_dir: Path, clip_id: str) -> Path | None:
    for suffix in AUDIO_SUFFIXES:
        p = clips_dir / f"{clip_id}{suffix}"
        if p.is_file():
            return p
    return None


def load_index(root: str | Path, min_frames: int = MIN_CLIP_FRAMES, splits: tuple[str, ...] = SPLITS) -> DatasetIndex:
    """Read the manifest and every clip's motion; check lengths. Problem clips are listed in
    ``problems`` (one line each, naming the clip) and left out."""
    root = Path(root)
    df = read_manifest(root)
    clips, problems = [], []
    for row in df.to_dict("records"):
        cid, split = row["id"], row["split"]
        if split not in splits:
            continue
        npz = root / "clips" / f"{cid}.npz"
        audio = find_audio(root / "clips", cid)
        if audio is None:
            problems.append(f"clip {cid}: no audio file clips/{cid}{{{','.join(AUDIO_SUFFIXES)}}}")
            continue
        try:
            m = load_motion(npz)
            info = sf.info(str(audio))
        except InputError as err:
            problems.append(f"clip {cid}: {err}")
            continue
        except (RuntimeError, sf.LibsndfileError) as err:
            problems.append(f"clip {cid}: unreadable audio {audio.name} ({err})")
            continue
        n_audio = int(round(info.frames * SAMPLE_RATE / info.samplerate))  # in 16 kHz samples
        audio_frames = n_frames_for(n_audio)
        if abs(audio_frames - m.n_frames) > LENGTH_SLACK:
            problems.append(f"clip {cid}: audio has {audio_frames} frames but motion/states have {m.n_frames}")
            continue
        T = min(audio_frames, m.n_frames)
        if T < min_frames:
            problems.append(f"clip {cid}: {T} frames ({T / MOTION_FPS:.2f} s) is shorter than the minimum of "
                            f"{min_frames} frames")
            continue
        meta = {k: v for k, v in row.items() if k not in ("id", "split")}
        clips.append(Clip(cid, split, audio, m.motion[:T], m.shape, m.states[:T], n_audio, meta))
    return DatasetIndex(root, clips, problems)


def fit_stats(clips: list[Clip], window: int) -> MotionStats:
    """Normalisation and magnitude statistics from the training clips (every window start, stride 1/4 window)."""
    stride = max(1, window // 4)
    mags = []
    for c in clips:
        m = torch.from_numpy(c.motion)
        for s in range(0, max(0, c.n_frames - window) + 1, stride):  # a short clip: its whole length
            mags.append(motion_magnitude(m[s:s + window]))
    return MotionStats.fit([c.motion for c in clips], torch.stack(mags).numpy())


def _rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index])


class WindowDataset(Dataset):
    """Windows over a list of clips (see the module docstring). ``set_epoch`` changes the random
    parts (window offset within its stride, reference frame, x0, t) deterministically."""

    def __init__(self, clips: list[Clip], stats: MotionStats, window: int, history: int,
                 encoder: torch.nn.Module | None = None, stride: int = 10, seed: int = 0,
                 feature_cache=None):
        if not clips:
            raise InputError("no usable clips for this split")
        self.clips, self.stats, self.T, self.L = clips, stats, window, history
        self.stride, self.seed, self.epoch = stride, seed, 0
        self.window_local = bool(getattr(encoder, "window_local", False))
        # a private CPU copy of a window-local front end (a few kB for the log-mel): DataLoader workers
        # compute front ends with it and never touch the training device
        self.encoder = copy.deepcopy(encoder).cpu().eval() if self.window_local else None
        self.feature_cache = feature_cache
        self._front: dict[str, torch.Tensor] = {}
        # (clip index, first start, last start) per grid slot; a clip shorter than a window has one
        # slot at 0, its window padded at the end (see the module docstring)
        self.slots: list[tuple[int, int, int]] = []
        for ci, c in enumerate(clips):
            last = max(0, c.n_frames - window)
            for s in range(0, last + 1, stride):
                self.slots.append((ci, s, min(s + stride - 1, last)))
        mean = np.asarray(stats.mean, np.float32)
        std = np.asarray(stats.std, np.float32)
        self._norm = [((c.motion - mean) / std).astype(np.float32) for c in clips]

        self.repeat = 1

    def __len__(self) -> int:
        return len(self.slots) * self.repeat

    def repeat_to(self, n: int) -> int:
        """Repeat every window so the dataset has at least ``n`` items (a tiny dataset and a larger
        batch); each repetition draws its own noise, time and reference. Returns the factor."""
        self.repeat = max(1, -(-n // len(self.slots)))
        return self.repeat

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def preload(self) -> None:
        """Compute every clip's front end now (window-local encoders), so DataLoader worker
        processes, which are started afresh each epoch, inherit them instead of recomputing them."""
        if self.window_local:
            for ci in range(len(self.clips)):
                self._clip_front(ci)

    def _clip_front(self, ci: int) -> torch.Tensor:
        """The clip's cached encoder front end (window-local encoders only), (S, F)."""
        c = self.clips[ci]
        if c.id not in self._front:
            wave = load_audio(c.audio_path)
            # whole frames, at least one window: 2 feature frames each (padding is silence)
            n = max(c.n_frames, self.T) * SAMPLES_PER_FRAME
            wave = np.pad(wave[:n], (0, max(0, n - len(wave))))
            if self.feature_cache is not None:
                front = self.feature_cache.frontend(self.encoder, wave)[0]
            else:
                front = self.encoder.frontend(torch.from_numpy(wave)[None])[0]
            self._front[c.id] = front
        return self._front[c.id]

    def _wave(self, c: Clip, start: int) -> torch.Tensor:
        a, n = start * SAMPLES_PER_FRAME, self.T * SAMPLES_PER_FRAME
        wave, rate = sf.read(str(c.audio_path), start=a, stop=a + n, dtype="float32", always_2d=True)
        wave = wave.mean(1)
        if rate != SAMPLE_RATE:  # rare: prepared data is 16 kHz; fall back to the full reader
            wave = load_audio(c.audio_path)[a:a + n]
        out = np.zeros(n, np.float32)
        out[: len(wave)] = wave[:n]
        return torch.from_numpy(out)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ci, lo, hi = self.slots[index % len(self.slots)]
        c, norm = self.clips[ci], self._norm[ci]
        rng = _rng(self.seed, self.epoch, index)
        s = int(rng.integers(lo, hi + 1))
        ref_i = int(rng.integers(0, c.n_frames))
        T, L = self.T, self.L
        ref = norm[ref_i]
        hist = np.empty((L, norm.shape[1]), np.float32)
        hist_states = np.full(L, LISTEN, np.float32)
        n_real = min(L, s)  # history frames inside the clip
        hist[: L - n_real] = ref  # padding rule: reference frame, listening
        if n_real:
            hist[L - n_real:] = norm[s - n_real:s]
            hist_states[L - n_real:] = c.states[s - n_real:s]
        n = min(T, c.n_frames - s)  # real frames in the window; the rest is end padding
        raw = torch.from_numpy(c.motion[s:s + n])
        x1 = np.empty((T, norm.shape[1]), np.float32)
        x1[:n] = norm[s:s + n]
        x1[n:] = norm[s + n - 1]  # masked out of the loss
        states = np.full(T, LISTEN, np.float32)  # past the end: silence and listening, as in generation
        states[:n] = c.states[s:s + n]
        mask = np.zeros(T, np.float32)
        mask[:n] = 1.0
        item = {
            "x1": torch.from_numpy(x1),
            "states": torch.from_numpy(states),
            "mask": torch.from_numpy(mask),
            "history": torch.from_numpy(hist),
            "history_states": torch.from_numpy(hist_states),
            "ref": torch.from_numpy(ref.copy()),
            "shape": torch.from_numpy(c.shape[:N_SHAPE_REF].copy()),
            "magnitude": self.stats.normalize_magnitude(motion_magnitude(raw)).float(),
            "x0": torch.from_numpy(rng.standard_normal((T, norm.shape[1]), dtype=np.float32)),
            "t": torch.tensor(rng.random(dtype=np.float32)),
        }
        if self.window_local:
            item["front"] = self._clip_front(ci)[2 * s: 2 * (s + T)].float()
        else:
            item["wave"] = self._wave(c, s)
        return item

