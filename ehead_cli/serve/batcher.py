"""The shared model of ``ehead serve``: one ``Batcher`` per server gathers the ready windows of every
session (``serve.session``) into one forward pass on a worker thread and renders JPEG frames on
another (the policies: ``serve.session``'s docstring and docs/serve-protocol.md)."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ehead_cli.generate.generator import Generator
from ehead_cli.generate.streaming import generate_windows
from ehead_cli.serve import protocol
from ehead_cli.serve.protocol import Hello
from ehead_cli.serve.session import Outgoing, Pending, ServeConfig, ServeSession, percentiles

log = logging.getLogger("ehead.serve")


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
        self.latencies_ms: deque[float] = deque(maxlen=20000)  # per frame, all sessions, most recent
        self._next_id = 0
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro) -> None:
        """Run ``coro`` as a task, held until it ends (the event loop keeps only weak references)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def open(self, hello: Hello, avatar) -> ServeSession:
        """A new session (``ProtocolError`` for a hello it cannot honour)."""
        s = ServeSession(self._next_id + 1, self.gen, hello, avatar, self.config)
        self._next_id += 1
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
        now = time.perf_counter()
        s.stats.window_ms.append(1000 * (now - item.formed_at))
        frame_ms = s.frame_latencies_ms(item.first_frame, item.n_frames, now)
        s.stats.latencies_ms.extend(frame_ms)
        self.latencies_ms.extend(frame_ms)
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
        first = p.window.start
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
