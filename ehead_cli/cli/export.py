"""``ehead export``: a motion NPZ in another codebase's layout, or as a mesh sequence."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ehead_cli.cli import options as opt
from ehead_cli.cli.shell import console, err_console

Flame = opt.flame("meshes of FLAME instead of the built-in head; for gagavatar, its root joint is the rotation "
                  "pivot")


def export(
    motion: Annotated[Path, typer.Argument(help="Motion NPZ written by ehead generate (or a dataset clip).")],
    fmt: Annotated[str, typer.Option(
        "--format", metavar="FORMAT", help="artalk (.pt), gagavatar (smoothed.pkl), dualtalk (.npz), flame-npz "
        "(.npz), vertices-npz (.npz), obj or ply (a folder, one mesh per frame), gltf (.glb, the built-in head "
        "animated). docs/formats.md has each layout.")],
    out: Annotated[Path | None, typer.Option(
        help="Output file (folder for obj/ply); default next to the NPZ, e.g. NAME_flame.npz, NAME/smoothed.pkl.")]
    = None,
    flame: Flame = None,
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
