"""Training of the listener's stages on the shared loop (``ehead_cli.train.loop.fit``).

    train_vq(data, out, preset="small")                  # stage vq: the VQ-VAE
    fit_tokens(data, out, vq="runs/vq", preset="small")  # optional: the token codebooks on their own
    train_lm(data, out, vq="runs/vq", preset="small")    # stage lm: token codebooks (unless --vq has
                                                         # them) + the LM on the VQ-VAE's codes

Each stage is a ``Task`` of the shared loop (as ``ehead_cli.train.stage1`` is Stage I's), so both get
what Stage I gets: AdamW with the stage's betas over its schedule's phases (``TrainConfig.phases``:
each phase's constant lr after the warm-up; the LM's phases also switch its objective, through the
``begin_step`` hook), gradient clipping, bf16 autocast on GPUs, torchrun DDP, validation, ``best/``
(``keep_best``), exact resume, metrics.csv + TensorBoard + loss.png, the progress bar, Ctrl-C saving
the state. The listener's schedules keep no EMA (``ema_decay = 0``: neither paper uses one), so the
checkpoints hold the weights of their step.

Run folder of a stage (the loop's, plus the listener checkpoint format):

    RUN_DIR/config.toml     the run record: command, data, the resolved listener config, the schedule
    RUN_DIR/metrics.csv     step, the loss terms, grad norm, lr, it/s, val_loss (+ val_ce_listener), phase
    RUN_DIR/state/          the exact training state (``--resume RUN_DIR``)
    RUN_DIR/checkpoint/     the listener checkpoint of the last saved step (VQ-VAE; after stage lm
                            also the token codebooks and the LM: the folder alone rebuilds the listener)
    RUN_DIR/best/           with keep_best: the checkpoint of the lowest validation loss (the VQ-VAE's
                            total, the LM's listener cross-entropy), which a run folder resolves to
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ehead_cli.errors import ConfigError, InputError
from ehead_cli.io.checkpoint import RUN_CHECKPOINT
from ehead_cli.listener.checkpoint import ListenerModel, load_listener, save_listener
from ehead_cli.listener.config import ListenerConfig, load_preset, resolve_listener_config
from ehead_cli.listener.data import (
    Dyad,
    DyadIndex,
    DyadTokens,
    LMWindows,
    TensorDict,
    VQWindows,
    fit_identities,
    fit_norm,
    load_dyads,
    whole_groups,
)
from ehead_cli.listener.lm import ListenerLM
from ehead_cli.listener.tokens import SpeakerTokenizer, fit_token_codebooks
from ehead_cli.listener.vqvae import VQVAE
from ehead_cli.train.config import TrainConfig, dump_toml, phase_at
from ehead_cli.train.distributed import Dist, setup_processes
from ehead_cli.train.loop import Run, fit, param_groups, stderr_console
from ehead_cli.train.state import RUN_CONFIG, STATE_DIR, read_record

FAMILY = "listener"
STAGES = ("vq", "tokens", "lm")


class TrainedPart(nn.Module):
    """The module a stage trains, as the loop's ``Task.model``: its state dict (persistent buffers
    such as the quantiser's code usage included) without tied duplicates (GPT-2's output layer is its
    token embedding), which ``full_state`` puts back for the checkpoint."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        first: dict[int, str] = {}
        self.tied: dict[str, str] = {}  # duplicate name -> the name kept
        for k, v in module.state_dict(keep_vars=True).items():
            if id(v) in first:
                self.tied[k] = first[id(v)]
            else:
                first[id(v)] = k

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.module.state_dict().items() if k not in self.tied}

    @torch.no_grad()
    def load_trainable_(self, state: dict[str, torch.Tensor]) -> None:
        own = self.module.state_dict(keep_vars=True)
        for k, v in state.items():
            own[k].copy_(v)

    def full_state(self, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**weights, **{dup: weights[src] for dup, src in self.tied.items()}}


# --- stage vq ------------------------------------------------------------------------------------------
class VQStep(nn.Module):
    """One forward: the VQ-VAE's loss terms (eqs. 2-6) of a batch of windows, and the batch's code perplexity."""

    def __init__(self, vq: VQVAE):
        super().__init__()
        self.vq = vq

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.vq(batch["motion"], batch["stats"] if self.vq.cfg.identity else None)
        out["perplexity"] = batch_perplexity(out["codes"], self.vq.cfg.codebook_size)
        return {k: v for k, v in out.items() if k not in ("recon", "codes")}


def batch_perplexity(codes: torch.Tensor, k: int) -> torch.Tensor:
    p = torch.bincount(codes.reshape(-1), minlength=k).float()
    p = p / p.sum()
    nz = p[p > 0]
    return torch.exp(-(nz * nz.log()).sum())


class VQTask:
    """Stage vq as the loop's ``Task``: normalisation and identity statistics fitted on ``train``;
    windows of listener and speaker motion (both are tokenised by the same encoder)."""

    loss_keys = ("loss", "embed", "commit", "rec", "veloc", "perplexity")
    plot = (("loss", "rec", "veloc", "commit"), "VQ-VAE loss (eq. 6)")
    collate = staticmethod(TensorDict.collate)
    select = "loss"

    def __init__(self, cfg: ListenerConfig, train: list[Dyad], val: list[Dyad], device: torch.device):
        tc = cfg.train_vq
        norm = fit_norm(train, cfg.vq.std_floor)
        identities = fit_identities(train, norm)
        torch.manual_seed(tc.seed)
        vq = VQVAE(cfg.vq).to(device)
        shapes = {d.identity: [float(x) for x in d.listener_shape] for d in train}  # for rendering a named identity
        self.listener = ListenerModel(cfg, norm, identities, vq, meta={"identity_shapes": shapes})
        self.model = TrainedPart(vq)
        self.loss_module = VQStep(vq)
        self.train_set = VQWindows(train, norm, identities, cfg.vq.window, tc.seed)
        self.val_set = None
        if val and tc.val_every and tc.val_windows:
            self.val_set = VQWindows(val, norm, {**identities, **fit_identities(val, norm)}, cfg.vq.window, tc.seed + 1)

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        return param_groups(self.model, weight_decay)

    def save_checkpoint(self, folder: Path, weights: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        save_listener(folder, self.listener, meta={**self.listener.meta, "stage": "vq", **meta},
                      weights={"vq": self.model.full_state(weights)})


# --- the token codebooks -------------------------------------------------------------------------------
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
    """Fit the offline token codebooks on ``train`` (stored in ``model.codebooks``) unless the model
    has them, and return the speaker tokeniser (SpeechTokenizer / EMOCA from their local paths when
    the config names them)."""
    cfg = model.cfg
    if model.codebooks is None:
        model.codebooks = fit_token_codebooks([d.wave() for d in train], [d.speaker for d in train], cfg.tokens,
                                              seed=cfg.train_lm.seed)
    return SpeakerTokenizer(cfg.tokens, cfg.vq.rate, model.codebooks, speech_tokenizer, emoca)


# --- stage lm ------------------------------------------------------------------------------------------
class LMStep(nn.Module):
    """One forward: the LM's cross-entropies of a batch of token windows under ``objective``
    ("pre": every token, "full": the listener's; the task sets it per phase)."""

    def __init__(self, lm: ListenerLM):
        super().__init__()
        self.lm = lm
        self.objective = "full"

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.lm.cfg.multimodal:
            batch = {k: v for k, v in batch.items() if k not in ("speech", "emotion")}
        return self.lm.loss(batch, self.objective)


class LMTask:
    """Stage lm as the loop's ``Task``: the LM (built, or kept from a resumed run) on the frozen
    VQ-VAE's tokens; the phases' objectives switch in ``begin_step``."""

    plot = (("loss", "ce_listener"), "cross-entropy (nats)")
    collate = staticmethod(TensorDict.collate)
    select = "ce_listener"

    def __init__(self, model: ListenerModel, train: list[DyadTokens], val: list[DyadTokens], device: torch.device,
                 pretrained: str | None = None):
        cfg = model.cfg
        self.tc = tc = cfg.train_lm
        if model.lm is None:
            torch.manual_seed(tc.seed)
            model.lm = ListenerLM(cfg.lm, cfg.vq.codebook_size, cfg.tokens.speech_codes, cfg.tokens.emotion_codes,
                                  cfg.tokens.speech_per_group, pretrained=pretrained).to(device)
        model.vq.eval().requires_grad_(False)
        self.listener = model
        self.model = TrainedPart(model.lm)
        self.loss_module = LMStep(model.lm)
        self.loss_keys = ("loss", "ce_listener", "acc", "ce_speaker") + (
            ("ce_speech", "ce_emotion") if cfg.lm.multimodal else ())
        self.train_set = LMWindows(train, cfg.lm.window_groups, tc.seed, cfg.lm.pkeep, cfg.vq.codebook_size)
        self.val_set = None
        if val and tc.val_every and tc.val_windows and any(c.n_groups >= cfg.lm.window_groups for c in val):
            self.val_set = LMWindows(val, cfg.lm.window_groups, tc.seed + 1)  # uncorrupted

    def begin_step(self, step: int) -> None:
        _, phase = phase_at(self.tc, step)
        self.loss_module.objective = phase.objective or "full"

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        return param_groups(self.model, weight_decay)

    def save_checkpoint(self, folder: Path, weights: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        save_listener(folder, self.listener, meta={**self.listener.meta, "stage": "lm", **meta},
                      weights={"lm": self.model.full_state(weights)})


# --- entry points (what `ehead train --family listener --stage vq|tokens|lm` calls) --------------------------
def _say(dd: Dist, console, text: str) -> None:
    if dd.main:
        console.print(text, markup=False, highlight=False, soft_wrap=True)


def _new_run(out: Path) -> None:
    if (out / STATE_DIR).exists() or (out / RUN_CHECKPOINT).exists():
        raise InputError(f"{out}: already holds a training run; use --resume {out} or another --out")


def read_run(out: Path, stage: str) -> dict[str, Any]:
    """The record of the listener run ``out`` of ``stage`` (InputError when it is another kind of run)."""
    record = read_record(out)
    if record.get("family") != FAMILY or record.get("stage") != stage:
        what = (f"a listener stage-{record.get('stage')} run" if record.get("family") == FAMILY
                else "an EmbodiedHead run")
        raise InputError(f"{out}: {what}, not a listener stage-{stage} run")
    return record


def _record(cfg: ListenerConfig, stage: str, data: Path, command: str, **extra: Any) -> dict[str, Any]:
    train = cfg.train_vq if stage == "vq" else cfg.train_lm
    return {"command": command, "family": FAMILY, "stage": stage,
            "data": {"dir": str(data.resolve()), **{k: v for k, v in extra.items() if v is not None}},
            "listener": cfg.to_dict(), "train": dataclasses.asdict(train)}


def _dyads(data: Path, min_frames: int, dd: Dist, console) -> DyadIndex:
    index = load_dyads(data, min_frames=min_frames)
    for p in index.problems:
        _say(dd, console, f"skipped {p}")
    if not index.split("train"):
        raise InputError(f"{data}: no usable training clips (split 'train')")
    return index


def _fill(task, tc: TrainConfig, dd: Dist, console, what: str) -> None:
    """Repeat a training set smaller than one batch (as Stage I does), saying so."""
    if len(task.train_set) < tc.batch_size:
        n = len(task.train_set)
        factor = task.train_set.repeat_to(tc.batch_size)
        _say(dd, console, f"note: only {n} {what} for batch_size {tc.batch_size}; each appears {factor} times per "
                          "epoch")


def train_vq(data: str | Path | None, out: str | Path, preset: str = "small", config_file: str | Path | None = None,
             overrides: dict[str, Any] | None = None, resume: bool = False, device: str | None = None,
             progress: bool = True, stop_after: int | None = None, command: str = "") -> Path:
    """Stage vq: train the VQ-VAE on ``data`` (a dyadic dataset folder) into the run folder ``out``
    (``resume``: continue ``out`` exactly; ``data`` then defaults to the run's). ``overrides``:
    {section: {field: value}} over the preset and ``config_file``. Returns ``out``, which
    ``train_lm(vq=out)`` reads."""
    out = Path(out)
    dd, dev = setup_processes(device)
    console = stderr_console()
    if resume:
        record = read_run(out, "vq")
        cfg = resolve_listener_config(record["listener"], str(out / STATE_DIR), overrides=overrides)
        data = Path(data or record["data"]["dir"])
    else:
        if data is None:
            raise ConfigError("stage vq needs --data DIR")
        _new_run(out)
        cfg = load_preset(preset, config_file, overrides)
        data = Path(data)
    index = _dyads(data, cfg.vq.window, dd, console)
    task = VQTask(cfg, index.split("train"), index.split("val"), dev)
    _fill(task, cfg.train_vq, dd, console, "VQ windows")
    run = Run(out, cfg.train_vq, dd, dev, _record(cfg, "vq", data, command), resume=resume, console=console,
              label="train vq")
    return fit(task, run, stop_after=stop_after, progress=progress)


def _lm_config(model: ListenerModel, source: str, preset: str | None, config_file: str | Path | None,
               overrides: dict[str, Any] | None) -> ListenerConfig:
    """The ``[tokens]``, ``[lm]`` and ``[train_lm]`` sections from ``preset`` / ``config_file`` /
    ``overrides`` when given, else from the VQ checkpoint's config; ``[vq]`` is always the checkpoint's."""
    if preset:
        cfg = load_preset(preset, config_file, overrides)
    else:
        cfg = resolve_listener_config(model.cfg.to_dict(), source, config_file, overrides)
    return cfg.replace(vq=model.cfg.to_dict()["vq"])


def _vq_model(vq: str | Path | None, device: torch.device, cfg_args: tuple, dd: Dist, console) -> ListenerModel:
    """The listener model of ``vq`` with the stage-lm config; its token codebooks are kept only when
    they were fitted with the same ``[tokens]`` settings."""
    if vq is None:
        raise ConfigError("stage lm needs --vq VQ_RUN (the stage-vq run folder or a listener checkpoint)")
    model = load_listener(vq, device=device)
    cfg = _lm_config(model, str(vq), *cfg_args)
    if model.codebooks is not None:
        if model.cfg.tokens == cfg.tokens:
            _say(dd, console, f"using the token codebooks of {vq}")
        else:
            _say(dd, console, f"note: {vq} holds token codebooks of other [tokens] settings; fitting new ones")
            model.codebooks = None
    model.cfg, model.lm = cfg, None
    return model


def fit_tokens(data: str | Path, out: str | Path, vq: str | Path, preset: str | None = None,
               config_file: str | Path | None = None, overrides: dict[str, Any] | None = None,
               device: str | None = None, command: str = "") -> Path:
    """Fit the token codebooks (the offline speech and affect k-means of ``[tokens]``) on ``data``'s
    training split on their own: writes ``out/checkpoint`` (the VQ-VAE of ``vq`` with the codebooks),
    which ``train_lm(vq=out)`` then uses as they are. Returns ``out``."""
    out, data = Path(out), Path(data)
    dd, dev = setup_processes(device)
    console = stderr_console()
    _new_run(out)
    model = _vq_model(vq, dev, (preset, config_file, overrides), dd, console)
    model.codebooks = None  # refitted: that is this command's job
    if model.cfg.tokens.speech != "kmeans" and model.cfg.tokens.emotion != "kmeans":
        raise ConfigError("nothing to fit: [tokens] uses SpeechTokenizer and EMOCA, whose codes need no codebook")
    index = _dyads(data, model.cfg.vq.rate, dd, console)
    fit_tokenizer(model, index.split("train"))
    if dd.main:
        record = _record(model.cfg, "tokens", data, command, vq=str(Path(vq).resolve()))
        record.pop("train")
        save_listener(out / RUN_CHECKPOINT, model, meta={**model.meta, "stage": "tokens", "data": record["data"]["dir"],
                                                        "command": command})
        (out / RUN_CONFIG).write_text(dump_toml(record))
    return out


def train_lm(data: str | Path | None, out: str | Path, vq: str | Path | None = None, preset: str | None = None,
             config_file: str | Path | None = None, overrides: dict[str, Any] | None = None, resume: bool = False,
             device: str | None = None, lm_path: str | None = None, speech_tokenizer: str | None = None,
             emoca: str | None = None, progress: bool = True, stop_after: int | None = None,
             command: str = "") -> Path:
    """Stage lm: fit the token codebooks on the training split (unless ``vq`` holds matching ones),
    tokenise every clip and train the LM on top of the VQ-VAE of ``vq`` (a stage-vq run folder or a
    listener checkpoint; its ``[vq]`` and normalisation are kept; the other sections come from
    ``preset`` / ``config_file`` / ``overrides`` when given, else from ``vq``'s config). ``resume``
    continues ``out`` from its own checkpoint (VQ-VAE, codebooks, LM architecture) and state.
    Returns ``out``; out/checkpoint (and out/best) is the whole listener."""
    out = Path(out)
    dd, dev = setup_processes(device)
    console = stderr_console()
    if resume:
        record = read_run(out, "lm")
        model = load_listener(out / RUN_CHECKPOINT, device=dev)
        model.cfg = resolve_listener_config(record["listener"], str(out / STATE_DIR), overrides=overrides)
        data = Path(data or record["data"]["dir"])
        vq = vq or record["data"].get("vq")
    else:
        if data is None:
            raise ConfigError("stage lm needs --data DIR")
        _new_run(out)
        data = Path(data)
        model = _vq_model(vq, dev, (preset, config_file, overrides), dd, console)
    cfg = model.cfg
    index = _dyads(data, cfg.vq.rate, dd, console)
    train, val = index.split("train"), index.split("val")
    tokenizer = fit_tokenizer(model, train, speech_tokenizer, emoca) if cfg.lm.multimodal else None
    toks = tokenize_dyads(model, tokenizer, train + val, dev)
    task = LMTask(model, toks[: len(train)], toks[len(train):], dev, pretrained=None if resume else lm_path)
    _fill(task, cfg.train_lm, dd, console, "LM windows")
    record = _record(cfg, "lm", data, command, vq=str(Path(vq).resolve()) if vq else None, lm=lm_path)
    run = Run(out, cfg.train_lm, dd, dev, record, resume=resume, console=console, label="train lm")
    return fit(task, run, stop_after=stop_after, progress=progress)
