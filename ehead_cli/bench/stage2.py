"""``ehead bench --stage2``: Stage II training throughput (samples/s), what the renderer costs.

One timed call is one whole optimiser step of ``ehead train --stage 2`` (``train.stage2.Stage2Step``,
the loss the training loop runs) on a batch of B windows of T = 100 frames with K rendered frames
each: the DiT's forward in the autocast dtype (bf16 where the device has it natively, as training),
the one-step endpoint, the renderer on B x K images at S px, L1 and the perceptual term against
video frames, the backward through renderer and DiT, gradient clipping and the AdamW step. The
figure is the median over ``repeats`` steps after ``warmup`` untimed ones (the one timer,
``bench.timing``):

* samples/s: windows per second (a sample is a window, as the paper's batch of 4 counts them);
* rendered frames/s: B x K images per second through the renderer, forward and backward;
* step (ms).

Rows: each batch size, with each perceptual term: ``ms-ssim`` (1 - MS-SSIM, what runs without
``--vgg``) and ``vgg16`` (the VGG16 trunk with random weights: the paper's loss, the same cost as
trained weights). The renderer is the built-in mesh renderer (``--avatar builtin`` in training) at
``size`` px, or with ``--avatar AVATAR_DIR`` that avatar's neural renderer at its own size.

Weights are random (speed does not depend on them); the motion statistics put the random motion
within a few centimetres and degrees of the neutral head, so the renderer draws a head of the usual
size, and the frames are random images (the loss's cost does not depend on them either).
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
from ehead_cli.bench.run import bench_model, device_name, device_slug, write_json
from ehead_cli.bench.timing import time_calls
from ehead_cli.devices import native_bf16, resolve_device
from ehead_cli.errors import ConfigError
from ehead_cli.layout import MOTION_DIM, SAMPLES_PER_FRAME

PERCEPTUAL_KINDS = ("ms-ssim", "vgg16")
PAPER_NOTE = ("the paper gives no Stage-II throughput or training time; it trains Stage II for 150,000 iterations of "
              "total batch 4 on two NVIDIA RTX 3090 GPUs (section 4.1)")
MOTION_STD = 0.02  # the bench's motion statistics: every coefficient within a few hundredths of neutral


@dataclass
class Stage2BenchConfig:
    preset: str = "paper"
    device: str = "cpu"
    batch_sizes: tuple[int, ...] = ()  # () = the preset's [stage2] batch_size
    frames_per_window: int | None = None  # None = the preset's [stage2.refine]
    size: int = 256
    dtype: str = "auto"  # auto: bf16 autocast where the device has native bf16 (as training), else fp32
    perceptual: tuple[str, ...] = PERCEPTUAL_KINDS
    repeats: int = 5
    warmup: int = 2
    threads: int | None = None
    avatar: str | None = None


def _model(preset_name: str, device: torch.device):
    from ehead_cli.model.stats import MotionStats

    stats = MotionStats([0.0] * MOTION_DIM, [MOTION_STD] * MOTION_DIM, [0.0, 0.0], [1.0, 1.0])
    return bench_model(preset_name, "mel", stats).to(device).train()


def _renderer(cfg: Stage2BenchConfig, device: torch.device):
    """(kind, renderer, camera): a trainable renderer from the registry (``avatar.renderers``): the
    mesh kind at ``cfg.size`` (``--avatar builtin`` in training) or a copy of the avatar's."""
    from ehead_cli.avatar.kinds import kind_of
    from ehead_cli.avatar.renderers import BUILTIN, builtin_camera, trainable_renderer
    from ehead_cli.face import load_face_model

    face = load_face_model(None, device=device)
    r, _loaded = trainable_renderer(cfg.avatar or BUILTIN, face, builtin_camera(face, cfg.size), device)
    return kind_of(r), r, r.camera


def _batch(head, B: int, K: int, S: int, device: torch.device, seed: int = 0):
    """A FrameBatch of B random windows with K random frames each (as the training data gives it)."""
    from ehead_cli.model.windows import WindowBatch
    from ehead_cli.train.stage2 import FrameBatch

    g = torch.Generator().manual_seed(seed)
    T, L = head.cfg.window, head.cfg.history_frames
    wave = 0.1 * torch.randn(B, T * SAMPLES_PER_FRAME, generator=g)
    window = WindowBatch(
        states=torch.where(torch.arange(T) < T // 2, 1.0, -1.0).expand(B, T).clone(),
        history=torch.randn(B, L, MOTION_DIM, generator=g), history_states=-torch.ones(B, L),
        shape=torch.zeros(B, 100), ref=torch.zeros(B, MOTION_DIM), magnitude=torch.full((B, 2), 0.3),
        x0=torch.randn(B, T, MOTION_DIM, generator=g), wave=wave, x1=torch.randn(B, T, MOTION_DIM, generator=g),
        t=torch.rand(B, generator=g), mask=torch.ones(B, T))
    with torch.no_grad():
        if head.encoder.window_local:  # training reads the front end from its feature cache
            window.front, window.wave = head.encoder.frontend(wave.to(device)).cpu(), None
    index = torch.stack([torch.randperm(T, generator=g)[:K].sort().values for _ in range(B)])
    frames = torch.randint(0, 256, (B, K, S, S, 3), generator=g, dtype=torch.uint8)
    return FrameBatch(window, frames, index, torch.zeros(B, 300), torch.zeros(B, dtype=torch.int64)).to(device)


def stage2_rows(cfg: Stage2BenchConfig, head, renderer, camera, batch_sizes: tuple[int, ...], K: int,
                refine, device: torch.device, use_bf16: bool, say: Callable[[str], None]) -> list[dict[str, Any]]:
    from ehead_cli.avatar.losses import VGGPerceptual
    from ehead_cli.metrics.image import vgg16_features
    from ehead_cli.train.stage2 import Stage2Model, Stage2Step, stage2_param_groups

    model = Stage2Model(head, {"bench": renderer})
    opt = torch.optim.AdamW(stage2_param_groups(model, refine, 0.01), lr=1e-5, fused=device.type == "cuda")
    rows = []
    for kind in cfg.perceptual:
        perceptual = VGGPerceptual(vgg16_features()).to(device) if kind == "vgg16" else None
        step_module = Stage2Step(model, refine, ["bench"], [camera], perceptual)
        for B in batch_sizes:
            say(f"stage II step, batch {B} x {K} frames, {kind}")
            batch = _batch(head, B, K, renderer.size, device)

            def step(batch=batch, step_module=step_module) -> None:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    losses = step_module(batch)
                opt.zero_grad(set_to_none=True)
                losses["loss"].backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()

            times = time_calls(step, device, cfg.repeats, cfg.warmup)
            t = float(np.median(times))
            rows.append({"batch": B, "frames_per_window": K, "size": renderer.size, "perceptual": kind,
                         "samples_per_s": B / t, "rendered_frames_per_s": B * K / t, "step_ms": 1000 * t,
                         "step_ms_best": 1000 * float(np.min(times))})
    return rows


def run_stage2_bench(cfg: Stage2BenchConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time Stage II's optimiser step; a JSON-able dict (settings, environment, model, results)."""
    from ehead_cli.train.stage2 import resolve_stage2_config

    say = progress or (lambda _msg: None)
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.dtype not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"--dtype must be fp32, bf16 or auto, got {cfg.dtype!r}")
    bad = set(cfg.perceptual) - set(PERCEPTUAL_KINDS)
    if bad:
        raise ConfigError(f"unknown perceptual term(s) {', '.join(sorted(bad))}: use {', '.join(PERCEPTUAL_KINDS)}")
    use_bf16 = cfg.dtype == "bf16" or (cfg.dtype == "auto" and native_bf16(device))
    sched, refine = resolve_stage2_config(cfg.preset, None, {})
    head = _model(cfg.preset, device)
    K = cfg.frames_per_window or refine.frames_per_window
    if not 1 <= K <= head.cfg.window:
        raise ConfigError(f"--frames-per-window must be in 1..{head.cfg.window}, got {K}")
    batch_sizes = tuple(cfg.batch_sizes) or (sched.batch_size,)
    kind, renderer, camera = _renderer(cfg, device)
    load = os.getloadavg if hasattr(os, "getloadavg") else lambda: (None,)
    info = {"benchmark": "stage2", "ehead": __version__, "torch": torch.__version__,
            "python": platform.python_version(), "device_type": device.type, "device_name": device_name(device),
            "threads": torch.get_num_threads(), "dtype": "bf16" if use_bf16 else "fp32", "compile": False,
            "preset": cfg.preset, "size": renderer.size, "renderer": kind, "avatar": cfg.avatar,
            "load_average_before": load()[0], "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    rows = stage2_rows(cfg, head, renderer, camera, batch_sizes, K, refine, device, use_bf16, say)
    info["load_average_after"] = load()[0]
    n_dit = sum(p.numel() for p in head.parameters() if p.requires_grad)
    n_renderer = sum(p.numel() for p in renderer.parameters() if p.requires_grad)
    return {"settings": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
            "environment": info,
            "model": {"d_model": head.cfg.d_model, "depth": head.cfg.depth, "motion_params": n_dit,
                      "renderer": kind, "renderer_params": n_renderer, "renderer_lr_scale": refine.renderer_lr_scale},
            "results": {"stage2": rows}, "paper": {"note": PAPER_NOTE}}


def write_stage2_json(result: dict[str, Any], target: Path) -> Path:
    """As ``bench.run.write_json``; a folder gets ``stage2-<device-slug>-<preset>-<size>px.json``."""
    if target.suffix != ".json":
        env = result["environment"]
        target = target / f"stage2-{device_slug(env)}-{env['preset']}-{env['size']}px.json"
    return write_json(result, target)


def print_stage2_bench(result: dict[str, Any], console) -> None:
    from rich.table import Table

    env, model = result["environment"], result["model"]
    load = f"{env['load_average_before']:.2f} -> {env['load_average_after']:.2f}"
    console.print(f"device: {env['device_name']} ({env['device_type']}), torch {env['torch']}, {env['dtype']}, "
                  f"threads {env['threads']}, load average {load}; preset {env['preset']} "
                  f"({model['motion_params'] / 1e6:.2f} M motion parameters), {model['renderer']} renderer "
                  f"({model['renderer_params'] / 1e6:.2f} M parameters)", markup=False, highlight=False)
    t = Table(title="Stage II training: one optimiser step (forward, render, backward, AdamW)")
    for heading in ("batch", "frames/window", "size", "perceptual", "samples/s", "rendered frames/s", "step (ms)"):
        t.add_column(heading, justify="right")
    for r in result["results"]["stage2"]:
        t.add_row(str(r["batch"]), str(r["frames_per_window"]), f"{r['size']} px", r["perceptual"],
                  f"{r['samples_per_s']:.2f}", f"{r['rendered_frames_per_s']:.1f}", f"{r['step_ms']:.0f}")
    console.print(t)
    console.print(f"for comparison: {result['paper']['note']}.", markup=False, highlight=False)
