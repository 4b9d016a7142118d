"""``ehead prepare``: talking-face videos -> a training dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ehead_cli import checks
from ehead_cli.cli import options as opt
from ehead_cli.cli.shell import console, set_threads

Flame = opt.flame("track with FLAME")


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
    flame: Flame = None,
    flame_landmarks: opt.FlameLandmarks = None,
    frames: Annotated[bool, typer.Option(
        "--frames/--no-frames", help="Keep the face-centred 256 px frames Stage II trains on (landmark tracker).")]
    = True,
    threads: opt.Threads = None,
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
