"""Checkpoint folders, read one way for every model family: ``config.json`` + ``model.safetensors``.

A family's checkpoint folder holds ``config.json`` (``{"format", "version", ...}``, the format string
naming the family: ``CheckpointFormat``) and its weights in ``model.safetensors`` (no pickle). Every
``--checkpoint``, ``--init`` and ``--vq`` accepts the folder itself or a training run folder
(``ehead train --out RUN_DIR``), resolved by one rule, ``resolve_folder``:

    1. PATH itself when it holds config.json;
    2. else, for a family whose format sets ``prefer_best`` (the listener: its stages keep
       ``best/``, the lowest validation loss), PATH/best/ when that holds config.json;
    3. else PATH/checkpoint/ (the run's last step) when that holds config.json;
    4. else PATH unchanged, which the reader then reports as not a checkpoint folder.

Reading (``read_config``) checks the format string against the family's (a known other family's
format gets that family's hint, e.g. "add --family listener") and the version; ``load_weights`` and
``check_state`` read the safetensors file and match it against the model the config builds. Each
problem is one InputError line naming the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ehead_cli.errors import InputError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
RUN_CHECKPOINT = "checkpoint"  # a training run folder's checkpoint of its last step
RUN_BEST = "best"  # its checkpoint of the best validation (train.keep_best)


@dataclass(frozen=True)
class CheckpointFormat:
    """What a family's config.json says and how its reader words problems.

    name:        the ``format`` string written into config.json (one per family)
    version:     the supported ``version``
    label:       the folder in messages ("checkpoint", "listener checkpoint")
    describe:    what a config of another format is not ("an ehead checkpoint config")
    hint:        added to the wrong-format message ("" for none)
    foreign:     {other format name: the whole message for it} (a listener folder given to the model)
    prefer_best: a run folder's ``best/`` before its ``checkpoint/`` (rule 2 of ``resolve_folder``)
    """

    name: str
    version: int
    label: str = "checkpoint"
    describe: str = "an ehead checkpoint config"
    hint: str = ""
    foreign: dict[str, str] = field(default_factory=dict)
    prefer_best: bool = False


def run_candidates(prefer_best: bool = False) -> tuple[str, ...]:
    """The sub-folders of a run folder tried in order (``resolve_folder``'s rules 2 and 3)."""
    return (RUN_BEST, RUN_CHECKPOINT) if prefer_best else (RUN_CHECKPOINT,)


def resolve_folder(path: str | os.PathLike, prefer_best: bool = False) -> Path:
    """The checkpoint folder of ``path``: itself, or a run folder's ``best/`` (``prefer_best``) or
    ``checkpoint/`` (the module docstring's rule); ``path`` unchanged when none holds config.json."""
    path = Path(path)
    if (path / CONFIG_NAME).is_file():
        return path
    for sub in run_candidates(prefer_best):
        if (path / sub / CONFIG_NAME).is_file():
            return path / sub
    return path


def read_format(path: str | os.PathLike) -> str | None:
    """The ``format`` string of ``path``'s checkpoint config (a checkpoint or run folder, either
    sub-folder), or None where there is no readable config.json."""
    folder = resolve_folder(path, prefer_best=True)
    try:
        config = json.loads((folder / CONFIG_NAME).read_text())
    except (OSError, ValueError):
        return None
    return config.get("format") if isinstance(config, dict) else None


def check_format(config: Any, path: Path, fmt: CheckpointFormat) -> dict[str, Any]:
    """``config`` (config.json's content at ``path``) when its format and version are ``fmt``'s."""
    found = config.get("format") if isinstance(config, dict) else None
    if found in fmt.foreign:
        raise InputError(f"{path}: {fmt.foreign[found]}")
    if found != fmt.name:
        hint = f"; {fmt.hint}" if fmt.hint else ""
        raise InputError(f"{path}: not {fmt.describe} (format {found!r}){hint}")
    if config.get("version") != fmt.version:
        raise InputError(f"{path}: {fmt.label} version {config.get('version')} is not supported "
                         f"(need {fmt.version})")
    return config


def read_config(path: str | os.PathLike, fmt: CheckpointFormat, flag: str = "--checkpoint"
                ) -> tuple[Path, dict[str, Any]]:
    """(the resolved checkpoint folder, its validated config.json) of a checkpoint or run folder."""
    folder = resolve_folder(path, fmt.prefer_best)
    if not folder.is_dir():
        raise InputError(f"{folder}: {fmt.label} folder not found ({flag})")
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        subs = " or ".join(f"{s}/{CONFIG_NAME}" for s in run_candidates(fmt.prefer_best))
        raise InputError(f"{folder}: not a {fmt.label} folder (no {CONFIG_NAME}, nor a run folder with {subs})")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"{config_path}: unreadable checkpoint config ({err})") from None
    return folder, check_format(config, config_path, fmt)


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file ``path`` (on the CPU, as stored)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path.parent}: checkpoint has no {path.name}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise InputError(f"{path}: unreadable safetensors file ({err})") from None


def check_state(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], path: str | os.PathLike,
                prefix: str = "") -> None:
    """InputError naming ``path`` unless ``state`` has exactly ``expected``'s keys and shapes
    (``prefix``: the part's key prefix in the file, e.g. "lm.", for the message)."""
    part = f"{prefix[:-1]} " if prefix else ""
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    if missing or unexpected:
        detail = f"missing {sorted(missing)[:3]}" if missing else f"unexpected {sorted(unexpected)[:3]}"
        raise InputError(f"{path}: {part}weights do not match the config ({detail})")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise InputError(f"{path}: {prefix}{k} has shape {tuple(v.shape)}, the config expects "
                             f"{tuple(expected[k].shape)}")
