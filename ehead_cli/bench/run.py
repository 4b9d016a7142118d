"""``ehead bench --fps``: throughput and latency of motion generation and of the whole pipeline.

Measured, each after warm-up, with ``torch.cuda.synchronize()`` around every timed region on a GPU,
as the median over repetitions:

* motion only: frames/s of sampling B windows of T = 100 frames at once (N Euler steps), with the
  audio already encoded, and again including the audio encoding (reported separately);
* latency: one stream's 100-frame window, audio encoding included, p50 and p95 in milliseconds;
* renderer: frames/s of the built-in rasteriser on the built-in head at ``size`` px, batched;
* end to end: one stream of ``seconds`` of audio -> motion -> rendered frames -> an MP4 file with
  the audio (H.264 + AAC), frames/s of the whole job;
* with ``--avatar AVATAR_DIR``: the neural avatar renderer's frames/s per batch size, and the end-to-
  end job rendered by it (the avatar's identity and reference frame as the generation's reference).

Weights are random (speed does not depend on them). ``--audio-encoder hubert`` builds HuBERT base,
the mHuBERT-147 architecture, with random weights; ``mel`` swaps the preset's encoder for the
built-in log-mel encoder (``BENCH_MEL``) where the preset has another.
"""

from __future__ import annotations

import json
import os
import platform
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ehead_cli import __version__
from ehead_cli.bench.timing import time_calls
from ehead_cli.devices import device_name, resolve_device
from ehead_cli.errors import ConfigError
from ehead_cli.layout import SAMPLE_RATE, SAMPLES_PER_FRAME
from ehead_cli.model.config import AudioEncoderConfig, preset

BENCH_MEL = AudioEncoderConfig("mel", n_layers=4, dim=256, n_mels=80, conv_kernel=5)
PAPER_FIGURES = {"motion_only_fps": 900, "end_to_end_fps": 59, "device": "one NVIDIA RTX 3090",
                 "note": "the paper's figures, on different hardware"}
CPU_TARGETS = {"motion_fps": 200, "end_to_end_fps_256px": 25}
GPU_TARGETS = {"motion_only_fps_batched": 100_000, "window_latency_ms": 10, "render_fps_256px_batched": 2000}


@dataclass
class BenchConfig:
    preset: str = "paper"
    device: str = "cpu"
    batch_sizes: tuple[int, ...] = (1, 8, 64)
    steps: tuple[int, ...] = (1, 4)
    audio_encoder: str = "mel"
    render: bool = True
    dtype: str = "fp32"
    compile: bool = False
    size: int = 256
    seconds: float = 20.0
    repeats: int = 10
    warmup: int = 3
    threads: int | None = None
    render_batch_sizes: tuple[int, ...] = field(default=(1, 16))
    avatar: str | None = None  # an avatar folder: time its renderer and the job rendered by it


def device_slug(info: dict[str, Any]) -> str:
    """A file name for a result: device kind and name, then what changes the figures, e.g.
    cpu-amd-epyc-2threads or cuda-nvidia-h100-80gb-hbm3-bf16-compile."""
    kind = info["device_type"]
    base = re.sub(r"\(.*?\)", "", info["device_name"]).lower()
    base = re.sub(r"[^a-z0-9]+", "-", base).strip("-")
    if kind == "cpu":
        base += f"-{info['threads']}threads"
    if info.get("dtype", "fp32") != "fp32":
        base += f"-{info['dtype']}"
    if info.get("compile"):
        base += "-compile"
    if info.get("avatar"):
        base += "-avatar"
    return f"{kind}-{base}"[:80]


def bench_model(preset_name: str, audio_encoder: str = "mel", stats=None):
    """``preset_name``'s EmbodiedHead with random weights (seed 0; zero-initialised layers filled, as
    after training) and the ``audio_encoder`` (module docstring), under ``stats`` (default identity)."""
    from ehead_cli.model.encoders import HubertEncoder, random_hubert_base
    from ehead_cli.model.network import EmbodiedHead

    mcfg = preset(preset_name)
    if audio_encoder == "mel":
        if mcfg.audio.kind != "mel":
            mcfg = mcfg.replace(audio=BENCH_MEL)
        encoder = None
    elif audio_encoder == "hubert":
        if mcfg.audio.kind != "hubert":
            mcfg = mcfg.replace(audio=AudioEncoderConfig("hubert", 13, 768))
        encoder = HubertEncoder(mcfg.audio, model=random_hubert_base(mcfg.audio.n_layers - 1, mcfg.audio.dim))
    else:
        raise ConfigError(f"--audio-encoder must be mel or hubert, got {audio_encoder!r}")
    torch.manual_seed(0)
    model = EmbodiedHead(mcfg, stats, encoder=encoder)
    with torch.no_grad():  # zero-initialised layers get values, as after training
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.02)
    return model


def build_generator(cfg: BenchConfig, steps: int):
    from ehead_cli.generate.generator import Generator

    model = bench_model(cfg.preset, cfg.audio_encoder)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[cfg.dtype]
    gen = Generator(model, cfg.device, steps=steps, batch_size=max(cfg.batch_sizes), dtype=dtype)
    return gen.compile() if cfg.compile else gen


def _windows(gen, B: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    T = gen.cfg.window
    jobs = [gen.begin(rng.normal(size=T * SAMPLES_PER_FRAME).astype(np.float32) * 0.1,
                      np.where(np.arange(T) < T // 2, 1, -1).astype(np.int8), None, i) for i in range(B)]
    return gen.window_batch(jobs, 0)


def motion_rows(cfg: BenchConfig, gen, steps: int) -> list[dict[str, Any]]:
    rows, T = [], gen.cfg.window
    for B in cfg.batch_sizes:
        b = _windows(gen, B)
        audio = gen.encode_audio(b.wave)
        for _ in range(cfg.warmup):  # warm every kernel of both paths before either is timed
            gen.sample_windows(gen.encode_audio(b.wave), b)
        only = time_calls(lambda: gen.sample_windows(audio, b), gen.device, cfg.repeats, 0)  # noqa: B023
        full = time_calls(lambda: gen.sample_windows(gen.encode_audio(b.wave), b), gen.device,  # noqa: B023
                     cfg.repeats, 0)
        rows.append({"steps": steps, "batch": B,
                     "motion_only_fps": B * T / float(np.median(only)),
                     "motion_with_audio_fps": B * T / float(np.median(full)),
                     "window_ms_median": 1000 * float(np.median(full))})
    return rows


def latency_row(cfg: BenchConfig, gen, steps: int) -> dict[str, Any]:
    b = _windows(gen, 1)
    times = time_calls(lambda: gen.sample_windows(gen.encode_audio(b.wave), b), gen.device,
                  max(cfg.repeats, 20), cfg.warmup)
    ms = 1000 * np.asarray(times)
    return {"steps": steps, "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}


def render_rows(cfg: BenchConfig, device: torch.device) -> list[dict[str, Any]]:
    """The rasteriser on the built-in head (open mouth), timed by ``bench.render.time_render``."""
    from ehead_cli.bench.render import time_render
    from ehead_cli.face import load_face_model

    face = load_face_model(None, device=device)
    motion = torch.zeros(115, device=device)
    motion[100] = 0.15  # jaw open: the mouth's inside is drawn too
    with torch.no_grad():
        vertices = face(torch.zeros(300, device=device), motion)
    rows = []
    for B in cfg.render_batch_sizes:
        t = time_render(vertices, face.faces, face.vertex_colors, cfg.size, B, repeats=cfg.repeats,
                        antialias=True)  # as ``Renderer`` draws face models
        rows.append({"batch": B, "size": cfg.size, "render_fps": t.fps_median, "render_fps_best": t.fps_best})
    return rows


def end_to_end_row(cfg: BenchConfig, gen, steps: int) -> dict[str, Any]:
    from ehead_cli.avatar.renderers import job_renderer
    from ehead_cli.io.video import write_mp4

    rng = np.random.default_rng(1)
    n = int(cfg.seconds * SAMPLE_RATE)
    audio = (rng.normal(size=n) * 0.1).astype(np.float32)
    T = -(-n // SAMPLES_PER_FRAME)
    states = np.where((np.arange(T) // 50) % 2 == 0, 1, -1).astype(np.int8)
    person = _avatar(cfg, gen.device)
    renderer = job_renderer(person, size=cfg.size, device=gen.device, frame_clip=False)  # the avatar's or the mesh
    with tempfile.TemporaryDirectory() as tmp:
        def job() -> None:
            m = gen.generate(audio, states, person)
            write_mp4(Path(tmp) / "bench.mp4", renderer.iter_frames(m.shape, m.motion), audio)

        times = time_calls(job, gen.device, max(1, cfg.repeats // 5), 1)
    return {"steps": steps, "size": renderer.size, "seconds_of_audio": cfg.seconds,
            "renderer": "avatar" if person else "mesh",
            "end_to_end_fps": T / float(np.median(times)), "realtime_factor": cfg.seconds / float(np.median(times))}


def _avatar(cfg: BenchConfig, device: torch.device):
    """The ``generate.Avatar`` of ``--avatar`` (with its neural renderer), or None."""
    if not cfg.avatar:
        return None
    from ehead_cli.avatar.identity import Avatar

    return Avatar.load(cfg.avatar, device=device)


def run_bench(cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every measurement; returns a JSON-able dict (settings, environment, results)."""
    say = progress or (lambda _msg: None)
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.dtype == "bf16" and device.type == "cpu":
        say("note: bf16 on CPU is usually slower than fp32")
    info = {
        "ehead": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "device_type": device.type, "device_name": device_name(device), "threads": torch.get_num_threads(),
        "dtype": cfg.dtype, "compile": cfg.compile, "preset": cfg.preset, "audio_encoder": cfg.audio_encoder,
        "avatar": cfg.avatar,
        "load_average_before": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    results: dict[str, Any] = {"motion": [], "latency": [], "render": [], "avatar": [], "end_to_end": []}
    gen = build_generator(cfg, cfg.steps[0])  # one model; only the number of Euler steps changes
    for steps in cfg.steps:
        say(f"motion, {steps} step(s)")
        gen.steps = steps
        results["motion"] += motion_rows(cfg, gen, steps)
        results["latency"].append(latency_row(cfg, gen, steps))
        if cfg.render:
            say(f"end to end, {steps} step(s)")
            results["end_to_end"].append(end_to_end_row(cfg, gen, steps))
    if cfg.render:
        say("renderer")
        results["render"] = render_rows(cfg, device)
    if cfg.avatar:
        from ehead_cli.avatar.rendering import time_avatar

        say("avatar renderer")
        results["avatar"] = time_avatar(_avatar(cfg, device).renderer, cfg.render_batch_sizes, repeats=cfg.repeats)
    info["load_average_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    model_cfg = gen.cfg  # the same model for every step count
    return {"settings": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
            "environment": info, "model": {"d_model": model_cfg.d_model, "depth": model_cfg.depth,
                                           "audio": asdict(model_cfg.audio)},
            "results": results, "paper": PAPER_FIGURES,
            "targets": CPU_TARGETS if device.type == "cpu" else GPU_TARGETS}


def write_json(result: dict[str, Any], target: Path) -> Path:
    """Write to ``target`` (a .json file, or a folder: ``<device-slug>.json`` inside it), atomically."""
    from ehead_cli.io.atomic import atomic_path

    if target.suffix != ".json":
        target = target / f"{device_slug(result['environment'])}.json"
    with atomic_path(target, flag="--json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    return target
