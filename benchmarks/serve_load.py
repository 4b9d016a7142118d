"""Latency and load of ``ehead serve``: N simulated clients stream real-time microphone audio to a
server on 127.0.0.1 and read the motion back, at each of several hops.

For each preset (random weights, the built-in log-mel encoder, as ``ehead bench`` does) the real
command ``ehead serve`` runs in its own process; for each hop H and each N, N asyncio WebSocket
clients (protocol 2, asking for hop H in the hello) start at random moments within the first 4 s
(seeded) and each sends ``--seconds`` of audio in 20 ms chunks paced by the wall clock (what the
page's microphone sends). Measured:

* per-frame latency, client side: from sending the chunk that completes a frame's 640 samples to
  receiving the motion message that holds the frame (waiting for the rest of the hop, queueing,
  the forward pass and loopback included), p50 / p95 / max over every frame;
* the same from the server's /stats (receipt of that chunk to the message written), polled once a
  second: the median of the sessions' p50 and the worst session's p95, and the median of the
  sessions' window latency (message completing a window -> its motion written: compute and queue);
* frames/s served (each client's frames over its own time from first chunk to last frame, summed)
  against the frames/s the clients need (N x 25), the mean windows per forward pass, the sessions
  /stats reports as falling behind at any poll;
* the server's resident memory: before the clients, at the end, and its peak (VmHWM).

Run from a checkout: python benchmarks/serve_load.py --presets small,paper --hops 4,10,100 --clients 1,8
(``make bench-serve``); writes benchmarks/serve-<device>.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RATE, CHUNK, FRAME = 16000, 320, 640


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(addr: str, path: str) -> dict:
    with urllib.request.urlopen(f"http://{addr}{path}", timeout=30) as r:
        return json.loads(r.read())


def proc_memory(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(line.split()[1]) / 1024
    return out


def random_checkpoint(preset: str, folder: Path) -> Path:
    """The preset with random weights and the built-in log-mel encoder, saved as a checkpoint."""
    from ehead_cli.bench.run import BenchConfig, build_generator
    from ehead_cli.model.checkpoint import save_checkpoint

    gen = build_generator(BenchConfig(preset=preset, audio_encoder="mel", batch_sizes=(1,)), steps=4)
    return save_checkpoint(folder / preset, gen.model, {"note": "random weights for benchmarking"})


async def client(addr: str, seconds: float, start_delay: float, seed: int, result: dict, hop: int,
                 lookahead: int) -> None:
    import websockets

    from ehead_cli.serve import protocol

    audio = (np.random.default_rng(seed).normal(size=int(seconds * RATE)) * 0.05).astype(np.float32)
    n_frames = len(audio) // FRAME
    expected = (n_frames - lookahead) // hop * hop  # the frames whole hops (and their look-ahead) cover
    completed: dict[int, float] = {}  # frame -> when the chunk completing its 640 samples was sent
    latencies, frames = [], 0
    await asyncio.sleep(start_delay)
    async with websockets.connect(f"ws://{addr}/ws", max_size=None) as ws:
        await ws.send(json.dumps({"type": "hello", "protocol": 2, "seed": seed, "hop": hop, "lookahead": lookahead}))
        await ws.recv()

        async def reader() -> None:
            nonlocal frames
            while frames < expected:
                msg = await ws.recv()
                if isinstance(msg, bytes) and msg[:4] == protocol.MOTION_MAGIC:
                    now = time.perf_counter()
                    _, rec = protocol.decode_motion(msg)
                    latencies.extend(now - completed[int(f)] for f in rec["frame"])
                    frames += len(rec)

        read = asyncio.create_task(reader())
        t0 = time.perf_counter()
        for i, start in enumerate(range(0, len(audio), CHUNK)):
            delay = t0 + i * CHUNK / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            end = start + CHUNK
            sent = time.perf_counter()
            for f in range(start // FRAME, end // FRAME):  # the frames this chunk completes
                completed[f] = sent
            await ws.send(protocol.audio_message("mic", audio[start:end]))
        await asyncio.wait_for(read, timeout=300)
        result["latencies_ms"] = [1000 * x for x in latencies]
        result["frames"] = frames
        result["active_s"] = time.perf_counter() - t0  # first chunk to last frame


async def load_run(addr: str, n: int, seconds: float, seed: int, hop: int, lookahead: int) -> dict:
    rng = np.random.default_rng(seed)
    results = [{} for _ in range(n)]
    behind: set[int] = set()
    server: dict[int, dict] = {}  # session id -> its latest /stats summary
    t0 = time.perf_counter()
    clients = asyncio.gather(*[client(addr, seconds, float(rng.uniform(0, 4.0)), seed + i, results[i], hop,
                                      lookahead) for i in range(n)])
    while not clients.done():  # who /stats says falls behind, once a second
        await asyncio.wait([clients], timeout=1.0)
        stats = await asyncio.to_thread(get_json, addr, "/stats")
        behind |= set(stats["behind"])
        server.update({s["id"]: s for s in stats["per_session"] if s["latency_ms"]["n"]})
    await clients
    wall = time.perf_counter() - t0
    lat = np.concatenate([r["latencies_ms"] for r in results])
    return {"clients": n, "hop": hop, "lookahead": lookahead, "wall_s": wall,
            "frames": int(sum(r["frames"] for r in results)),
            # each client's frames over its own active time, summed: N x ~25 when the server keeps up
            "frames_per_s": sum(r["frames"] / r["active_s"] for r in results), "needed_frames_per_s": 25.0 * n,
            "server_latency_ms": {
                "median_session_p50": float(np.median([v["latency_ms"]["p50"] for v in server.values()])),
                "worst_session_p95": float(max(v["latency_ms"]["p95"] for v in server.values())),
                "median_window_p50": float(np.median([v["window_latency_ms"]["p50"] for v in server.values()])),
                "sessions": len(server)},
            "sessions_reported_behind": len(behind),
            # per frame: the chunk completing the frame's audio sent -> the motion holding it received
            "latency_ms": {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
                           "max": float(lat.max()), "n": int(len(lat))}}


def run_preset(preset: str, hops: list[int], clients: list[int], seconds: float, threads: int, folder: Path,
               lookahead: int, steps: int) -> list[dict]:
    ckpt = random_checkpoint(preset, folder)
    port = free_port()
    addr = f"127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen([sys.executable, "-m", "ehead_cli", "serve", "--checkpoint", str(ckpt), "--port",
                             str(port), "--threads", str(threads), "--hop", "100", "--steps", str(steps)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                get_json(addr, "/health")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("ehead serve did not start") from None
                time.sleep(0.2)
        asyncio.run(load_run(addr, 1, 6.0, 999, min(hops), 0))  # warm-up: every kernel once
        for hop in hops:
            for n in clients:
                mem_before = proc_memory(proc.pid)
                stats_before = get_json(addr, "/stats")
                row = asyncio.run(load_run(addr, n, seconds, 1000 * n + hop, hop, lookahead))
                stats = get_json(addr, "/stats")
                mem = proc_memory(proc.pid)
                batches = stats["batches"] - stats_before["batches"]
                row.update({
                    "preset": preset, "steps": steps, "threads": threads, "seconds_per_client": seconds,
                    "mean_batch": (stats["windows"] - stats_before["windows"]) / max(1, batches),
                    "rss_mb_before": round(mem_before["VmRSS"], 1), "rss_mb_after": round(mem["VmRSS"], 1),
                    "rss_mb_peak": round(mem["VmHWM"], 1),
                    # served at the pace needed and never listed as behind
                    "keeps_up": row["sessions_reported_behind"] == 0
                    and row["frames_per_s"] >= 0.97 * row["needed_frames_per_s"],
                })
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
    return rows


def environment(threads: int) -> dict:
    import platform

    import torch

    from ehead_cli.bench.run import device_name

    torch.set_num_threads(threads)
    return {"device_name": device_name(torch.device("cpu")), "threads": threads, "torch": torch.__version__,
            "python": platform.python_version(), "cores": os.cpu_count(),
            "load_average_at_start": os.getloadavg()}


def table(rows: list[dict]) -> str:
    out = ["| preset | steps | hop | clients | frames/s served (needed) | mean windows per pass | "
           "per-frame latency p50 / "
           "p95 / max, ms (client) | server, ms: median session p50 / worst p95 / window p50 | behind (/stats) | "
           "server RSS before -> after (peak), MB |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lat, srv = r["latency_ms"], r["server_latency_ms"]
        out.append(f"| {r['preset']} | {r['steps']} | {r['hop']} | {r['clients']} | {r['frames_per_s']:.0f} "
                   f"({r['needed_frames_per_s']:.0f}) | {r['mean_batch']:.1f} | "
                   f"{lat['p50']:.0f} / {lat['p95']:.0f} / {lat['max']:.0f} | "
                   f"{srv['median_session_p50']:.0f} / {srv['worst_session_p95']:.0f} / "
                   f"{srv['median_window_p50']:.0f} | {r['sessions_reported_behind']} | "
                   f"{r['rss_mb_before']:.0f} -> {r['rss_mb_after']:.0f} ({r['rss_mb_peak']:.0f}) |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="small,paper")
    ap.add_argument("--hops", default="4,10,100", help="hops the clients ask for, frames (comma-separated)")
    ap.add_argument("--lookahead", type=int, default=0)
    ap.add_argument("--clients", default="1,8")
    ap.add_argument("--seconds", type=float, default=12.0, help="audio per client")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4, help="Euler steps of the server (ehead serve --steps)")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks")
    args = ap.parse_args()
    env = environment(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for item in args.presets.split(","):
            rows += run_preset(item, [int(h) for h in args.hops.split(",")], [int(n) for n in args.clients.split(",")],
                               args.seconds, args.threads, Path(tmp), args.lookahead, args.steps)
    from ehead_cli.bench.run import device_slug

    result = {"environment": env, "rows": rows}
    target = args.json if args.json.suffix == ".json" else args.json / (
        "serve-" + device_slug({"device_type": "cpu", **env}) + ".json")
    target.write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
