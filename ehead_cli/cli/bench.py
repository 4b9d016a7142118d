"""``ehead bench``: motion generation and end-to-end throughput, Stage II training throughput (``--stage2``),
or the listener's frames/s (``--family listener``); ``BENCH_FLAGS`` says which flags each takes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ehead_cli import checks
from ehead_cli.cli import options as opt
from ehead_cli.cli.flags import Excluded, FlagTable, Options
from ehead_cli.cli.shell import console, say, set_threads
from ehead_cli.errors import ConfigError

BENCH_FLAGS: FlagTable = {
    "listener": (Excluded(("preset", "steps", "audio_encoder", "render", "dtype", "compile", "size",
                           "render_batch_sizes"), "applies to --family embodiedhead"),),
    "embodiedhead": (Excluded(("checkpoint",), "applies to --family listener (EmbodiedHead's bench times random "
                              "weights of --preset)"),),
    "embodiedhead stage2": (Excluded(("fps", "steps", "audio_encoder", "render", "compile", "render_batch_sizes",
                                      "seconds"), "does not apply to --stage2"),),
    "embodiedhead stage2 avatar": (Excluded(("size",), "does not apply with --avatar: the avatar renders at its own "
                                            "size"),),
    "embodiedhead fps": (Excluded(("frames_per_window",), "applies to --stage2"),),
}

Checkpoint = opt.checkpoint("Listener: the checkpoint or run folder to time (required: no listener ships yet).")


def bench(
    ctx: typer.Context,
    fps: Annotated[bool, typer.Option("--fps", help="Measure throughput and latency (frames/s, ms).")] = False,
    preset: Annotated[str, typer.Option(help="Model preset to measure.")] = "paper",
    device: opt.Device = None,
    batch_sizes: Annotated[str, typer.Option(help="Windows per forward pass, comma list.")] = "1,8,64",
    steps: Annotated[str, typer.Option(help="Euler steps, comma list.")] = "1,4",
    audio_encoder: Annotated[str, typer.Option(
        "--audio-encoder", metavar="mel|hubert",
        help="mel (built-in) or hubert (HuBERT-base architecture, random weights).")] = "mel",
    render: Annotated[bool, typer.Option("--render/--no-render", help="Also time the renderer and MP4.")] = True,
    dtype: Annotated[str, typer.Option(
        help="fp32, bf16, or auto: what ehead generate uses (bf16 on GPUs with native bf16, else fp32).")] = "auto",
    compile: Annotated[bool, typer.Option(
        "--compile", help="torch.compile the audio encoder and the whole sampler (on CUDA, as CUDA graphs).")] = False,
    size: opt.Size = 256,
    render_batch_sizes: Annotated[str, typer.Option(
        help="Images per renderer call, comma list (default: 1,16 on CPU, 1,64,256 on CUDA).")] = "",
    seconds: Annotated[float, typer.Option(help="Audio length of the end-to-end job.",
                                           callback=lambda v: checks.duration(v))] = 20.0,
    repeats: Annotated[int, typer.Option(help="Timed repetitions (medians are reported).",
                                         callback=lambda v: checks.positive(v, "--repeats"))] = 10,
    threads: opt.Threads = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Write the results as JSON (a .json file, or a folder: named after the device).")] = None,
    family: opt.Family = None,
    checkpoint: Checkpoint = None,
    avatar: opt.TimedAvatar = None,
    stage2: Annotated[bool, typer.Option(
        "--stage2", help="Instead: Stage II training throughput (samples/s of whole optimiser steps, the renderer "
        "in the loop; --batch-sizes default: the preset's).")] = False,
    frames_per_window: Annotated[int | None, typer.Option(
        help="--stage2: frames rendered per window (default: the preset's [stage2.refine]).",
        callback=lambda v: v if v is None else checks.positive(v, "--frames-per-window"))] = None,
) -> None:
    """Throughput and latency of motion generation alone and end to end (renderer and MP4 included); with
    --stage2, Stage II training samples/s; with --family listener, listener frames/s (the KV-cached LM, at
    each batch size)."""
    o = Options.of(ctx)
    if family == "listener":
        o.refuse(BENCH_FLAGS, "listener")
        return _listener(o)
    o.refuse(BENCH_FLAGS, "embodiedhead")
    if stage2:
        o.refuse(BENCH_FLAGS, "embodiedhead stage2", *(["embodiedhead stage2 avatar"] if avatar else []))
        return _stage2(o)
    o.refuse(BENCH_FLAGS, "embodiedhead fps")
    if not fps:
        raise ConfigError("nothing to measure: pass --fps")
    if dtype not in ("fp32", "bf16", "auto"):
        raise ConfigError(f"--dtype must be fp32, bf16 or auto, got {dtype!r}")
    return _fps(o)


def _fps(o: Options) -> None:
    """``ehead bench --fps`` (``bench.run``)."""
    from ehead_cli.bench.report import print_bench
    from ehead_cli.bench.run import BenchConfig, run_bench, write_json
    from ehead_cli.devices import native_bf16, resolve_device

    dev = resolve_device(o.device)
    dtype = ("bf16" if native_bf16(dev) else "fp32") if o.dtype == "auto" else o.dtype
    render_batch_sizes = o.render_batch_sizes or ("1,64,256" if dev.type == "cuda" else "1,16")
    cfg = BenchConfig(preset=o.preset, device=str(dev), batch_sizes=checks.int_list(o.batch_sizes, "--batch-sizes"),
                      steps=checks.int_list(o.steps, "--steps", checks.steps), audio_encoder=o.audio_encoder,
                      render=o.render, dtype=dtype, compile=o.compile, size=o.size, seconds=o.seconds,
                      repeats=o.repeats, threads=set_threads(o.threads),
                      render_batch_sizes=checks.int_list(render_batch_sizes, "--render-batch-sizes"),
                      avatar=str(o.avatar) if o.avatar else None)
    result = run_bench(cfg, progress=say)
    print_bench(result, console)
    if o.json_out is not None:
        console.print(f"wrote {write_json(result, o.json_out)}")


def _stage2(o: Options) -> None:
    """``ehead bench --stage2`` (``bench.stage2``)."""
    from ehead_cli.bench.stage2 import Stage2BenchConfig, print_stage2_bench, run_stage2_bench, write_stage2_json
    from ehead_cli.devices import resolve_device

    sizes = checks.int_list(o.batch_sizes, "--batch-sizes") if o.gave("batch_sizes") else ()
    cfg = Stage2BenchConfig(preset=o.preset, device=str(resolve_device(o.device)), batch_sizes=tuple(sizes),
                            frames_per_window=o.frames_per_window, size=o.size, dtype=o.dtype, repeats=o.repeats,
                            threads=set_threads(o.threads), avatar=str(o.avatar) if o.avatar else None)
    result = run_stage2_bench(cfg, progress=say)
    print_stage2_bench(result, console)
    if o.json_out is not None:
        console.print(f"wrote {write_stage2_json(result, o.json_out)}")


def _listener(o: Options) -> None:
    """``ehead bench --family listener`` (``bench.listener``)."""
    from ehead_cli.bench.listener import (
        ListenerBenchConfig,
        print_listener_bench,
        run_listener_bench,
        write_listener_json,
    )
    from ehead_cli.devices import resolve_device

    cfg = ListenerBenchConfig(checkpoint=str(o.checkpoint) if o.checkpoint else None,
                              device=str(resolve_device(o.device)),
                              batch_sizes=checks.int_list(o.batch_sizes, "--batch-sizes"), seconds=o.seconds,
                              repeats=o.repeats, threads=set_threads(o.threads))
    result = run_listener_bench(cfg, progress=say)
    print_listener_bench(result, console)
    if o.json_out is not None:
        console.print(f"wrote {write_listener_json(result, o.json_out)}")
