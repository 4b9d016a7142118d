"""The window contract shared by training and generation: what one window of the DiT sees.

A clip is cut into windows of T = 100 current frames, each conditioned on the L = 75 frames before it:

    x1             (T, 115)   target motion frames [s, s + T), normalised (training only)
    states         (T,)       their LS states (+1 speak, -1 listen)
    history        (L, 115)   frames [s - L, s), normalised
    history_states (L,)       their states
    ref            (115,)     a reference motion frame, normalised
    shape          (100,)     the first 100 shape coefficients
    magnitude      (2,)       [m_r, m_t] in [0, 1]
    x0             (T, 115)   the flow's noise
    t              ()         the flow's time (training only)
    mask           (T,)       1 for frames inside the clip, 0 for end padding (training only)
    wave / front              the audio of frames [s, s + T) only: raw 16 kHz samples (640 T), or the
                              encoder's front end (log-mel, 2T x n_mels) when it is window-local

Padding rules (one definition each, used by the dataset and the generator alike):

* history padding: frames before the clip start are the reference frame in the listening state
  (``pad_history``), so the first generated window sees what training showed it;
* end padding: frames past the clip end are silence in the listening state (``window_states``, ``window_audio``); their
  motion is left out of the loss in training and dropped in generation.

``WindowBatch`` is the typed batch: one window per item (no batch dimension) from the dataset, stacked
by ``WindowBatch.collate`` (the DataLoader's ``collate_fn``), and built batched by the generator.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from ehead_cli.layout import LISTEN, SAMPLES_PER_FRAME


@dataclass
class WindowBatch:
    """A batch of windows (leading dimension B), or one window from the dataset (no B)."""

    states: torch.Tensor  # (B, T) float, +1 / -1
    history: torch.Tensor  # (B, L, 115) normalised
    history_states: torch.Tensor  # (B, L)
    shape: torch.Tensor  # (B, 100)
    ref: torch.Tensor  # (B, 115) normalised
    magnitude: torch.Tensor  # (B, 2) in [0, 1]
    x0: torch.Tensor  # (B, T, 115) noise
    wave: torch.Tensor | None = None  # (B, 640 T) at 16 kHz
    front: torch.Tensor | None = None  # (B, 2T, F) encoder front end at 50 Hz
    x1: torch.Tensor | None = None  # (B, T, 115) target (training)
    t: torch.Tensor | None = None  # (B,) flow time (training)
    mask: torch.Tensor | None = None  # (B, T) 1 inside the clip (training)

    def condition_inputs(self) -> tuple[torch.Tensor, ...]:
        """The DiT's per-window condition inputs after the audio, in its argument order:
        states, history, history_states, shape, ref, magnitude."""
        return self.states, self.history, self.history_states, self.shape, self.ref, self.magnitude

    def tensors(self) -> dict[str, torch.Tensor]:
        """The fields that are set, by name."""
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}

    def to(self, device: torch.device | str, non_blocking: bool = False) -> WindowBatch:
        return replace(self, **{k: v.to(device, non_blocking=non_blocking) for k, v in self.tensors().items()})

    def __len__(self) -> int:
        return int(self.states.shape[0])

    @classmethod
    def collate(cls, items: list[WindowBatch]) -> WindowBatch:
        """Stack single windows into a batch (every item has the same fields set)."""
        out = {}
        for f in fields(cls):
            values = [getattr(it, f.name) for it in items]
            out[f.name] = None if values[0] is None else torch.stack(values)
        return cls(**out)


def pad_history(norm: np.ndarray, states: np.ndarray, start: int, history: int,
                ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """History of the window starting at frame ``start`` of a clip: frames [start - L, start) of
    ``norm`` (N, D) and ``states`` (N,), padded before the clip start with ``ref`` (D,) listening."""
    hist = np.empty((history, norm.shape[1]), np.float32)
    hist_states = np.full(history, LISTEN, np.float32)
    n_real = min(history, start)
    hist[: history - n_real] = ref
    if n_real:
        hist[history - n_real:] = norm[start - n_real:start]
        hist_states[history - n_real:] = states[start - n_real:start]
    return hist, hist_states


def initial_history(ref: torch.Tensor, history: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The history before a clip's first frame: ``ref`` (D,) repeated L times, listening."""
    return ref.expand(history, ref.shape[-1]).clone(), torch.full((history,), float(LISTEN))


def window_states(states: np.ndarray, start: int, window: int) -> tuple[np.ndarray, int]:
    """States (T,) of frames [start, start + T) of a clip's per-frame ``states``, listening past the
    clip end (end padding), and the number of frames inside the clip."""
    q = np.full(window, LISTEN, np.float32)
    qs = states[start:start + window]
    q[: len(qs)] = qs
    return q, len(qs)


def window_audio(audio: np.ndarray, start: int, window: int) -> np.ndarray:
    """16 kHz audio (640 T,) of frames [start, start + T) of a clip, silence past its end."""
    n = window * SAMPLES_PER_FRAME
    wave = np.zeros(n, np.float32)
    seg = audio[start * SAMPLES_PER_FRAME:start * SAMPLES_PER_FRAME + n]
    wave[: len(seg)] = seg
    return wave
