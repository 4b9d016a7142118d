"""Latency and load of ``ehead serve``: N simulated clients stream real-time microphone audio to a
server on 127.0.0.1 and read the motion back.

For each preset (random weights, the built-in log-mel encoder, as ``ehead bench`` does) the real
command ``ehead serve`` runs in its own process; for each N, N asyncio WebSocket clients start at
random moments within the first window (seeded) and each sends ``--seconds`` of audio in 20 ms
chunks paced by the wall clock (what the page's microphone sends). Measured:

* compute latency per window, client side: from sending the chunk holding a window's last sample
  to receiving that window's motion message (loopback, queueing and the forward pass included;
  the 4 s the window itself lasts is the algorithmic latency and is not counted), p50 / p95 / max;
* the same from the server's /stats (receipt of that chunk to the message written), polled once a
  second: the median of the sessions' p50 and the worst session's p95;
* frames/s served (each client's frames over its own time from first chunk to last frame, summed)
  against the frames/s the clients need (N x 25), the mean windows per forward pass, the sessions
  /stats reports as falling behind at any poll;
* the server's resident memory: before the clients, at the end, and its peak (VmHWM).

Run from a checkout: python benchmarks/serve_load.py --presets small,paper --clients 1,8,32
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

RATE, CHUNK, WINDOW_SAMPLES = 16000, 320, 100 * 640


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


async def client(addr: str, seconds: float, start_delay: float, seed: int, result: dict) -> None:
    import websockets

    from ehead_cli.serve import protocol

    audio = (np.random.default_rng(seed).normal(size=int(seconds * RATE)) * 0.05).astype(np.float32)
    n_windows = len(audio) // WINDOW_SAMPLES
    completed: dict[int, float] = {}  # window -> when the chunk holding its last sample was sent
    latencies, frames = [], 0
    await asyncio.sleep(start_delay)
    async with websockets.connect(f"ws://{addr}/ws", max_size=None) as ws:
        await ws.send(json.dumps({"type": "hello", "protocol": 1, "seed": seed}))
        await ws.recv()

        async def reader() -> None:
            nonlocal frames
            while frames < n_windows * 100:
                msg = await ws.recv()
                if isinstance(msg, bytes) and msg[:4] == protocol.MOTION_MAGIC:
                    k, rec = protocol.decode_motion(msg)
                    latencies.append(time.perf_counter() - completed[k])
                    frames += len(rec)

        read = asyncio.create_task(reader())
        t0 = time.perf_counter()
        for i, start in enumerate(range(0, len(audio), CHUNK)):
            delay = t0 + i * CHUNK / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            end = start + CHUNK
            if end // WINDOW_SAMPLES > start // WINDOW_SAMPLES:
                completed[end // WINDOW_SAMPLES - 1] = time.perf_counter()
            await ws.send(protocol.audio_message("mic", audio[start:end]))
        await asyncio.wait_for(read, timeout=300)
        result["latencies_ms"] = [1000 * x for x in latencies]
        result["frames"] = frames
        result["active_s"] = time.perf_counter() - t0  # first chunk to last frame


async def load_run(addr: str, n: int, seconds: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    results = [{} for _ in range(n)]
    behind: set[int] = set()
    server: dict[int, dict] = {}  # session id -> its latest /stats latency summary
    t0 = time.perf_counter()
    clients = asyncio.gather(*[client(addr, seconds, float(rng.uniform(0, 4.0)), seed + i, results[i])
                               for i in range(n)])
    while not clients.done():  # who /stats says falls behind, once a second
        await asyncio.wait([clients], timeout=1.0)
        stats = await asyncio.to_thread(get_json, addr, "/stats")
        behind |= set(stats["behind"])
        server.update({s["id"]: s["latency_ms"] for s in stats["per_session"] if s["latency_ms"]["n"]})
    await clients
    wall = time.perf_counter() - t0
    lat = np.concatenate([r["latencies_ms"] for r in results])
    return {"clients": n, "wall_s": wall, "frames": int(sum(r["frames"] for r in results)),
            # each client's frames over its own active time, summed: N x ~25 when the server keeps up
            "frames_per_s": sum(r["frames"] / r["active_s"] for r in results), "needed_frames_per_s": 25.0 * n,
            "server_latency_ms": {"median_session_p50": float(np.median([v["p50"] for v in server.values()])),
                                  "worst_session_p95": float(max(v["p95"] for v in server.values())),
                                  "sessions": len(server)},
            "sessions_reported_behind": len(behind),
            "latency_ms": {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
                           "max": float(lat.max()), "n": int(len(lat))}}


def run_preset(preset: str, clients: list[int], seconds: float, threads: int, folder: Path) -> list[dict]:
    ckpt = random_checkpoint(preset, folder)
    port = free_port()
    addr = f"127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen([sys.executable, "-m", "ehead_cli", "serve", "--checkpoint", str(ckpt), "--port",
                             str(port), "--threads", str(threads)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
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
        asyncio.run(load_run(addr, 1, 8.0, 999))  # warm-up: every kernel once
        for n in clients:
            mem_before = proc_memory(proc.pid)
            stats_before = get_json(addr, "/stats")
            row = asyncio.run(load_run(addr, n, seconds, 1000 * n))
            stats = get_json(addr, "/stats")
            mem = proc_memory(proc.pid)
            batches = stats["batches"] - stats_before["batches"]
            row.update({
                "preset": preset, "threads": threads, "seconds_per_client": seconds,
                "mean_batch": (stats["windows"] - stats_before["windows"]) / max(1, batches),
                "rss_mb_before": round(mem_before["VmRSS"], 1), "rss_mb_after": round(mem["VmRSS"], 1),
                "rss_mb_peak": round(mem["VmHWM"], 1),
                # every window done before the next one completes: no queue builds up
                "keeps_up": row["latency_ms"]["max"] < 4000.0,
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
    out = ["| preset | clients | frames/s served (needed) | mean windows per pass | latency p50 / p95 / max, ms "
           "(client) | server, ms: median session p50 / worst p95 | behind (/stats) | "
           "server RSS before -> after (peak), MB |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lat, srv = r["latency_ms"], r["server_latency_ms"]
        out.append(f"| {r['preset']} | {r['clients']} | {r['frames_per_s']:.0f} ({r['needed_frames_per_s']:.0f}) | "
                   f"{r['mean_batch']:.1f} | {lat['p50']:.0f} / {lat['p95']:.0f} / {lat['max']:.0f} | "
                   f"{srv['median_session_p50']:.0f} / {srv['worst_session_p95']:.0f} | "
                   f"{r['sessions_reported_behind']} | "
                   f"{r['rss_mb_before']:.0f} -> {r['rss_mb_after']:.0f} "
                   f"({r['rss_mb_peak']:.0f}) |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="small,paper")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--seconds", type=float, default=16.0, help="audio per client (whole windows count)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks")
    args = ap.parse_args()
    env = environment(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets.split(","):
            rows += run_preset(preset, [int(n) for n in args.clients.split(",")], args.seconds, args.threads,
                               Path(tmp))
    from ehead_cli.bench.run import device_slug

    result = {"environment": env, "algorithmic_latency_s": 4.0, "rows": rows}
    target = args.json if args.json.suffix == ".json" else args.json / (
        "serve-" + device_slug({"device_type": "cpu", **env}) + ".json")
    target.write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
