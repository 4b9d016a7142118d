"""``ehead serve`` against real WebSocket clients on 127.0.0.1: frames over the socket equal offline
generation for the same audio, states and seed (alone and batched with other conversations), the
control messages, the token, /health and /stats, server-rendered JPEG frames, the example client."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from cli_runner import run_cli
from conftest import REPO
from serving import close_code, connect, http_json, open_ws, receive_until, running_server, send_audio

from ehead_cli.generate.generator import Generator
from ehead_cli.model.checkpoint import load_checkpoint
from ehead_cli.serve import protocol
from ehead_cli.serve.session import ServeConfig

RATE = 16000


@pytest.fixture(scope="module")
def gen(tiny_checkpoint) -> Generator:
    return Generator(load_checkpoint(tiny_checkpoint), "cpu", steps=2)


@pytest.fixture(scope="module")
def server(gen):
    with running_server(gen, config=ServeConfig(jpeg_size=64)) as running:
        yield running


def pcm(x: np.ndarray) -> np.ndarray:
    """What the server hears: the samples after PCM16 quantisation."""
    return np.frombuffer(protocol.audio_message("mic", x)[2:], "<i2").astype(np.float32) / 32768


def speech(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    return (rng.normal(size=n) * 0.1 * (0.5 + 0.5 * np.sin(np.arange(n) / 900))).astype(np.float32)


def conversation(seed: int) -> list[tuple[str, np.ndarray]]:
    """A conversation as the pushes a client makes: agent utterances between stretches of microphone."""
    mic, agent = speech(10.5, seed), speech(5.0, seed + 100)
    return [("agent", agent[:2 * RATE]), ("eou", None), ("mic", mic[:5 * RATE]), ("agent", agent[2 * RATE:]),
            ("eou", None), ("mic", mic[5 * RATE:])]


def play(ws, pushes) -> None:
    for kind, x in pushes:
        if kind == "eou":
            ws.send(json.dumps({"type": "end_of_utterance"}))
        else:
            send_audio(ws, kind, x, chunk=int(np.random.default_rng(len(x)).integers(300, 4000)))
    ws.send(json.dumps({"type": "flush"}))


def offline(gen: Generator, pushes, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The same pushes through a recorded in-process session, then offline ``generate`` of its
    single-stream audio and states: (motion, states)."""
    session = gen.stream(seed=seed)
    for kind, x in pushes:
        if kind == "eou":
            session.push(np.zeros(0, np.float32), "agent", end_of_utterance=True)
        else:
            session.push(pcm(x), kind)
    session.flush()
    return gen.generate(session.audio, session.states, seed=seed).motion, session.states


def test_frames_over_the_socket_equal_offline_generation(gen, server):
    addr, _ = server
    pushes = conversation(1)
    expected, states = offline(gen, pushes, seed=11)
    ws, ready = connect(addr, seed=11)
    assert ready["window"] == 100 and ready["record_bytes"] == 468 and ready["motion_dim"] == 115
    play(ws, pushes)
    rec, texts = receive_until(ws, len(expected), "flushed")
    ws.close()
    assert texts == [{"type": "flushed", "frames": len(expected) % 100}]
    np.testing.assert_array_equal(rec["frame"], np.arange(len(expected)))
    np.testing.assert_array_equal(rec["state"], states)
    assert (states == 1).any() and (states == -1).any()
    np.testing.assert_array_equal(rec["motion"], expected)


@pytest.mark.parametrize("hop,lookahead", [(10, 0), (4, 3)])
def test_a_hop_streams_over_the_socket_as_the_library_session_does(gen, server, hop, lookahead):
    addr, srv = server
    pushes = conversation(2)
    session = gen.stream(seed=5, hop=hop, lookahead=lookahead)
    expected = []
    for kind, x in pushes:
        if kind == "eou":
            session.push(np.zeros(0, np.float32), "agent", end_of_utterance=True)
        else:
            expected += session.push(pcm(x), kind)
    expected.append(session.flush())
    expected = np.concatenate(expected)
    ws, ready = connect(addr, seed=5, hop=hop, lookahead=lookahead)
    assert (ready["protocol"], ready["hop"], ready["lookahead"]) == (2, hop, lookahead)
    play(ws, pushes)
    rec, texts = receive_until(ws, len(expected), "flushed")
    code, stats = http_json(addr, "/stats")
    live = srv.batcher.sessions[ready["session"]]
    assert len(live._marks) <= 2 and not live.pending  # arrival times are forgotten once their frames are sent
    ws.close()
    np.testing.assert_array_equal(rec["frame"], np.arange(len(expected)))
    np.testing.assert_array_equal(rec["state"], session.states)
    np.testing.assert_array_equal(rec["motion"], expected)
    assert texts[-1]["frames"] > 0
    mine = next(s for s in stats["per_session"] if s["id"] == ready["session"])
    assert (mine["hop"], mine["lookahead"]) == (hop, lookahead) and mine["latency_ms"]["n"] == len(expected)


def test_a_version_1_client_gets_whole_windows_from_a_server_with_a_hop(gen):
    with running_server(gen, config=ServeConfig(hop=10)) as (addr, _):
        ws = open_ws(addr)
        ws.send(json.dumps({"type": "hello", "protocol": 1, "seed": 3}))
        ready = json.loads(ws.recv(timeout=30))
        assert ready["protocol"] == 1 and "hop" not in ready
        send_audio(ws, "mic", speech(4.2, 3), chunk=4000)
        rec, _ = receive_until(ws, 100)
        ws2, ready2 = connect(addr, seed=3)  # a version-2 client on the same server gets its hop
        assert ready2["hop"] == 10
        send_audio(ws2, "mic", speech(0.4, 3), chunk=6400)
        rec2, _ = receive_until(ws2, 10)
        ws.close()
        ws2.close()
    assert len(rec) == 100 and len(rec2) == 10


def test_concurrent_conversations_share_forward_passes_and_keep_parity(gen, server, monkeypatch):
    """Deterministic batching: the first forward pass is held (on the generation thread) until an
    event says three sessions have a window waiting; the next pass must then take all three. The event
    is set from the server's own wake-up call, which follows every message that leaves a window
    pending, so no sleep or polling decides what ends up in a batch."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from serving import TIMEOUT

    addr, srv = server
    batches_before = srv.batcher.batches
    windows_before = srv.batcher.windows
    real, gate, three_waiting = srv.batcher._generate, [], threading.Event()
    wake = srv.batcher.wake.set

    def wake_and_count():  # on the event loop, after a message left a window pending
        if sum(bool(x.pending) for x in list(srv.batcher.sessions.values())) >= 3:
            three_waiting.set()
        wake()

    def first_waits(pending):  # the first pass waits until the other three have a window ready too
        if not gate:
            gate.append(1)
            assert three_waiting.wait(TIMEOUT), "three sessions never had a window waiting"
        return real(pending)

    monkeypatch.setattr(srv.batcher.wake, "set", wake_and_count)
    monkeypatch.setattr(srv.batcher, "_generate", first_waits)

    def one(seed):
        pushes = conversation(seed)
        ws, _ = connect(addr, seed=seed)
        play(ws, pushes)
        rec, _ = receive_until(ws, 0, "flushed")
        ws.close()
        return pushes, rec

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, [2, 3, 4, 5]))
    for seed, (pushes, rec) in zip([2, 3, 4, 5], results, strict=True):
        expected, states = offline(gen, pushes, seed)
        np.testing.assert_array_equal(rec["state"], states)
        np.testing.assert_allclose(rec["motion"], expected, atol=1e-4)  # batched: float reassociation only
    windows = srv.batcher.windows - windows_before
    assert windows == 4 * 3
    assert max(list(srv.batcher.batch_sizes)[batches_before:]) >= 3  # three windows, one forward pass
    assert not np.allclose(results[0][1]["motion"], results[1][1]["motion"])


def test_seed_magnitude_and_reset(gen, server):
    addr, _ = server
    mic = speech(4.0, 7)
    ws, _ = connect(addr, seed=1)
    send_audio(ws, "mic", mic, chunk=8000)
    first, _ = receive_until(ws, 100)
    ws.send(json.dumps({"type": "reset"}))
    ws.send(json.dumps({"type": "seed", "value": 2}))
    send_audio(ws, "mic", mic, chunk=8000)
    again, texts = receive_until(ws, 100, "reset")
    assert again["frame"][0] == 0  # a reset starts the frame count again
    ws.send(json.dumps({"type": "reset"}))
    ws.send(json.dumps({"type": "seed", "value": 1}))
    ws.send(json.dumps({"type": "magnitude", "value": [1.0, 0.0]}))
    send_audio(ws, "mic", mic, chunk=8000)
    moved, _ = receive_until(ws, 100, "reset")
    ws.close()
    session = gen.stream(seed=1)
    np.testing.assert_array_equal(first["motion"], session.push(pcm(mic), "mic")[0])
    s2 = gen.stream(seed=2)
    np.testing.assert_array_equal(again["motion"], s2.push(pcm(mic), "mic")[0])
    job = gen.begin(pcm(mic), np.full(100, -1, np.int8), seed=1, magnitude=(1.0, 0.0))
    gen.step([job], 0)
    np.testing.assert_array_equal(moved["motion"], gen.finish(job).motion)


def test_jpeg_frames_when_asked(server):
    addr, _ = server
    ws, _ = connect(addr, frames=True)
    send_audio(ws, "mic", speech(4.0, 3), chunk=16000)
    jpegs = {}
    while len(jpegs) < 100:
        msg = ws.recv(timeout=60)
        if isinstance(msg, bytes) and msg[:4] == protocol.JPEG_MAGIC:
            frame, data = protocol.decode_jpeg(msg)
            jpegs[frame] = data
    ws.send(json.dumps({"type": "frames", "value": False}))
    ws.close()
    assert sorted(jpegs) == list(range(100))
    from io import BytesIO

    from PIL import Image

    img = np.asarray(Image.open(BytesIO(jpegs[50])))
    assert img.shape == (64, 64, 3) and img.std() > 10  # a head on the background, not a blank frame


def test_token_is_required_on_every_connection(gen):
    with running_server(gen, token="s3cret") as (addr, srv):
        ws, _ = connect(addr, token="s3cret")
        ws.close()
        for hello in ({"token": "wrong"}, {}, {"token": "s3cret-"}):
            ws = open_ws(addr)
            ws.send(json.dumps({"type": "hello", "protocol": 1, **hello}))
            assert close_code(ws) == (protocol.POLICY, "invalid or missing token")
        assert http_json(addr, "/stats")[0] == 401
        assert http_json(addr, "/stats", {"Authorization": "Bearer wrong"})[0] == 401
        code, body = http_json(addr, "/stats", {"Authorization": "Bearer s3cret"})
        assert code == 200 and body["closes"] == {"1008": 3} and body["sessions"] == 0
        assert http_json(addr, "/health") == (200, {"status": "ok", "sessions": 0})


def test_stats_report_latency_and_who_falls_behind(server):
    addr, srv = server
    ws, ready = connect(addr)
    send_audio(ws, "mic", speech(8.0, 9), chunk=16000)
    receive_until(ws, 200)
    code, stats = http_json(addr, "/stats")
    ws.close()
    assert code == 200
    mine = next(s for s in stats["per_session"] if s["id"] == ready["session"])
    assert mine["windows"] == 2 and mine["frames_sent"] == 200 and mine["audio_s"] == 8.0
    assert mine["latency_ms"]["n"] == 200 and mine["latency_ms"]["p50"] > 0 and mine["lag_s"] == 0.0
    assert mine["window_latency_ms"]["n"] == 2
    # a frame's latency counts from its microphone time's arrival, so never less than its window's
    assert mine["latency_ms"]["p50"] >= mine["window_latency_ms"]["p50"] - 1e-6
    assert (mine["hop"], mine["lookahead"], mine["protocol"]) == (100, 0, protocol.PROTOCOL_VERSION)
    assert mine["behind"] is False
    assert {"sessions", "batches", "windows", "mean_batch", "latency_ms", "behind", "rss_mb"} <= set(stats)


def test_the_page_and_the_head_model_are_served(server):
    import urllib.request

    addr, _ = server
    with urllib.request.urlopen(f"http://{addr}/", timeout=30) as r:
        page = r.read().decode()
    assert "<canvas" in page or "canvas" in page
    with urllib.request.urlopen(f"http://{addr}/head.glb", timeout=60) as r:
        glb = r.read()
        assert r.headers["content-type"] == "model/gltf-binary"
    assert glb[:4] == b"glTF" and len(glb) < 2_000_000


def test_the_example_client_runs_against_the_server(server):
    addr, _ = server
    r = subprocess.run([sys.executable, str(REPO / "examples" / "serve_client.py"), f"ws://{addr}/ws"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.splitlines()[-1] == "received 225 frames: 100 speaking, 125 listening"


def test_the_readme_shows_the_serve_example_file():
    import re

    doc = (REPO / "README.md").read_text()
    code = (REPO / "examples" / "serve_client.py").read_text()
    body = code[code.index("import json"):]
    assert any(b.strip() == body.strip() for b in re.findall(r"```python\n(.*?)```", doc, re.S))


def test_an_avatar_is_everyones_identity(gen):
    from ehead_cli.avatar.identity import Avatar

    rng = np.random.default_rng(4)
    avatar = Avatar(rng.normal(size=300).astype(np.float32), (rng.normal(size=115) * 0.05).astype(np.float32))
    mic = speech(4.0, 12)
    with running_server(gen, avatar=avatar) as (addr, _):
        ws, _ = connect(addr, seed=2)
        send_audio(ws, "mic", mic, chunk=16000)
        rec, _ = receive_until(ws, 100)
        ws.close()
    expected = gen.generate(pcm(mic), np.full(100, -1, np.int8), avatar, seed=2).motion
    np.testing.assert_array_equal(rec["motion"], expected)
    assert not np.allclose(expected, gen.generate(pcm(mic), np.full(100, -1, np.int8), seed=2).motion)


def test_stopping_the_server_closes_its_conversations(gen):
    with running_server(gen) as (addr, _):
        ws, _ = connect(addr)
        send_audio(ws, "mic", speech(1.0, 1))
    assert close_code(ws)[0] == protocol.RESTART


def test_the_command_checks_its_options(tiny_checkpoint):
    code, _, err = run_cli("serve", "--port", "70000")
    assert code == 2 and "--port must be in 1..65535, got 70000" in err
    for args, message in ((["--hop", "0"], "--hop must be in 1..100 (the model's window), got 0"),
                          (["--hop", "fast"], "--hop must be a whole number of frames or auto, got 'fast'"),
                          (["--hop", "10", "--lookahead", "95"],
                           "--lookahead must be in 0..90 (the window 100 less the hop 10), got 95")):
        code, _, err = run_cli("serve", "--checkpoint", str(tiny_checkpoint), *args)
        assert code == 2 and message in err, err


def test_a_session_counts_as_behind_when_its_motion_lags_a_window_and_more(gen):
    from ehead_cli.serve.protocol import Hello
    from ehead_cli.serve.session import ServeSession

    s = ServeSession(1, gen, Hello(None, 0, None, False), None, ServeConfig(behind_s=1.0))
    s.stats.mic_samples, s.stats.frames_sent = 9 * RATE, 100  # 9 s heard, 4 s of motion sent: 5 s behind
    assert s.lag_s() == 5.0 and not s.behind()  # one window (4 s) + 1 s is still in time
    s.stats.mic_samples += 320
    assert s.behind() and s.summary()["behind"] is True
    hop = ServeSession(2, gen, Hello(None, 0, None, False, hop=10, lookahead=5), None, ServeConfig(behind_s=1.0))
    hop.stats.mic_samples, hop.stats.frames_sent = int(1.6 * RATE), 0  # 1.6 s heard, nothing sent yet
    assert not hop.behind()  # a window waits 15 frames (0.6 s) + 1 s
    hop.stats.mic_samples += 320
    assert hop.behind()
    # backpressure hides the lag (the server stops reading what it cannot serve): the last frame's
    # latency, or a socket not read for behind_s, still says so
    late = ServeSession(3, gen, Hello(None, 0, None, False, hop=10), None, ServeConfig(behind_s=1.0))
    late.stats.latencies_ms.append(1300.0)
    assert not late.behind()  # within 0.4 s + 1 s
    late.stats.latencies_ms.append(1500.0)
    assert late.behind()
    blocked = ServeSession(4, gen, Hello(None, 0, None, False, hop=10), None, ServeConfig(behind_s=1.0, max_pending=1))
    blocked._queue(blocked.stream.form(np.zeros(6400, np.float32), "mic")[0], 0.0)
    assert not blocked.can_receive.is_set() and blocked.blocked_since is not None
    assert not blocked.behind(now=blocked.blocked_since + 0.9) and blocked.behind(now=blocked.blocked_since + 1.1)
