"""The ASGI application of ``ehead serve`` (Starlette on uvicorn).

Routes:

* ``/ws``: one WebSocket per conversation (``ehead_cli.serve.protocol``); needs the token when the
  server has one (in the first message, ``hello``), compared in constant time;
* ``GET /health``: ``{"status": "ok", "sessions": n}``;
* ``GET /stats``: the batcher's and every session's counters (hop, look-ahead, windows, per-frame
  latency p50/p95/max, lag, who falls behind); needs ``Authorization: Bearer TOKEN`` when the server has a token;
* ``GET /``: the page that talks with the avatar (``static/index.html``), ``/static/...`` its
  scripts, ``GET /head.glb``: the built-in head with the server's avatar shape as glTF (the model
  the page drives), built once on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from ehead_cli.avatar.identity import Avatar
from ehead_cli.generate.generator import Generator
from ehead_cli.layout import MOTION_FPS
from ehead_cli.serve import protocol
from ehead_cli.serve.batcher import Batcher
from ehead_cli.serve.protocol import ProtocolError
from ehead_cli.serve.session import Outgoing, ServeConfig, ServeSession

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("ehead.serve")


def rss_mb() -> float | None:
    """This process's resident memory (Linux), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


class EheadServer:
    """The server's state: the generator, the batcher, the token. ``app`` is the ASGI application.

    ``avatar``: who is animated (an avatar folder's ``Avatar`` brings the renderer of the JPEG frames);
    ``flame``: FLAME's path, to draw the frames with FLAME's mesh when the avatar has no renderer."""

    def __init__(self, gen: Generator, avatar: Avatar | None = None, token: str | None = None,
                 config: ServeConfig | None = None, flame: str | os.PathLike | None = None):
        self.gen, self.avatar, self.config = gen, avatar or Avatar(), config or ServeConfig()
        self.token = token or None
        self.batcher = Batcher(gen, self.config, np.asarray(self.avatar.shape, np.float32), self.avatar, flame)
        self.started = time.monotonic()
        self.closes: dict[int, int] = {}  # close code -> connections the server closed with it
        self.connections = 0
        self._glb: bytes | None = None
        self._glb_lock = asyncio.Lock()
        self.app = Starlette(routes=[
            WebSocketRoute("/ws", self.websocket),
            Route("/health", self.health),
            Route("/stats", self.stats),
            Route("/head.glb", self.head_glb),
            Route("/", self.index),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ], lifespan=self._lifespan)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app):
        task = asyncio.get_running_loop().create_task(self.batcher.run())
        try:
            yield
        finally:  # uvicorn has closed the connections by now (close code 1012, service restart)
            task.cancel()
            self.batcher.shutdown()

    # --- HTTP ---------------------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "sessions": len(self.batcher.sessions)})

    async def stats(self, request: Request) -> Response:
        if self.token is not None:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                return JSONResponse({"error": "Authorization: Bearer TOKEN required"}, status_code=401)
        body = self.batcher.summary()
        body.update({"uptime_s": round(time.monotonic() - self.started, 3), "connections": self.connections,
                     "closes": {str(k): v for k, v in sorted(self.closes.items())}, "rss_mb": rss_mb(),
                     "model": {"window": self.gen.cfg.window, "steps": self.gen.steps, "device": str(self.gen.device),
                               "d_model": self.gen.cfg.d_model, "depth": self.gen.cfg.depth}})
        return JSONResponse(body)

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def head_glb(self, request: Request) -> Response:
        async with self._glb_lock:
            if self._glb is None:
                from ehead_cli.export.gltf import head_glb

                self._glb = await asyncio.to_thread(head_glb, self.avatar.shape)
        return Response(self._glb, media_type="model/gltf-binary")

    # --- WebSocket ----------------------------------------------------------------------------------
    async def websocket(self, ws: WebSocket) -> None:
        await ws.accept()
        self.connections += 1
        try:
            hello = await asyncio.wait_for(self._hello(ws), self.config.hello_timeout_s)
            if self.token is not None and not hmac.compare_digest((hello.token or "").encode(), self.token.encode()):
                raise ProtocolError(protocol.POLICY, "invalid or missing token")
            if len(self.batcher.sessions) >= self.config.max_sessions:
                raise ProtocolError(protocol.TRY_AGAIN, f"server full ({self.config.max_sessions} sessions)")
            s = self.batcher.open(hello, self.avatar)  # a hop or look-ahead out of range: INVALID
        except asyncio.TimeoutError:
            return await self._close(ws, protocol.POLICY, f"no hello within {self.config.hello_timeout_s:g} s")
        except ProtocolError as err:
            return await self._close(ws, err.code, err.reason)
        except Exception:  # the client left before its hello
            return
        sender = asyncio.get_running_loop().create_task(self._send(ws, s))
        try:
            s.outbox.put_nowait(Outgoing(protocol.ready_message(s.id, s.stream.T, MOTION_FPS, version=s.protocol,
                                                                hop=s.stream.hop, lookahead=s.stream.lookahead)))
            await self._receive(ws, s)
        except ProtocolError as err:
            self.closes[err.code] = self.closes.get(err.code, 0) + 1
            s.close(err.code, err.reason)
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(sender), 5.0)
        finally:
            self.batcher.remove(s)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    async def _hello(self, ws: WebSocket) -> protocol.Hello:
        msg = await ws.receive()
        if msg["type"] == "websocket.disconnect":
            raise ConnectionError("closed before hello")
        if msg.get("text") is None:
            raise ProtocolError(protocol.POLICY, 'the first message must be the text {"type": "hello", ...}')
        return protocol.parse_hello(msg["text"])

    async def _receive(self, ws: WebSocket, s: ServeSession) -> None:
        while True:
            if not s.can_receive.is_set():  # backpressure: too many windows wait for the model
                await s.can_receive.wait()
            if s.closed:
                return
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            now = time.perf_counter()
            if msg.get("bytes") is not None:
                source, samples = protocol.parse_audio(msg["bytes"])
                s.receive_audio(source, samples, now)
            else:
                reply = s.control(protocol.parse_control(msg["text"]), now)
                if reply is not None:
                    s.outbox.put_nowait(Outgoing(reply))
            if s.pending:
                self.batcher.wake.set()

    async def _send(self, ws: WebSocket, s: ServeSession) -> None:
        try:
            while True:
                item = await s.outbox.get()
                if item.close is not None:
                    await ws.close(*item.close)
                    return
                if isinstance(item.payload, bytes):
                    await ws.send_bytes(item.payload)
                else:
                    await ws.send_text(item.payload)
                self.batcher.sent(s, item)
        except Exception:  # the client is gone
            return
        finally:
            s.closed = True
            s.can_receive.set()  # a receive loop waiting on backpressure sees the session closed

    async def _close(self, ws: WebSocket, code: int, reason: str) -> None:
        self.closes[code] = self.closes.get(code, 0) + 1
        with contextlib.suppress(Exception):
            await ws.close(code, protocol.close_reason(reason))


def uvicorn_config(server: EheadServer, host: str, port: int, log_level: str = "info"):
    """uvicorn's settings for the server: the message size limit enforced by the WebSocket layer
    (larger messages are closed with 1009), its incoming queue bounded (32 messages)."""
    import uvicorn

    return uvicorn.Config(server.app, host=host, port=port, ws="websockets-sansio",
                          ws_max_size=protocol.MAX_MESSAGE_BYTES, ws_max_queue=32, log_level=log_level,
                          lifespan="on", timeout_graceful_shutdown=2)


def token_from_env(token: str | None) -> str | None:
    return token or os.environ.get("EHEAD_TOKEN") or None
