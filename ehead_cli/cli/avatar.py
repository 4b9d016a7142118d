"""``ehead avatar``: person-specific neural avatars (``ehead avatar fit``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ehead_cli import checks
from ehead_cli.cli import options as opt
from ehead_cli.cli.shell import console, err_console, say, set_threads
from ehead_cli.errors import ConfigError

avatar_app = typer.Typer(help="Person-specific neural avatars: fit one from videos, then render or generate "
                              "with --avatar AVATAR_DIR.", no_args_is_help=True, rich_markup_mode=None)

Flame = opt.flame("track and render with FLAME")
Vgg = opt.vgg("for the perceptual loss")
Lpips = opt.lpips("to report held-out LPIPS")


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
    flame: Flame = None,
    vgg: Vgg = None,
    lpips: Lpips = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the unfinished fit of --out.")] = False,
    device: opt.Device = None,
    threads: opt.Threads = None,
    licence: Annotated[str | None, typer.Option(help="Licence note for the card and manifest (default: the "
                                                     "person filmed must consent to its use).")] = None,
    attribution: Annotated[str | None, typer.Option(help="Attribution of the source video, for the card.")] = None,
) -> None:
    """Fit a photoreal avatar of the person in VIDEO... (face tracking needs the landmarks extra), or in the frames
    of a dataset (--data)."""
    from ehead_cli.avatar.fit import fit_avatar
    from ehead_cli.avatar.folder import USER_LICENCE
    from ehead_cli.prepare.fit_setup import fit_setup

    if out is None:
        raise ConfigError("ehead avatar fit needs --out AVATAR_DIR")
    set_threads(threads)
    s = fit_setup(out, videos or [], data, size=size, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                  flame=flame, vgg=vgg, lpips=lpips, resume=resume, device=device, progress=say)
    c = s.capture
    say(f"{c.n_frames} frames, {len(c.train_index)} for training, {len(c.heldout_index)} held out")
    result = fit_avatar(c, s.face, out, s.neural, s.fit, device=s.device, vgg=s.vgg, lpips=s.lpips, resume=resume,
                        console=err_console, licence=licence or USER_LICENCE, attribution=attribution)
    m = result.metrics
    lp = f", LPIPS {m['lpips']:.3f}" if isinstance(m["lpips"], float) else ""
    console.print(f"wrote {out}: held-out PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}, mouth PSNR "
                  f"{m['mouth_psnr']:.2f} dB{lp} ({result.seconds / 60:.1f} min)")
