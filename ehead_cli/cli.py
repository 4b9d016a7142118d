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
from rich.console import Console
from rich.table import Table

from ehead_cli.errors import ConfigError, EheadError

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


@app.command()
def train(
    data: Annotated[Path | None, typer.Option(help="Dataset folder (manifest.csv + clips/), e.g. sample_data.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder to create (config, metrics, checkpoints).")] = None,
    preset: Annotated[str, typer.Option(help="Model and schedule preset: paper, small or tiny.")] = "small",
    config: Annotated[Path | None, typer.Option(help="TOML file with [model] and [train] overrides.")] = None,
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
) -> None:
    """Stage-I training (coefficient-space flow matching). Use torchrun for many GPUs."""
    from ehead_cli.train import train as run_train

    if resume is None and (data is None or out is None):
        raise ConfigError("ehead train needs --data DIR and --out RUN_DIR (or --resume RUN_DIR)")
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


def main() -> None:
    try:
        app()
    except EheadError as err:
        err_console.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
