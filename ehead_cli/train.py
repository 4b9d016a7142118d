"""Stage I training: coefficient-space rectified-flow matching (paper 3.4, supplementary B.1).

    ehead train --data DIR --preset small --out runs/small

A run folder holds everything needed to continue or use the run:

    RUN_DIR/config.toml        the resolved configuration (model, train, data), written first
    RUN_DIR/metrics.csv        step, losses per group, lr, grad norm, it/s, validation loss
    RUN_DIR/state/             the exact training state (weights, EMA, AdamW moments, step) for --resume
    RUN_DIR/checkpoint/        the EMA weights as a checkpoint folder (what `ehead generate --checkpoint` reads)
    RUN_DIR/loss.png           the loss curves, drawn at the end
    RUN_DIR/tensorboard/       TensorBoard events, when tensorboard is installed

Determinism: every example (window, reference frame, noise x0, time t) is a function of
(seed, epoch, index) (see ehead_cli.data), the sampler order is torch's DistributedSampler with
(seed, epoch), and a step's position in that order follows from the step number alone. So an
interrupted and resumed run sees exactly the batches of an uninterrupted one, on any number of
processes and DataLoader workers.

Many GPUs / nodes: launch with ``torchrun --nproc_per_node=N -m ehead_cli train ...``. The batch
size is global and split evenly across processes; rank 0 writes all files.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from ehead_cli.checkpoint import read_config, save_checkpoint
from ehead_cli.config import ModelConfig, check_fields, load_toml, models_dir, preset
from ehead_cli.data import WindowDataset, fit_stats, load_index
from ehead_cli.devices import native_bf16, resolve_device
from ehead_cli.encoders import FeatureCache
from ehead_cli.errors import ConfigError, InputError
from ehead_cli.fileutil import atomic_dir, atomic_path
from ehead_cli.flow import REDUCTIONS, PathSample, flow_loss
from ehead_cli.model import EmbodiedHead
from ehead_cli.stats import MotionStats

RUN_CONFIG = "config.toml"
METRICS = "metrics.csv"
STATE_DIR = "state"
CHECKPOINT_DIR = "checkpoint"
LOSS_KEYS = ("loss", "expression", "jaw", "eye", "rotation", "translation", "smooth")


@dataclass(frozen=True)
class TrainConfig:
    """Stage-I schedule. Field by field:

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
                    "sum" (the literal squared norm of eq. 6); see ehead_cli.flow.flow_loss
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

    def validate(self) -> TrainConfig:
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
        return self

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str) -> TrainConfig:
        check_fields(cls, d, source, "train")
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(float(b) for b in d["betas"])
        return cls(**d).validate()


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate for optimiser step ``step`` (0-based)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.decay == "constant":
        return cfg.lr
    span = max(1, cfg.steps - cfg.warmup_steps)
    p = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    if cfg.decay == "linear":
        return floor + (cfg.lr - floor) * (1 - p)
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * p))


# ---------------------------------------------------------------------------------------------
# configuration resolution
# ---------------------------------------------------------------------------------------------
def resolve_config(preset_name: str, config_file: Path | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """preset TOML -> --config FILE.toml -> command-line flags, later wins. Returns the resolved
    {"model": ModelConfig, "train": TrainConfig}."""
    path = models_dir() / "presets" / f"{preset_name}.toml"
    cfg_model = preset(preset_name).to_dict()
    cfg_train = dict(load_toml(path).get("train", {}))
    if config_file is not None:
        extra = load_toml(config_file)
        bad = set(extra) - {"model", "train"}
        if bad:
            raise ConfigError(f"{config_file}: unknown section(s) {', '.join(sorted(bad))}; use [model] and [train]")
        model_extra = dict(extra.get("model", {}))
        audio_extra = model_extra.pop("audio", {})
        cfg_model.update(model_extra)
        cfg_model["audio"] = {**cfg_model["audio"], **audio_extra}
        cfg_train.update(extra.get("train", {}))
    cfg_train.update({k: v for k, v in overrides.items() if v is not None})
    return {"model": ModelConfig.from_dict(cfg_model, source=str(config_file or path)),
            "train": TrainConfig.from_dict(cfg_train, source=str(config_file or path))}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
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


# ---------------------------------------------------------------------------------------------
# the step
# ---------------------------------------------------------------------------------------------
class TrainStep(nn.Module):
    """Wraps the model so one forward computes the Stage-I loss of a batch (what DDP wraps)."""

    def __init__(self, model: EmbodiedHead, reduction: str = "mean"):
        super().__init__()
        self.model = model
        self.reduction = reduction

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        m = self.model
        front = batch["front"] if "front" in batch else m.encoder.frontend(batch["wave"])
        audio = m.audio_stack(front)
        path = PathSample.between(batch["x0"], batch["x1"], batch["t"])
        v = m.dit(path.x_t, path.t, audio, batch["states"], batch["history"], batch["history_states"],
                  batch["shape"], batch["ref"], batch["magnitude"])
        return flow_loss(v.float(), path, reduction=self.reduction, mask=batch.get("mask"))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class EMA:
    """Exponential moving average of the trainable weights (by name)."""

    def __init__(self, model: EmbodiedHead, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.trainable_state_dict().items()}

    @torch.no_grad()
    def update(self, model: EmbodiedHead, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in model.trainable_state_dict().items():
            if v.is_floating_point():
                self.shadow[k].mul_(d).add_(v.detach().float(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)

    def copy_to(self, model: EmbodiedHead) -> None:
        model.load_trainable_(self.shadow)


# ---------------------------------------------------------------------------------------------
# distributed helpers
# ---------------------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def all_mean(x: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.world > 1:
        x = x.clone()
        dist.all_reduce(x)
        x /= d.world
    return x


# ---------------------------------------------------------------------------------------------
# state save / load (exact resume)
# ---------------------------------------------------------------------------------------------
def save_state(run_dir: Path, model: EmbodiedHead, ema: EMA, opt: torch.optim.Optimizer, step: int) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.trainable_state_dict().items()}
    tensors.update({f"ema.{k}": v.cpu().contiguous() for k, v in ema.shadow.items()})
    osd = opt.state_dict()
    scalars: dict[str, Any] = {"step": step, "param_groups": osd["param_groups"], "opt_steps": {}}
    for pid, st in osd["state"].items():
        for name, val in st.items():
            if name == "step":
                scalars["opt_steps"][str(pid)] = float(val)
            else:
                tensors[f"opt.{pid}.{name}"] = val.detach().cpu().contiguous()
    with atomic_dir(run_dir / STATE_DIR) as tmp:
        save_file(tensors, str(tmp / "state.safetensors"))
        (tmp / "state.json").write_text(json.dumps(scalars))


def load_state(run_dir: Path, model: EmbodiedHead, ema: EMA, opt: torch.optim.Optimizer) -> int:
    state = run_dir / STATE_DIR
    if not (state / "state.json").is_file():
        raise InputError(f"{run_dir}: no saved training state to resume (--resume expects a run folder)")
    tensors = load_file(str(state / "state.safetensors"))
    scalars = json.loads((state / "state.json").read_text())
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


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------
def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _console():
    from rich.console import Console

    return Console(stderr=True)


def train(data: str | Path, out: str | Path, preset_name: str = "small", config_file: str | Path | None = None,
          overrides: dict[str, Any] | None = None, resume: bool = False, device: str | None = None,
          hubert_path: str | None = None, stop_after: int | None = None, progress: bool = True,
          command: str = "") -> Path:
    """Run (or continue) Stage-I training. Returns the run folder.

    ``stop_after`` ends the run early after that many steps of this invocation (tests use it to
    simulate an interruption); the state is saved first.
    """
    out = Path(out)
    device = str(resolve_device(device))
    dd = init_distributed(device)
    if device.startswith("cuda") and dd.world > 1:
        device = f"cuda:{dd.local_rank}"
        torch.cuda.set_device(dd.local_rank)
    dev = torch.device(device)

    if resume:
        run_cfg = load_toml(out / RUN_CONFIG)
        model_cfg = ModelConfig.from_dict(run_cfg["model"], source=str(out / RUN_CONFIG))
        tcfg = dict(run_cfg["train"])
        tcfg.update({k: v for k, v in (overrides or {}).items() if v is not None})
        train_cfg = TrainConfig.from_dict(tcfg, source=str(out / RUN_CONFIG))
        data = Path(data) if data else Path(run_cfg["data"]["dir"])
    else:
        resolved = resolve_config(preset_name, Path(config_file) if config_file else None, overrides or {})
        model_cfg, train_cfg = resolved["model"], resolved["train"]
        if (out / STATE_DIR).exists():
            raise InputError(f"{out}: already holds a training run; use --resume {out} or another --out")
    data = Path(data)
    if train_cfg.batch_size % dd.world:
        raise ConfigError(f"--batch-size {train_cfg.batch_size} must be divisible by the {dd.world} processes")
    console = _console()

    # --- data ---------------------------------------------------------------------------------
    index = load_index(data)
    if dd.main:
        for p in index.problems:
            console.print(f"[yellow]skipped[/] {p}", highlight=False)
    train_clips = index.split("train")
    short = [c.id for c in train_clips if c.n_frames < model_cfg.window]
    if short and dd.main:
        names = ", ".join(short[:5]) + (f" and {len(short) - 5} more" if len(short) > 5 else "")
        console.print(f"note: {len(short)} training clip(s) shorter than one window ({model_cfg.window} frames) are "
                      f"padded at the end and the padding is left out of the loss: {names}", highlight=False)
    if not train_clips:
        raise InputError(f"{data}: no usable training clips (split 'train')")
    val_clips = index.split("val")

    torch.manual_seed(train_cfg.seed)
    if resume:  # the statistics of the run, not refitted
        stats = MotionStats.from_dict(read_config(out / CHECKPOINT_DIR)["stats"])
    else:
        stats = fit_stats(train_clips, model_cfg.window)
    model = EmbodiedHead(model_cfg, stats, hubert_path=hubert_path)
    model.to(dev)
    cache = FeatureCache() if model.encoder.window_local else None
    train_ds = WindowDataset(train_clips, stats, model_cfg.window, model_cfg.history_frames, model.encoder,
                             stride=train_cfg.window_stride, seed=train_cfg.seed, feature_cache=cache)
    val_ds = None
    if val_clips and train_cfg.val_every and train_cfg.val_windows:
        val_ds = WindowDataset(val_clips, stats, model_cfg.window, model_cfg.history_frames, model.encoder,
                               stride=model_cfg.window // 4, seed=train_cfg.seed + 1, feature_cache=cache)
    train_ds.preload()  # once here, not once per epoch in every DataLoader worker

    # --- optimisation ---------------------------------------------------------------------------
    if len(train_ds) < train_cfg.batch_size:
        factor = train_ds.repeat_to(train_cfg.batch_size)
        if dd.main:
            console.print(f"note: {data} has only {len(train_ds.slots)} training windows for --batch-size "
                          f"{train_cfg.batch_size}; each appears {factor} times per epoch", highlight=False)
    step_module: nn.Module = TrainStep(model, train_cfg.loss_reduction)
    if dd.world > 1:
        step_module = nn.parallel.DistributedDataParallel(
            step_module, device_ids=[dd.local_rank] if dev.type == "cuda" else None)
    if train_cfg.compile:
        step_module = torch.compile(step_module)
    opt = torch.optim.AdamW(param_groups(model, train_cfg.weight_decay), lr=train_cfg.lr, betas=train_cfg.betas,
                            fused=dev.type == "cuda")
    ema = EMA(model, train_cfg.ema_decay)
    start = 0
    if resume:
        start = load_state(out, model, ema, opt)
    elif dd.main:
        out.mkdir(parents=True, exist_ok=True)
        resolved_toml = dump_toml({"command": command, "data": {"dir": str(data.resolve())},
                                   "model": model_cfg.to_dict(), "train": dataclasses.asdict(train_cfg)})
        (out / RUN_CONFIG).write_text(resolved_toml)
        _write_metrics_header(out)
    if start >= train_cfg.steps:
        if dd.main:
            console.print(f"{out}: already trained to step {start} (--steps {train_cfg.steps})")
        return out
    use_bf16 = train_cfg.precision == "bf16" or (train_cfg.precision == "auto" and native_bf16(dev))
    per_rank = train_cfg.batch_size // dd.world
    sampler = DistributedSampler(train_ds, num_replicas=dd.world, rank=dd.rank, shuffle=True,
                                 seed=train_cfg.seed, drop_last=True)
    steps_per_epoch = len(sampler) // per_rank

    writer = _tensorboard(out) if dd.main else None
    meter: dict[str, float] = {}
    n_meter, t_last, step = 0, time.perf_counter(), start
    end = train_cfg.steps if stop_after is None else min(train_cfg.steps, start + stop_after)
    bar = _progress(progress and dd.main, console)
    task = bar.add_task("train", total=train_cfg.steps, completed=start, loss=float("nan"), lr=0.0) if bar else None
    step_module.train()
    try:
        if bar:
            bar.start()
        while step < end:
            epoch, offset = divmod(step, steps_per_epoch)
            sampler.set_epoch(epoch)
            train_ds.set_epoch(epoch)
            order = list(sampler)[offset * per_rank: steps_per_epoch * per_rank]
            loader = DataLoader(train_ds, batch_size=per_rank, sampler=order, num_workers=train_cfg.workers,
                                pin_memory=dev.type == "cuda", drop_last=True,
                                persistent_workers=False)
            for batch in loader:
                if step >= end:
                    break
                lr = lr_at(train_cfg, step)
                for g in opt.param_groups:
                    g["lr"] = lr
                batch = _to(batch, dev)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                    losses = step_module(batch)
                opt.zero_grad(set_to_none=True)
                losses["loss"].backward()
                grad_norm = (torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
                             if train_cfg.grad_clip > 0 else torch.zeros(()))
                opt.step()
                ema.update(model, step)
                step += 1
                vals = all_mean(torch.stack([losses[k].detach().float() for k in LOSS_KEYS]), dd).tolist()
                for k, v in zip(LOSS_KEYS, vals, strict=True):
                    meter[k] = meter.get(k, 0.0) + v
                meter["grad_norm"] = meter.get("grad_norm", 0.0) + float(grad_norm)
                n_meter += 1
                if not math.isfinite(vals[0]):
                    raise RuntimeError(f"loss became {vals[0]} at step {step}; lower --lr or check the data")
                val_loss = None
                if val_ds is not None and (step % train_cfg.val_every == 0 or step == train_cfg.steps):
                    val_loss = validate(model, ema, val_ds, train_cfg, dev, use_bf16, dd)
                if step % train_cfg.log_every == 0 or step == end or val_loss is not None:
                    now = time.perf_counter()
                    row = {k: meter[k] / n_meter for k in meter}
                    row.update(step=step, lr=lr, it_s=n_meter / max(now - t_last, 1e-9), val_loss=val_loss)
                    if dd.main:
                        _append_metrics(out, row)
                        if writer is not None:
                            for k, v in row.items():
                                if k != "step" and v is not None:
                                    writer.add_scalar(k, v, step)
                    if bar:
                        bar.update(task, completed=step, loss=row["loss"], lr=lr)
                    meter, n_meter, t_last = {}, 0, now
                if dd.main and (step % train_cfg.ckpt_every == 0 or step == end):
                    _save_all(out, model, ema, opt, step, train_cfg, data, command)
    except KeyboardInterrupt:
        if dd.main:
            _save_all(out, model, ema, opt, step, train_cfg, data, command)
            console.print(f"interrupted at step {step}; state saved. Continue with: ehead train --resume {out}")
        raise
    finally:
        if bar:
            bar.stop()
        if writer is not None:
            writer.close()
    if dd.main and step >= train_cfg.steps:
        plot_losses(out)
    if dd.world > 1:
        dist.barrier()
    return out


@torch.no_grad()
def validate(model: EmbodiedHead, ema: EMA, ds: WindowDataset, cfg: TrainConfig, dev: torch.device,
             use_bf16: bool, dd: Dist) -> float:
    """Mean Stage-I loss of the EMA weights on fixed validation windows (same noise every time)."""
    n = min(cfg.val_windows, len(ds))
    idx = [round(i * (len(ds) - 1) / max(1, n - 1)) for i in range(n)]
    idx = idx[dd.rank::dd.world]
    live = {k: v.detach().clone() for k, v in model.trainable_state_dict().items()}
    ema.copy_to(model)
    model.eval()
    total, count = torch.zeros((), device=dev), torch.zeros((), device=dev)
    step = TrainStep(model, cfg.loss_reduction)
    for i in range(0, len(idx), 16):
        items = [ds[j] for j in idx[i:i + 16]]
        batch = _to({k: torch.stack([it[k] for it in items]) for k in items[0]}, dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = step(batch)["loss"]
        total += loss.float() * len(items)
        count += len(items)
    model.load_trainable_(live)
    model.train()
    if dd.world > 1:
        dist.all_reduce(total)
        dist.all_reduce(count)
    return float(total / count.clamp_min(1))


def _save_all(out: Path, model: EmbodiedHead, ema: EMA, opt, step: int, cfg: TrainConfig, data: Path,
              command: str) -> None:
    """The exact training state (for --resume) and the EMA weights as a checkpoint folder; its meta
    says which face model the motion is for (the avatar folders check it)."""
    from ehead_cli.prepare.pipeline import dataset_face_model

    save_state(out, model, ema, opt, step)
    save_checkpoint(out / CHECKPOINT_DIR, model, state=ema.shadow,
                    meta={"step": step, "data": str(data), "command": command, "weights": "EMA",
                          "train": dataclasses.asdict(cfg), "face_model": dataset_face_model(data)})


_COLUMNS = ("step", *LOSS_KEYS, "grad_norm", "lr", "it_s", "val_loss")


def _write_metrics_header(out: Path) -> None:
    with open(out / METRICS, "w", newline="") as f:
        csv.writer(f).writerow(_COLUMNS)


def _append_metrics(out: Path, row: dict[str, Any]) -> None:
    with open(out / METRICS, "a", newline="") as f:
        csv.writer(f).writerow(["" if row.get(c) is None else
                                (row[c] if c == "step" else f"{row[c]:.6g}") for c in _COLUMNS])


def read_metrics(run_dir: str | Path) -> list[dict[str, float]]:
    with open(Path(run_dir) / METRICS) as f:
        return [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]


def plot_losses(out: Path) -> None:
    """loss.png: training loss per group and validation loss against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(out)
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    steps = [r["step"] for r in rows]
    for key in ("loss", "expression", "jaw", "rotation"):
        ax.plot(steps, [r.get(key, math.nan) for r in rows], label=key, lw=1.5 if key == "loss" else 0.8)
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="val loss (EMA)", color="black", ms=3)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("Stage-I loss (per frame)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(out / "loss.png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    try:
        return SummaryWriter(str(out / "tensorboard"))
    except Exception:  # tensorboard present but broken: metrics.csv still has everything
        return None


def _progress(enabled: bool, console):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class Speed(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{task.speed:.2f} it/s" if task.speed else "-- it/s")

    return Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}"), Speed(),
                    TimeRemainingColumn(), console=console, transient=False)
