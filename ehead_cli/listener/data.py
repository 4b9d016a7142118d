"""Dyadic data: a dataset folder of speaker-listener clips -> VQ windows and LM token windows.

Folder (what ``python -m ehead_cli.sampledata.dyadic`` and the importers write)::

    DIR/manifest.csv        id, split (train|val|test), [identity (the listener), ...]
    DIR/clips/<id>.npz      the listener's motion NPZ (T, 115)
    DIR/clips/<id>.ogg|flac|wav  the speaker's audio, 16 kHz (what the listener hears)
    DIR/speaker/<id>.npz    the speaker's motion NPZ (T, 115)

The listener's ``clips/<id>.npz`` is the avatar's motion of an ordinary ehead dataset folder, so
``ehead eval --gt DIR --speaker DIR/speaker`` evaluates a listener's predictions directly. A clip's
lengths may differ by one frame; the common length is used. The windows are datasets for the shared
training loop (``ehead_cli.train.loop``): every item is a function of (seed, epoch, index), so
resuming, the worker count and the number of processes never change what a step sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ehead_cli.errors import InputError
from ehead_cli.io.audio import load_audio
from ehead_cli.io.dataset import CLIPS_DIR as CLIPS_DIR
from ehead_cli.io.dataset import load_index

SPEAKER_DIR = "speaker"
SPEAKER = "speaker"  # the companion motion's name in the dataset index


@dataclass
class Dyad:
    """One clip in memory: listener and speaker motion (T, 115), their shapes (300,), the listener's
    identity name, the speaker's audio path."""

    id: str
    split: str
    audio_path: Path
    listener: np.ndarray
    speaker: np.ndarray
    listener_shape: np.ndarray
    speaker_shape: np.ndarray
    speaker_states: np.ndarray
    identity: str
    meta: dict = field(default_factory=dict)
    _wave: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_frames(self) -> int:
        return int(self.listener.shape[0])

    def wave(self) -> np.ndarray:
        """(N,) 16 kHz speaker audio, decoded once and kept (Opus decoding is the slow part of tokenising)."""
        if self._wave is None:
            self._wave = load_audio(self.audio_path)
        return self._wave


@dataclass
class DyadIndex:
    root: Path
    dyads: list[Dyad]
    problems: list[str]

    def split(self, name: str) -> list[Dyad]:
        return [d for d in self.dyads if d.split == name]


def load_dyads(root: str | Path, min_frames: int = 32) -> DyadIndex:
    """Read the manifest and every clip through the dataset index (``ehead_cli.io.dataset.load_index``
    with the speaker's motion as a companion); clips that fail (missing or unreadable files, lengths
    that disagree, shorter than ``min_frames``) are listed in ``problems`` by name and left out."""
    index = load_index(root, min_frames=min_frames, companions={SPEAKER: SPEAKER_DIR})
    dyads = []
    for c in index.clips:
        spk, T = c.companions[SPEAKER], c.n_frames
        identity = c.meta.get("identity")
        identity = c.id if identity is None or (isinstance(identity, float) and np.isnan(identity)) else str(identity)
        meta = {k: v for k, v in c.meta.items() if k != "identity"}
        dyads.append(Dyad(c.id, c.split, c.audio_path, c.motion, spk.motion[:T], c.shape, spk.shape,
                          spk.states[:T], identity, meta))
    return DyadIndex(index.root, dyads, index.problems)


@dataclass(frozen=True)
class MotionNorm:
    """Per-dimension mean and std (115,) of the training motion (listener and speaker pooled)."""

    mean: np.ndarray
    std: np.ndarray

    def apply(self, motion: np.ndarray) -> np.ndarray:
        return ((np.asarray(motion, np.float32) - self.mean) / self.std).astype(np.float32)

    def invert(self, motion: np.ndarray) -> np.ndarray:
        return (np.asarray(motion, np.float32) * self.std + self.mean).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, d: dict) -> MotionNorm:
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))


def fit_norm(dyads: list[Dyad], std_floor: float) -> MotionNorm:
    frames = np.concatenate([np.concatenate([d.listener, d.speaker]) for d in dyads]).astype(np.float64)
    return MotionNorm(frames.mean(0).astype(np.float32), np.maximum(frames.std(0), std_floor).astype(np.float32))


def identity_stats(motion_norm: np.ndarray) -> np.ndarray:
    """(T, 115) normalised motion -> (230,) [mean, std] over frames: the identity code's input
    (the same numbers as ``vqvae.identity_features``)."""
    m = np.asarray(motion_norm, np.float64)
    return np.concatenate([m.mean(0), m.std(0)]).astype(np.float32)


def fit_identities(dyads: list[Dyad], norm: MotionNorm) -> dict[str, np.ndarray]:
    """identity name -> (230,) statistics of all its (training) listener frames pooled."""
    by_id: dict[str, list[np.ndarray]] = {}
    for d in dyads:
        by_id.setdefault(d.identity, []).append(norm.apply(d.listener))
    return {k: identity_stats(np.concatenate(v)) for k, v in sorted(by_id.items())}


class TensorDict(dict):
    """A training item or batch: named tensors (what the training loop moves to its device)."""

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TensorDict:
        return TensorDict({k: v.to(device, non_blocking=non_blocking) for k, v in self.items()})

    @classmethod
    def collate(cls, items: list[dict[str, torch.Tensor]]) -> TensorDict:
        """Stack items (every item has the same keys) into a batch."""
        return cls({k: torch.stack([it[k] for it in items]) for k in items[0]})


class _Slots(Dataset):
    """A dataset of ``slots`` whose items are functions of (seed, epoch, index): the shared loop's
    exact resume on any number of processes. ``repeat_to`` repeats the slots for a batch larger than
    the dataset (each repetition draws its own randomness)."""

    slots: list
    seed: int
    epoch: int = 0
    repeat: int = 1

    def __len__(self) -> int:
        return len(self.slots) * self.repeat

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def repeat_to(self, n: int) -> int:
        self.repeat = max(1, -(-n // len(self.slots)))
        return self.repeat

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])


class VQWindows(_Slots):
    """VQ-VAE training windows: every ``window``-frame stretch (stride window / 4) of the listeners'
    and the speakers' motion, with the identity statistics of whoever moves (a listener: its
    identity's pooled statistics; a speaker: its own clip's). An item is {"motion" (window, 115),
    "stats" (230,)}, its start jittered inside its stride by (seed, epoch, index)."""

    def __init__(self, dyads: list[Dyad], norm: MotionNorm, identities: dict[str, np.ndarray], window: int,
                 seed: int = 0, speakers: bool = True):
        self.window, self.seed = window, seed
        self.motions: list[np.ndarray] = []
        self.stats: list[np.ndarray] = []
        for d in dyads:
            lis = norm.apply(d.listener)
            self.motions.append(lis)
            self.stats.append(identities.get(d.identity, identity_stats(lis)))
            if speakers:
                spk = norm.apply(d.speaker)
                self.motions.append(spk)
                self.stats.append(identity_stats(spk))
        self.stride = max(1, window // 4)
        self.slots = [(i, s) for i, m in enumerate(self.motions) for s in range(0, len(m) - window + 1, self.stride)]
        if not self.slots:
            raise InputError(f"no clip is at least {window} frames long for VQ training")

    def __getitem__(self, index: int) -> TensorDict:
        i, s = self.slots[index % len(self.slots)]
        s = min(s + int(self._rng(index).integers(0, self.stride)), len(self.motions[i]) - self.window)
        return TensorDict(motion=torch.from_numpy(self.motions[i][s: s + self.window]),
                          stats=torch.from_numpy(self.stats[i]))


@dataclass
class DyadTokens:
    """One clip as LM tokens, per r-frame group: listener / speaker codes (G,), speech (G, n), emotion (G,)."""

    id: str
    listener: np.ndarray
    speaker: np.ndarray
    speech: np.ndarray | None
    emotion: np.ndarray | None

    @property
    def n_groups(self) -> int:
        return len(self.speaker)


class LMWindows(_Slots):
    """LM training windows of ``groups`` consecutive token groups (any start group) of the clips that
    have that many. An item holds the window's "listener", "speaker" (groups,), "speech" (groups, n)
    and "emotion" (groups,) tokens, and with ``corrupt`` (the teacher-forcing corruption, training
    only) "listener_in": each listener token kept with probability ``pkeep`` and otherwise a random
    code of ``n_codes``, drawn from (seed, epoch, index)."""

    def __init__(self, clips: list[DyadTokens], groups: int, seed: int = 0, pkeep: float = 1.0,
                 n_codes: int = 0):
        self.clips = [c for c in clips if c.n_groups >= groups]
        self.skipped = [c.id for c in clips if c.n_groups < groups]
        if not self.clips:
            raise InputError(f"no clip has {groups} token groups for LM training (lower lm.window_groups)")
        self.groups, self.seed, self.pkeep, self.n_codes = groups, seed, pkeep, n_codes
        self.slots = [(i, s) for i, c in enumerate(self.clips) for s in range(c.n_groups - groups + 1)]

    def __getitem__(self, index: int) -> TensorDict:
        i, s = self.slots[index % len(self.slots)]
        c, e = self.clips[i], s + self.groups
        item = TensorDict(listener=torch.from_numpy(c.listener[s:e]).long(),
                          speaker=torch.from_numpy(c.speaker[s:e]).long())
        if c.speech is not None:
            item["speech"] = torch.from_numpy(c.speech[s:e]).long()
            item["emotion"] = torch.from_numpy(c.emotion[s:e]).long()
        if self.pkeep < 1.0:
            rng = self._rng(index)
            keep = rng.random(self.groups) < self.pkeep
            item["listener_in"] = torch.from_numpy(np.where(keep, c.listener[s:e],
                                                            rng.integers(0, self.n_codes, self.groups))).long()
        return item


def whole_groups(n_frames: int, rate: int) -> int:
    """Frames of the whole r-frame groups in ``n_frames``."""
    return (n_frames // rate) * rate


def pad_to_groups(motion: np.ndarray, rate: int) -> np.ndarray:
    """(T, 115) -> (ceil(T / r) r, 115), the last frame repeated (generation pads the speaker so)."""
    T = len(motion)
    n = -(-T // rate) * rate
    if n == T:
        return np.asarray(motion, np.float32)
    return np.concatenate([motion, np.repeat(motion[-1:], n - T, 0)]).astype(np.float32)

