"""``ehead info``: model presets and their sizes, and which optional assets are configured and found."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from ehead_cli.cli.shell import console

PRESET_COLUMNS = ("preset", "d_model", "depth", "heads", "mlp", "seq_len", "cond_dim", "audio encoder",
                  "trainable params")


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
        else:
            _print_preset(preset, data)
        return
    presets, assets, env = info_lib.all_presets(), info_lib.asset_status(), info_lib.environment()
    if as_json:
        print(json.dumps({"presets": presets, "assets": assets, "environment": env}, indent=2))
    else:
        _print_overview(presets, assets, env)


def _print_preset(name: str, data: dict) -> None:
    table = Table(title=f"preset {name}", show_header=False)
    for k, v in data.items():
        table.add_row(k, str(v))
    console.print(table)


def _print_overview(presets: list[dict], assets: list[dict], env: dict) -> None:
    table = Table(title="presets")
    for col in PRESET_COLUMNS:
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
