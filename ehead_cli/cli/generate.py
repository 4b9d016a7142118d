"""``ehead generate``: motion and video from speech and states, or (``--family listener``) a listener's
from a speaker's audio and motion (``GENERATE_FLAGS`` says which flags each takes)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ehead_cli import checks
from ehead_cli.cli import options as opt
from ehead_cli.cli.flags import Excluded, FlagTable, Options
from ehead_cli.cli.shell import console, err_console, note_interruption, say, set_threads
from ehead_cli.errors import ConfigError

GENERATE_FLAGS: FlagTable = {
    "listener": (Excluded(("audio", "states", "jobs", "user_audio", "agent_audio", "agent_segments", "steps",
                           "magnitude", "batch_size", "avatar", "audio_encoder"),
                          "applies to --family embodiedhead; the listener takes --speaker-audio with --speaker-motion "
                          "(and --listener-avatar)"),),
    "embodiedhead": (Excluded(("speaker_audio", "speaker_motion", "listener_avatar", "temperature", "top_k",
                               "side_by_side", "speech_tokenizer", "emoca"), "applies to --family listener"),),
}

Flame = opt.flame("render with it instead of the built-in head")
Checkpoint = opt.checkpoint("Checkpoint or run folder (default: the shipped demo model; --family listener: required, "
                            "no listener ships yet).")


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
    checkpoint: Checkpoint = None,
    steps: opt.Steps = 4,
    magnitude: Annotated[tuple[float, float], typer.Option(
        metavar="M_R M_T", help="Head-motion magnitude: rotation and translation, each in [0, 1].",
        callback=lambda v: checks.magnitude(v))] = (0.3, 0.3),
    seed: Annotated[int, typer.Option(help="Noise seed (same seed, same motion).")] = 0,
    device: opt.Device = None,
    batch_size: Annotated[int, typer.Option(help="Windows per forward pass across all jobs.",
                                            callback=lambda v: checks.positive(v, "--batch-size"))] = 64,
    video: Annotated[bool, typer.Option("--video/--no-video", help="Render the MP4 too.")] = True,
    size: opt.Size = 512,
    avatar: opt.AnimatedAvatar = None,
    flame: Flame = None,
    audio_encoder: opt.AudioEncoder = None,
    threads: opt.Threads = None,
    family: opt.Family = None,
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
    speech_tokenizer: opt.SpeechTokenizer = None,
    emoca: opt.Emoca = None,
) -> None:
    """Generate motion (NPZ) and video (MP4 with the audio) from speech and listening/speaking states, or with
    --family listener a listener's motion and video from a speaker's audio and motion."""
    o = Options.of(ctx)
    if family == "listener":
        o.refuse(GENERATE_FLAGS, "listener")
        return _listener(o)
    o.refuse(GENERATE_FLAGS, "embodiedhead")
    modes = sum([bool(audio or states), jobs is not None, bool(user_audio or agent_audio)])
    if modes != 1:
        raise ConfigError("give exactly one of: --audio/--states pairs, --jobs FILE, or --user-audio with "
                          "--agent-audio")
    if bool(user_audio) != bool(agent_audio):
        raise ConfigError("two-stream mode needs both --user-audio and --agent-audio")
    return _embodiedhead(o)


def _embodiedhead(o: Options) -> None:
    from ehead_cli.generate import jobs as jobs_lib
    from ehead_cli.generate.generator import Generator

    set_threads(o.threads)
    gen = Generator.from_checkpoint(o.checkpoint, device=o.device, hubert_path=o.audio_encoder, steps=o.steps,
                                    magnitude=o.magnitude, batch_size=o.batch_size)
    from ehead_cli.avatar.renderers import avatar_or_refined

    avatar = avatar_or_refined(o.avatar, o.checkpoint)  # a Stage-II checkpoint renders with its refined renderer
    if avatar is not None and o.avatar is None:
        say(f"rendering with the checkpoint's Stage-II renderer {avatar}")
    if o.jobs is not None:
        job_list = jobs_lib.jobs_from_csv(o.jobs, o.out, avatar)
    elif o.user_audio:
        job_list = [jobs_lib.two_stream_job(o.user_audio, o.agent_audio, o.agent_segments, o.out, avatar,
                                            gen.cfg.window)]
    else:
        job_list = jobs_lib.jobs_from_pairs(o.audio or [], o.states or [], o.out, avatar)
    renderer = _renderer(o, gen.device)
    note_interruption(lambda: _kept(job_list))
    jobs_lib.run_jobs(gen, job_list, seed=o.seed, renderer=renderer, video=o.video, console=err_console,
                      flame=o.flame)
    _summary(job_list)


def _listener(o: Options) -> None:
    from ehead_cli.listener.generate import ListenerGenerator, jobs_from_pairs, run_listener_jobs

    if not o.speaker_audio:
        raise ConfigError("--family listener needs --speaker-audio FILE with --speaker-motion NPZ (repeat the pair "
                          "for more jobs)")
    if o.side_by_side and not o.video:
        raise ConfigError("--side-by-side renders a video: leave out --no-video")
    job_list = jobs_from_pairs(o.speaker_audio, o.speaker_motion or [], o.listener_avatar, o.out)
    gen = ListenerGenerator.from_checkpoint(o.checkpoint, device=o.device, speech_tokenizer=o.speech_tokenizer,
                                            emoca=o.emoca)
    gen.identity(o.listener_avatar)  # a bad --listener-avatar stops before any work
    renderer = _renderer(o, gen.device)
    note_interruption(lambda: _kept(job_list))
    run_listener_jobs(gen, job_list, temperature=o.temperature, top_k=o.top_k, seed=o.seed, renderer=renderer,
                      side_by_side=o.side_by_side, video=o.video, console=err_console)
    _summary(job_list, frames=lambda j: len(j.speaker))


def _renderer(o: Options, device):
    """The default renderer of the jobs' videos (None with --no-video); a job's avatar folder brings its own."""
    if not o.video:
        return None
    from ehead_cli.avatar.renderers import builtin_renderer

    return builtin_renderer(o.size, o.flame, device)


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
