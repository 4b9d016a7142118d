"""The ``ehead`` command line: a thin shell that parses, validates and calls the library.

User errors (``EheadError``) print one line on stderr and exit with status 2; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ehead_cli.errors import ConfigError, EheadError, InputError

app = typer.Typer(
    name="ehead",
    help="EmbodiedHead: a listening-and-speaking 3D head avatar for conversational agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """EmbodiedHead: a listening-and-speaking 3D head avatar for conversational agents."""


@app.command()
def info(
    preset: Annotated[str | None, typer.Option(help="Show one preset (paper, small, tiny).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object instead of tables.")] = False,
) -> None:
    """Model presets and their sizes, and which optional assets are configured and found."""
    from ehead_cli import config
    from ehead_cli import info as info_lib

    if preset is not None:
        data = info_lib.preset_info(config.preset(preset))
        if as_json:
            print(json.dumps(data, indent=2))
            return
        table = Table(title=f"preset {preset}", show_header=False)
        for k, v in data.items():
            table.add_row(k, str(v))
        console.print(table)
        return

    presets, assets, env = info_lib.all_presets(), info_lib.asset_status(), info_lib.environment()
    if as_json:
        print(json.dumps({"presets": presets, "assets": assets, "environment": env}, indent=2))
        return
    table = Table(title="presets")
    for col in ("preset", "d_model", "depth", "heads", "mlp", "seq_len", "cond_dim", "audio encoder",
                "trainable params"):
        table.add_column(col)
    for p in presets:
        table.add_row(p["preset"], str(p["d_model"]), str(p["depth"]), str(p["heads"]), str(p["mlp_hidden"]),
                      str(p["seq_len"]), str(p["cond_dim"]), p["audio_encoder"]["kind"],
                      f"{p['params_trainable'] / 1e6:.2f} M")
    console.print(table)
    table = Table(title="optional assets (local paths only; nothing is downloaded)")
    for col in ("asset", "variable", "flag", "status", "used for"):
        table.add_column(col)
    for a in assets:
        status = "not set" if not a["configured"] else ("found" if a["found"] else f"MISSING: {a['configured']}")
        table.add_row(a["asset"], a["env"], a["flag"], status, a["used_for"])
    console.print(table)
    console.print(f"ehead {env['ehead']}, torch {env['torch']}, python {env['python']}, "
                  f"cuda: {env['cuda_device'] or 'not available'}, threads: {env['threads']}; generate and train "
                  f"run on {env['default_device']} in {env['compute_dtype']} by default")
    found = "found" if env["default_checkpoint_found"] else "MISSING"
    console.print(f"demo checkpoint (the default of ehead generate): {env['default_checkpoint']} ({found})")


@app.command()
def train(
    data: Annotated[Path | None, typer.Option(help="Dataset folder (manifest.csv + clips/), e.g. sample_data.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder to create (config, metrics, checkpoints).")] = None,
    preset: Annotated[str, typer.Option(help="Model and schedule preset: paper, small or tiny.")] = "small",
    config: Annotated[Path | None, typer.Option(help="TOML file with [model] and [train] overrides.")] = None,
    steps: Annotated[int | None, typer.Option(help="Total optimiser steps (default: the preset's).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Windows per step over all processes.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for initialisation and data order.")] = None,
    workers: Annotated[int | None, typer.Option(help="DataLoader workers per process.")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this folder exactly where it stopped.")]
    = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    compile: Annotated[bool, typer.Option("--compile", help="Use torch.compile.")] = False,
    audio_encoder: Annotated[str | None, typer.Option(
        "--audio-encoder", help="mHuBERT-147 folder for presets with a HuBERT encoder (or EHEAD_HUBERT).")] = None,
) -> None:
    """Stage-I training (coefficient-space flow matching). Use torchrun for many GPUs."""
    from ehead_cli.train import train as run_train

    if resume is None and (data is None or out is None):
        raise ConfigError("ehead train needs --data DIR and --out RUN_DIR (or --resume RUN_DIR)")
    overrides = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "workers": workers,
                 "compile": True if compile else None}
    if resume is not None:
        for name, value in (("--preset", preset != "small"), ("--config", config), ("--seed", seed),
                            ("--batch-size", batch_size), ("--lr", lr)):
            if value:
                raise ConfigError(f"{name} cannot change a run being resumed; only --steps, --workers, --device")
    run = run_train(data, resume or out, preset, config, overrides, resume=resume is not None, device=device,
                    hubert_path=audio_encoder, command=" ".join(["ehead", *sys.argv[1:]]))
    if int(os.environ.get("RANK", "0")) == 0:
        console.print(f"checkpoint: {run / 'checkpoint'}   metrics: {run / 'metrics.csv'}")


@app.command()
def generate(
    audio: Annotated[list[Path] | None, typer.Option(
        metavar="FILE", help="Speech the avatar hears (repeat with --states).")] = None,
    states: Annotated[list[Path] | None, typer.Option(
        metavar="CSV", help="LS states CSV for the --audio at the same position (frame,state or start,end,state).")]
    = None,
    jobs: Annotated[Path | None, typer.Option(help="CSV of jobs: audio,states[,out][,avatar].")] = None,
    user_audio: Annotated[Path | None, typer.Option(help="Two-stream mode: the user's microphone track.")] = None,
    agent_audio: Annotated[Path | None, typer.Option(help="Two-stream mode: the agent's speech track.")] = None,
    agent_segments: Annotated[Path | None, typer.Option(
        help="Two-stream mode: CSV start,end[,available] of the agent utterances (seconds).")] = None,
    out: Annotated[Path, typer.Option(help="Output folder for <name>.npz and <name>.mp4.")] = Path("out"),
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint folder (default: the shipped demo model).")]
    = None,
    steps: Annotated[int, typer.Option(help="Euler sampling steps, 1-25.")] = 4,
    magnitude: Annotated[tuple[float, float], typer.Option(
        metavar="M_R M_T", help="Head-motion magnitude: rotation and translation, each in [0, 1].")] = (0.3, 0.3),
    seed: Annotated[int, typer.Option(help="Noise seed (same seed, same motion).")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    batch_size: Annotated[int, typer.Option(help="Windows per forward pass across all jobs.")] = 64,
    video: Annotated[bool, typer.Option("--video/--no-video", help="Render the MP4 too.")] = True,
    size: Annotated[int, typer.Option(help="Video size in pixels (square).")] = 512,
    avatar: Annotated[Path | None, typer.Option(
        help="Avatar folder (ehead avatar fit: renders that person, at its own size), shape file (.npy/.npz) or "
             "motion NPZ whose shape and first frame become the reference.")] = None,
    flame: Annotated[str | None, typer.Option(help="Render with FLAME from this path (or EHEAD_FLAME).")] = None,
    audio_encoder: Annotated[str | None, typer.Option(
        "--audio-encoder", help="mHuBERT-147 folder for checkpoints with a HuBERT encoder (or EHEAD_HUBERT).")]
    = None,
) -> None:
    """Generate motion (NPZ) and video (MP4 with the audio) from speech and listening/speaking states."""
    from ehead_cli import jobs as jobs_lib
    from ehead_cli.generate import Generator

    modes = sum([bool(audio or states), jobs is not None, bool(user_audio or agent_audio)])
    if modes != 1:
        raise ConfigError("give exactly one of: --audio/--states pairs, --jobs FILE, or --user-audio with "
                          "--agent-audio")
    if bool(user_audio) != bool(agent_audio):
        raise ConfigError("two-stream mode needs both --user-audio and --agent-audio")
    _check_size(size)
    gen = Generator.from_checkpoint(checkpoint, device=device, hubert_path=audio_encoder, steps=steps,
                                    magnitude=magnitude, batch_size=batch_size)
    if jobs is not None:
        job_list = jobs_lib.jobs_from_csv(jobs, out, avatar)
    elif user_audio:
        job_list = [jobs_lib.two_stream_job(user_audio, agent_audio, agent_segments, out, avatar, gen.cfg.window)]
    else:
        job_list = jobs_lib.jobs_from_pairs(audio or [], states or [], out, avatar)
    renderer = None
    if video:
        from ehead_cli.face import load_face_model
        from ehead_cli.render import Renderer

        renderer = Renderer(load_face_model(flame, device=gen.device), size=size)
    jobs_lib.run_jobs(gen, job_list, seed=seed, renderer=renderer, video=video, console=err_console, flame=flame)
    _summary(job_list)


def _check_size(size: int) -> None:
    if size < 16 or size % 2:  # yuv420p video needs even sides
        raise ConfigError(f"--size must be an even number of pixels >= 16, got {size}")


def _summary(job_list) -> None:
    table = Table(title="ehead generate")
    for col in ("job", "status", "frames", "seconds", "outputs / error"):
        table.add_column(col, overflow="fold")
    for j in job_list:
        if j.error:
            table.add_row(j.name, "[red]failed[/]", "", "", j.error)
        else:
            table.add_row(j.name, "[green]ok[/]", str(len(j.states)), f"{j.seconds:.1f}",
                          ", ".join(str(p) for p in j.outputs))
    console.print(table)
    failed = [j for j in job_list if j.error]
    if failed:
        for j in failed:
            err_console.print(f"error: {j.name}: {j.error}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)


@app.command()
def render(
    motion: Annotated[Path, typer.Argument(help="Motion NPZ written by ehead generate (or a dataset clip).")],
    audio: Annotated[Path | None, typer.Option(help="Audio to mux into the video.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output MP4 (default: next to the NPZ).")] = None,
    size: Annotated[int, typer.Option(help="Video size in pixels (square).")] = 512,
    flame: Annotated[str | None, typer.Option(help="Render with FLAME from this path (or EHEAD_FLAME).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda.")] = None,
    avatar: Annotated[Path | None, typer.Option(
        help="Avatar folder (ehead avatar fit): render that person (its identity, at its own size).")] = None,
) -> None:
    """Render an existing motion NPZ to MP4 (framed from the clip's camera when the NPZ has one)."""
    import numpy as np

    from ehead_cli.audio import load_audio
    from ehead_cli.devices import resolve_device
    from ehead_cli.face import load_face_model
    from ehead_cli.layout import MOTION_FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
    from ehead_cli.motionfile import check_head_centred, load_motion
    from ehead_cli.render import Renderer
    from ehead_cli.video import write_mp4

    _check_size(size)
    m = load_motion(motion)
    check_head_centred(m.motion, str(motion))
    wave = None
    if audio is not None:
        wave = load_audio(audio)
        n = m.n_frames * SAMPLES_PER_FRAME
        if abs(len(wave) - n) > SAMPLES_PER_FRAME * 12:
            raise InputError(f"{audio}: lasts {len(wave) / SAMPLE_RATE:.2f} s but {motion} has {m.n_frames} frames "
                             f"({m.n_frames / MOTION_FPS:.2f} s)")
        wave = np.pad(wave, (0, max(0, n - len(wave))))[:n]
    dev = resolve_device(device)
    shape = m.shape
    if avatar is not None:  # the avatar's own identity: its renderer was fitted on it
        from ehead_cli.generate import Avatar

        person = Avatar.load(avatar, device=dev, flame=flame)
        if person.renderer is None:
            raise InputError(f"{avatar}: not an avatar folder (--avatar takes the output of ehead avatar fit)")
        renderer, shape = person.renderer, person.shape
    else:
        from ehead_cli.avatar.rendering import framed

        renderer = Renderer(load_face_model(flame, device=dev), size=size)
        renderer = framed(renderer, m.camera) if m.camera is not None else renderer
    target = out or motion.with_suffix(".mp4")
    write_mp4(target, renderer.iter_frames(shape, m.motion), wave)
    console.print(f"wrote {target}")


@app.command("eval")
def eval_(
    pred: Annotated[Path, typer.Option(help="Folder of predicted motion NPZ files (<id>.npz).")],
    gt: Annotated[Path, typer.Option(help="Folder of ground-truth NPZ files, or a dataset folder (manifest.csv).")],
    metrics: Annotated[str | None, typer.Option(
        help="Comma list of metrics or groups (motion, listening, image, all); default all.")] = None,
    convention: Annotated[str, typer.Option(
        help="Metric convention: paper (default) or a published codebase's variant, e.g. codetalker.")] = "paper",
    out: Annotated[Path | None, typer.Option(help="Report folder: report.json, per_clip.csv, PNG plots.")] = None,
    baseline: Annotated[str | None, typer.Option(
        help="Also score trivial predictions: mean, still, shuffled (comma list).")] = None,
    split: Annotated[str | None, typer.Option(help="With a dataset folder as --gt: only this split.")] = None,
    pred_video: Annotated[Path | None, typer.Option(help="Folder of predicted <id>.mp4 for image metrics.")] = None,
    gt_video: Annotated[Path | None, typer.Option(help="Folder of ground-truth <id>.mp4 for image metrics.")] = None,
    speaker: Annotated[Path | None, typer.Option(help="Folder of the speaker's motion NPZ files (for P-FD).")]
    = None,
    flame: Annotated[str | None, typer.Option(help="Evaluate on FLAME vertices (or EHEAD_FLAME).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda.")] = None,
) -> None:
    """The papers' metrics on predicted vs ground-truth motion (and video), per clip and overall."""
    from ehead_cli import evaluate as ev
    from ehead_cli.devices import resolve_device
    from ehead_cli.face import load_face_model

    if (pred_video is None) != (gt_video is None):
        raise ConfigError("--pred-video and --gt-video go together")
    dev = resolve_device(device)
    report = ev.evaluate(pred, gt, metrics, convention=convention, out_dir=out, baseline=baseline, split=split,
                         image_dirs=(pred_video, gt_video) if pred_video else None, speaker_dir=speaker,
                         face=load_face_model(flame, device=dev), device=dev,
                         progress=lambda line: err_console.print(line, markup=False, highlight=False))
    ev.print_report(report, console)
    raise typer.Exit(report.exit_code)


@app.command()
def prepare(
    inputs: Annotated[list[Path], typer.Argument(metavar="VIDEO_OR_FOLDER...", help="Videos or folders of videos.")],
    out: Annotated[Path, typer.Option(help="Dataset folder to write (manifest.csv + clips/).")],
    states: Annotated[str, typer.Option(help="Listening/speaking labels: vad (offline default) or talknet.")]
    = "vad",
    tracker: Annotated[str, typer.Option(
        help="Face tracks: landmarks (needs the landmarks extra) or gagavatar (imports tracker output).")]
    = "landmarks",
    talknet: Annotated[Path | None, typer.Option(help="pretrain_TalkSet.model (or EHEAD_TALKNET).")] = None,
    gagavatar_track: Annotated[Path | None, typer.Option(
        help="GAGAvatar tracker outputs, one folder per video stem.")] = None,
    workers: Annotated[int, typer.Option(help="Files prepared in parallel.")] = 1,
    flame: Annotated[Path | None, typer.Option(help="Track with FLAME (or EHEAD_FLAME).")] = None,
) -> None:
    """Talking-face videos -> training clips with listening/speaking states and face tracks."""
    from ehead_cli.prepare.pipeline import prepare as run_prepare

    report = run_prepare(inputs, out, states=states, tracker=tracker, workers=workers, talknet=talknet,
                         gagavatar_track=gagavatar_track, flame=flame)
    console.print(f"{len(report.done)} prepared, {len(report.skipped)} already done, "
                  f"{len(report.failed)} failed -> {out / 'manifest.csv'}")
    if not report.ok:
        raise typer.Exit(1)


def _int_list(value: str, flag: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{flag} takes a comma list of integers, got {value!r}") from None
    if not out or min(out) < 1:
        raise ConfigError(f"{flag} takes positive integers, got {value!r}")
    return out


@app.command()
def bench(
    fps: Annotated[bool, typer.Option("--fps", help="Measure throughput and latency (frames/s, ms).")] = False,
    preset: Annotated[str, typer.Option(help="Model preset to measure.")] = "paper",
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    batch_sizes: Annotated[str, typer.Option(help="Windows per forward pass, comma list.")] = "1,8,64",
    steps: Annotated[str, typer.Option(help="Euler steps, comma list.")] = "1,4",
    audio_encoder: Annotated[str, typer.Option(
        "--audio-encoder", help="mel (built-in) or hubert (HuBERT-base architecture, random weights).")] = "mel",
    render: Annotated[bool, typer.Option("--render/--no-render", help="Also time the renderer and MP4.")] = True,
    dtype: Annotated[str, typer.Option(
        help="fp32, bf16, or auto: what ehead generate uses (bf16 on GPUs with native bf16, else fp32).")] = "auto",
    compile: Annotated[bool, typer.Option(
        "--compile", help="torch.compile the audio encoder and the whole sampler (on CUDA, as CUDA graphs).")] = False,
    size: Annotated[int, typer.Option(help="Render size in pixels.")] = 256,
    render_batch_sizes: Annotated[str, typer.Option(
        help="Images per renderer call, comma list (default: 1,16 on CPU, 1,64,256 on CUDA).")] = "",
    seconds: Annotated[float, typer.Option(help="Audio length of the end-to-end job.")] = 20.0,
    repeats: Annotated[int, typer.Option(help="Timed repetitions (medians are reported).")] = 10,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads (default: torch's).")] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Write the results as JSON (a .json file, or a folder: named after the device).")] = None,
    avatar: Annotated[Path | None, typer.Option(
        help="Avatar folder (ehead avatar fit): time its renderer and the whole job rendered by it.")] = None,
) -> None:
    """Throughput and latency of motion generation alone and end to end (renderer and MP4 included)."""
    from ehead_cli.bench import BenchConfig, print_bench, run_bench, write_json
    from ehead_cli.devices import native_bf16, resolve_device

    if not fps:
        raise ConfigError("nothing to measure: pass --fps")
    if dtype not in ("fp32", "bf16", "auto"):
        raise ConfigError(f"--dtype must be fp32, bf16 or auto, got {dtype!r}")
    dev = resolve_device(device)
    if dtype == "auto":
        dtype = "bf16" if native_bf16(dev) else "fp32"
    if not render_batch_sizes:
        render_batch_sizes = "1,64,256" if dev.type == "cuda" else "1,16"
    cfg = BenchConfig(preset=preset, device=str(dev), batch_sizes=_int_list(batch_sizes, "--batch-sizes"),
                      steps=_int_list(steps, "--steps"), audio_encoder=audio_encoder, render=render, dtype=dtype,
                      compile=compile, size=size, seconds=seconds, repeats=max(1, repeats), threads=threads,
                      render_batch_sizes=_int_list(render_batch_sizes, "--render-batch-sizes"),
                      avatar=str(avatar) if avatar else None)
    result = run_bench(cfg, progress=lambda msg: err_console.print(msg, markup=False, highlight=False))
    print_bench(result, console)
    if json_out is not None:
        console.print(f"wrote {write_json(result, json_out)}")


# --- ehead avatar (issue 14): fit a photoreal, person-specific neural avatar ----------------------------
avatar_app = typer.Typer(help="Person-specific neural avatars: fit one from videos, then render or generate "
                              "with --avatar AVATAR_DIR.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(avatar_app, name="avatar")


@avatar_app.command("fit")
def avatar_fit(
    videos: Annotated[list[Path], typer.Argument(metavar="VIDEO...", help="Videos of one person, one static camera.")],
    out: Annotated[Path, typer.Option(help="Avatar folder to write (AVATAR_DIR).")],
    steps: Annotated[int | None, typer.Option(help="Optimiser steps (default 1500).")] = None,
    size: Annotated[int, typer.Option(help="Image size: 256 (Stage II's) or 512.")] = 256,
    batch_size: Annotated[int | None, typer.Option(help="Frames per step (default 2).")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate of the image network.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for initialisation and frame order.")] = 0,
    flame: Annotated[str | None, typer.Option(help="Track and render with FLAME (or EHEAD_FLAME).")] = None,
    vgg: Annotated[str | None, typer.Option(help="VGG16 weights (torchvision layout) for the perceptual loss "
                                                  "(or EHEAD_VGG).")] = None,
    lpips: Annotated[str | None, typer.Option(help="LPIPS v0.1 vgg.pth: report held-out LPIPS (or EHEAD_LPIPS).")]
    = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the unfinished fit of --out.")] = False,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads (default: torch's).")] = None,
    licence: Annotated[str | None, typer.Option(help="Licence note for the card and manifest (default: the "
                                                     "person filmed must consent to its use).")] = None,
    attribution: Annotated[str | None, typer.Option(help="Attribution of the source video, for the card.")] = None,
) -> None:
    """Fit a photoreal avatar of the person in VIDEO... (face tracking needs the landmarks extra)."""
    import dataclasses

    import torch

    from ehead_cli.assets import ASSETS
    from ehead_cli.avatar.capture import read_capture
    from ehead_cli.avatar.config import SIZES, FitConfig, NeuralConfig
    from ehead_cli.avatar.fit import fit_avatar, load_saved_capture
    from ehead_cli.avatar.folder import USER_LICENCE
    from ehead_cli.devices import resolve_device
    from ehead_cli.face import load_face_model

    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    overrides = {k: v for k, v in (("steps", steps), ("batch_size", batch_size), ("lr", lr)) if v is not None}
    fit_cfg = dataclasses.replace(FitConfig(seed=seed), **overrides).validate()
    if size not in SIZES:
        raise ConfigError(f"--size must be one of {', '.join(map(str, SIZES))}, got {size}")
    neural = NeuralConfig(size=size).validate()
    dev = resolve_device(device)
    vgg = vgg or ASSETS["vgg"].configured()
    lpips = lpips or ASSETS["lpips"].configured()
    face = load_face_model(flame, device=dev)
    say = lambda msg: err_console.print(msg, markup=False, highlight=False)  # noqa: E731
    if resume:
        capture = load_saved_capture(out)
        given = sorted(str(Path(v).expanduser().resolve()) for v in videos)
        if given != sorted(str(Path(p).resolve()) for p, _ in capture.sources):
            raise ConfigError(f"--resume: {out} was being fitted from other videos "
                              f"({', '.join(Path(p).name for p, _ in capture.sources)})")
    else:
        capture = read_capture(videos, face, neural.size, fit_cfg.crop_scale, fit_cfg.holdout, progress=say)
    say(f"{capture.n_frames} frames, {len(capture.train_index)} for training, {len(capture.heldout_index)} held out")
    result = fit_avatar(capture, face, out, neural, fit_cfg, device=dev, vgg=vgg, lpips=lpips, resume=resume,
                        console=err_console, licence=licence or USER_LICENCE, attribution=attribution)
    m = result.metrics
    lp = f", LPIPS {m['lpips']:.3f}" if isinstance(m["lpips"], float) else ""
    console.print(f"wrote {out}: held-out PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}, mouth PSNR "
                  f"{m['mouth_psnr']:.2f} dB{lp} ({result.seconds / 60:.1f} min)")
# --- end of ehead avatar -------------------------------------------------------------------------------------


def main() -> None:
    try:
        app()
    except EheadError as err:
        err_console.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
