"""The live session: microphone and agent audio pushed as it arrives, motion back window by window.

The session clock is the microphone: each time it has delivered another T frames, the Streaming
Audio Scheduler (Algorithm 1) forms a window from the agent audio pushed so far and the most recent
microphone audio, and the generator's per-window API (``Generator.begin`` / ``step``) generates it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ehead_cli.generate.scheduler import StreamingAudioScheduler
from ehead_cli.layout import SAMPLES_PER_FRAME

if TYPE_CHECKING:  # the generator makes sessions (Generator.stream); the session only drives it
    from ehead_cli.avatar.identity import Avatar
    from ehead_cli.generate.generator import Generator


class StreamingSession:
    """Live use: push microphone and agent audio as it arrives; get motion frames window by window.

    The session clock is the microphone: each time it has delivered another T frames, the
    Streaming Audio Scheduler (Algorithm 1) forms a window from the agent audio pushed so far and
    the most recent microphone audio, and the window's T frames are generated and returned. The
    single-stream audio and states of every window are kept (``audio``, ``states``), so the result
    equals ``Generator.generate(session.audio, session.states)`` exactly (the parity test).
    """

    def __init__(self, generator: Generator, avatar: Avatar | None = None, seed: int = 0):
        self.gen, self.T = generator, generator.cfg.window
        self.scheduler = StreamingAudioScheduler(self.T)
        self.job = generator.begin(np.zeros(0, np.float32), np.zeros(0, np.int8), avatar, seed)
        self.job.keep = False  # each window is returned by ``step``; the job holds only the current one
        self._mic_samples = 0  # microphone samples delivered
        self._audio: list[np.ndarray] = []
        self._states: list[np.ndarray] = []
        self.k = 0

    def push(self, samples: np.ndarray, source: str, end_of_utterance: bool = False) -> list[np.ndarray]:
        """Feed 16 kHz samples from ``source`` ("mic" or "agent"). Returns the motion windows
        ((T, 115) raw frames each) that became ready, possibly none."""
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

    def _tick(self) -> np.ndarray:
        tick = self.scheduler.tick()
        self._audio.append(tick.audio)
        self._states.append(tick.states)
        j = self.job  # holds only this window: a long session never re-copies its past
        j.audio, j.states, j.first_window = tick.audio, tick.states, self.k
        x = self.gen.step([j], self.k)[0]
        self.k += 1
        return self.gen.denormalize(x)

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate(self._audio) if self._audio else np.zeros(0, np.float32)

    @property
    def states(self) -> np.ndarray:
        return np.concatenate(self._states) if self._states else np.zeros(0, np.int8)
