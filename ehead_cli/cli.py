"""The ``ehead`` command line: a thin shell that parses, validates and calls the library.

User errors (``EheadError``) print one line on stderr and exit with status 2; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ehead_cli.errors import EheadError

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
                  f"cuda: {env['cuda_device'] or 'not available'}, threads: {env['threads']}")


def main() -> None:
    try:
        app()
    except EheadError as err:
        err_console.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
