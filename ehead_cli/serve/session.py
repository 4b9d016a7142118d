"""Conversations: one ``ServeSession`` per WebSocket (the shared model, one ``Batcher`` per server, is
``serve.batcher``).

A session owns its ``StreamingSession`` (``record=False``: it holds only the current window), so its
scheduler and job are its own; audio it receives forms windows (``StreamingSession.form``), which
wait in its ``pending`` queue. The batcher gathers the next pending window of every session that has
one and generates them in one forward pass (``generate_windows``) on a worker thread, so the event
loop keeps reading and writing sockets meanwhile; windows that become ready during a pass go into
the next one, and windows that become ready while the model is idle are gathered for
``gather_s`` first (clients that started together tick together).

Each session streams with its hop and look-ahead (``ServeConfig.hop``, or its protocol-2 hello's;
a protocol-1 session whole windows): a window every H frames of its microphone, H frames sent. Its
latency is kept per frame, from the arrival of the message that completed the frame's microphone
time to the motion message written (``frame_latencies_ms``), and per window (formed -> written).

Bounds and policies (docs/serve-protocol.md):

* at most ``max_pending`` formed windows wait per session: beyond that the server stops reading the
  socket (TCP backpressure: a client sending audio faster than real time is slowed to the model's
  pace, and nothing is dropped); a session whose motion the client has not read yet
  (``max_unsent`` windows) gets no new window generated until it reads;
* at most ``max_agent_backlog_s`` of agent audio not yet played: more closes the connection;
* a batch takes at most one window per session, oldest first, so a session pushing audio fast
  cannot starve the others;
* JPEG frames are rendered on their own thread, never delaying motion; when a session's
  previous window is still being rendered, the next window's frames are skipped (counted in
  ``/stats``). They are drawn by the server's avatar's renderer (``avatar.renderers.job_renderer``):
  an avatar folder's fitted renderer at its own size, else the mesh renderer of the built-in head
  (FLAME with the server's ``flame``) at ``jpeg_size``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ehead_cli import checks
from ehead_cli.errors import EheadError
from ehead_cli.generate.streaming import StreamingSession, Window
from ehead_cli.layout import MOTION_FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from ehead_cli.serve import protocol
from ehead_cli.serve.protocol import Hello, ProtocolError

if TYPE_CHECKING:
    from ehead_cli.generate.generator import Generator

log = logging.getLogger("ehead.serve")


@dataclass(frozen=True)
class ServeConfig:
    """The server's limits and policies (see the module docstring).

    max_sessions: open conversations; one more is refused with TRY_AGAIN
    max_pending: formed windows waiting per session before its socket is no longer read
    max_unsent: motion windows queued for a client that has not read them before generation waits
    max_batch: windows per forward pass
    gather_s: how long an idle model waits for more windows once one is ready
    max_agent_backlog_s: agent audio not yet played, per session
    hello_timeout_s: time to send the hello after connecting
    hop: frames per live window sent, 1..T (None: T, whole windows); a protocol-2 hello may choose its own
    lookahead: frames of right context past the hop's frames, 0..T - hop
    behind_s: lag beyond a window's delay (hop + look-ahead) after which a session counts as falling behind
    latency_window: frames per session kept for the latency percentiles
    jpeg_size, jpeg_quality: server-rendered frames, pixels (square; an avatar folder's renderer draws at
        its own size) and JPEG quality
    """

    max_sessions: int = 64
    max_pending: int = 2
    max_unsent: int = 2
    max_batch: int = 64
    gather_s: float = 0.005
    max_agent_backlog_s: float = 120.0
    hello_timeout_s: float = 10.0
    behind_s: float = 1.0
    hop: int | None = None
    lookahead: int = 0
    latency_window: int = 2000
    jpeg_size: int = 256
    jpeg_quality: int = 85


@dataclass
class Pending:
    """A formed window and the settings in force when its last audio sample arrived."""

    stream: StreamingSession
    window: Window
    seed: int
    magnitude: tuple[float, float]
    frames: bool
    epoch: int
    formed_at: float  # time.perf_counter() when the message completing the window was received
    then: str | None = None  # a text message to send after the window's motion (flush's acknowledgement)


@dataclass
class Outgoing:
    """One message for the client; ``formed_at`` marks a motion window (its latencies are taken when
    sent: the window's, and each frame's from the arrival of its microphone time)."""

    payload: bytes | str | None  # None with ``close``: close the connection
    formed_at: float | None = None
    n_frames: int = 0
    first_frame: int = 0
    close: tuple[int, str] | None = None


@dataclass
class SessionStats:
    windows: int = 0
    frames_sent: int = 0
    jpeg_frames: int = 0
    jpeg_skipped: int = 0
    mic_samples: int = 0  # since the last reset: the session clock
    agent_samples: int = 0
    max_pending_seen: int = 0
    latencies_ms: deque = field(default_factory=deque)  # per frame: sent - its microphone time arrived
    window_ms: deque = field(default_factory=deque)  # per window: sent - formed


class ServeSession:
    """One conversation: its streaming session, pending windows, outgoing queue and counters."""

    def __init__(self, sid: int, gen: Generator, hello: Hello, avatar, config: ServeConfig):
        """Raises ``ProtocolError`` (INVALID) for a hello's hop or look-ahead out of range."""
        self.id, self.gen, self.avatar, self.config = sid, gen, avatar, config
        self.seed = hello.seed
        self.magnitude = hello.magnitude or gen.magnitude
        self.frames = hello.frames
        self.protocol = hello.protocol
        if hello.protocol == 1:  # version 1: whole windows, as before hops existed
            self.hop, self.lookahead = None, 0
        else:
            self.hop = config.hop if hello.hop is None else hello.hop
            self.lookahead = config.lookahead if hello.lookahead is None else hello.lookahead
        self.epoch = 0
        try:
            T = gen.cfg.window
            self.hop = checks.hop(self.hop, T, flag="hop")
            self.lookahead = checks.lookahead(self.lookahead, self.hop, T, flag="lookahead")
            self.stream = self._new_stream()
        except EheadError as err:
            raise ProtocolError(protocol.INVALID, f"hello: {err}") from None
        self._marks: deque[tuple[int, float]] = deque()  # (microphone samples received, time.perf_counter())
        self.pending: deque[Pending] = deque()
        self.in_flight = False  # a window of this session is being generated
        self.unsent = 0  # motion windows in the outbox
        self.renders = 0  # windows being rendered to JPEG
        self.outbox: asyncio.Queue[Outgoing] = asyncio.Queue()
        self.can_receive = asyncio.Event()
        self.blocked_since: float | None = None  # time.perf_counter() since the socket is not read
        self.can_receive.set()
        self.closed = False
        self.opened = time.monotonic()
        self.stats = SessionStats(latencies_ms=deque(maxlen=config.latency_window),
                                  window_ms=deque(maxlen=config.latency_window))

    # --- input (event loop) ---------------------------------------------------------------------
    def receive_audio(self, source: str, samples: np.ndarray, now: float) -> None:
        if source == "agent":
            backlog = self.stream.scheduler.unconsumed / MOTION_FPS + len(samples) / SAMPLE_RATE
            if backlog > self.config.max_agent_backlog_s:
                raise ProtocolError(protocol.POLICY, f"agent audio backlog over {self.config.max_agent_backlog_s:g} s "
                                                     "not yet played; send it closer to real time")
            self.stats.agent_samples += len(samples)
        else:
            self.stats.mic_samples += len(samples)
            self._marks.append((self.stats.mic_samples, now))
        for w in self.stream.form(samples, source):
            self._queue(w, now)

    def control(self, msg: dict, now: float) -> str | None:
        """Apply a control message; returns a text reply to send at once, if any."""
        kind = msg["type"]
        if kind == "hello":
            raise ProtocolError(protocol.POLICY, "hello was already received")
        if kind == "end_of_utterance":
            self.stream.form(np.zeros(0, np.float32), "agent", end_of_utterance=True)
        elif kind == "reset":
            self.epoch += 1
            self.pending.clear()
            self.stream = self._new_stream()
            self.stats.mic_samples = self.stats.agent_samples = 0
            self._marks.clear()
            self._update_backpressure()
            return '{"type": "reset"}'
        elif kind == "flush":
            windows = self.stream.form_flush()
            reply = f'{{"type": "flushed", "frames": {sum(w.n_send for w in windows)}}}'
            if not windows:
                return reply
            for i, w in enumerate(windows):
                self._queue(w, now, then=reply if i == len(windows) - 1 else None)
        elif kind == "magnitude":
            self.magnitude = msg["value"]
        elif kind == "seed":
            self.seed = msg["value"]
        elif kind == "frames":
            self.frames = msg["value"]
        return None

    def _new_stream(self):
        return self.gen.stream(self.avatar, self.seed, record=False, hop=self.hop, lookahead=self.lookahead)

    def frame_latencies_ms(self, first: int, n: int, sent_at: float) -> list[float]:
        """Frames ``first`` .. ``first + n - 1`` sent at ``sent_at``: each one's time since its
        microphone time had arrived (the message that completed the frame's 640 samples; a flushed
        frame past the microphone, since the last message). Forgets the arrivals no later frame needs."""
        out, marks = [], self._marks
        for f in range(first, first + n):
            need = (f + 1) * SAMPLES_PER_FRAME
            while len(marks) > 1 and marks[0][0] < need:
                marks.popleft()
            if marks:
                out.append(1000 * (sent_at - marks[0][1]))
        return out

    def _queue(self, w: Window, now: float, then: str | None = None) -> None:
        self.pending.append(Pending(self.stream, w, self.seed, self.magnitude, self.frames, self.epoch, now, then))
        self.stats.max_pending_seen = max(self.stats.max_pending_seen, len(self.pending))
        self._update_backpressure()

    def _update_backpressure(self) -> None:
        if len(self.pending) >= self.config.max_pending:
            if self.blocked_since is None:
                self.blocked_since = time.perf_counter()
            self.can_receive.clear()
        else:
            self.blocked_since = None
            self.can_receive.set()

    # --- generation (the batcher) ------------------------------------------------------------------
    def ready(self) -> bool:
        return bool(self.pending) and not self.in_flight and not self.closed and self.unsent < self.config.max_unsent

    def take(self) -> Pending:
        p = self.pending.popleft()
        self.in_flight = True
        self._update_backpressure()
        return p

    def deliver(self, p: Pending, frames: np.ndarray, batcher) -> None:
        """Window ``p``'s motion is ready: queue it (and its JPEG rendering on ``batcher``, a
        ``serve.batcher.Batcher``: not imported, the batcher imports this module)."""
        self.in_flight = False
        if self.closed or p.epoch != self.epoch:
            return  # the client left or reset while the window was generated
        w = p.window
        msg = protocol.motion_message(w.k, w.start, w.sent_states, frames)
        self.unsent += 1
        self.stats.windows += 1
        self.outbox.put_nowait(Outgoing(msg, formed_at=p.formed_at, n_frames=len(frames), first_frame=w.start))
        if p.frames:
            if self.renders:
                self.stats.jpeg_skipped += len(frames)
            else:
                self.renders += 1
                batcher.spawn(batcher.render(self, p, frames))
        if p.then is not None:
            self.outbox.put_nowait(Outgoing(p.then))

    def close(self, code: int, reason: str) -> None:
        """Ask the sender to close the connection (after what is already queued)."""
        if not self.closed:
            self.closed = True
            self.pending.clear()
            self.outbox.put_nowait(Outgoing(None, close=(code, protocol.close_reason(reason))))

    # --- /stats -----------------------------------------------------------------------------------
    def lag_s(self) -> float:
        """Microphone time received minus motion time sent since the last reset."""
        return self.stats.mic_samples / SAMPLE_RATE - self.stats.frames_sent / MOTION_FPS

    def behind(self, now: float | None = None) -> bool:
        """The model does not keep up with this session: its lag is over a window's delay (hop +
        look-ahead frames) plus ``behind_s``, or so is the latency of the last frame sent, or the
        socket has not been read for ``behind_s`` because formed windows wait (backpressure hides
        the lag from the first two: the server stops reading the microphone it cannot serve)."""
        allowed = self.stream.delay_frames / MOTION_FPS + self.config.behind_s
        if self.lag_s() > allowed:
            return True
        if self.stats.latencies_ms and self.stats.latencies_ms[-1] > 1000 * allowed:
            return True
        now = time.perf_counter() if now is None else now
        return self.blocked_since is not None and now - self.blocked_since > self.config.behind_s

    def summary(self) -> dict:
        lat = np.array(self.stats.latencies_ms, np.float64)
        return {
            "id": self.id, "protocol": self.protocol, "hop": self.stream.hop, "lookahead": self.stream.lookahead,
            "connected_s": round(time.monotonic() - self.opened, 3), "windows": self.stats.windows,
            "frames_sent": self.stats.frames_sent, "audio_s": round(self.stats.mic_samples / SAMPLE_RATE, 3),
            "agent_audio_s": round(self.stats.agent_samples / SAMPLE_RATE, 3),
            "lag_s": round(self.lag_s(), 3), "behind": self.behind(), "pending": len(self.pending),
            "max_pending": self.stats.max_pending_seen, "jpeg_frames": self.stats.jpeg_frames,
            "jpeg_skipped": self.stats.jpeg_skipped, "latency_ms": percentiles(lat),
            "window_latency_ms": percentiles(np.array(self.stats.window_ms, np.float64)),
        }


def percentiles(ms: np.ndarray) -> dict:
    if not len(ms):
        return {"p50": None, "p95": None, "max": None, "n": 0}
    return {"p50": round(float(np.percentile(ms, 50)), 2), "p95": round(float(np.percentile(ms, 95)), 2),
            "max": round(float(ms.max()), 2), "n": int(len(ms))}
