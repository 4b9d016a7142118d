"""The live session: microphone and agent audio pushed as it arrives, motion back hop by hop.

The session clock is the microphone. With hop H (1 <= H <= T frames; H = T is the paper's streaming,
the default), each time the microphone has delivered another H frames the session forms the window
that starts at the first frame not yet sent: its first H frames are a tick of the Streaming Audio
Scheduler (Algorithm 1 over H frames), the frames after them what is already known (agent audio
queued ahead, which a TTS usually delivers before it plays; with a look-ahead of A frames, the A
microphone or agent frames past the H), and the rest of the window end padding (silence, listening:
the window contract). The window's history is the last 75 frames sent (motion and states), and only
its first H frames are sent; the rest is kept only to cross-fade the next window's first ``blend``
frames (3) from this window's prediction of them, so a hop's first frame does not jump (the seam
ratio of benchmarks/hop_quality.py at H = 5: 1.60 without, 1.10 with). A look-ahead delays each
window by A frames (A <= T - H). At H = T and A = 0 every window is a whole tick and the session equals
offline generation of its recorded audio and states exactly (the parity test).

Forming and generating are separate steps (``form`` / ``form_flush`` give ``Window``s,
``generate_windows`` generates the next window of many sessions in one forward pass), so a server
can batch the windows of many conversations; ``push`` and ``flush`` do both at once.

The session depends only on the per-window API (``WindowGenerator``), not on the generator module:
``Generator.stream`` makes sessions, so the import goes one way, generator -> streaming.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from ehead_cli import checks
from ehead_cli.generate.scheduler import StreamingAudioScheduler
from ehead_cli.layout import SAMPLES_PER_FRAME

if TYPE_CHECKING:
    from ehead_cli.avatar.identity import Avatar

BLEND_FRAMES = 3  # a window's first frames cross-faded from the previous window's prediction of them


class WindowGenerator(Protocol):
    """What a session drives: ``ehead_cli.generate.generator.Generator``'s per-window API.
    ``cfg.window``: frames per window (T); ``begin`` starts a job (one with ``keep``, ``audio``,
    ``states`` and ``first_window``); ``step`` generates window k of jobs, (B, T, 115) normalised;
    ``denormalize`` turns frames of it into raw motion."""

    cfg: Any

    def begin(self, audio: np.ndarray, states: np.ndarray, avatar: Avatar | None = None,
              seed: int = 0) -> Any: ...

    def step(self, jobs: list[Any], k: int | Sequence[int],
             sent: Callable[[int, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor: ...

    def denormalize(self, x: torch.Tensor) -> np.ndarray: ...


@dataclass(frozen=True)
class Window:
    """A window the session formed, not yet generated: its index ``k`` in the session, the session
    frame it starts at (``start``: k H), its single-stream audio (up to T * 640 samples) and states
    (up to T; the frames past them are end padding), and ``n_send``: how many of its first frames are
    sent (H; fewer for a flushed last window)."""

    k: int
    audio: np.ndarray
    states: np.ndarray
    start: int
    n_send: int

    @property
    def sent_states(self) -> np.ndarray:
        """The states of the frames sent."""
        return self.states[: self.n_send]


class StreamingSession:
    """Live use: push microphone and agent audio as it arrives; get motion frames hop by hop
    (module docstring: ``hop`` H frames, ``lookahead`` A frames).

    At the end of a conversation, ``flush`` generates the frames of the microphone time not yet
    sent. With ``record`` (the default) the single-stream audio and states of every frame sent are
    kept (``audio``, ``states``); at H = T, A = 0 the result equals ``Generator.generate(session.audio,
    session.states)`` exactly; without it the session holds only the current window, whatever the
    conversation's length (what a server wants).

    ``form`` / ``form_flush`` run the scheduler only and return the formed ``Window``s; each must
    then be generated, in order, by ``generate`` or ``generate_windows`` (the window's motion
    depends on the frames sent before it). ``push`` / ``flush`` are the two steps together.
    """

    def __init__(self, generator: WindowGenerator, avatar: Avatar | None = None, seed: int = 0, record: bool = True,
                 hop: int | None = None, lookahead: int | None = None, blend: int = BLEND_FRAMES):
        self.gen, self.T = generator, generator.cfg.window
        self.hop = checks.hop(hop, self.T)
        self.lookahead = checks.lookahead(lookahead, self.hop, self.T)
        if isinstance(blend, bool) or not isinstance(blend, int) or blend < 0:
            raise ValueError(f"blend must be a whole number of frames >= 0, got {blend!r}")
        self.blend = blend
        self._tail: torch.Tensor | None = None  # the last window's normalised frames past those it sent
        self.scheduler = StreamingAudioScheduler(self.T)
        self.job = generator.begin(np.zeros(0, np.float32), np.zeros(0, np.int8), avatar, seed)
        self.job.keep = False  # each window is returned by ``step``; the job holds only the current one
        self.record = record
        self._mic_samples = 0  # microphone samples delivered (and a flush's padding)
        self._mic_end = 0  # session time not yet flushed ends here, samples
        self._audio: list[np.ndarray] = []
        self._states: list[np.ndarray] = []
        self.k = 0  # windows formed
        self.committed = 0  # session frames the windows formed so far cover: k H
        self.generated = 0  # windows generated

    @property
    def delay_frames(self) -> int:
        """Frames of microphone time between a window's first frame and the moment it is formed: H + A."""
        return self.hop + self.lookahead

    def push(self, samples: np.ndarray, source: str, end_of_utterance: bool = False) -> list[np.ndarray]:
        """Feed 16 kHz samples from ``source`` ("mic" or "agent"). Returns the motion of the windows
        that became ready ((n_send, 115) raw frames each), possibly none."""
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
            tick_at = (self.committed + self.delay_frames) * SAMPLES_PER_FRAME
            piece = samples[start:start + tick_at - self._mic_samples]
            self.scheduler.push_listening(piece)
            self._mic_samples += len(piece)
            start += len(piece)
            if self._mic_samples >= tick_at:
                out.append(self._tick())
        self._mic_end = self._mic_samples
        return out

    def flush(self) -> np.ndarray | None:
        """End of the conversation: the frames (n, 115) of the microphone time not yet sent
        (n = ceil(samples / 640)), or None when there are none. The last window is formed as usual
        from the microphone padded with silence to its tick, then cut to those n frames; like the last
        window of an offline clip, the frames past them are silence and listening, so the parity with
        ``Generator.generate(session.audio, session.states)`` holds. Agent audio not yet played by
        then is dropped."""
        frames = [self.generate(w) for w in self.form_flush()]
        return np.concatenate(frames) if frames else None

    def form_flush(self) -> list[Window]:
        """``flush`` without generating: the windows of the microphone time not yet sent (none, one,
        or with a look-ahead two)."""
        end, H = self._mic_end, self.hop  # the microphone content; what is padded past it is not sent
        out = []
        while (pending := end - self.committed * SAMPLES_PER_FRAME) > 0:
            tick_at = (self.committed + self.delay_frames) * SAMPLES_PER_FRAME
            if tick_at > self._mic_samples:
                self.scheduler.push_listening(np.zeros(tick_at - self._mic_samples, np.float32))
                self._mic_samples = tick_at
            out.append(self._tick(keep_samples=min(pending, H * SAMPLES_PER_FRAME),
                                  last=pending <= H * SAMPLES_PER_FRAME))
        self._mic_end = self.committed * SAMPLES_PER_FRAME  # sent up to here; the padding past it is next hop's
        return out

    def generate(self, window: Window) -> np.ndarray:
        """Generate a formed window (this session's next): its (n_send, 115) raw frames."""
        return generate_windows(self.gen, [(self, window)])[0]

    def _tick(self, keep_samples: int | None = None, last: bool = False) -> Window:
        H = self.hop
        tick = self.scheduler.tick(H, skip=self.lookahead)
        audio, states = tick.audio, tick.states
        if keep_samples is not None and keep_samples < H * SAMPLES_PER_FRAME:  # a flushed partial window
            audio, states = audio[:keep_samples], states[: -(-keep_samples // SAMPLES_PER_FRAME)]
        if self.record:
            self._audio.append(audio)
            self._states.append(states)
        n_send = len(states)
        if not last and H < self.T:  # what is known past the sent frames
            more_audio, more_states = self.scheduler.ahead(self.lookahead, self.T - H)
            audio, states = np.concatenate([audio, more_audio]), np.concatenate([states, more_states])
        window = Window(self.k, audio, states, self.committed, n_send)
        self.k += 1
        self.committed += H  # a flushed window's frames past the microphone are skipped, not sent
        return window

    @property
    def audio(self) -> np.ndarray:
        """The single-stream audio of every frame sent so far (``record`` sessions)."""
        return np.concatenate(self._audio) if self._audio else np.zeros(0, np.float32)

    @property
    def states(self) -> np.ndarray:
        """The states of every frame sent so far (``record`` sessions)."""
        return np.concatenate(self._states) if self._states else np.zeros(0, np.int8)

def generate_windows(gen: WindowGenerator, items: list[tuple[StreamingSession, Window]]) -> list[np.ndarray]:
    """Generate the next window of each of several sessions of ``gen`` in one forward pass; returns
    each window's (n_send, 115) raw frames. Each session's job holds only the window it is given (a
    long session never re-copies its past), and its history advances by the frames sent."""
    jobs = []
    for session, w in items:
        if w.k != session.generated:
            raise ValueError(f"window {w.k} given, but the session's next window to generate is {session.generated}")
        j = session.job
        j.audio, j.states, j.first_window = w.audio, w.states, w.k
        jobs.append(j)
    sent: list[torch.Tensor] = []

    def frames_sent(i: int, x: torch.Tensor) -> torch.Tensor:
        session, w = items[i]
        sent.append(_blend(session, x, w.n_send))
        return sent[-1]

    gen.step(jobs, [w.k for _, w in items], sent=frames_sent)
    for session, _ in items:
        session.generated += 1
    return [gen.denormalize(x) for x in sent]


def _blend(session: StreamingSession, x: torch.Tensor, n_send: int) -> torch.Tensor:
    """The frames of window ``x`` (T, 115, normalised) that are sent: its first ``session.blend``
    frames cross-faded linearly from the previous window's prediction of the same frames (made with
    less audio, but continuous with what was sent), so a hop's first frame does not jump (they become
    the job's history). Whole windows (H = T) have no previous prediction: unchanged."""
    sent = x[:n_send]
    tail, session._tail = session._tail, x[n_send:].clone()
    b = min(session.blend, n_send, 0 if tail is None else len(tail))
    if b == 0:
        return sent
    sent = sent.clone()
    w = torch.arange(1, b + 1, dtype=sent.dtype)[:, None] / (b + 1)
    sent[:b] = (1 - w) * tail[:b] + w * sent[:b]
    return sent
