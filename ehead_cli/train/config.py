"""The run configuration: the training schedule (``TrainConfig``, the ``[train]`` section of a preset),
the learning-rate schedule, and resolving preset -> ``--config FILE.toml`` -> flags into one config
(through the one merge, ``ehead_cli.io.config``).

A schedule is either a warm-up followed by one decay (Stage I) or a warm-up followed by consecutive
``phases``, each at its own constant learning rate and with the objective the task trains in it
(the listener's step schedules: VQ-VAE 200k at 2e-4 then 100k at 1e-5; LM pre-training, full
objective, decayed full objective)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ehead_cli.errors import ConfigError
from ehead_cli.io.config import Layer, check_types, file_layer, flag_layer, merge_config
from ehead_cli.model.config import AudioEncoderConfig, ModelConfig, check_fields, load_toml, models_dir, preset
from ehead_cli.model.flow import REDUCTIONS


@dataclass(frozen=True)
class Phase:
    """A stretch of a piecewise-constant schedule: ``steps`` optimiser steps at learning rate ``lr``,
    training ``objective`` (a name the task interprets, e.g. the listener LM's "pre" / "full"; "" is
    the task's own single objective)."""

    steps: int
    lr: float
    objective: str = ""


@dataclass(frozen=True)
class TrainConfig:
    """A training schedule (Stage I's numbers are the defaults). Field by field:

    steps:          optimiser steps in total (paper 80k)
    batch_size:     windows per step over all processes (paper 64)
    lr:             peak AdamW learning rate (paper 6e-4)
    warmup_steps:   linear warm-up from 0 (paper 2k)
    decay:          after warm-up: "cosine" (to min_lr_ratio x lr), "linear" (likewise) or "constant"
    min_lr_ratio:   final lr / peak lr for the decays
    weight_decay:   AdamW decay, applied to matrices (weights of linear and conv layers) only
    betas:          AdamW betas
    grad_clip:      max global gradient norm (0 disables)
    ema_decay:      EMA of the weights; warmed up as min(ema_decay, (1 + k) / (10 + k))
    seed:           initialisation, sampler order and every example's randomness
    window_stride:  training windows start on a grid of this many frames, with a random offset inside
    workers:        DataLoader worker processes per training process
    log_every:      steps per metrics row and progress update
    ckpt_every:     steps between saved states/checkpoints (and at the end)
    val_every:      steps between validation losses (0 disables)
    val_windows:    validation windows (fixed, evenly spread over the val split)
    precision:      "auto" (bf16 autocast on GPUs with native bf16, Ampere and later; fp32 elsewhere), "bf16" or "fp32"
    compile:        wrap the network in torch.compile
    loss_reduction: "mean" (each group's squared error averaged over its dimensions, the default) or
                    "sum" (the literal squared norm of eq. 6); see ehead_cli.model.flow.flow_loss
    phases:         () or consecutive ``Phase``s: after the warm-up each phase's constant lr instead of a
                    decay (decay must be "constant"); steps is their total and lr the first one's
                    when not given
    keep_best:      also keep RUN_DIR/best/: the checkpoint of the validation with the lowest value of
                    the task's selection term (``Task.select``, the total loss by default)
    stream_cut:     probability that a training window's audio and states are cut at a random frame and
                    end-padded from there, as hop streaming presents a live window (past the paper: 0
                    there; the shipped presets use 0.3); the frames past the cut are masked out of the
                    loss (``ehead_cli.train.data``'s docstring says why). Validation windows are never cut
    """

    steps: int = 80_000
    batch_size: int = 64
    lr: float = 6e-4
    warmup_steps: int = 2000
    decay: str = "cosine"
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    window_stride: int = 10
    workers: int = 2
    log_every: int = 10
    ckpt_every: int = 1000
    val_every: int = 500
    val_windows: int = 64
    precision: str = "auto"
    compile: bool = False
    loss_reduction: str = "mean"
    phases: tuple[Phase, ...] = ()
    keep_best: bool = False
    stream_cut: float = 0.0

    def validate(self) -> TrainConfig:
        for p in self.phases:
            if not isinstance(p.steps, int) or p.steps < 1 or not p.lr > 0 or not isinstance(p.objective, str):
                raise ConfigError(f"train.phases: each phase needs steps >= 1, lr > 0 and a string objective; got {p}")
        if not 0.0 <= self.stream_cut <= 1.0:
            raise ConfigError(f"train.stream_cut is a probability in [0, 1], got {self.stream_cut}")
        for name in ("steps", "batch_size", "window_stride", "log_every", "ckpt_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if self.decay not in ("cosine", "linear", "constant"):
            raise ConfigError(f"train.decay must be cosine, linear or constant, got {self.decay!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"train.precision must be auto, bf16 or fp32, got {self.precision!r}")
        if self.loss_reduction not in REDUCTIONS:
            raise ConfigError(f"train.loss_reduction must be one of {', '.join(REDUCTIONS)}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError("train.ema_decay must be in [0, 1)")
        if self.warmup_steps < 0 or self.workers < 0 or self.val_every < 0 or self.val_windows < 0:
            raise ConfigError("train.warmup_steps, workers, val_every and val_windows must be >= 0")
        if self.phases:
            total = sum(p.steps for p in self.phases)
            if self.steps != total:
                raise ConfigError(f"train.steps ({self.steps}) must equal the phases' total ({total} steps)")
            if self.decay != "constant":
                raise ConfigError("train.decay must be constant with phases (each phase has its own lr)")
        return self

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str, section: str = "train") -> TrainConfig:
        check_fields(cls, d, source, section)
        check_types(cls, d, source, section)
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(float(b) for b in d["betas"])
        if d.get("phases"):
            try:
                d["phases"] = tuple(p if isinstance(p, Phase) else Phase(**p) for p in d["phases"])
            except TypeError as err:
                raise ConfigError(f"{source}: [{section}] phases: {err}") from None
            d.setdefault("steps", sum(p.steps for p in d["phases"]))
            d.setdefault("lr", d["phases"][0].lr)
            d.setdefault("decay", "constant")
        else:
            d["phases"] = ()
        try:
            return cls(**d).validate()
        except ConfigError as err:
            if section == "train":
                raise
            raise ConfigError(f"{source}: [{section}] {err}") from None


def phase_at(cfg: TrainConfig, step: int) -> tuple[int, Phase | None]:
    """(index, phase) of 0-based optimiser step ``step``; (0, None) for a schedule without phases.
    Steps past the end belong to the last phase."""
    start = 0
    for i, p in enumerate(cfg.phases):
        if step < start + p.steps:
            return i, p
        start += p.steps
    return (len(cfg.phases) - 1, cfg.phases[-1]) if cfg.phases else (0, None)


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate for optimiser step ``step`` (0-based): a linear warm-up, then the decay, or with
    ``phases`` the current phase's constant lr (the warm-up ramps the phase it falls in)."""
    _, phase = phase_at(cfg, step)
    peak = cfg.lr if phase is None else phase.lr
    if step < cfg.warmup_steps:
        return peak * (step + 1) / cfg.warmup_steps
    if cfg.decay == "constant":
        return peak
    span = max(1, cfg.steps - cfg.warmup_steps)
    p = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    if cfg.decay == "linear":
        return floor + (cfg.lr - floor) * (1 - p)
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * p))


SCHEMA = {"model": ModelConfig, "model.audio": AudioEncoderConfig, "train": TrainConfig}  # Stage I's sections


def resolve_config(preset_name: str, config_file: Path | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """preset TOML -> --config FILE.toml -> command-line flags (into [train]), later wins
    (``ehead_cli.io.config.merge_config``). Returns the resolved {"model": ModelConfig, "train": TrainConfig}."""
    path = models_dir() / "presets" / f"{preset_name}.toml"
    base = Layer({"model": preset(preset_name).to_dict(), "train": dict(load_toml(path).get("train", {}))}, str(path))
    merged, source = merge_config([base, *file_layer(config_file), *flag_layer("train", overrides)], SCHEMA)
    return {"model": ModelConfig.from_dict(merged["model"], source=source),
            "train": TrainConfig.from_dict(merged["train"], source=source)}


@dataclass(frozen=True)
class Resumed:
    """What ``--resume`` continues with, read from the run's own record (one source: never the preset
    again): the record itself, the model config, the motion statistics and the schedule with the
    command line's flags over it."""

    record: dict[str, Any]
    model: ModelConfig
    stats: Any  # model.stats.MotionStats
    train: TrainConfig


def resumed_run(run_dir: Path, overrides: dict[str, Any] | None = None) -> Resumed:
    """The record of the run in ``run_dir`` (Stage I or II) and its configs; flags in ``overrides`` (None
    = not given) go over the recorded schedule through the one merge."""
    from ehead_cli.model.stats import MotionStats
    from ehead_cli.train.state import STATE_DIR, read_record

    record = read_record(run_dir)
    source = str(run_dir / STATE_DIR)
    merged, source = merge_config([Layer({"train": record["train"]}, source),
                                   *flag_layer("train", overrides or {})], {"train": TrainConfig})
    return Resumed(record, ModelConfig.from_dict(record["model"], source=str(run_dir / STATE_DIR)),
                   MotionStats.from_dict(record["stats"]), TrainConfig.from_dict(merged["train"], source=source))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table (e.g. a phase inside a list)
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items() if x is not None) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dump_toml(data: dict[str, Any], prefix: str = "") -> str:
    """A small TOML writer for our configs: scalars, lists and nested tables."""
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    lines = [f"{k} = {_toml_value(v)}" for k, v in scalars.items() if v is not None]
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, v in tables.items():
        name = f"{prefix}.{k}" if prefix else k
        out += f"\n[{name}]\n" + dump_toml(v, name)
    return out
