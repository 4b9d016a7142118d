"""``ehead eval``: the papers' metrics on predicted vs ground-truth motion (and video)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ehead_cli.cli import options as opt
from ehead_cli.cli.shell import console, err_console, say, set_threads
from ehead_cli.errors import ConfigError

Flame = opt.flame("evaluate on FLAME vertices")
Vgg = opt.vgg("for LPIPS")
Lpips = opt.lpips("for LPIPS")


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
    flame: Flame = None,
    flame_landmarks: opt.FlameLandmarks = None,
    flame_masks: Annotated[str | None, typer.Option(
        help="FLAME_masks.pkl: the lip and upper-face regions of LVE / FDD on FLAME (or EHEAD_FLAME_MASKS).")]
    = None,
    vgg: Vgg = None,
    lpips: Lpips = None,
    emoca: opt.Emoca = None,
    vq_checkpoint: Annotated[Path | None, typer.Option(
        help="A listener checkpoint or run folder: also report its VQ-VAE's Rec., Commit. and PPL (mm-listener "
        "section 7) on the ground-truth listeners of --gt (a dyadic dataset; --split, default test).")] = None,
    device: opt.Device = None,
    threads: opt.Threads = None,
) -> None:
    """The papers' metrics on predicted vs ground-truth motion (and video), per clip and overall."""
    from ehead_cli import eval as ev
    from ehead_cli.devices import resolve_device
    from ehead_cli.eval.assets import lpips_model
    from ehead_cli.face import load_face_model
    from ehead_cli.listener.affect import affect_estimator

    if (pred_video is None) != (gt_video is None):
        raise ConfigError("--pred-video and --gt-video go together")
    set_threads(threads)
    dev = resolve_device(device)
    if speaker is None and (gt / "manifest.csv").is_file() and (gt / "speaker").is_dir():
        speaker = gt / "speaker"  # a dyadic dataset: the listener's interlocutor, for P-FD
        say(f"P-FD against the speaker's motion in {speaker}")
    affect, lpips_net = affect_estimator(emoca), lpips_model(vgg, lpips)
    report = ev.evaluate(pred, gt, metrics, convention=convention, out_dir=out, baseline=baseline, split=split,
                         image_dirs=(pred_video, gt_video) if pred_video else None, speaker_dir=speaker,
                         face=load_face_model(flame, device=dev, landmarks=flame_landmarks, masks=flame_masks),
                         device=dev, lpips_model=lpips_net, affect_estimator=affect, progress=say)
    ev.print_report(report, console, err_console=err_console)
    if vq_checkpoint is not None:
        _print_vq(vq_checkpoint, gt, split or "test", out, dev)
    raise typer.Exit(report.exit_code)


def _print_vq(checkpoint: Path, gt: Path, split: str, out: Path | None, dev) -> None:
    """``--vq-checkpoint``: the VQ-VAE metrics as a table (and ``out/vq.json``)."""
    from ehead_cli.listener.vq_report import vq_report, write_vq_json

    report = vq_report(checkpoint, gt, split, device=dev)
    table = Table(title=report.title)
    for col in report.columns:
        table.add_column(col, justify="right")
    table.add_row(*report.row)
    console.print(table)
    if out is not None:
        console.print(f"wrote {write_vq_json(report, out)}")
