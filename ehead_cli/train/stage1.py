"""Stage I: coefficient-space rectified-flow matching (paper 3.4, supplementary B.1).

    ehead train --data DIR --preset small --out runs/small

The model is trained on windows of the dataset (``ehead_cli.train.data``) with the group-weighted
flow loss plus pose smoothness (``ehead_cli.model.flow``), by the shared loop (``ehead_cli.train.loop``).
A run folder holds everything needed to continue or use the run:

    RUN_DIR/config.toml        the resolved configuration (model, train, data), written first
    RUN_DIR/metrics.csv        step, losses per group, lr, grad norm, it/s, validation loss
    RUN_DIR/state/             the exact training state for --resume (``ehead_cli.train.state``)
    RUN_DIR/checkpoint/        the EMA weights as a checkpoint folder (what `ehead generate --checkpoint` reads)
    RUN_DIR/loss.png           the loss curves, drawn at the end
    RUN_DIR/tensorboard/       TensorBoard events, when tensorboard is installed
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ehead_cli.errors import ConfigError, InputError
from ehead_cli.io.dataset import Clip, face_model_of, load_index
from ehead_cli.model.checkpoint import save_checkpoint
from ehead_cli.model.encoders import FeatureCache
from ehead_cli.model.flow import LOSS_TERMS, PathSample, flow_loss
from ehead_cli.model.network import EmbodiedHead
from ehead_cli.model.windows import WindowBatch
from ehead_cli.train.config import TrainConfig, resolve_config, resumed_run
from ehead_cli.train.data import WindowDataset, fit_stats
from ehead_cli.train.distributed import setup_processes
from ehead_cli.train.loop import Run, fit, param_groups, stderr_console
from ehead_cli.train.state import STATE_DIR


class TrainStep(nn.Module):
    """Wraps the model so one forward computes the Stage-I loss of a batch (what DDP wraps)."""

    def __init__(self, model: EmbodiedHead, reduction: str = "mean"):
        super().__init__()
        self.model = model
        self.reduction = reduction

    def forward(self, batch: WindowBatch) -> dict[str, torch.Tensor]:
        m = self.model
        front = batch.front if batch.front is not None else m.encoder.frontend(batch.wave)
        audio = m.audio_stack(front)
        path = PathSample.between(batch.x0, batch.x1, batch.t)
        v = m.dit(path.x_t, path.t, audio, *batch.condition_inputs())
        return flow_loss(v.float(), path, reduction=self.reduction, mask=batch.mask)


class Stage1Task:
    """Stage I as the loop's ``Task``: the model, its loss, the training and validation windows."""

    loss_keys = LOSS_TERMS
    plot = (("loss", "expression", "jaw", "rotation"), "Stage-I loss (per frame)")
    collate = staticmethod(WindowBatch.collate)

    def __init__(self, model: EmbodiedHead, train_clips: list[Clip], val_clips: list[Clip], cfg: TrainConfig,
                 face_model: str = "builtin"):
        self.model = model
        self.face_model = face_model  # which face model the motion is for (avatar folders check it)
        mc = model.cfg
        cache = FeatureCache() if model.encoder.window_local else None
        self.train_set = WindowDataset(train_clips, model.stats, mc.window, mc.history_frames, model.encoder,
                                       stride=cfg.window_stride, seed=cfg.seed, feature_cache=cache,
                                       stream_cut=cfg.stream_cut)
        self.val_set = None
        if val_clips and cfg.val_every and cfg.val_windows:
            self.val_set = WindowDataset(val_clips, model.stats, mc.window, mc.history_frames, model.encoder,
                                         stride=mc.window // 4, seed=cfg.seed + 1, feature_cache=cache)
        self.train_set.preload()  # once here, not once per epoch in every DataLoader worker
        self.loss_module = TrainStep(model, cfg.loss_reduction)

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        return param_groups(self.model, weight_decay)

    def save_checkpoint(self, folder: Path, weights: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        save_checkpoint(folder, self.model, state=weights, meta={**meta, "face_model": self.face_model})


def train(data: str | Path | None, out: str | Path, preset_name: str = "small", config_file: str | Path | None = None,
          overrides: dict[str, Any] | None = None, resume: bool = False, device: str | None = None,
          hubert_path: str | None = None, stop_after: int | None = None, progress: bool = True,
          command: str = "") -> Path:
    """Run (or continue) Stage-I training. Returns the run folder.

    ``stop_after`` ends the run early after that many steps of this invocation (tests use it to
    simulate an interruption); the state is saved first.
    """
    out = Path(out)
    dd, dev = setup_processes(device)

    stats = None
    if resume:  # the model config, statistics and schedule the run was trained with: one source
        resumed = resumed_run(out, overrides)
        record, model_cfg, stats, train_cfg = resumed.record, resumed.model, resumed.stats, resumed.train
        data = Path(data) if data else Path(record["data"]["dir"])
    else:
        resolved = resolve_config(preset_name, Path(config_file) if config_file else None, overrides or {})
        model_cfg, train_cfg = resolved["model"], resolved["train"]
        if (out / STATE_DIR).exists():
            raise InputError(f"{out}: already holds a training run; use --resume {out} or another --out")
    data = Path(data)
    if train_cfg.batch_size % dd.world:
        raise ConfigError(f"--batch-size {train_cfg.batch_size} must be divisible by the {dd.world} processes")
    console = stderr_console()

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

    torch.manual_seed(train_cfg.seed)
    if stats is None:
        stats = fit_stats(train_clips, model_cfg.window)
    model = EmbodiedHead(model_cfg, stats, hubert_path=hubert_path)
    model.to(dev)
    task = Stage1Task(model, train_clips, index.split("val"), train_cfg, face_model_of(data))
    if len(task.train_set) < train_cfg.batch_size:
        factor = task.train_set.repeat_to(train_cfg.batch_size)
        if dd.main:
            console.print(f"note: {data} has only {len(task.train_set.slots)} training windows for --batch-size "
                          f"{train_cfg.batch_size}; each appears {factor} times per epoch", highlight=False)
    record = {"command": command, "data": {"dir": str(data.resolve())}, "model": model_cfg.to_dict(),
              "train": dataclasses.asdict(train_cfg), "stats": stats.to_dict()}
    run = Run(out, train_cfg, dd, dev, record, resume=resume, console=console)
    return fit(task, run, stop_after=stop_after, progress=progress)
