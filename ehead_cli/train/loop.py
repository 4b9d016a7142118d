"""The training loop every trainable thing in ehead shares: AdamW with warm-up and decay, gradient
clipping, EMA, bf16 autocast, torchrun DDP, validation, exact resume, the metrics CSV, the progress bar
and the loss plot. What is trained is a ``Task`` (``stage1.Stage1Task``; later stages and families
bring their own).

Determinism: every example is a function of (seed, epoch, index) (the task's dataset guarantees it),
the sampler order is torch's DistributedSampler with (seed, epoch), and a step's position in that
order follows from the step number alone. So an interrupted and resumed run sees exactly the batches
of an uninterrupted one, on any number of processes and DataLoader workers.

Randomness inside a step (dropout, a quantiser's dead-code resets) comes from torch's generator,
seeded before every step from (seed, step, rank), so it too is exact on resume.

Many GPUs / nodes: launch with ``torchrun --nproc_per_node=N -m ehead_cli train ...``. The batch
size is global and split evenly across processes: rank r gets items r, r + N, r + 2N, ... of the
global batch (DistributedSampler's interleaving); rank 0 writes all files.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ehead_cli.devices import native_bf16
from ehead_cli.errors import ConfigError
from ehead_cli.io.checkpoint import RUN_BEST, RUN_CHECKPOINT
from ehead_cli.train.config import TrainConfig, dump_toml, lr_at, phase_at
from ehead_cli.train.distributed import Dist, all_mean, all_sum_, barrier
from ehead_cli.train.ema import EMA
from ehead_cli.train.logging import METRICS, MetricsLog, plot_losses, progress_bar, read_metrics, tensorboard
from ehead_cli.train.state import RUN_CONFIG, load_state, save_state

RECORD_ONLY = ("stats",)  # parts of the run record kept in state/ but too bulky for config.toml
VAL_BATCH = 16


class Task(Protocol):
    """What the loop trains.

    model          holds the trained weights: ``trainable_state_dict()`` / ``load_trainable_(state)``
                   (what EMA, the resume state and the checkpoint hold); its parameters are optimised
    loss_module    ``forward(batch) -> {term: scalar}`` with the total under "loss" (what DDP wraps)
    loss_keys      the terms logged to metrics.csv, "loss" first
    plot           (terms drawn in loss.png, the y-axis label)
    train_set      a Dataset with ``set_epoch(epoch)``; ``val_set`` likewise, or None
    collate        the DataLoader's collate_fn; batches have ``.to(device, non_blocking=...)``

    Optional (looked up with defaults):
    select         the validation term that picks best/ (default "loss"); logged as ``val_<select>``
                   beside ``val_loss`` when it is another term
    begin_step     ``begin_step(step)``, called before each optimiser step (0-based): a task whose
                   objective changes with the schedule's phases switches it here
    """

    model: nn.Module
    loss_module: nn.Module
    loss_keys: tuple[str, ...]
    plot: tuple[tuple[str, ...], str]
    train_set: Dataset
    val_set: Dataset | None
    collate: Callable[[list[Any]], Any]

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]: ...

    def save_checkpoint(self, folder: Path, weights: dict[str, torch.Tensor], meta: dict[str, Any]) -> None: ...


def param_groups(model: nn.Module, weight_decay: float, lr_scale: float = 1.0) -> list[dict[str, Any]]:
    """AdamW groups: decay on matrices (weights of linear and conv layers) only. ``lr_scale``
    multiplies the schedule's learning rate for these parameters."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "lr_scale": lr_scale},
            {"params": no_decay, "weight_decay": 0.0, "lr_scale": lr_scale}]


@dataclass
class Run:
    """Where and how a task is trained. ``record``: the run record (model config, statistics,
    schedule, data, command) saved with every state and, less ``RECORD_ONLY``, as config.toml."""

    out: Path
    cfg: TrainConfig
    dd: Dist
    device: torch.device
    record: dict[str, Any]
    resume: bool = False
    console: Any = None
    notes: list[str] = field(default_factory=list)
    label: str = "train"  # the progress bar's


def step_seed(seed: int, step: int, rank: int) -> int:
    """The seed of torch's generator for optimiser step ``step`` on process ``rank``."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


def fit(task: Task, run: Run, stop_after: int | None = None, progress: bool = True) -> Path:
    """Train ``task`` to ``run.cfg.steps`` (or ``stop_after`` more steps: tests simulate an interruption
    with it; the state is saved first). Returns the run folder."""
    cfg, dd, dev, out = run.cfg, run.dd, run.device, run.out
    if cfg.batch_size % dd.world:
        raise ConfigError(f"--batch-size {cfg.batch_size} must be divisible by the {dd.world} processes")
    select = getattr(task, "select", "loss")
    begin_step = getattr(task, "begin_step", None)
    extra = ((f"val_{select}",) if select != "loss" else ()) + (("phase",) if cfg.phases else ())
    log = MetricsLog(out, task.loss_keys, extra)
    step_module: nn.Module = task.loss_module
    if dd.world > 1:
        step_module = nn.parallel.DistributedDataParallel(
            step_module, device_ids=[dd.local_rank] if dev.type == "cuda" else None)
    if cfg.compile:
        step_module = torch.compile(step_module)
    opt = torch.optim.AdamW(task.param_groups(cfg.weight_decay), lr=cfg.lr, betas=cfg.betas,
                            fused=dev.type == "cuda")
    ema = EMA(task.model, cfg.ema_decay)
    start = 0
    if run.resume:
        start = load_state(out, task.model, ema, opt)
    elif dd.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / RUN_CONFIG).write_text(dump_toml({k: v for k, v in run.record.items() if k not in RECORD_ONLY}))
        log.write_header()
    if start >= cfg.steps:
        if dd.main:
            run.console.print(f"{out}: already trained to step {start} (--steps {cfg.steps})")
        return out

    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and native_bf16(dev))
    per_rank = cfg.batch_size // dd.world
    sampler = DistributedSampler(task.train_set, num_replicas=dd.world, rank=dd.rank, shuffle=True,
                                 seed=cfg.seed, drop_last=True)
    steps_per_epoch = len(sampler) // per_rank

    def meta(step: int) -> dict[str, Any]:
        return {"step": step, "data": run.record.get("data", {}).get("dir", ""),
                "command": run.record.get("command", ""), "weights": "EMA" if cfg.ema_decay > 0 else "last",
                "train": run.record.get("train", {})}

    def save(step: int) -> None:
        save_state(out, task.model, ema, opt, step, run.record)
        task.save_checkpoint(out / RUN_CHECKPOINT, ema.shadow, meta(step))

    best = _best_so_far(out, select) if cfg.keep_best and dd.main else math.inf

    writer = tensorboard(out) if dd.main else None
    meter: dict[str, float] = {}
    n_meter, t_last, step = 0, time.perf_counter(), start
    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    bar = progress_bar(progress and dd.main, run.console, run.label)
    bar_task = bar.add_task(run.label, total=cfg.steps, completed=start, loss=float("nan"), lr=0.0) if bar else None
    step_module.train()
    try:
        if bar:
            bar.start()
        while step < end:
            epoch, offset = divmod(step, steps_per_epoch)
            sampler.set_epoch(epoch)
            task.train_set.set_epoch(epoch)
            order = list(sampler)[offset * per_rank: steps_per_epoch * per_rank]
            loader = DataLoader(task.train_set, batch_size=per_rank, sampler=order, num_workers=cfg.workers,
                                pin_memory=dev.type == "cuda", drop_last=True, persistent_workers=False,
                                collate_fn=task.collate)
            for batch in loader:
                if step >= end:
                    break
                lr = lr_at(cfg, step)
                for g in opt.param_groups:
                    g["lr"] = lr * g.get("lr_scale", 1.0)
                if begin_step is not None:
                    begin_step(step)
                torch.manual_seed(step_seed(cfg.seed, step, dd.rank))
                batch = batch.to(dev, non_blocking=True)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                    losses = step_module(batch)
                opt.zero_grad(set_to_none=True)
                losses["loss"].backward()
                grad_norm = (torch.nn.utils.clip_grad_norm_(task.model.parameters(), cfg.grad_clip)
                             if cfg.grad_clip > 0 else torch.zeros(()))
                opt.step()
                ema.update(task.model, step)
                step += 1
                vals = all_mean(torch.stack([losses[k].detach().float() for k in task.loss_keys]), dd).tolist()
                for k, v in zip(task.loss_keys, vals, strict=True):
                    meter[k] = meter.get(k, 0.0) + v
                meter["grad_norm"] = meter.get("grad_norm", 0.0) + float(grad_norm)
                n_meter += 1
                if not math.isfinite(vals[0]):
                    raise RuntimeError(f"loss became {vals[0]} at step {step}; lower --lr or check the data")
                val = None
                if task.val_set is not None and (step % cfg.val_every == 0 or step == cfg.steps):
                    val = validate(task, ema, cfg, dev, use_bf16, dd)
                    if dd.main and cfg.keep_best and val[select] < best:
                        best = val[select]
                        task.save_checkpoint(out / RUN_BEST, ema.shadow, meta(step))
                if step % cfg.log_every == 0 or step == end or val is not None:
                    now = time.perf_counter()
                    row = {k: meter[k] / n_meter for k in meter}
                    row.update(step=step, lr=lr, it_s=n_meter / max(now - t_last, 1e-9),
                               val_loss=None if val is None else val["loss"])
                    if select != "loss":
                        row[f"val_{select}"] = None if val is None else val[select]
                    if cfg.phases:
                        row["phase"] = phase_at(cfg, step - 1)[0]
                    if dd.main:
                        log.append(row)
                        if writer is not None:
                            for k, v in row.items():
                                if k != "step" and v is not None:
                                    writer.add_scalar(k, v, step)
                    if bar:
                        bar.update(bar_task, completed=step, loss=row["loss"], lr=lr)
                    meter, n_meter, t_last = {}, 0, now
                if dd.main and (step % cfg.ckpt_every == 0 or step == end):
                    save(step)
    except KeyboardInterrupt:
        if dd.main:
            save(step)
            run.console.print(f"interrupted at step {step}; state saved. Continue with: ehead train --resume {out}")
        raise
    finally:
        if bar:
            bar.stop()
        if writer is not None:
            writer.close()
    if dd.main and step >= cfg.steps:
        plot_losses(out, *task.plot, val_label="val loss (EMA)" if cfg.ema_decay > 0 else "val loss")
    barrier(dd)
    return out


def _best_so_far(out: Path, select: str) -> float:
    """The lowest validation ``select`` term in ``out``'s metrics.csv (inf when none): a resumed run
    replaces best/ only with a better one."""
    if not (out / METRICS).is_file():
        return math.inf
    key = "val_loss" if select == "loss" else f"val_{select}"
    return min((r[key] for r in read_metrics(out) if key in r), default=math.inf)


@torch.no_grad()
def validate(task: Task, ema: EMA, cfg: TrainConfig, dev: torch.device, use_bf16: bool,
             dd: Dist) -> dict[str, float]:
    """Mean loss terms (``task.loss_keys``) of the EMA weights on ``cfg.val_windows`` fixed items
    spread evenly over the validation set (the same noise every time)."""
    ds = task.val_set
    n = min(cfg.val_windows, len(ds))
    idx = [round(i * (len(ds) - 1) / max(1, n - 1)) for i in range(n)]
    idx = idx[dd.rank::dd.world]
    model = task.model
    live = {k: v.detach().clone() for k, v in model.trainable_state_dict().items()}
    ema.copy_to(model)
    task.loss_module.eval()
    total = torch.zeros(len(task.loss_keys), device=dev)
    count = torch.zeros((), device=dev)
    for i in range(0, len(idx), VAL_BATCH):
        items = [ds[j] for j in idx[i:i + VAL_BATCH]]
        batch = task.collate(items).to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
            losses = task.loss_module(batch)
        total += torch.stack([losses[k].detach().float() for k in task.loss_keys]) * len(items)
        count += len(items)
    model.load_trainable_(live)
    task.loss_module.train()
    all_sum_(total, dd)
    all_sum_(count, dd)
    return dict(zip(task.loss_keys, (total / count.clamp_min(1)).tolist(), strict=True))


def stderr_console():
    """The rich console training reports on (stderr: stdout stays for what a command prints)."""
    from rich.console import Console

    return Console(stderr=True)
