"""``ehead bench --family listener``: frames/s of listener motion from speaker audio and motion.

For each batch size B, B jobs of ``seconds`` of synthetic speaker input (noise audio, small random
motion: speed does not depend on the content) are generated at once, as ``ehead generate --family
listener`` does, after ``warmup`` untimed calls, the median of ``repeats`` (the one timer,
``ehead_cli.bench.timing``):

* end to end: the speaker's tokenisation (VQ-VAE encoder, speech and emotion tokens), the LM's
  sampling with the KV cache (one forward of a group's tokens per 8-frame group), and the VQ-VAE
  decoding with the listener's identity code;
* LM alone: the sampling loop on random speaker tokens, what the KV cache speeds up.

The machine's load average before and after is part of the result: on a shared CPU it decides the
figures as much as the model does.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ehead_cli import __version__
from ehead_cli.bench.run import device_name, device_slug, write_json
from ehead_cli.bench.timing import time_calls
from ehead_cli.layout import MOTION_DIM, MOTION_FPS, SAMPLES_PER_FRAME

PAPER_FIGURES = {"fps": 393, "device": "one NVIDIA A100", "note": "the mm-listener supplement's figure, on a GPU"}
TARGETS = {"cpu": {"batch1_fps": 400}, "cuda": {"batched_fps": 20_000}}


@dataclass
class ListenerBenchConfig:
    checkpoint: str | None = None  # None: the shipped listener
    device: str = "cpu"
    batch_sizes: tuple[int, ...] = (1, 8)
    seconds: float = 20.0
    repeats: int = 3
    warmup: int = 1
    threads: int | None = None
    seed: int = 0


def _jobs(seconds: float, batch: int, seed: int):
    from ehead_cli.listener.generate import ListenerJob

    rng = np.random.default_rng(seed)
    T = int(round(seconds * MOTION_FPS))
    return [ListenerJob(f"bench{i}", (0.05 * rng.standard_normal(T * SAMPLES_PER_FRAME)).astype(np.float32),
                        (0.02 * rng.standard_normal((T, MOTION_DIM))).astype(np.float32)) for i in range(batch)]


def listener_rows(gen, cfg: ListenerBenchConfig) -> list[dict[str, Any]]:
    """One row per batch size: frames/s end to end and of the LM alone, and x real time per stream."""
    m, dev = gen.model, gen.device
    rows = []
    for B in cfg.batch_sizes:
        jobs = _jobs(cfg.seconds, B, cfg.seed)
        T = len(jobs[0].speaker)
        e2e = time_calls(lambda jobs=jobs: gen.generate(jobs, seed=cfg.seed), dev, cfg.repeats, cfg.warmup)
        G = -(-T // gen.rate)
        g = torch.Generator().manual_seed(cfg.seed)
        speaker = torch.randint(0, m.cfg.vq.codebook_size, (B, G), generator=g).to(dev)
        sp = em = None
        if m.cfg.lm.multimodal:
            sp = torch.randint(0, m.cfg.tokens.speech_codes, (B, G, m.cfg.tokens.speech_per_group), generator=g).to(dev)
            em = torch.randint(0, m.cfg.tokens.emotion_codes, (B, G), generator=g).to(dev)
        lm = time_calls(lambda speaker=speaker, sp=sp, em=em: m.lm.sample(speaker, sp, em), dev, cfg.repeats,
                        cfg.warmup)
        t, t_lm = float(np.median(e2e)), float(np.median(lm))
        rows.append({"batch": B, "frames": B * T, "end_to_end_fps": B * T / t, "lm_fps": B * T / t_lm,
                     "realtime_factor": cfg.seconds / t, "seconds_median": t})
    return rows


def run_listener_bench(cfg: ListenerBenchConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Load the checkpoint, measure every batch size; a JSON-able dict (settings, environment, model, results)."""
    from ehead_cli.listener.generate import ListenerGenerator

    say = progress or (lambda _msg: None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    gen = ListenerGenerator.from_checkpoint(cfg.checkpoint, device=cfg.device)
    dev = gen.device
    load = os.getloadavg if hasattr(os, "getloadavg") else lambda: (None,)
    info = {"family": "listener", "ehead": __version__, "torch": torch.__version__,
            "python": platform.python_version(), "device_type": dev.type, "device_name": device_name(dev),
            "threads": torch.get_num_threads(), "dtype": "fp32", "compile": False,
            "load_average_before": load()[0], "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    say(f"listener, batch sizes {', '.join(map(str, cfg.batch_sizes))}")
    rows = listener_rows(gen, cfg)
    info["load_average_after"] = load()[0]
    mc = gen.model.cfg
    n_vq = sum(p.numel() for p in gen.model.vq.parameters())
    n_lm = sum(p.numel() for p in gen.model.lm.parameters())
    return {"settings": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
            "environment": info,
            "model": {"preset": mc.preset, "checkpoint": str(cfg.checkpoint or "shipped"), "vq_params": n_vq,
                      "lm_params": n_lm, "lm": asdict(mc.lm), "speech_tokens": mc.tokens.speech,
                      "emotion_tokens": mc.tokens.emotion},
            "results": {"listener": rows}, "paper": PAPER_FIGURES, "targets": TARGETS.get(dev.type, {})}


def write_listener_json(result: dict[str, Any], target: Path) -> Path:
    """As ``write_json``; a folder gets ``listener-<device-slug>.json``."""
    if target.suffix != ".json":
        target = target / f"listener-{device_slug(result['environment'])}.json"
    return write_json(result, target)


def print_listener_bench(result: dict[str, Any], console) -> None:
    from rich.table import Table

    env, model = result["environment"], result["model"]
    load = f"{env['load_average_before']:.2f} -> {env['load_average_after']:.2f}"
    params = f"VQ-VAE {model['vq_params'] / 1e6:.2f} M, LM {model['lm_params'] / 1e6:.2f} M parameters"
    console.print(f"device: {env['device_name']} ({env['device_type']}), torch {env['torch']}, fp32, threads "
                  f"{env['threads']}, load average {load}; listener preset {model['preset']} ({params})",
                  markup=False, highlight=False)
    t = Table(title=f"listener motion (frames/s), {result['settings']['seconds']:g} s of speaker input per job")
    for heading in ("batch", "end to end", "LM alone (KV cache)", "x real time per job"):
        t.add_column(heading, justify="right")
    for r in result["results"]["listener"]:
        t.add_row(str(r["batch"]), f"{r['end_to_end_fps']:,.0f}", f"{r['lm_fps']:,.0f}", f"{r['realtime_factor']:.1f}")
    console.print(t)
    p = result["paper"]
    goal = ", ".join(f"{k.replace('_', ' ')} >= {v:,}" for k, v in result["targets"].items())
    console.print(f"for comparison, {p['note']}: {p['fps']} frames/s on {p['device']}" + (f"; goal: {goal}" if goal
                                                                                              else ""))
