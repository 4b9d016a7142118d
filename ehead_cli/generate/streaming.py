"""The live session: microphone and agent audio pushed as it arrives, motion back window by window.

The session clock is the microphone: each time it has delivered another T frames, the Streaming
Audio Scheduler (Algorithm 1) forms a window from the agent audio pushed so far and the most recent
microphone audio, and the generator's per-window API (``Generator.begin`` / ``step``) generates it.
Forming and generating are separate steps (``form`` / ``form_flush`` give ``Window``s,
``generate_windows`` generates the next window of many sessions in one forward pass), so a server
can batch the windows of many conversations; ``push`` and ``flush`` do both at once.

The session depends only on the per-window API (``WindowGenerator``), not on the generator module:
``Generator.stream`` makes sessions, so the import goes one way, generator -> streaming.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ehead_cli.generate.scheduler import StreamingAudioScheduler
from ehead_cli.layout import SAMPLES_PER_FRAME

if TYPE_CHECKING:
    import torch

    from ehead_cli.avatar.identity import Avatar


class WindowGenerator(Protocol):
    """What a session drives: ``ehead_cli.generate.generator.Generator``'s per-window API.
    ``cfg.window``: frames per window (T); ``begin`` starts a job (one with ``keep``, ``audio``,
    ``states`` and ``first_window``); ``step`` generates window k of jobs, (B, T, 115) normalised;
    ``denormalize`` turns frames of it into raw motion."""

    cfg: Any

    def begin(self, audio: np.ndarray, states: np.ndarray, avatar: Avatar | None = None,
              seed: int = 0) -> Any: ...

    def step(self, jobs: list[Any], k: int | Sequence[int]) -> torch.Tensor: ...

    def denormalize(self, x: torch.Tensor) -> np.ndarray: ...


@dataclass(frozen=True)
class Window:
    """A window the scheduler formed, not yet generated: its index ``k`` in the session, its
    single-stream audio (up to T * 640 samples) and states (n <= T; n < T for a flushed last window)."""

    k: int
    audio: np.ndarray
    states: np.ndarray


class StreamingSession:
    """Live use: push microphone and agent audio as it arrives; get motion frames window by window.

    The session clock is the microphone: each time it has delivered another T frames, the
    Streaming Audio Scheduler (Algorithm 1) forms a window from the agent audio pushed so far and
    the most recent microphone audio, and the window's T frames are generated and returned. At the
    end of a conversation, ``flush`` generates the frames of the microphone time since the last
    window. With ``record`` (the default) the single-stream audio and states of every window are
    kept (``audio``, ``states``), so the result equals ``Generator.generate(session.audio,
    session.states)`` exactly (the parity test); without it the session holds only the current
    window, whatever the conversation's length (what a server wants).

    ``form`` / ``form_flush`` run the scheduler only and return the formed ``Window``s; each must
    then be generated, in order, by ``generate`` or ``generate_windows`` (the window's motion
    depends on the previous window's). ``push`` / ``flush`` are the two steps together.
    """

    def __init__(self, generator: WindowGenerator, avatar: Avatar | None = None, seed: int = 0, record: bool = True):
        self.gen, self.T = generator, generator.cfg.window
        self.scheduler = StreamingAudioScheduler(self.T)
        self.job = generator.begin(np.zeros(0, np.float32), np.zeros(0, np.int8), avatar, seed)
        self.job.keep = False  # each window is returned by ``step``; the job holds only the current one
        self.record = record
        self._mic_samples = 0  # microphone samples delivered
        self._audio: list[np.ndarray] = []
        self._states: list[np.ndarray] = []
        self.k = 0  # windows formed
        self.generated = 0  # windows generated

    def push(self, samples: np.ndarray, source: str, end_of_utterance: bool = False) -> list[np.ndarray]:
        """Feed 16 kHz samples from ``source`` ("mic" or "agent"). Returns the motion windows
        ((T, 115) raw frames each) that became ready, possibly none."""
        return [self.generate(w) for w in self.form(samples, source, end_of_utterance)]

    def form(self, samples: np.ndarray, source: str, end_of_utterance: bool = False) -> list[Window]:
        """``push`` without generating: the windows the samples completed, to be generated in order."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        if source == "agent":
            self.scheduler.push_speaking(samples, flush=end_of_utterance)
            return []
        if source != "mic":
            raise ValueError(f"source must be 'mic' or 'agent', got {source!r}")
        out = []
        start = 0
        while start < len(samples):  # deliver the mic in pieces that end exactly on tick times
            tick_at = (self.k + 1) * self.T * SAMPLES_PER_FRAME
            piece = samples[start:start + tick_at - self._mic_samples]
            self.scheduler.push_listening(piece)
            self._mic_samples += len(piece)
            start += len(piece)
            if self._mic_samples >= tick_at:
                out.append(self._tick())
        return out

    def flush(self) -> np.ndarray | None:
        """End of the conversation: the frames (n, 115) of the microphone time since the last window
        (n = ceil(samples / 640) < T), or None when the last window ended exactly on it. The window is
        formed as usual from the microphone padded to its end, then cut to those n frames; like the
        last window of an offline clip, the frames past them are silence and listening, so the parity
        with ``Generator.generate(session.audio, session.states)`` holds. Agent audio not yet played by
        then is dropped."""
        window = self.form_flush()
        return None if window is None else self.generate(window)

    def form_flush(self) -> Window | None:
        """``flush`` without generating: the flushed partial window, or None."""
        pending = self._mic_samples - self.k * self.T * SAMPLES_PER_FRAME
        if pending == 0:
            return None
        self.scheduler.push_listening(np.zeros(self.T * SAMPLES_PER_FRAME - pending, np.float32))
        self._mic_samples = (self.k + 1) * self.T * SAMPLES_PER_FRAME
        return self._tick(keep_samples=pending)

    def generate(self, window: Window) -> np.ndarray:
        """Generate a formed window (this session's next): its (n, 115) raw frames."""
        return generate_windows(self.gen, [(self, window)])[0]

    def _tick(self, keep_samples: int | None = None) -> Window:
        tick = self.scheduler.tick()
        audio, states = tick.audio, tick.states
        if keep_samples is not None:  # a flushed partial window
            audio, states = audio[:keep_samples], states[: -(-keep_samples // SAMPLES_PER_FRAME)]
        if self.record:
            self._audio.append(audio)
            self._states.append(states)
        self.k += 1
        return Window(self.k - 1, audio, states)

    @property
    def audio(self) -> np.ndarray:
        """The single-stream audio of every window so far (``record`` sessions)."""
        return np.concatenate(self._audio) if self._audio else np.zeros(0, np.float32)

    @property
    def states(self) -> np.ndarray:
        return np.concatenate(self._states) if self._states else np.zeros(0, np.int8)


def generate_windows(gen: WindowGenerator, items: list[tuple[StreamingSession, Window]]) -> list[np.ndarray]:
    """Generate the next window of each of several sessions of ``gen`` in one forward pass; returns
    each window's (n, 115) raw frames. Each session's job holds only the window it is given (a long
    session never re-copies its past)."""
    jobs = []
    for session, w in items:
        if w.k != session.generated:
            raise ValueError(f"window {w.k} given, but the session's next window to generate is {session.generated}")
        j = session.job
        j.audio, j.states, j.first_window = w.audio, w.states, w.k
        jobs.append(j)
    x = gen.step(jobs, [w.k for _, w in items])
    out = []
    for i, (session, w) in enumerate(items):
        session.generated += 1
        out.append(gen.denormalize(x[i, : len(w.states)]))
    return out
