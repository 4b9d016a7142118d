"""Test helpers for ``ehead serve``: a real server on 127.0.0.1 in a background thread (a free port,
bounded start and stop), and a small synchronous WebSocket client."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import numpy as np

from ehead_cli.serve import protocol

TIMEOUT = 30.0  # seconds any single wait in these tests may take


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(gen, token=None, config=None, avatar=None) -> Iterator[tuple[str, object]]:
    """Start ``EheadServer`` on 127.0.0.1:<free port>; yields ("127.0.0.1:port", server)."""
    import uvicorn

    from ehead_cli.serve.app import EheadServer, uvicorn_config

    server = EheadServer(gen, avatar=avatar, token=token, config=config)
    port = free_port()
    uv = uvicorn.Server(uvicorn_config(server, "127.0.0.1", port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + TIMEOUT
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}", server
    finally:
        uv.should_exit = True
        thread.join(TIMEOUT)


@contextlib.contextmanager
def serve_process(checkpoint, *args: str, env: dict | None = None) -> Iterator[tuple[str, str]]:
    """``ehead serve --checkpoint CHECKPOINT`` in its own process on a free port; yields
    ("127.0.0.1:port", the line it printed on starting). Stopped with SIGTERM (bounded)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    port = free_port()
    environ = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {}),
               "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "ehead_cli", "serve", "--checkpoint", str(checkpoint),
                             "--port", str(port), "--threads", "1", *args], env=environ, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    addr = f"127.0.0.1:{port}"
    try:
        banner = proc.stdout.readline().strip()
        deadline = time.monotonic() + TIMEOUT * 2
        while True:
            try:
                if http_json(addr, "/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"ehead serve did not start: {banner}")
            time.sleep(0.1)
        yield addr, banner
    finally:
        proc.terminate()
        try:
            proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(TIMEOUT)


def http_json(addr: str, path: str, headers: dict | None = None) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"http://{addr}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def open_ws(addr: str):
    """A WebSocket to the server's /ws, nothing sent yet."""
    from websockets.sync.client import connect as ws_connect

    # entered as a context manager (websockets >= 17.1 warns otherwise); the tests close it themselves
    return ws_connect(f"ws://{addr}/ws", open_timeout=TIMEOUT, close_timeout=TIMEOUT, max_size=None).__enter__()


def connect(addr: str, **hello):
    """A connected client that has sent its hello and read ``ready``; returns (ws, ready)."""
    ws = open_ws(addr)
    ws.send(json.dumps({"type": "hello", "protocol": protocol.PROTOCOL_VERSION, **hello}))
    ready = json.loads(ws.recv(timeout=TIMEOUT))
    assert ready["type"] == "ready", ready
    return ws, ready


def send_audio(ws, source: str, samples: np.ndarray, chunk: int = 320) -> None:
    for start in range(0, len(samples), chunk):
        ws.send(protocol.audio_message(source, samples[start:start + chunk]))


def receive_until(ws, n_frames: int, text_type: str | None = None) -> tuple[np.ndarray, list]:
    """Read motion records until ``n_frames`` frames (and, if given, a text message of ``text_type``)
    arrived; returns (records, the text messages)."""
    records, texts = [], []
    have = 0
    deadline = time.monotonic() + TIMEOUT * 4
    while have < n_frames or (text_type and not any(t["type"] == text_type for t in texts)):
        msg = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(msg, str):
            texts.append(json.loads(msg))
        elif msg[:4] == protocol.MOTION_MAGIC:
            _, rec = protocol.decode_motion(msg)
            records.append(rec.copy())
            have += len(rec)
    return (np.concatenate(records) if records else np.zeros(0, protocol.MOTION_RECORD)), texts


def close_code(ws) -> tuple[int | None, str]:
    """Wait for the server to close ``ws``; its close code and reason."""
    from websockets.exceptions import ConnectionClosed

    try:
        while True:
            ws.recv(timeout=TIMEOUT)
    except ConnectionClosed as err:
        rcvd = err.rcvd
        return (rcvd.code, rcvd.reason) if rcvd else (None, "")
