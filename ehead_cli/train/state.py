"""The run folder and its exact training state, the one source ``--resume`` reads.

    RUN_DIR/config.toml    the resolved configuration, written when the run starts (a record for people)
    RUN_DIR/state/         state.safetensors (weights, EMA, AdamW moments) + state.json (step, optimiser
                           scalars, and the run record: model config, dataset statistics, schedule, data)
    RUN_DIR/checkpoint/    the EMA weights as a checkpoint folder (what `ehead generate --checkpoint` reads)

Resuming rebuilds the model from the record in ``state.json`` alone, so the configuration and the
statistics a run continues with are the ones its weights were trained with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ehead_cli.errors import InputError
from ehead_cli.io.atomic import atomic_dir
from ehead_cli.train.ema import EMA

RUN_CONFIG = "config.toml"
STATE_DIR = "state"
_TENSORS = "state.safetensors"
_SCALARS = "state.json"


def save_state(run_dir: Path, model: nn.Module, ema: EMA, opt: torch.optim.Optimizer, step: int,
               record: dict[str, Any]) -> None:
    """Write RUN_DIR/state/ whole (atomically): weights, EMA, optimiser, step and the run ``record``."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.trainable_state_dict().items()}
    tensors.update({f"ema.{k}": v.cpu().contiguous() for k, v in ema.shadow.items()})
    osd = opt.state_dict()
    scalars: dict[str, Any] = {"step": step, "param_groups": osd["param_groups"], "opt_steps": {},
                               "record": record}
    for pid, st in osd["state"].items():
        for name, val in st.items():
            if name == "step":
                scalars["opt_steps"][str(pid)] = float(val)
            else:
                tensors[f"opt.{pid}.{name}"] = val.detach().cpu().contiguous()
    with atomic_dir(run_dir / STATE_DIR) as tmp:
        save_file(tensors, str(tmp / _TENSORS))
        (tmp / _SCALARS).write_text(json.dumps(scalars))


def read_record(run_dir: Path) -> dict[str, Any]:
    """The run record saved with the state (model config, statistics, schedule, data folder, ...)."""
    path = run_dir / STATE_DIR / _SCALARS
    if not path.is_file():
        raise InputError(f"{run_dir}: no saved training state to resume (--resume expects a run folder)")
    try:
        scalars = json.loads(path.read_text())
        return scalars["record"]
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"{path}: unreadable training state ({err})") from None


def load_state(run_dir: Path, model: nn.Module, ema: EMA, opt: torch.optim.Optimizer) -> int:
    """Restore weights, EMA and optimiser from RUN_DIR/state/; returns the step to continue from."""
    state = run_dir / STATE_DIR
    read_record(run_dir)  # a clear error when there is no state
    tensors = load_file(str(state / _TENSORS))
    scalars = json.loads((state / _SCALARS).read_text())
    model.load_trainable_({k: tensors[f"model.{k}"] for k in model.trainable_state_dict()})
    for k in ema.shadow:
        ema.shadow[k].copy_(tensors[f"ema.{k}"])
    opt_state: dict[int, dict[str, Any]] = {}
    for key, val in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = val
    for pid, st in scalars["opt_steps"].items():
        opt_state.setdefault(int(pid), {})["step"] = torch.tensor(st)
    opt.load_state_dict({"state": opt_state, "param_groups": scalars["param_groups"]})
    return int(scalars["step"])
