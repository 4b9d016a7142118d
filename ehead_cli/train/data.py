"""Training windows: a dataset folder's clips -> ``WindowBatch`` items of 100 target frames with their
75 history frames (the window contract of ``ehead_cli.model.windows``).

One training example is the window starting at frame s of a clip, with a reference frame drawn from
the same clip, and the flow's noise x0 and time t drawn here, so that every example is a deterministic
function of (seed, epoch, index): resuming, worker count and the number of processes never change what
a step sees. Its audio is the window's own (frames [s, s + T)): the encoder's front end sliced from the
clip's cached log-mel when the front end is window-local, else the raw 16 kHz samples for the training
loop to encode (frozen HuBERT).

Short clips: a clip shorter than a window gives one window at its start whose missing frames are
padded the way generation pads its last, partial window (silent audio, listening states) and masked
out of the loss, so every frame of the clip is learnt and the model sees at training time exactly
the padding it meets at the end of every generated clip.

Streaming cuts (``stream_cut``, the ``[train]`` option): with that probability a window is cut at a
random frame c (1 <= c < T, uniform) and end-padded from there exactly as a live window of hop
streaming is (``generate.streaming``: what is not known yet is silence and listening): its audio from
frame c is silence (the front end computed from the cut audio) and its states listening. The frames
past the cut are masked out of the loss, as a short clip's padding is: their true motion follows audio
the model is not given, so learning it would teach the model to move to speech it cannot hear, and a
live window never sends them (only its first H frames go out, H <= c in the cases this trains for).
The frames before the cut keep their loss: they are what a live window sends, now learnt with
the padded right context they are generated with. History, reference and magnitude are unchanged.
"""

from __future__ import annotations

import copy

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from ehead_cli.errors import InputError
from ehead_cli.io.audio import load_audio
from ehead_cli.io.dataset import Clip
from ehead_cli.layout import LISTEN, N_SHAPE_REF, SAMPLE_RATE, SAMPLES_PER_FRAME
from ehead_cli.model.stats import MotionStats, motion_magnitude
from ehead_cli.model.windows import WindowBatch, pad_history, window_audio, window_states


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
    """Windows over a list of clips (see the module docstring), as ``WindowBatch`` items without a
    batch dimension (collate with ``WindowBatch.collate``). ``set_epoch`` changes the random parts
    (window offset within its stride, reference frame, x0, t) deterministically."""

    def __init__(self, clips: list[Clip], stats: MotionStats, window: int, history: int,
                 encoder: torch.nn.Module | None = None, stride: int = 10, seed: int = 0,
                 feature_cache=None, stream_cut: float = 0.0):
        if not clips:
            raise InputError("no usable clips for this split")
        self.clips, self.stats, self.T, self.L = clips, stats, window, history
        self.stride, self.seed, self.epoch = stride, seed, 0
        self.stream_cut = float(stream_cut)
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
        return torch.from_numpy(window_audio(wave, 0, self.T))

    def __getitem__(self, index: int) -> WindowBatch:
        return self.window_at(index)[0]

    def window_at(self, index: int) -> tuple[WindowBatch, int, int]:
        """Item ``index`` with where it comes from: (window, clip index, first frame); Stage II
        fetches the video frames of the same window."""
        ci, lo, hi = self.slots[index % len(self.slots)]
        c, norm = self.clips[ci], self._norm[ci]
        rng = _rng(self.seed, self.epoch, index)
        s = int(rng.integers(lo, hi + 1))
        ref_i = int(rng.integers(0, c.n_frames))
        T = self.T
        ref = norm[ref_i]
        hist, hist_states = pad_history(norm, c.states, s, self.L, ref)
        states, n = window_states(c.states, s, T)  # n real frames; the rest is end padding
        raw = torch.from_numpy(c.motion[s:s + n])
        # a streaming cut (module docstring); nothing is drawn without them, so runs with stream_cut 0
        # see the examples they always saw
        cut = int(rng.integers(1, T)) if self.stream_cut > 0 and rng.random() < self.stream_cut else None
        x1 = np.empty((T, norm.shape[1]), np.float32)
        x1[:n] = norm[s:s + n]
        x1[n:] = norm[s + n - 1]  # masked out of the loss
        mask = np.zeros(T, np.float32)
        mask[:n] = 1.0
        wave = front = None
        if cut is not None and cut < n:
            states[cut:] = LISTEN  # window_states gave a new array
            mask[cut:] = 0.0
            wave = self._wave(c, s)
            wave[cut * SAMPLES_PER_FRAME:] = 0.0
            if self.window_local:
                front = self.encoder.frontend(wave[None])[0].float()
                wave = None
        elif self.window_local:
            front = self._clip_front(ci)[2 * s: 2 * (s + T)].float()
        else:
            wave = self._wave(c, s)
        window = WindowBatch(
            states=torch.from_numpy(states),
            history=torch.from_numpy(hist),
            history_states=torch.from_numpy(hist_states),
            shape=torch.from_numpy(c.shape[:N_SHAPE_REF].copy()),
            ref=torch.from_numpy(ref.copy()),
            magnitude=self.stats.normalize_magnitude(motion_magnitude(raw)).float(),
            x0=torch.from_numpy(rng.standard_normal((T, norm.shape[1]), dtype=np.float32)),
            front=front,
            wave=wave,
            x1=torch.from_numpy(x1),
            t=torch.tensor(rng.random(dtype=np.float32)),
            mask=torch.from_numpy(mask),
        )
        return window, ci, s
