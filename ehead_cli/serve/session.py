"""Conversations and the shared model: one ``ServeSession`` per WebSocket, one ``Batcher`` per server.

A session owns its ``StreamingSession`` (``record=False``: it holds only the current window), so its
scheduler and job are its own; audio it receives forms windows (``StreamingSession.form``), which
wait in its ``pending`` queue. The batcher gathers the next pending window of every session that has
one and generates them in one forward pass (``generate_windows``) on a worker thread, so the event
loop keeps reading and writing sockets meanwhile; windows that become ready during a pass go into
the next one, and windows that become ready while the model is idle are gathered for
``gather_s`` first (clients that started together tick together).

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
import io
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ehead_cli.generate.generator import Generator
from ehead_cli.generate.streaming import StreamingSession, Window, generate_windows
from ehead_cli.layout import MOTION_FPS, SAMPLE_RATE
from ehead_cli.serve import protocol
from ehead_cli.serve.protocol import Hello, ProtocolError

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
    behind_s: lag beyond one window after which a session counts as falling behind
    latency_window: windows per session kept for the latency percentiles
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
    latency_window: int = 200
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
    """One message for the client; ``formed_at`` marks a motion window (its latency is taken when sent)."""

    payload: bytes | str | None  # None with ``close``: close the connection
    formed_at: float | None = None
    n_frames: int = 0
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
    latencies_ms: deque = field(default_factory=deque)


class ServeSession:
    """One conversation: its streaming session, pending windows, outgoing queue and counters."""

    def __init__(self, sid: int, gen: Generator, hello: Hello, avatar, config: ServeConfig):
        self.id, self.gen, self.avatar, self.config = sid, gen, avatar, config
        self.seed = hello.seed
        self.magnitude = hello.magnitude or gen.magnitude
        self.frames = hello.frames
        self.epoch = 0
        self.stream = gen.stream(avatar, self.seed, record=False)
        self.pending: deque[Pending] = deque()
        self.in_flight = False  # a window of this session is being generated
        self.unsent = 0  # motion windows in the outbox
        self.renders = 0  # windows being rendered to JPEG
        self.outbox: asyncio.Queue[Outgoing] = asyncio.Queue()
        self.can_receive = asyncio.Event()
        self.can_receive.set()
        self.closed = False
        self.opened = time.monotonic()
        self.stats = SessionStats(latencies_ms=deque(maxlen=config.latency_window))

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
            self.stream = self.gen.stream(self.avatar, self.seed, record=False)
            self.stats.mic_samples = self.stats.agent_samples = 0
            self._update_backpressure()
            return '{"type": "reset"}'
        elif kind == "flush":
            w = self.stream.form_flush()
            reply = f'{{"type": "flushed", "frames": {0 if w is None else len(w.states)}}}'
            if w is None:
                return reply
            self._queue(w, now, then=reply)
        elif kind == "magnitude":
            self.magnitude = msg["value"]
        elif kind == "seed":
            self.seed = msg["value"]
        elif kind == "frames":
            self.frames = msg["value"]
        return None

    def _queue(self, w: Window, now: float, then: str | None = None) -> None:
        self.pending.append(Pending(self.stream, w, self.seed, self.magnitude, self.frames, self.epoch, now, then))
        self.stats.max_pending_seen = max(self.stats.max_pending_seen, len(self.pending))
        self._update_backpressure()

    def _update_backpressure(self) -> None:
        if len(self.pending) >= self.config.max_pending:
            self.can_receive.clear()
        else:
            self.can_receive.set()

    # --- generation (the batcher) ------------------------------------------------------------------
    def ready(self) -> bool:
        return bool(self.pending) and not self.in_flight and not self.closed and self.unsent < self.config.max_unsent

    def take(self) -> Pending:
        p = self.pending.popleft()
        self.in_flight = True
        self._update_backpressure()
        return p

    def deliver(self, p: Pending, frames: np.ndarray, batcher: Batcher) -> None:
        self.in_flight = False
        if self.closed or p.epoch != self.epoch:
            return  # the client left or reset while the window was generated
        T = self.stream.T
        msg = protocol.motion_message(p.window.k, p.window.k * T, p.window.states, frames)
        self.unsent += 1
        self.stats.windows += 1
        self.outbox.put_nowait(Outgoing(msg, formed_at=p.formed_at, n_frames=len(frames)))
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

    def behind(self) -> bool:
        return self.lag_s() > self.stream.T / MOTION_FPS + self.config.behind_s

    def summary(self) -> dict:
        lat = np.array(self.stats.latencies_ms, np.float64)
        return {
            "id": self.id, "connected_s": round(time.monotonic() - self.opened, 3), "windows": self.stats.windows,
            "frames_sent": self.stats.frames_sent, "audio_s": round(self.stats.mic_samples / SAMPLE_RATE, 3),
            "agent_audio_s": round(self.stats.agent_samples / SAMPLE_RATE, 3),
            "lag_s": round(self.lag_s(), 3), "behind": self.behind(), "pending": len(self.pending),
            "max_pending": self.stats.max_pending_seen, "jpeg_frames": self.stats.jpeg_frames,
            "jpeg_skipped": self.stats.jpeg_skipped, "latency_ms": percentiles(lat),
        }


def percentiles(ms: np.ndarray) -> dict:
    if not len(ms):
        return {"p50": None, "p95": None, "n": 0}
    return {"p50": round(float(np.percentile(ms, 50)), 2), "p95": round(float(np.percentile(ms, 95)), 2),
            "n": int(len(ms))}


class Batcher:
    """The shared model: sessions' ready windows -> one forward pass; JPEG rendering beside it."""

    def __init__(self, gen: Generator, config: ServeConfig, shape: np.ndarray, avatar=None, flame=None):
        """``avatar`` (an ``avatar.identity.Avatar``): whose renderer draws the JPEG frames (module
        docstring); ``flame``: FLAME's path for the mesh renderer when it has no renderer."""
        self.gen, self.config, self.shape = gen, config, shape
        self.avatar, self.flame = avatar, flame
        self.sessions: dict[int, ServeSession] = {}
        self.wake = asyncio.Event()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ehead-generate")
        self._render_pool = ThreadPoolExecutor(1, thread_name_prefix="ehead-render")
        self._renderer = None
        self.batches = 0
        self.windows = 0
        self.failures = 0
        self.batch_sizes: deque[int] = deque(maxlen=1000)
        self.latencies_ms: deque[float] = deque(maxlen=2000)  # all sessions, most recent
        self._next_id = 0
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro) -> None:
        """Run ``coro`` as a task, held until it ends (the event loop keeps only weak references)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def open(self, hello: Hello, avatar) -> ServeSession:
        self._next_id += 1
        s = ServeSession(self._next_id, self.gen, hello, avatar, self.config)
        self.sessions[s.id] = s
        return s

    def remove(self, s: ServeSession) -> None:
        s.closed = True
        s.pending.clear()
        self.sessions.pop(s.id, None)

    def _ready(self) -> list[ServeSession]:
        ready = [s for s in self.sessions.values() if s.ready()]
        ready.sort(key=lambda s: s.pending[0].formed_at)
        return ready[: self.config.max_batch]

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            if self.config.gather_s > 0:
                await asyncio.sleep(self.config.gather_s)
            while batch := self._ready():
                await self._run_batch(batch)  # its own frame: no session outlives its batch here

    async def _run_batch(self, batch: list[ServeSession]) -> None:
        items = [(s, s.take()) for s in batch]
        try:
            frames = await asyncio.get_running_loop().run_in_executor(self._pool, self._generate,
                                                                      [p for _, p in items])
        except Exception as err:  # a bug, not the client's fault: its sessions end, the server goes on
            log.exception("generation failed")
            self.failures += 1
            for s, _ in items:
                s.in_flight = False
                s.close(protocol.INTERNAL, f"generation failed: {type(err).__name__}")
            return
        self.batches += 1
        self.windows += len(items)
        self.batch_sizes.append(len(items))
        for (s, p), f in zip(items, frames, strict=True):
            s.deliver(p, f, self)

    def _generate(self, pending: list[Pending]) -> list[np.ndarray]:
        """On the worker thread: each window with the settings it was formed under."""
        for p in pending:
            p.stream.job.seed, p.stream.job.magnitude = p.seed, p.magnitude
        return generate_windows(self.gen, [(p.stream, p.window) for p in pending])

    def sent(self, s: ServeSession, item: Outgoing) -> None:
        """The sender wrote ``item``: count it, take a motion window's latency, let generation go on."""
        if item.formed_at is None:
            return
        ms = 1000 * (time.perf_counter() - item.formed_at)
        s.stats.latencies_ms.append(ms)
        self.latencies_ms.append(ms)
        s.unsent -= 1
        s.stats.frames_sent += item.n_frames
        self.wake.set()

    # --- JPEG frames ------------------------------------------------------------------------------
    async def render(self, s: ServeSession, p: Pending, frames: np.ndarray) -> None:
        try:
            jpegs = await asyncio.get_running_loop().run_in_executor(self._render_pool, self._jpegs, frames)
        except Exception:
            log.exception("rendering failed")
            jpegs = []
        finally:
            s.renders -= 1
        if s.closed or p.epoch != s.epoch:
            return
        first = p.window.k * s.stream.T
        for i, data in enumerate(jpegs):
            s.outbox.put_nowait(Outgoing(protocol.jpeg_message(first + i, data)))
        s.stats.jpeg_frames += len(jpegs)

    @property
    def renderer(self):
        """The renderer of the JPEG frames (module docstring), made on first use."""
        if self._renderer is None:
            from ehead_cli.avatar.renderers import job_renderer

            self._renderer = job_renderer(self.avatar, self.flame, self.config.jpeg_size, frame_clip=False)
        return self._renderer

    def _jpegs(self, frames: np.ndarray) -> list[bytes]:
        """On the render thread: (n, 115) motion -> n JPEG files drawn by ``renderer``."""
        from PIL import Image

        out = []
        for img in self.renderer.iter_frames(self.shape, frames):
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, "JPEG", quality=self.config.jpeg_quality)
            out.append(buf.getvalue())
        return out

    def summary(self) -> dict:
        sessions = [s.summary() for s in self.sessions.values()]
        return {
            "sessions": len(sessions), "batches": self.batches, "windows": self.windows,
            "mean_batch": round(float(np.mean(self.batch_sizes)), 3) if self.batch_sizes else None,
            "generation_failures": self.failures,
            "latency_ms": percentiles(np.array(self.latencies_ms, np.float64)),
            "behind": [s["id"] for s in sessions if s["behind"]],
            "per_session": sessions,
        }

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._render_pool.shutdown(wait=False, cancel_futures=True)
