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
import typer.core
from rich.console import Console
from rich.table import Table

from ehead_cli import checks
from ehead_cli.errors import ConfigError, EheadError, InputError


class _Commands(typer.core.TyperGroup):
    """The command group: Ctrl-C or SIGTERM during a command ends it with one line saying what was
    kept (the command sets ``interrupted_note``) instead of click's bare "Aborted!"."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as err:
            from ehead_cli.io.atomic import Terminated

            what = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
            note = interrupted_note() if interrupted_note else "nothing half-written was left behind"
            if note:  # None: the library already said what it kept (training saves its state)
                err_console.print(f"{what}: {note}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(143 if isinstance(err, Terminated) else 130) from None


app = typer.Typer(
    cls=_Commands,
    name="ehead",
    help="EmbodiedHead: a listening-and-speaking 3D head avatar for conversational agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
def _make_console(stderr: bool = False) -> Console:
    """Rich output at the terminal's width; piped into a file or another program (where rich would
    assume 80 columns and cut tables), at the content's full width instead, unless COLUMNS says."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not (hasattr(stream, "isatty") and stream.isatty()) and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=1000 if piped else None)


console = _make_console()
err_console = _make_console(stderr=True)
interrupted_note = None  # a command's () -> str | None: what an interruption leaves behind (see _Commands)


def _note_interruption(note) -> None:
    global interrupted_note
    interrupted_note = note

# --- options several commands share: one definition and one check each (ehead_cli.checks) ----------
Threads = Annotated[int | None, typer.Option(
    help="CPU threads for torch (default: EHEAD_THREADS, else one per core the load average says is idle).",
    callback=lambda v: checks.positive(v, "--threads"))]
Steps = Annotated[int, typer.Option(help=f"Euler sampling steps, 1-{checks.MAX_STEPS}.",
                                    callback=lambda v: checks.steps(v))]
Size = Annotated[int, typer.Option(help="Video size in pixels (square, even, >= 16).",
                                   callback=lambda v: checks.size(v))]

FlameLandmarks = Annotated[str | None, typer.Option(
    help="FLAME's 68-point landmark embedding, DECA's landmark_embedding.npy (or EHEAD_FLAME_LANDMARKS).")]

FAMILIES = ("embodiedhead", "listener")
Family = Annotated[str | None, typer.Option(
    metavar="embodiedhead|listener", help="Model family: embodiedhead (default; the Rectified-Flow DiT) or listener "
    "(the multimodal LM listener: VQ-VAE + GPT-2, README 'The listener family').",
    callback=lambda v: checks.one_of(v, FAMILIES, "--family"))]
SpeechTokenizer = Annotated[str | None, typer.Option(
    "--speech-tokenizer", help="Listener: SpeechTokenizer folder (config.json + SpeechTokenizer.pt) for presets "
    "with SpeechTokenizer speech tokens (or EHEAD_SPEECHTOKENIZER).")]
Emoca = Annotated[str | None, typer.Option(
    help="EMOCA emotion recogniser folder (cfg.yaml + checkpoints/*.ckpt): the listener's emotion tokens for "
    "presets that use it, and L2 Affect in ehead eval (or EHEAD_EMOCA).")]


def _given(ctx: typer.Context, *names: str) -> list[str]:
    """The flags among the parameters ``names`` that the user gave (not left at their defaults). By the
    source's name: typer carries its own copy of click, whose ParameterSource is another class."""
    flags = {p.name: p.opts[0] for p in ctx.command.params}
    given = ("COMMANDLINE", "ENVIRONMENT", "PROMPT")
    return [flags[n] for n in names if getattr(ctx.get_parameter_source(n), "name", None) in given]


def _refuse(given: list[str], why: str) -> None:
    if given:
        raise ConfigError(f"{given[0]} {why}")


def set_threads(threads: int | None) -> int:
    """Apply --threads (torch is imported here, not when the CLI starts: --help stays fast)."""
    from ehead_cli.devices import set_threads as apply

    return apply(threads)


@app.callback()
def _root() -> None:
    """EmbodiedHead: a listening-and-speaking 3D head avatar for conversational agents."""


@app.command()
def info(
    preset: Annotated[str | None, typer.Option(help="Show one preset (paper, small, tiny).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object instead of tables.")] = False,
) -> None:
    """Model presets and their sizes, and which optional assets are configured and found."""
    from ehead_cli import info as info_lib
    from ehead_cli.model import config

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
        table.add_row(a["asset"], a["env"], f"{a['flag']} ({', '.join(a['commands'])})", status, a["used_for"])
    console.print(table)
    console.print(f"ehead {env['ehead']}, torch {env['torch']}, python {env['python']}, "
                  f"cuda: {env['cuda_device'] or 'not available'}, threads: {env['threads']}; generate and train "
                  f"run on {env['default_device']} in {env['compute_dtype']} by default")
    found = "found" if env["default_checkpoint_found"] else "MISSING"
    console.print(f"demo checkpoint (the default of ehead generate): {env['default_checkpoint']} ({found})")


@app.command()
def train(
    ctx: typer.Context,
    data: Annotated[Path | None, typer.Option(help="Dataset folder (manifest.csv + clips/), e.g. sample_data; for "
                                              "the listener a dyadic one (+ speaker/), e.g. sample_data/dyadic.")]
    = None,
    out: Annotated[Path | None, typer.Option(help="Run folder to create (config, metrics, checkpoints).")] = None,
    preset: Annotated[str, typer.Option(
        help="Model and schedule preset: paper, small or tiny (listener stages lm and tokens: default the --vq "
        "run's).")] = "small",
    config: Annotated[Path | None, typer.Option(
        help="TOML file with [model] and [train] overrides (listener: [vq], [tokens], [lm], [train_vq], "
        "[train_lm]).")] = None,
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
    threads: Threads = None,
    family: Family = None,
    stage: Annotated[str | None, typer.Option(
        help="EmbodiedHead: 1 (Stage I, the default) or 2 (Stage II: image-domain refinement of an --init run "
        "with its renderer). Listener (required): vq (the VQ-VAE), tokens (the token codebooks alone, optional) "
        "or lm (codebooks + the language model).")] = None,
    init: Annotated[Path | None, typer.Option(
        help="--stage 2: the Stage-I run folder (or checkpoint folder) to refine.")] = None,
    avatar: Annotated[list[str] | None, typer.Option(
        metavar="AVATAR_DIR|builtin", help="--stage 2: the renderer trained with the DiT: an avatar folder (ehead "
        "avatar fit; repeat for several people, each rendering the clips of its video) or builtin (the mesh "
        "renderer).")] = None,
    vgg: Annotated[str | None, typer.Option(
        help="--stage 2: VGG16 weights (torchvision layout) for the perceptual loss (or EHEAD_VGG); without them "
        "1 - MS-SSIM stands in for it.")] = None,
    flame: Annotated[str | None, typer.Option(
        help="--stage 2: FLAME (or EHEAD_FLAME), for data and avatars on FLAME.")] = None,
    vq: Annotated[Path | None, typer.Option(
        help="Listener --stage lm / tokens: the stage-vq run folder (or a listener checkpoint) to build on.")] = None,
    lm: Annotated[str | None, typer.Option(
        help="Listener --stage lm: a local pretrained GPT-2 (transformers folder) to initialise the LM (or "
        "EHEAD_GPT2); default: built from the preset's [lm] sizes.")] = None,
    speech_tokenizer: SpeechTokenizer = None,
    emoca: Emoca = None,
) -> None:
    """Train: EmbodiedHead's Stage I (coefficient-space flow matching) or Stage II (--stage 2: joint image-domain
    refinement of the DiT and the renderer), or with --family listener one stage of the listener. Use torchrun for
    many GPUs."""
    from ehead_cli.train.stage1 import train as run_train

    record = None
    if resume is not None:
        from ehead_cli.train.state import read_record

        record = read_record(resume)
    run_family = "listener" if record is not None and record.get("family") == "listener" else "embodiedhead"
    if family is not None and record is not None and family != run_family:
        raise ConfigError(f"--resume {resume} is a {run_family} run; leave out --family {family}")
    if (family or run_family) == "listener":
        _refuse(_given(ctx, "init", "avatar", "vgg", "flame"), "applies to --family embodiedhead --stage 2")
        _train_listener(ctx, data, out, preset, config, batch_size, seed, workers, resume, record, device, compile,
                        threads, stage, vq, lm, speech_tokenizer, emoca)
        return
    if stage not in (None, "1", "2"):
        raise ConfigError(f"--stage {stage} is a listener stage: add --family listener (EmbodiedHead trains --stage 1 "
                          "or 2)")
    _refuse(_given(ctx, "vq", "lm", "speech_tokenizer", "emoca"), "applies to --family listener")
    run_stage = str(record.get("stage", 1)) if record is not None else (stage or "1")
    if record is not None and stage is not None and stage != run_stage:
        raise ConfigError(f"--resume {resume} is a stage-{run_stage} run; leave out --stage {stage}")
    if run_stage == "2":
        _train_stage2(ctx, data, out, preset, config, steps, batch_size, lr, seed, workers, resume, device, compile,
                      audio_encoder, threads, init, avatar, vgg, flame)
        return
    _refuse(_given(ctx, "init", "avatar", "vgg", "flame"), "applies to --stage 2")
    if resume is None and (data is None or out is None):
        raise ConfigError("ehead train needs --data DIR and --out RUN_DIR (or --resume RUN_DIR)")
    set_threads(threads)
    _note_interruption(lambda: None)  # the training loop says where the state is saved
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


def _train_stage2(ctx, data, out, preset, config, steps, batch_size, lr, seed, workers, resume, device, compile,
                  audio_encoder, threads, init, avatar, vgg, flame) -> None:
    """``ehead train --stage 2``: Stage II (ehead_cli.train.stage2)."""
    from ehead_cli.assets import ASSETS
    from ehead_cli.train.stage2 import train as run_stage2

    if resume is not None:
        _refuse(_given(ctx, "preset", "config", "seed", "batch_size", "lr", "init", "avatar"),
                "cannot change a Stage-II run being resumed; only --steps, --workers, --device, --threads")
    elif data is None or out is None or init is None or not avatar:
        raise ConfigError("ehead train --stage 2 needs --init RUN_DIR, --avatar AVATAR_DIR|builtin, --data DATASET "
                          "(with frames) and --out RUN2 (or --resume RUN2)")
    set_threads(threads)
    _note_interruption(lambda: None)  # the training loop says where the state is saved
    overrides = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "workers": workers,
                 "compile": True if compile else None}
    run = run_stage2(data, resume or out, init, avatar, preset if _given(ctx, "preset") else None, config, overrides,
                     resume=resume is not None, device=device, hubert_path=audio_encoder,
                     vgg=vgg or ASSETS["vgg"].configured(), flame=flame,
                     command=" ".join(["ehead", *sys.argv[1:]]))
    if int(os.environ.get("RANK", "0")) == 0:
        console.print(f"checkpoint (DiT + renderer): {run / 'checkpoint'}   metrics: {run / 'metrics.csv'}")


LISTENER_STAGES = ("vq", "tokens", "lm")


def _train_listener(ctx, data, out, preset, config, batch_size, seed, workers, resume, record, device, compile,
                    threads, stage, vq, lm, speech_tokenizer, emoca) -> None:
    """``ehead train --family listener``: the flags of each stage checked, then the library's stage."""
    from ehead_cli.listener import train as lt

    _refuse(_given(ctx, "steps", "lr"), "applies to --family embodiedhead; a listener's schedule is its preset's "
            "phases (change them with --config FILE.toml: [train_vq] / [train_lm] phases)")
    _refuse(_given(ctx, "audio_encoder"), "applies to --family embodiedhead (the listener hears through its speech "
            "tokens: --speech-tokenizer for presets that use SpeechTokenizer)")
    if record is not None:
        if stage is not None and stage != record.get("stage"):
            raise ConfigError(f"--resume {resume} is a stage-{record.get('stage')} run; leave out --stage {stage}")
        stage = record.get("stage")
        _refuse(_given(ctx, "preset", "config", "seed", "batch_size", "vq", "lm"),
                "cannot change a listener run being resumed; only --workers, --device, --threads, tokeniser paths")
    if stage is None:
        raise ConfigError("--family listener needs --stage vq, tokens or lm")
    checks.one_of(stage, LISTENER_STAGES, "--stage")
    if stage == "vq":
        _refuse(_given(ctx, "vq", "lm", "speech_tokenizer", "emoca"), "applies to --stage lm (and --vq to tokens)")
    if stage == "tokens":
        _refuse(_given(ctx, "lm", "speech_tokenizer", "emoca", "compile", "workers", "batch_size"),
                "does not apply to --stage tokens (it fits k-means codebooks, nothing to resume)")
    if record is None and (data is None or out is None):
        raise ConfigError(f"ehead train --family listener --stage {stage} needs --data DIR and --out RUN_DIR "
                          "(or --resume RUN_DIR)")
    if record is None and stage != "vq" and vq is None:
        raise ConfigError(f"--stage {stage} needs --vq VQ_RUN (a stage-vq run folder or a listener checkpoint)")
    set_threads(threads)
    section = "train_vq" if stage == "vq" else "train_lm"
    train_over = {k: v for k, v in {"batch_size": batch_size, "seed": seed, "workers": workers,
                                    "compile": True if compile else None}.items() if v is not None}
    overrides = {section: train_over} if train_over else None
    command = " ".join(["ehead", *sys.argv[1:]])
    # stages lm and tokens take their non-VQ sections from --vq's config unless --preset is given
    preset_arg = preset if stage == "vq" or _given(ctx, "preset") else None
    if stage == "tokens":
        run = lt.fit_tokens(data, out, vq, preset_arg, config, overrides, device=device, command=command)
        console.print(f"token codebooks: {run / 'checkpoint'} (use it as --vq {run} for --stage lm)")
        return
    _note_interruption(lambda: None)  # the training loop says where the state is saved
    if stage == "vq":
        run = lt.train_vq(data, resume or out, preset_arg, config, overrides, resume=record is not None,
                          device=device, command=command)
    else:
        run = lt.train_lm(data, resume or out, vq, preset_arg, config, overrides, resume=record is not None,
                          device=device, lm_path=lm, speech_tokenizer=speech_tokenizer, emoca=emoca, command=command)
    if int(os.environ.get("RANK", "0")) == 0:
        best = f"   best: {run / 'best'}" if (run / "best").is_dir() else ""
        console.print(f"checkpoint: {run / 'checkpoint'}{best}   metrics: {run / 'metrics.csv'}")


@app.command()
def generate(
    ctx: typer.Context,
    audio: Annotated[list[Path] | None, typer.Option(
        metavar="FILE", help="Speech the avatar hears (repeat with --states).")] = None,
    states: Annotated[list[Path] | None, typer.Option(
        metavar="CSV|auto", help="LS states CSV for the --audio at the same position (frame,state or "
        "start,end,state), or auto: speaking where the audio has voice (pauses up to 0.5 s bridged), listening "
        "elsewhere, for a recording of the agent alone.")] = None,
    jobs: Annotated[Path | None, typer.Option(help="CSV of jobs: audio,states[,out][,avatar].")] = None,
    user_audio: Annotated[Path | None, typer.Option(help="Two-stream mode: the user's microphone track.")] = None,
    agent_audio: Annotated[Path | None, typer.Option(help="Two-stream mode: the agent's speech track.")] = None,
    agent_segments: Annotated[Path | None, typer.Option(
        help="Two-stream mode: CSV start,end[,available], one row per agent utterance, in seconds: where it lies "
        "in the agent track (start,end) and when it reaches the avatar in session time (available, default its "
        "start: e.g. when the TTS delivered it). Without it, utterances are the agent track's non-silent "
        "stretches, each available at its start.")] = None,
    out: Annotated[Path, typer.Option(help="Output folder for <name>.npz and <name>.mp4.")] = Path("out"),
    checkpoint: Annotated[Path | None, typer.Option(
        help="Checkpoint or run folder (default: the shipped demo model; --family listener: required, no listener "
        "ships yet).")] = None,
    steps: Steps = 4,
    magnitude: Annotated[tuple[float, float], typer.Option(
        metavar="M_R M_T", help="Head-motion magnitude: rotation and translation, each in [0, 1].",
        callback=lambda v: checks.magnitude(v))] = (0.3, 0.3),
    seed: Annotated[int, typer.Option(help="Noise seed (same seed, same motion).")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    batch_size: Annotated[int, typer.Option(help="Windows per forward pass across all jobs.",
                                            callback=lambda v: checks.positive(v, "--batch-size"))] = 64,
    video: Annotated[bool, typer.Option("--video/--no-video", help="Render the MP4 too.")] = True,
    size: Size = 512,
    avatar: Annotated[Path | None, typer.Option(
        help="Avatar folder (ehead avatar fit: renders that person, at its own size), shape file (.npy/.npz) or "
             "motion NPZ whose shape and first frame become the reference.")] = None,
    flame: Annotated[str | None, typer.Option(help="Render with FLAME from this path (or EHEAD_FLAME).")] = None,
    audio_encoder: Annotated[str | None, typer.Option(
        "--audio-encoder", help="mHuBERT-147 folder for checkpoints with a HuBERT encoder (or EHEAD_HUBERT).")]
    = None,
    threads: Threads = None,
    family: Family = None,
    speaker_audio: Annotated[list[Path] | None, typer.Option(
        metavar="FILE", help="Listener: the speaker's audio, what the listener hears (repeat with --speaker-motion; "
        "all pairs are generated in one batch).")] = None,
    speaker_motion: Annotated[list[Path] | None, typer.Option(
        metavar="NPZ", help="Listener: the speaker's motion NPZ for the --speaker-audio at the same position.")]
    = None,
    listener_avatar: Annotated[str | None, typer.Option(
        metavar="NAME|NPZ", help="Listener: who listens: an identity the model was trained on (its name), or a "
        "motion NPZ of the listener (its style statistics and shape); default the mean trained identity.")] = None,
    temperature: Annotated[float, typer.Option(help="Listener: sampling temperature (0 = greedy).",
                                               callback=lambda v: checks.temperature(v))] = 1.0,
    top_k: Annotated[int | None, typer.Option(help="Listener: sample from the K most likely codes (default all).",
                                              callback=lambda v: checks.positive(v, "--top-k"))] = None,
    side_by_side: Annotated[bool, typer.Option(
        "--side-by-side", help="Listener: render the speaker (left) beside the listener (right).")] = False,
    speech_tokenizer: SpeechTokenizer = None,
    emoca: Emoca = None,
) -> None:
    """Generate motion (NPZ) and video (MP4 with the audio) from speech and listening/speaking states, or with
    --family listener a listener's motion and video from a speaker's audio and motion."""
    from ehead_cli.generate import jobs as jobs_lib
    from ehead_cli.generate.generator import Generator

    if family == "listener":
        _refuse(_given(ctx, "audio", "states", "jobs", "user_audio", "agent_audio", "agent_segments", "steps",
                       "magnitude", "batch_size", "avatar", "audio_encoder"),
                "applies to --family embodiedhead; the listener takes --speaker-audio with --speaker-motion (and "
                "--listener-avatar)")
        _generate_listener(out, checkpoint, seed, device, video, size, flame, speaker_audio or [],
                           speaker_motion or [], listener_avatar, temperature, top_k, side_by_side,
                           speech_tokenizer, emoca)
        return
    _refuse(_given(ctx, "speaker_audio", "speaker_motion", "listener_avatar", "temperature", "top_k", "side_by_side",
                   "speech_tokenizer", "emoca"), "applies to --family listener")
    modes = sum([bool(audio or states), jobs is not None, bool(user_audio or agent_audio)])
    if modes != 1:
        raise ConfigError("give exactly one of: --audio/--states pairs, --jobs FILE, or --user-audio with "
                          "--agent-audio")
    if bool(user_audio) != bool(agent_audio):
        raise ConfigError("two-stream mode needs both --user-audio and --agent-audio")
    set_threads(threads)
    gen = Generator.from_checkpoint(checkpoint, device=device, hubert_path=audio_encoder, steps=steps,
                                    magnitude=magnitude, batch_size=batch_size)
    if avatar is None and checkpoint is not None:  # a Stage-II checkpoint renders with its refined renderer
        from ehead_cli.avatar.folder import checkpoint_avatar

        avatar = checkpoint_avatar(checkpoint)
        if avatar is not None:
            err_console.print(f"rendering with the checkpoint's Stage-II renderer {avatar}", markup=False,
                              highlight=False)
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
    _note_interruption(lambda: _kept(job_list))
    jobs_lib.run_jobs(gen, job_list, seed=seed, renderer=renderer, video=video, console=err_console, flame=flame)
    _summary(job_list)


def _generate_listener(out, checkpoint, seed, device, video, size, flame, speaker_audio, speaker_motion,
                       listener_avatar, temperature, top_k, side_by_side, speech_tokenizer, emoca) -> None:
    from ehead_cli.listener.generate import ListenerGenerator, jobs_from_pairs, run_listener_jobs

    if not speaker_audio:
        raise ConfigError("--family listener needs --speaker-audio FILE with --speaker-motion NPZ (repeat the pair "
                          "for more jobs)")
    if side_by_side and not video:
        raise ConfigError("--side-by-side renders a video: leave out --no-video")
    job_list = jobs_from_pairs(speaker_audio, speaker_motion, listener_avatar, out)
    gen = ListenerGenerator.from_checkpoint(checkpoint, device=device, speech_tokenizer=speech_tokenizer, emoca=emoca)
    gen.identity(listener_avatar)  # a bad --listener-avatar stops before any work
    renderer = None
    if video:
        from ehead_cli.face import load_face_model
        from ehead_cli.render import Renderer

        renderer = Renderer(load_face_model(flame, device=gen.device), size=size)
    _note_interruption(lambda: _kept(job_list))
    run_listener_jobs(gen, job_list, temperature=temperature, top_k=top_k, seed=seed, renderer=renderer,
                      side_by_side=side_by_side, video=video, console=err_console)
    _summary(job_list, frames=lambda j: len(j.speaker))


def _kept(job_list) -> str:
    files = [p for j in job_list for p in j.outputs]
    if not files:
        return "no output was finished; nothing half-written was left behind"
    names = ", ".join(p.name for p in files[:6]) + (f" and {len(files) - 6} more" if len(files) > 6 else "")
    return f"kept {len(files)} finished file(s) ({names}); nothing half-written was left behind"


def _summary(job_list, frames=lambda j: len(j.states)) -> None:
    table = Table(title="ehead generate")
    for col in ("job", "status", "frames", "seconds", "outputs / error"):
        table.add_column(col, overflow="fold")
    for j in job_list:
        if j.error:  # the message itself goes to stderr, once (below)
            table.add_row(j.name, "[red]failed[/]", "", "", "see the error below")
        else:
            table.add_row(j.name, "[green]ok[/]", str(frames(j)), f"{j.seconds:.1f}",
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
    size: Size = 512,
    flame: Annotated[str | None, typer.Option(help="Render with FLAME from this path (or EHEAD_FLAME).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda.")] = None,
    avatar: Annotated[Path | None, typer.Option(
        help="Avatar folder (ehead avatar fit): render that person (its identity, at its own size).")] = None,
    threads: Threads = None,
) -> None:
    """Render an existing motion NPZ to MP4 (framed from the clip's camera when the NPZ has one)."""
    import numpy as np

    from ehead_cli.devices import resolve_device
    from ehead_cli.face import load_face_model
    from ehead_cli.io.audio import load_audio
    from ehead_cli.io.motionfile import check_head_centred, load_motion
    from ehead_cli.io.video import write_mp4
    from ehead_cli.layout import MOTION_FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, tolerance_frames
    from ehead_cli.render import Renderer

    set_threads(threads)
    m = load_motion(motion)
    check_head_centred(m.motion, str(motion))
    wave = None
    if audio is not None:
        wave = load_audio(audio)
        n = m.n_frames * SAMPLES_PER_FRAME
        if abs(len(wave) - n) > SAMPLES_PER_FRAME * tolerance_frames():
            raise InputError(f"{audio}: lasts {checks.seconds(len(wave) / SAMPLE_RATE)} but {motion} has "
                             f"{m.n_frames} frames ({checks.seconds(m.n_frames / MOTION_FPS)})")
        wave = np.pad(wave, (0, max(0, n - len(wave))))[:n]
    dev = resolve_device(device)
    shape = m.shape
    if avatar is not None:  # the avatar's own identity: its renderer was fitted on it
        from ehead_cli.avatar.identity import Avatar

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


@app.command()
def export(
    motion: Annotated[Path, typer.Argument(help="Motion NPZ written by ehead generate (or a dataset clip).")],
    fmt: Annotated[str, typer.Option(
        "--format", metavar="FORMAT", help="artalk (.pt), gagavatar (smoothed.pkl), dualtalk (.npz), flame-npz "
        "(.npz), vertices-npz (.npz), obj or ply (a folder, one mesh per frame), gltf (.glb, the built-in head "
        "animated). docs/formats.md has each layout.")],
    out: Annotated[Path | None, typer.Option(
        help="Output file (folder for obj/ply); default next to the NPZ, e.g. NAME_flame.npz, NAME/smoothed.pkl.")]
    = None,
    flame: Annotated[str | None, typer.Option(
        help="Meshes of FLAME from this path instead of the built-in head (or EHEAD_FLAME); for gagavatar, "
        "its root joint is the rotation pivot.")] = None,
    audio: Annotated[Path | None, typer.Option(
        help="gltf only: the clip's audio, written beside the .glb as OUT.wav (glTF has no audio).")] = None,
) -> None:
    """Write a motion NPZ in another codebase's layout, or as a mesh sequence of the face model."""
    from rich.progress import Progress

    from ehead_cli.export import export_motion

    with Progress(console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task("export", total=None)
        result = export_motion(motion, fmt, out, flame=flame, audio=audio,
                               progress=lambda done, total: bar.update(task, completed=done, total=total))
    for note in result.notes:
        err_console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"wrote {result.path} ({result.what})", markup=False, highlight=False, soft_wrap=True)


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
    speaker: Annotated[Path | None, typer.Option(
        help="Folder of the speaker's motion NPZ files (for P-FD); default DIR/speaker when --gt is a dyadic "
        "dataset folder (a listener's ground truth).")] = None,
    flame: Annotated[str | None, typer.Option(help="Evaluate on FLAME vertices (or EHEAD_FLAME).")] = None,
    flame_landmarks: FlameLandmarks = None,
    flame_masks: Annotated[str | None, typer.Option(
        help="FLAME_masks.pkl: the lip and upper-face regions of LVE / FDD on FLAME (or EHEAD_FLAME_MASKS).")]
    = None,
    vgg: Annotated[str | None, typer.Option(help="VGG16 weights, torchvision layout, for LPIPS (or EHEAD_VGG).")]
    = None,
    lpips: Annotated[str | None, typer.Option(help="LPIPS v0.1 vgg.pth linear layers (or EHEAD_LPIPS).")] = None,
    emoca: Emoca = None,
    vq_checkpoint: Annotated[Path | None, typer.Option(
        help="A listener checkpoint or run folder: also report its VQ-VAE's Rec., Commit. and PPL (mm-listener "
        "section 7) on the ground-truth listeners of --gt (a dyadic dataset; --split, default test).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda.")] = None,
    threads: Threads = None,
) -> None:
    """The papers' metrics on predicted vs ground-truth motion (and video), per clip and overall."""
    from ehead_cli import eval as ev
    from ehead_cli.devices import resolve_device
    from ehead_cli.face import load_face_model

    if (pred_video is None) != (gt_video is None):
        raise ConfigError("--pred-video and --gt-video go together")
    set_threads(threads)
    dev = resolve_device(device)
    if speaker is None and (gt / "manifest.csv").is_file() and (gt / "speaker").is_dir():
        speaker = gt / "speaker"  # a dyadic dataset: the listener's interlocutor, for P-FD
        err_console.print(f"P-FD against the speaker's motion in {speaker}", markup=False, highlight=False)
    affect = None
    if emoca is not None:
        from ehead_cli.listener.tokens import EmocaEmotion

        affect = EmocaEmotion(emoca).affect
    lpips_model = None
    if vgg or lpips:
        from ehead_cli.assets import resolve
        from ehead_cli.metrics.image import load_lpips

        lpips_model = load_lpips(resolve("vgg", vgg), resolve("lpips", lpips))
    report = ev.evaluate(pred, gt, metrics, convention=convention, out_dir=out, baseline=baseline, split=split,
                         image_dirs=(pred_video, gt_video) if pred_video else None, speaker_dir=speaker,
                         face=load_face_model(flame, device=dev, landmarks=flame_landmarks, masks=flame_masks),
                         device=dev, lpips_model=lpips_model, affect_estimator=affect,
                         progress=lambda line: err_console.print(line, markup=False, highlight=False))
    ev.print_report(report, console, err_console=err_console)
    if vq_checkpoint is not None:
        _vq_report(vq_checkpoint, gt, split or "test", out, dev)
    raise typer.Exit(report.exit_code)


def _vq_report(checkpoint: Path, gt: Path, split: str, out: Path | None, dev) -> None:
    """``ehead eval --vq-checkpoint``: the VQ-VAE metrics, a table and ``out/vq.json``."""
    from ehead_cli.io.atomic import atomic_path
    from ehead_cli.listener.checkpoint import load_listener
    from ehead_cli.listener.generate import vq_metrics

    values = vq_metrics(load_listener(checkpoint, device=dev), gt, split)
    table = Table(title=f"VQ-VAE of {checkpoint} on the {split} listeners of {gt}")
    for col in ("Rec. exp (L2)", "Rec. pose (L2)", "Commit. (MSE)", "PPL"):
        table.add_column(col, justify="right")
    table.add_row(*(f"{values[k]:.4g}" for k in ("rec_exp", "rec_pose", "commit", "perplexity")))
    console.print(table)
    if out is not None:
        with atomic_path(out / "vq.json") as tmp:
            tmp.write_text(json.dumps({"checkpoint": str(checkpoint), "data": str(gt), "split": split, **values},
                                      indent=2) + "\n")
        console.print(f"wrote {out / 'vq.json'}")


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
    workers: Annotated[int, typer.Option(help="Files prepared in parallel.",
                                         callback=lambda v: checks.positive(v, "--workers"))] = 1,
    flame: Annotated[Path | None, typer.Option(help="Track with FLAME (or EHEAD_FLAME).")] = None,
    flame_landmarks: FlameLandmarks = None,
    frames: Annotated[bool, typer.Option(
        "--frames/--no-frames", help="Keep the face-centred 256 px frames Stage II trains on (landmark tracker).")]
    = True,
    threads: Threads = None,
) -> None:
    """Talking-face videos -> training clips with listening/speaking states and face tracks."""
    from ehead_cli.prepare.pipeline import prepare as run_prepare

    set_threads(threads)
    report = run_prepare(inputs, out, states=states, tracker=tracker, workers=workers, talknet=talknet,
                         gagavatar_track=gagavatar_track, flame=flame, flame_landmarks=flame_landmarks,
                         frames=frames)
    finished = report.manifest is not None and len(report.manifest)
    where = out / "manifest.csv" if finished else "no clip finished, so no manifest"
    console.print(f"{len(report.done)} prepared, {len(report.skipped)} already done, "
                  f"{len(report.failed)} failed -> {where}")
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def bench(
    ctx: typer.Context,
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
    size: Annotated[int, typer.Option(help="Render size in pixels (even, >= 16).",
                                      callback=lambda v: checks.size(v))] = 256,
    render_batch_sizes: Annotated[str, typer.Option(
        help="Images per renderer call, comma list (default: 1,16 on CPU, 1,64,256 on CUDA).")] = "",
    seconds: Annotated[float, typer.Option(help="Audio length of the end-to-end job.",
                                           callback=lambda v: checks.duration(v))] = 20.0,
    repeats: Annotated[int, typer.Option(help="Timed repetitions (medians are reported).",
                                         callback=lambda v: checks.positive(v, "--repeats"))] = 10,
    threads: Threads = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Write the results as JSON (a .json file, or a folder: named after the device).")] = None,
    family: Family = None,
    checkpoint: Annotated[Path | None, typer.Option(
        help="Listener: the checkpoint or run folder to time (required: no listener ships yet).")] = None,
    avatar: Annotated[Path | None, typer.Option(
        help="Avatar folder (ehead avatar fit): time its renderer and the whole job rendered by it (with "
        "--stage2: train it).")] = None,
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
    from ehead_cli.bench.report import print_bench
    from ehead_cli.bench.run import BenchConfig, run_bench, write_json
    from ehead_cli.devices import native_bf16, resolve_device

    if family == "listener":
        from ehead_cli.bench.listener import (
            ListenerBenchConfig,
            print_listener_bench,
            run_listener_bench,
            write_listener_json,
        )

        _refuse(_given(ctx, "preset", "steps", "audio_encoder", "render", "dtype", "compile", "size",
                       "render_batch_sizes"), "applies to --family embodiedhead")
        lcfg = ListenerBenchConfig(checkpoint=str(checkpoint) if checkpoint else None,
                                   device=str(resolve_device(device)),
                                   batch_sizes=checks.int_list(batch_sizes, "--batch-sizes"), seconds=seconds,
                                   repeats=repeats, threads=set_threads(threads))
        result = run_listener_bench(lcfg, progress=lambda msg: err_console.print(msg, markup=False, highlight=False))
        print_listener_bench(result, console)
        if json_out is not None:
            console.print(f"wrote {write_listener_json(result, json_out)}")
        return
    _refuse(_given(ctx, "checkpoint"), "applies to --family listener (EmbodiedHead's bench times random weights of "
            "--preset)")
    if stage2:
        _bench_stage2(ctx, preset, device, batch_sizes, frames_per_window, size, dtype, repeats, threads, avatar,
                      json_out)
        return
    _refuse(_given(ctx, "frames_per_window"), "applies to --stage2")
    if not fps:
        raise ConfigError("nothing to measure: pass --fps")
    if dtype not in ("fp32", "bf16", "auto"):
        raise ConfigError(f"--dtype must be fp32, bf16 or auto, got {dtype!r}")
    dev = resolve_device(device)
    if dtype == "auto":
        dtype = "bf16" if native_bf16(dev) else "fp32"
    if not render_batch_sizes:
        render_batch_sizes = "1,64,256" if dev.type == "cuda" else "1,16"
    cfg = BenchConfig(preset=preset, device=str(dev), batch_sizes=checks.int_list(batch_sizes, "--batch-sizes"),
                      steps=checks.int_list(steps, "--steps", checks.steps), audio_encoder=audio_encoder,
                      render=render, dtype=dtype, compile=compile, size=size, seconds=seconds, repeats=repeats,
                      threads=set_threads(threads),
                      render_batch_sizes=checks.int_list(render_batch_sizes, "--render-batch-sizes"),
                      avatar=str(avatar) if avatar else None)
    result = run_bench(cfg, progress=lambda msg: err_console.print(msg, markup=False, highlight=False))
    print_bench(result, console)
    if json_out is not None:
        console.print(f"wrote {write_json(result, json_out)}")


def _bench_stage2(ctx: typer.Context, preset: str, device: str | None, batch_sizes: str,
                  frames_per_window: int | None, size: int, dtype: str, repeats: int, threads: int | None,
                  avatar: Path | None, json_out: Path | None) -> None:
    """``ehead bench --stage2`` (``bench.stage2``)."""
    from ehead_cli.bench.stage2 import Stage2BenchConfig, print_stage2_bench, run_stage2_bench, write_stage2_json
    from ehead_cli.devices import resolve_device

    _refuse(_given(ctx, "fps", "steps", "audio_encoder", "render", "compile", "render_batch_sizes", "seconds"),
            "does not apply to --stage2")
    if avatar is not None and _given(ctx, "size"):
        raise ConfigError("--size does not apply with --avatar: the avatar renders at its own size")
    sizes = checks.int_list(batch_sizes, "--batch-sizes") if _given(ctx, "batch_sizes") else ()
    cfg = Stage2BenchConfig(preset=preset, device=str(resolve_device(device)), batch_sizes=tuple(sizes),
                            frames_per_window=frames_per_window, size=size, dtype=dtype, repeats=repeats,
                            threads=set_threads(threads), avatar=str(avatar) if avatar else None)
    result = run_stage2_bench(cfg, progress=lambda msg: err_console.print(msg, markup=False, highlight=False))
    print_stage2_bench(result, console)
    if json_out is not None:
        console.print(f"wrote {write_stage2_json(result, json_out)}")


# --- ehead serve ------------------------------------------------------------------------------------
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@app.command()
def serve(
    host: Annotated[str, typer.Option(
        help="Address to listen on. The default is this machine only; any other address (0.0.0.0: every "
        "interface) must be asked for, and then wants --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", callback=lambda v: checks.port(v))] = 8000,
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint folder (default: the shipped demo model).")]
    = None,
    avatar: Annotated[Path | None, typer.Option(
        help="Shape file (.npy/.npz) or motion NPZ: the identity every conversation animates (and its first "
        "frame the reference).")] = None,
    token: Annotated[str | None, typer.Option(
        envvar="EHEAD_TOKEN", show_envvar=False,
        help="Secret every WebSocket connection and /stats must present (or EHEAD_TOKEN, which keeps it out of "
        "the process list).")] = None,
    steps: Steps = 4,
    size: Size = 256,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    audio_encoder: Annotated[str | None, typer.Option(
        "--audio-encoder", help="mHuBERT-147 folder for checkpoints with a HuBERT encoder (or EHEAD_HUBERT).")]
    = None,
    threads: Threads = None,
) -> None:
    """Live conversations over WebSocket (/ws: audio in, motion and JPEG frames out) and a page that talks
    with the avatar (/). The protocol: docs/serve-protocol.md."""
    try:
        import uvicorn

        from ehead_cli.serve.app import EheadServer, uvicorn_config
    except ImportError as err:
        raise ConfigError(f"ehead serve needs {err.name}: pip install starlette uvicorn websockets") from None
    from ehead_cli.avatar.identity import Avatar
    from ehead_cli.generate.generator import Generator
    from ehead_cli.serve.session import ServeConfig

    if host not in LOOPBACK_HOSTS and not token:
        err_console.print(f"warning: serving on {host} without --token: anyone who can reach port {port} can "
                          "connect", markup=False, highlight=False)
    set_threads(threads)
    gen = Generator.from_checkpoint(checkpoint, device=device, hubert_path=audio_encoder, steps=steps)
    server = EheadServer(gen, avatar=Avatar.load(avatar) if avatar else None, token=token,
                         config=ServeConfig(jpeg_size=size))
    shown = f"[{host}]" if ":" in host else host
    console.print(f"ehead serve: http://{shown}:{port}/ (the page), ws://{shown}:{port}/ws, /health, /stats"
                  f"{'; token required' if token else ''}; Ctrl-C stops", markup=False, highlight=False)
    _note_interruption(lambda: "server stopped")
    uvicorn.Server(uvicorn_config(server, host, port)).run()


# --- ehead avatar (issue 14): fit a photoreal, person-specific neural avatar ----------------------------
avatar_app = typer.Typer(help="Person-specific neural avatars: fit one from videos, then render or generate "
                              "with --avatar AVATAR_DIR.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(avatar_app, name="avatar")


@avatar_app.command("fit")
def avatar_fit(
    videos: Annotated[list[Path] | None, typer.Argument(
        metavar="VIDEO...", help="Videos of one person, one static camera.")] = None,
    out: Annotated[Path | None, typer.Option(help="Avatar folder to write (AVATAR_DIR).")] = None,
    data: Annotated[Path | None, typer.Option(
        help="Instead of videos: a dataset folder with frames (ehead prepare, or the sample data's tracker-bias "
        "variant): fit on its training clips' frames and motion labels, no tracking.")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimiser steps (default 1500).",
                                              callback=lambda v: checks.positive(v, "--steps"))] = None,
    size: Annotated[int, typer.Option(help="Image size: 256 (Stage II's) or 512.")] = 256,
    batch_size: Annotated[int | None, typer.Option(help="Frames per step (default 2).",
                                                   callback=lambda v: checks.positive(v, "--batch-size"))] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate of the image network.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for initialisation and frame order.")] = 0,
    flame: Annotated[str | None, typer.Option(help="Track and render with FLAME (or EHEAD_FLAME).")] = None,
    vgg: Annotated[str | None, typer.Option(help="VGG16 weights (torchvision layout) for the perceptual loss "
                                                  "(or EHEAD_VGG).")] = None,
    lpips: Annotated[str | None, typer.Option(help="LPIPS v0.1 vgg.pth: report held-out LPIPS (or EHEAD_LPIPS).")]
    = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the unfinished fit of --out.")] = False,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    threads: Threads = None,
    licence: Annotated[str | None, typer.Option(help="Licence note for the card and manifest (default: the "
                                                     "person filmed must consent to its use).")] = None,
    attribution: Annotated[str | None, typer.Option(help="Attribution of the source video, for the card.")] = None,
) -> None:
    """Fit a photoreal avatar of the person in VIDEO... (face tracking needs the landmarks extra), or in the frames
    of a dataset (--data)."""
    import dataclasses

    from ehead_cli.assets import ASSETS
    from ehead_cli.avatar.capture import dataset_capture
    from ehead_cli.avatar.config import SIZES, FitConfig, NeuralConfig
    from ehead_cli.avatar.fit import fit_avatar, load_saved_capture
    from ehead_cli.avatar.folder import USER_LICENCE
    from ehead_cli.devices import resolve_device
    from ehead_cli.face import load_face_model
    from ehead_cli.prepare.capture import read_capture

    if out is None:
        raise ConfigError("ehead avatar fit needs --out AVATAR_DIR")
    if bool(videos) == (data is not None):
        raise ConfigError("give the VIDEO... of one person, or --data DATASET (a dataset with frames), not both")
    videos = videos or []
    set_threads(threads)
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
        if data is None and given != sorted(str(Path(p).resolve()) for p, _ in capture.sources):
            raise ConfigError(f"--resume: {out} was being fitted from other videos "
                              f"({', '.join(Path(p).name for p, _ in capture.sources)})")
    elif data is not None:
        capture = dataset_capture(data, face, fit_cfg.holdout)
        if capture.camera.height != neural.size:
            raise ConfigError(f"--size {neural.size}: the frames of {data} are {capture.camera.height} px")
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


def _terminate(signum, frame) -> None:
    from ehead_cli.io.atomic import Terminated

    raise Terminated()


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _terminate)  # clean up like Ctrl-C: temporaries removed, state saved
    try:
        app()
    except EheadError as err:
        err_console.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
