"""``ehead render``: an existing motion NPZ to MP4."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ehead_cli.cli import options as opt
from ehead_cli.cli.shell import console, set_threads

Flame = opt.flame("render with it instead of the built-in head")


def render(
    motion: Annotated[Path, typer.Argument(help="Motion NPZ written by ehead generate (or a dataset clip).")],
    audio: Annotated[Path | None, typer.Option(help="Audio to mux into the video.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output MP4 (default: next to the NPZ).")] = None,
    size: opt.Size = 512,
    flame: Flame = None,
    device: opt.Device = None,
    avatar: opt.RenderingAvatar = None,
    threads: opt.Threads = None,
) -> None:
    """Render an existing motion NPZ to MP4 (framed from the clip's camera when the NPZ has one)."""
    from ehead_cli.io.motionfile import check_head_centred, load_motion
    from ehead_cli.io.soundtrack import soundtrack
    from ehead_cli.io.video import write_mp4

    set_threads(threads)
    m = load_motion(motion)
    check_head_centred(m.motion, str(motion))
    wave = soundtrack(audio, m.n_frames, motion) if audio is not None else None
    renderer, shape = _renderer(m, avatar, flame, size, device)
    target = out or motion.with_suffix(".mp4")
    write_mp4(target, renderer.iter_frames(shape, m.motion), wave)
    console.print(f"wrote {target}")


def _renderer(m, avatar: Path | None, flame: str | None, size: int, device: str | None):
    """The renderer and the identity it draws (``avatar.renderers.motion_renderer``): the avatar folder's
    own, else the mesh renderer framed by the clip's camera (when the NPZ has one) and the clip's shape."""
    from ehead_cli.avatar.renderers import motion_renderer
    from ehead_cli.devices import resolve_device

    return motion_renderer(m.shape, m.camera, avatar, flame, size, resolve_device(device))
