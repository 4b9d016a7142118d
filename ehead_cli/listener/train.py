"""Training of both listener stages: what a stage is (model, loss of a batch, data) apart from the loop.

    train_vq(data, out, preset="small")                         # stage vq: the VQ-VAE
    train_lm(data, out, vq=VQ_CHECKPOINT, preset="small")        # stage lm: token codebooks + the LM

A stage is a ``Stage``: ``module`` (what the optimiser updates), ``loss(batch, objective)`` -> dict
with "loss", ``batch(step, size)`` (a function of the step: exact resume), ``save(folder, step)``
(a listener checkpoint). ``run_stage`` is a small loop of its own (AdamW with the stage's betas,
the phases' learning rates and objectives, gradient clipping, a rich progress bar, metrics.csv,
resume from ``state/``); the shared training loop can drive the same ``Stage`` objects.

Run folder of a stage:

    RUN_DIR/config.toml     the resolved listener config and the command, written first
    RUN_DIR/metrics.csv     step, phase, lr, the loss terms, it/s (validation rows: split = val)
    RUN_DIR/state/          model + AdamW state + step, safetensors (``resume=True`` continues exactly)
    RUN_DIR/checkpoint/     the listener checkpoint of the last step (what the next stage reads)
    RUN_DIR/best/           the checkpoint of the step with the lowest validation ``Stage.select`` loss
                            (the VQ-VAE's loss, the LM's listener cross-entropy), when validating
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ehead_cli.devices import resolve_device
from ehead_cli.errors import InputError
from ehead_cli.io.atomic import atomic_dir
from ehead_cli.listener.checkpoint import ListenerModel, load_listener, save_listener
from ehead_cli.listener.config import ListenerConfig, StageConfig, load_preset
from ehead_cli.listener.data import (
    Dyad,
    DyadTokens,
    LMWindows,
    VQWindows,
    fit_identities,
    fit_norm,
    load_dyads,
    whole_groups,
)
from ehead_cli.listener.lm import ListenerLM
from ehead_cli.listener.tokens import SpeakerTokenizer, fit_token_codebooks
from ehead_cli.listener.vqvae import VQVAE
from ehead_cli.model.config import load_toml
from ehead_cli.train.config import dump_toml
from ehead_cli.train.logging import progress_bar

RUN_CONFIG = "config.toml"
METRICS = "metrics.csv"
STATE_DIR = "state"
CHECKPOINT_DIR = "checkpoint"
BEST_DIR = "best"
VAL_BATCHES = 4  # fixed validation batches: "steps" VAL_STEP0 .. VAL_STEP0 + 3 of the validation sampler
VAL_STEP0 = 2**31


@dataclass
class Stage:
    """One training stage, independent of the loop that drives it."""

    name: str
    module: nn.Module
    loss: Callable[[dict[str, torch.Tensor], str], dict[str, torch.Tensor]]
    batch: Callable[[int, int], dict[str, torch.Tensor]]
    save: Callable[[Path, int], None]
    keys: tuple[str, ...]
    schedule: StageConfig
    val_batch: Callable[[int, int], dict[str, torch.Tensor]] | None = None
    select: str = "loss"  # the validation term whose lowest value picks best/


# --- stage vq ------------------------------------------------------------------------------------------
def vq_stage(cfg: ListenerConfig, train: list[Dyad], val: list[Dyad],
             device: torch.device) -> tuple[Stage, ListenerModel]:
    """The VQ-VAE stage: normalisation and identity statistics fitted on ``train``; windows of listener
    and speaker motion (both are tokenised by the same encoder)."""
    norm = fit_norm(train, cfg.vq.std_floor)
    identities = fit_identities(train, norm)
    torch.manual_seed(cfg.train_vq.seed)
    vq = VQVAE(cfg.vq).to(device)
    shapes = {d.identity: [float(x) for x in d.listener_shape] for d in train}  # for rendering a named identity
    model = ListenerModel(cfg, norm, identities, vq, meta={"identity_shapes": shapes})
    windows = VQWindows(train, norm, identities, cfg.vq.window, cfg.train_vq.seed)
    val_windows = VQWindows(val, norm, {**identities, **fit_identities(val, norm)}, cfg.vq.window,
                            cfg.train_vq.seed + 1) if val else None

    def loss(batch: dict[str, torch.Tensor], objective: str) -> dict[str, torch.Tensor]:
        out = vq(batch["motion"].to(device), batch["stats"].to(device) if cfg.vq.identity else None)
        out["perplexity"] = _batch_perplexity(out["codes"], cfg.vq.codebook_size)
        return {k: v for k, v in out.items() if k not in ("recon", "codes")}

    def save(folder: Path, step: int) -> None:
        save_listener(folder, model, meta={**model.meta, "stage": "vq", "step": step})

    stage = Stage("vq", vq, loss, windows.batch, save, ("loss", "embed", "commit", "rec", "veloc", "perplexity"),
                  cfg.train_vq, val_windows.batch if val_windows else None)
    return stage, model


def _batch_perplexity(codes: torch.Tensor, k: int) -> torch.Tensor:
    p = torch.bincount(codes.reshape(-1), minlength=k).float()
    p = p / p.sum()
    nz = p[p > 0]
    return torch.exp(-(nz * nz.log()).sum())


# --- stage lm ------------------------------------------------------------------------------------------
@torch.no_grad()
def tokenize_dyads(model: ListenerModel, tokenizer: SpeakerTokenizer | None, dyads: list[Dyad],
                   device: torch.device, progress: Callable[[str], None] | None = None) -> list[DyadTokens]:
    """Each clip's whole groups as tokens: listener and speaker motion codes from the VQ-VAE encoder,
    speech and emotion tokens from ``tokenizer`` (None: speaker motion only)."""
    r = model.cfg.vq.rate
    out = []
    for d in dyads:
        n = whole_groups(d.n_frames, r)
        lis = torch.from_numpy(model.norm.apply(d.listener[:n]))[None].to(device)
        spk = torch.from_numpy(model.norm.apply(d.speaker[:n]))[None].to(device)
        codes = model.vq.encode_long(torch.cat([lis, spk]))
        speech = emotion = None
        if tokenizer is not None:
            speech = tokenizer.speech(d.wave(), n)
            emotion = tokenizer.emotion(d.speaker[:n])
        out.append(DyadTokens(d.id, codes[0].cpu().numpy(), codes[1].cpu().numpy(), speech, emotion))
        if progress is not None:
            progress(f"tokenised {d.id}: {n // r} groups")
    return out


def fit_tokenizer(model: ListenerModel, train: list[Dyad], speech_tokenizer: str | None = None,
                  emoca: str | None = None) -> SpeakerTokenizer:
    """Fit the offline token codebooks on ``train`` (stored in ``model.codebooks``) and return the
    speaker tokeniser (SpeechTokenizer / EMOCA from their local paths when the config names them)."""
    cfg = model.cfg
    if model.codebooks is None:
        model.codebooks = fit_token_codebooks([d.wave() for d in train], [d.speaker for d in train], cfg.tokens,
                                              seed=cfg.train_lm.seed)
    return SpeakerTokenizer(cfg.tokens, cfg.vq.rate, model.codebooks, speech_tokenizer, emoca)


def lm_stage(model: ListenerModel, train: list[DyadTokens], val: list[DyadTokens], device: torch.device,
             pretrained: str | None = None) -> Stage:
    cfg = model.cfg
    torch.manual_seed(cfg.train_lm.seed)
    lm = ListenerLM(cfg.lm, cfg.vq.codebook_size, cfg.tokens.speech_codes, cfg.tokens.emotion_codes,
                    cfg.tokens.speech_per_group, pretrained=pretrained).to(device)
    model.lm = lm
    model.vq.eval().requires_grad_(False)
    windows = LMWindows(train, cfg.lm.window_groups, cfg.train_lm.seed)
    val_windows = None
    if val and any(c.n_groups >= cfg.lm.window_groups for c in val):
        val_windows = LMWindows(val, cfg.lm.window_groups, cfg.train_lm.seed + 1)
    def loss(batch: dict[str, torch.Tensor], objective: str) -> dict[str, torch.Tensor]:
        if not cfg.lm.multimodal:
            batch = {k: v for k, v in batch.items() if k in ("listener", "speaker")}
        return lm.loss({k: v.to(device) for k, v in batch.items()}, objective)

    def save(folder: Path, step: int) -> None:
        save_listener(folder, model, meta={**model.meta, "stage": "lm", "step": step})

    keys = ("loss", "ce_listener", "acc") + (("ce_speaker", "ce_speech", "ce_emotion") if cfg.lm.multimodal
                                              else ("ce_speaker",))
    return Stage("lm", lm, loss, windows.batch, save, keys, cfg.train_lm, val_windows.batch if val_windows else None,
                 select="ce_listener")


# --- the loop --------------------------------------------------------------------------------------------
def run_stage(stage: Stage, out: Path, *, resume: bool = False, progress: bool = True,
              stop_after: int | None = None, val_every: int = 0) -> int:
    """Train ``stage`` to its last step (or ``stop_after`` more steps); returns the final step. Writes
    metrics.csv, state/ and checkpoint/ under ``out``."""
    sched = stage.schedule
    params = [p for p in stage.module.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": sched.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=sched.phases[0].lr, betas=sched.betas)
    step = _load_state(out, stage.module, opt) if resume else 0
    if not resume:
        _write_header(out, stage.keys)
    end = sched.steps if stop_after is None else min(sched.steps, step + stop_after)
    console = _console()
    bar = progress_bar(progress, console)
    task = bar.add_task(stage.name, total=sched.steps, completed=step, loss=float("nan"), lr=0.0) if bar else None
    meter: dict[str, float] = {}
    n_meter, t_last = 0, time.perf_counter()
    best = _best_so_far(out, stage.select)
    stage.module.train()
    try:
        if bar:
            bar.start()
        while step < end:
            phase, index = sched.phase_at(step)
            lr = sched.lr_at(step)
            for g in opt.param_groups:
                g["lr"] = lr
            torch.manual_seed(sched.seed * 1_000_003 + step)  # dropout, corruption, code resets: exact on resume
            losses = stage.loss(stage.batch(step, sched.batch_size), phase.objective)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            if sched.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, sched.grad_clip)
            opt.step()
            step += 1
            value = float(losses["loss"].detach())
            if not math.isfinite(value):
                raise RuntimeError(f"{stage.name}: loss became {value} at step {step}; lower the learning rate")
            for k in stage.keys:
                if k in losses:
                    meter[k] = meter.get(k, 0.0) + float(losses[k].detach())
            n_meter += 1
            if step % sched.log_every == 0 or step == end:
                now = time.perf_counter()
                row = {k: v / n_meter for k, v in meter.items()}
                row.update(step=step, split="train", phase=index, lr=lr, it_s=n_meter / max(now - t_last, 1e-9))
                _append(out, stage.keys, row)
                if bar:
                    bar.update(task, completed=step, loss=row["loss"], lr=lr)
                meter, n_meter, t_last = {}, 0, now
            if stage.val_batch is not None and val_every and (step % val_every == 0 or step == end):
                val = validate(stage, phase.objective)
                _append(out, stage.keys, {**val, "step": step, "split": "val", "phase": index, "lr": lr})
                if val[stage.select] < best:  # early-stopping selection, as LM-listener keeps its best model
                    best = val[stage.select]
                    stage.save(out / BEST_DIR, step)
            if step % sched.ckpt_every == 0 or step == end:
                _save_state(out, stage.module, opt, step)
                stage.save(out / CHECKPOINT_DIR, step)
    finally:
        if bar:
            bar.stop()
    return step


@torch.no_grad()
def validate(stage: Stage, objective: str) -> dict[str, float]:
    """Mean loss terms over ``VAL_BATCHES`` fixed validation batches, in eval mode."""
    stage.module.eval()
    sums: dict[str, float] = {}
    for i in range(VAL_BATCHES):
        for k, v in stage.loss(stage.val_batch(VAL_STEP0 + i, stage.schedule.batch_size), objective).items():
            if k in stage.keys:
                sums[k] = sums.get(k, 0.0) + float(v) / VAL_BATCHES
    stage.module.train()
    return sums


def _best_so_far(out: Path, key: str) -> float:
    """The lowest validation ``key`` in ``out``'s metrics.csv (inf when none): resuming keeps best/ honest."""
    if not (out / METRICS).is_file():
        return math.inf
    vals = [r[key] for r in read_metrics(out) if r.get("split") == "val" and key in r]
    return min(vals, default=math.inf)


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _columns(keys: tuple[str, ...]) -> tuple[str, ...]:
    return ("step", "split", "phase", "lr", *keys, "it_s")


def _write_header(out: Path, keys: tuple[str, ...]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / METRICS, "w", newline="") as f:
        csv.writer(f).writerow(_columns(keys))


def _append(out: Path, keys: tuple[str, ...], row: dict[str, Any]) -> None:
    with open(out / METRICS, "a", newline="") as f:
        csv.writer(f).writerow(["" if row.get(c) is None else row[c] if c in ("step", "split", "phase")
                                else f"{row[c]:.6g}" for c in _columns(keys)])


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    with open(Path(run_dir) / METRICS) as f:
        return [{k: (v if k == "split" else float(v)) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]


def _save_state(out: Path, module: nn.Module, opt: torch.optim.Optimizer, step: int) -> None:
    tensors = {f"model.{k}": v.detach().cpu().clone().contiguous() for k, v in module.state_dict().items()}
    osd = opt.state_dict()
    scalars: dict[str, Any] = {"step": step, "param_groups": osd["param_groups"], "opt_steps": {}}
    for pid, st in osd["state"].items():
        for name, val in st.items():
            if name == "step":
                scalars["opt_steps"][str(pid)] = float(val)
            else:
                tensors[f"opt.{pid}.{name}"] = val.detach().cpu().contiguous()
    with atomic_dir(out / STATE_DIR) as tmp:
        save_file(tensors, str(tmp / "state.safetensors"))
        (tmp / "state.json").write_text(json.dumps(scalars))


def _load_state(out: Path, module: nn.Module, opt: torch.optim.Optimizer) -> int:
    state = out / STATE_DIR
    if not (state / "state.json").is_file():
        raise InputError(f"{out}: no saved training state to resume (--resume expects a run folder)")
    tensors = load_file(str(state / "state.safetensors"))
    scalars = json.loads((state / "state.json").read_text())
    module.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    opt_state: dict[int, dict[str, Any]] = {}
    for key, val in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = val
    for pid, st in scalars["opt_steps"].items():
        opt_state.setdefault(int(pid), {})["step"] = torch.tensor(st)
    opt.load_state_dict({"state": opt_state, "param_groups": scalars["param_groups"]})
    return int(scalars["step"])


# --- entry points (what `ehead train --family listener --stage vq|lm` calls) --------------------------------
def _resolve(out: Path, preset: str, config_file: str | Path | None,
             overrides: dict[str, Any] | None) -> ListenerConfig:
    if (out / STATE_DIR).exists():
        raise InputError(f"{out}: already holds a training run; resume it or choose another --out")
    return load_preset(preset, config_file, overrides)


def _write_run_config(out: Path, cfg: ListenerConfig, data: Path, command: str, extra: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    d = cfg.to_dict()
    for section in ("train_vq", "train_lm"):  # TOML tables cannot hold a list of tables inline here
        d[section] = {**d[section], "phases": json.dumps(d[section]["phases"])}
    text = dump_toml({"command": command, "data": {"dir": str(data.resolve()), **extra}, "listener": d})
    (out / RUN_CONFIG).write_text(text)


def _run_config_listener(out: Path) -> dict[str, Any]:
    run = load_toml(out / RUN_CONFIG)
    d = run["listener"]
    for section in ("train_vq", "train_lm"):
        d[section] = {**d[section], "phases": json.loads(d[section]["phases"])}
    return run


def train_vq(data: str | Path, out: str | Path, preset: str = "small", config_file: str | Path | None = None,
             overrides: dict[str, Any] | None = None, resume: bool = False, device: str | None = None,
             progress: bool = True, stop_after: int | None = None, val_every: int = 0, command: str = "") -> Path:
    """Stage vq: train the VQ-VAE on ``data`` (a dyadic dataset folder); returns ``out``. Its
    checkpoint/ is the input of ``train_lm(vq=...)``."""
    out, data = Path(out), Path(data)
    dev = resolve_device(device)
    if resume:
        cfg = ListenerConfig.from_dict(_run_config_listener(out)["listener"], source=str(out / RUN_CONFIG))
    else:
        cfg = _resolve(out, preset, config_file, overrides)
    index = load_dyads(data, min_frames=cfg.vq.window)
    train, val = index.split("train"), index.split("val")
    if not train:
        raise InputError(f"{data}: no usable training clips (split 'train')")
    if not resume:
        _write_run_config(out, cfg, data, command, {"stage": "vq"})
    stage, _ = vq_stage(cfg, train, val, dev)
    run_stage(stage, out, resume=resume, progress=progress, stop_after=stop_after, val_every=val_every)
    return out


def train_lm(data: str | Path, out: str | Path, vq: str | Path, preset: str | None = None,
             config_file: str | Path | None = None, overrides: dict[str, Any] | None = None, resume: bool = False,
             device: str | None = None, lm_path: str | None = None, speech_tokenizer: str | None = None,
             emoca: str | None = None, progress: bool = True, stop_after: int | None = None, val_every: int = 0,
             command: str = "") -> Path:
    """Stage lm: fit the token codebooks on the training split, tokenise every clip and train the LM on
    top of the VQ-VAE checkpoint ``vq`` (its ``[vq]`` and normalisation are kept; the ``[tokens]``,
    ``[lm]`` and ``[train_lm]`` sections come from ``preset`` / ``config_file`` / ``overrides`` when
    given, else from the VQ checkpoint's config). Returns ``out``; out/checkpoint is the full listener."""
    out, data = Path(out), Path(data)
    dev = resolve_device(device)
    model = load_listener(vq, device=dev)
    model.lm = None
    if resume:
        cfg = ListenerConfig.from_dict(_run_config_listener(out)["listener"], source=str(out / RUN_CONFIG))
    else:
        if (out / STATE_DIR).exists():
            raise InputError(f"{out}: already holds a training run; resume it or choose another --out")
        if preset:
            cfg = load_preset(preset, config_file, overrides)
        else:  # the VQ checkpoint's config, then --config sections, then overrides
            d = model.cfg.to_dict()
            for extra in ([load_toml(Path(config_file))] if config_file else []) + ([overrides] if overrides else []):
                for section, values in extra.items():
                    d[section] = {**d.get(section, {}), **values} if isinstance(values, dict) else values
            cfg = ListenerConfig.from_dict(d, source=str(config_file or vq))
        cfg = cfg.replace(vq=model.cfg.to_dict()["vq"])  # the VQ-VAE is the checkpoint's
    model.cfg = cfg
    index = load_dyads(data, min_frames=cfg.vq.rate)
    train, val = index.split("train"), index.split("val")
    if not train:
        raise InputError(f"{data}: no usable training clips (split 'train')")
    if resume:  # the codebooks of the run, not refitted
        model.codebooks = load_listener(out / CHECKPOINT_DIR).codebooks
    tokenizer = fit_tokenizer(model, train, speech_tokenizer, emoca) if cfg.lm.multimodal else None
    if not resume:
        _write_run_config(out, cfg, data, command, {"stage": "lm", "vq": str(Path(vq).resolve())})
    toks = tokenize_dyads(model, tokenizer, train + val, dev)
    train_toks, val_toks = toks[: len(train)], toks[len(train):]
    stage = lm_stage(model, train_toks, val_toks, dev, pretrained=lm_path)
    run_stage(stage, out, resume=resume, progress=progress, stop_after=stop_after, val_every=val_every)
    return out

