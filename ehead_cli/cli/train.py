"""``ehead train``: EmbodiedHead's Stage I or II, or one stage of the listener (``TRAIN_FLAGS`` says which
flags each takes)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ehead_cli import checks
from ehead_cli.cli import options as opt
from ehead_cli.cli.flags import Excluded, FlagTable, Options
from ehead_cli.cli.shell import command_line, console, is_rank_zero, note_interruption, set_threads
from ehead_cli.errors import ConfigError

LISTENER_STAGES = ("vq", "tokens", "lm")
STAGE2 = ("init", "avatar", "vgg", "flame")
LISTENER = ("vq", "lm", "speech_tokenizer", "emoca")
TRAIN_FLAGS: FlagTable = {
    "listener": (
        Excluded(STAGE2, "applies to --family embodiedhead --stage 2"),
        Excluded(("steps", "lr", "stream_cut"), "applies to --family embodiedhead; a listener's schedule is its "
                 "preset's phases "
                 "(change them with --config FILE.toml: [train_vq] / [train_lm] phases)"),
        Excluded(("audio_encoder",), "applies to --family embodiedhead (the listener hears through its speech "
                 "tokens: --speech-tokenizer for presets that use SpeechTokenizer)")),
    "listener resume": (Excluded(("preset", "config", "seed", "batch_size", "vq", "lm"), "cannot change a listener "
                                 "run being resumed; only --workers, --device, --threads, tokeniser paths"),),
    "listener vq": (Excluded(LISTENER, "applies to --stage lm (and --vq to tokens)"),),
    "listener tokens": (Excluded(("lm", "speech_tokenizer", "emoca", "compile", "workers", "batch_size"),
                                 "does not apply to --stage tokens (it fits k-means codebooks, nothing to resume)"),),
    "listener lm": (),
    "embodiedhead": (Excluded(LISTENER, "applies to --family listener"),),
    "embodiedhead 1": (Excluded(STAGE2, "applies to --stage 2"),),
    "embodiedhead 2": (Excluded(("stream_cut",), "applies to Stage I (--stage 1)"),),
    "embodiedhead 2 resume": (Excluded(("preset", "config", "seed", "batch_size", "lr", "init", "avatar"),
                                       "cannot change a Stage-II run being resumed; only --steps, --workers, "
                                       "--device, --threads"),),
}

Flame = opt.flame("with --stage 2, for data and avatars on FLAME")
Vgg = opt.vgg("with --stage 2, for the perceptual loss; without them 1 - MS-SSIM stands in for it")


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
    device: opt.Device = None,
    compile: Annotated[bool, typer.Option("--compile", help="Use torch.compile.")] = False,
    stream_cut: Annotated[float | None, typer.Option(
        help="Stage I: probability a training window is cut at a random frame and end-padded, as a live window of "
        "ehead serve --hop is (default: the preset's, 0.3; 0: the paper's training).", metavar="P",
        callback=lambda v: checks.probability(v, "--stream-cut"))] = None,
    audio_encoder: opt.AudioEncoder = None,
    threads: opt.Threads = None,
    family: opt.Family = None,
    stage: Annotated[str | None, typer.Option(
        help="EmbodiedHead: 1 (Stage I, the default) or 2 (Stage II: image-domain refinement of an --init run "
        "with its renderer). Listener (required): vq (the VQ-VAE), tokens (the token codebooks alone, optional) "
        "or lm (codebooks + the language model).")] = None,
    init: Annotated[Path | None, typer.Option(
        help="--stage 2: the Stage-I run folder (or checkpoint folder) to refine.")] = None,
    avatar: opt.Stage2Renderers = None,
    vgg: Vgg = None,
    flame: Flame = None,
    vq: Annotated[Path | None, typer.Option(
        help="Listener --stage lm / tokens: the stage-vq run folder (or a listener checkpoint) to build on.")] = None,
    lm: Annotated[str | None, typer.Option(
        help="Listener --stage lm: a local pretrained GPT-2 (transformers folder) to initialise the LM (or "
        "EHEAD_GPT2); default: built from the preset's [lm] sizes.")] = None,
    speech_tokenizer: opt.SpeechTokenizer = None,
    emoca: opt.Emoca = None,
) -> None:
    """Train: EmbodiedHead's Stage I (coefficient-space flow matching) or Stage II (--stage 2: joint image-domain
    refinement of the DiT and the renderer), or with --family listener one stage of the listener. Use torchrun for
    many GPUs."""
    o = Options.of(ctx)
    record = None
    if resume is not None:
        from ehead_cli.train.state import read_record

        record = read_record(resume)
    run_family = "listener" if record is not None and record.get("family") == "listener" else "embodiedhead"
    if family is not None and record is not None and family != run_family:
        raise ConfigError(f"--resume {resume} is a {run_family} run; leave out --family {family}")
    if (family or run_family) == "listener":
        return _listener(o, record)
    if stage not in (None, "1", "2"):
        raise ConfigError(f"--stage {stage} is a listener stage: add --family listener (EmbodiedHead trains --stage 1 "
                          "or 2)")
    o.refuse(TRAIN_FLAGS, "embodiedhead")
    run_stage = str(record.get("stage", 1)) if record is not None else (stage or "1")
    if record is not None and stage is not None and stage != run_stage:
        raise ConfigError(f"--resume {resume} is a stage-{run_stage} run; leave out --stage {stage}")
    return _stage2(o) if run_stage == "2" else _stage1(o)


def _overrides(o: Options) -> dict:
    """The [train] values given on the command line (None: the preset's or the resumed run's)."""
    return {"steps": o.steps, "batch_size": o.batch_size, "lr": o.lr, "seed": o.seed, "workers": o.workers,
            "compile": True if o.compile else None, "stream_cut": o.stream_cut}


def _stage1(o: Options) -> None:
    """``ehead train`` (ehead_cli.train.stage1)."""
    from ehead_cli.train.stage1 import train as run_train

    o.refuse(TRAIN_FLAGS, "embodiedhead 1")
    if o.resume is None and (o.data is None or o.out is None):
        raise ConfigError("ehead train needs --data DIR and --out RUN_DIR (or --resume RUN_DIR)")
    set_threads(o.threads)
    note_interruption(lambda: None)  # the training loop says where the state is saved
    if o.resume is not None:  # by value: --preset small (the default) given again is no change
        for name, value in (("--preset", o.preset != "small"), ("--config", o.config), ("--seed", o.seed),
                            ("--batch-size", o.batch_size), ("--lr", o.lr), ("--stream-cut", o.stream_cut is not None)):
            if value:
                raise ConfigError(f"{name} cannot change a run being resumed; only --steps, --workers, --device")
    run = run_train(o.data, o.resume or o.out, o.preset, o.config, _overrides(o), resume=o.resume is not None,
                    device=o.device, hubert_path=o.audio_encoder, command=command_line())
    if is_rank_zero():
        console.print(f"checkpoint: {run / 'checkpoint'}   metrics: {run / 'metrics.csv'}")


def _stage2(o: Options) -> None:
    """``ehead train --stage 2``: Stage II (ehead_cli.train.stage2)."""
    from ehead_cli.assets import ASSETS
    from ehead_cli.train.stage2 import train as run_stage2

    o.refuse(TRAIN_FLAGS, "embodiedhead 2")
    if o.resume is not None:
        o.refuse(TRAIN_FLAGS, "embodiedhead 2 resume")
    elif o.data is None or o.out is None or o.init is None or not o.avatar:
        raise ConfigError("ehead train --stage 2 needs --init RUN_DIR, --avatar AVATAR_DIR|builtin, --data DATASET "
                          "(with frames) and --out RUN2 (or --resume RUN2)")
    set_threads(o.threads)
    note_interruption(lambda: None)  # the training loop says where the state is saved
    run = run_stage2(o.data, o.resume or o.out, o.init, o.avatar, o.preset if o.gave("preset") else None, o.config,
                     _overrides(o), resume=o.resume is not None, device=o.device, hubert_path=o.audio_encoder,
                     vgg=o.vgg or ASSETS["vgg"].configured(), flame=o.flame, command=command_line())
    if is_rank_zero():
        console.print(f"checkpoint (DiT + renderer): {run / 'checkpoint'}   metrics: {run / 'metrics.csv'}")


def _listener(o: Options, record: dict | None) -> None:
    """``ehead train --family listener``: the flags of each stage checked, then the library's stage."""
    from ehead_cli.listener import train as lt

    o.refuse(TRAIN_FLAGS, "listener")
    stage = o.stage
    if record is not None:
        if stage is not None and stage != record.get("stage"):
            raise ConfigError(f"--resume {o.resume} is a stage-{record.get('stage')} run; leave out --stage {stage}")
        stage = record.get("stage")
        o.refuse(TRAIN_FLAGS, "listener resume")
    if stage is None:
        raise ConfigError("--family listener needs --stage vq, tokens or lm")
    checks.one_of(stage, LISTENER_STAGES, "--stage")
    o.refuse(TRAIN_FLAGS, f"listener {stage}")
    if record is None and (o.data is None or o.out is None):
        raise ConfigError(f"ehead train --family listener --stage {stage} needs --data DIR and --out RUN_DIR "
                          "(or --resume RUN_DIR)")
    if record is None and stage != "vq" and o.vq is None:
        raise ConfigError(f"--stage {stage} needs --vq VQ_RUN (a stage-vq run folder or a listener checkpoint)")
    set_threads(o.threads)
    train_over = {k: v for k, v in _overrides(o).items() if k not in ("steps", "lr", "stream_cut") and v is not None}
    overrides = {"train_vq" if stage == "vq" else "train_lm": train_over} if train_over else None
    # stages lm and tokens take their non-VQ sections from --vq's config unless --preset is given
    preset = o.preset if stage == "vq" or o.gave("preset") else None
    run, resumed = o.resume or o.out, record is not None
    if stage == "tokens":
        run = lt.fit_tokens(o.data, o.out, o.vq, preset, o.config, overrides, device=o.device, command=command_line())
        console.print(f"token codebooks: {run / 'checkpoint'} (use it as --vq {run} for --stage lm)")
        return
    note_interruption(lambda: None)  # the training loop says where the state is saved
    if stage == "vq":
        run = lt.train_vq(o.data, run, preset, o.config, overrides, resume=resumed, device=o.device,
                          command=command_line())
    else:
        run = lt.train_lm(o.data, run, o.vq, preset, o.config, overrides, resume=resumed, device=o.device,
                          lm_path=o.lm, speech_tokenizer=o.speech_tokenizer, emoca=o.emoca, command=command_line())
    if is_rank_zero():
        best = f"   best: {run / 'best'}" if (run / "best").is_dir() else ""
        console.print(f"checkpoint: {run / 'checkpoint'}{best}   metrics: {run / 'metrics.csv'}")
