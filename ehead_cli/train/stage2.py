"""Stage II: joint image-domain refinement of the DiT and the renderer (paper 3.4, supplementary B.1).

    ehead train --stage 2 --init RUN_DIR --avatar AVATAR_DIR|builtin --data DATASET --out RUN2

A training example is a Stage-I window (``train.data.WindowDataset``: the same path x_t = x0 + t (x1 -
x0), x0 ~ N(0, I), t ~ U[0, 1], and the same labels) with the video frames of ``frames_per_window``
of its real frames (the dataset's frames, ``ehead_cli.io.frames``). One step, for a batch of windows:

    v      = DiT(x_t, t, c)
    x1_hat = x_t + (1 - t) v                                  (eq. 7; in the autocast dtype)
    I_hat  = R(denormalise(x1_hat[frames]), shape)            (through each clip's frames camera)
    L_II   = coef_weight L_I + l1_weight |I_hat - I|_1 + perceptual_weight P(I_hat, I)      (eq. 8)

with L_I Stage I's loss (eq. 6, ``model.flow.flow_loss``) on the same window and P the squared
difference of frozen VGG16 features (``--vgg``, ``avatar.losses.VGGPerceptual``) or, without VGG
weights, its offline substitute 1 - MS-SSIM (``avatar.losses.ms_ssim``, what the avatar fit uses);
the run's config says which. The renderer R is unfrozen: its weights train with the DiT's at
``renderer_lr_scale`` times the learning rate (an AdamW parameter group with ``lr_scale``), by the
shared loop (``train.loop``: warm-up and decay, EMA of both, exact resume, torchrun, metrics).

Renderers (``--avatar``, repeatable): an avatar folder (``ehead avatar fit``; its neural renderer) or
``builtin``, the mesh renderer with a learnable per-vertex albedo (``avatar.mesh``). With several,
each clip is rendered by the avatar fitted on its source video (the manifest's ``source`` among the
avatar's sources, or the avatar folder named like the clip); clips no avatar matches are left out.

Its parts: ``stage2_config`` (RefineConfig and the resolved schedule), ``stage2_data`` (windows with
their frames), ``stage2_loss`` (the model and L_II), ``stage2_renderers`` (the run's renderers and
their avatar folders); this module is the loop's task and the run.

The run folder records both stages:

    RUN2/config.toml        the resolved configuration: [stage1] (the --init run, its step, data and
                            schedule), [stage2] (the refinement's weights), [train] (the schedule),
                            renderers, data
    RUN2/renderers/<name>/  each renderer as it started (an avatar folder, checksummed)
    RUN2/state/, metrics.csv, loss.png, tensorboard/   as in Stage I
    RUN2/checkpoint/        config.json + model.safetensors (the refined DiT, EMA; meta.stage = 2,
                            meta.renderers, meta.stage1) and avatars/<name>/, each refined renderer as
                            an avatar folder: the folder alone rebuilds both (``ehead generate
                            --checkpoint RUN2`` renders with its renderer)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ehead_cli.avatar.folder import MANIFEST
from ehead_cli.avatar.losses import VGGPerceptual
from ehead_cli.avatar.rendering import checkpoint_face_model
from ehead_cli.errors import ConfigError, InputError
from ehead_cli.io.atomic import atomic_dir, sha256_file
from ehead_cli.io.dataset import Clip, face_model_of, load_index
from ehead_cli.io.frames import FramesInfo, FrameStore
from ehead_cli.model.checkpoint import (
    AVATARS_DIR,
    WEIGHTS_NAME,
    checkpoint_folder,
    load_checkpoint,
    read_config,
    write_checkpoint,
)
from ehead_cli.model.encoders import FeatureCache
from ehead_cli.model.network import EmbodiedHead
from ehead_cli.train.config import TrainConfig, resumed_run
from ehead_cli.train.data import WindowDataset
from ehead_cli.train.distributed import setup_processes
from ehead_cli.train.loop import Run, fit, param_groups, stderr_console
from ehead_cli.train.stage2_config import REFINE, SECTION, RefineConfig, resolve_stage2_config
from ehead_cli.train.stage2_data import (
    DRIFT_WARN,
    FRAME_STREAM,
    FrameBatch,
    FrameWindows,
    clips_with_frames,
    label_drift,
)
from ehead_cli.train.stage2_loss import (
    LOSS_KEYS,
    PERCEPTUAL_SUBSTITUTE,
    PERCEPTUAL_VGG,
    Stage2Model,
    Stage2Step,
    perceptual_note,
    renderer_key,
)
from ehead_cli.train.stage2_renderers import (
    BUILTIN,
    RENDERERS_DIR,
    RendererSpec,
    assign_renderers,
    renderer_specs,
    write_renderer,
)
from ehead_cli.train.state import STATE_DIR, read_record

STAGE = 2


def stage2_param_groups(model: Stage2Model, refine: RefineConfig, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups of Stage II: the motion model's (``train.loop.param_groups``) and one of the
    renderers' weights at ``renderer_lr_scale`` times the learning rate."""
    groups = param_groups(model.head, weight_decay)
    renderer = [p for p in model.renderers.parameters() if p.requires_grad]
    if renderer:
        groups.append({"params": renderer, "weight_decay": refine.renderer_weight_decay,
                       "lr_scale": refine.renderer_lr_scale})
    return groups


class Stage2Task:
    """Stage II as the loop's ``Task`` (module docstring)."""

    loss_keys = LOSS_KEYS
    plot = (("loss", "coef", "l1", "perceptual"), "Stage-II loss")
    collate = staticmethod(FrameBatch.collate)

    def __init__(self, head: EmbodiedHead, renderers: list[RendererSpec], train_clips: list[Clip],
                 val_clips: list[Clip], clip_renderer: dict[str, str], frames: dict[str, FramesInfo],
                 cfg: TrainConfig, refine: RefineConfig, perceptual: nn.Module | None, meta: dict[str, Any]):
        self.specs = renderers
        self.model = Stage2Model(head, {s.name: s.renderer for s in renderers})
        self.refine, self.meta = refine, meta
        mc = head.cfg
        clips = train_clips + val_clips  # the order items name their clip by
        keys = [renderer_key(clip_renderer[c.id]) for c in clips]
        cameras = [frames[c.id].camera for c in clips]
        cache = FeatureCache() if head.encoder.window_local else None
        store = FrameStore()
        train_windows = WindowDataset(train_clips, head.stats, mc.window, mc.history_frames, head.encoder,
                                      stride=cfg.window_stride, seed=cfg.seed, feature_cache=cache)
        train_windows.preload()
        self.train_set = FrameWindows(train_windows, [frames[c.id] for c in train_clips], refine.frames_per_window,
                                      cfg.seed, store)
        self.val_set = None
        if val_clips and cfg.val_every and cfg.val_windows:
            val_windows = WindowDataset(val_clips, head.stats, mc.window, mc.history_frames, head.encoder,
                                        stride=mc.window // 4, seed=cfg.seed + 1, feature_cache=cache)
            self.val_set = FrameWindows(val_windows, [frames[c.id] for c in val_clips], refine.frames_per_window,
                                        cfg.seed + 1, store, offset=len(train_clips))
        self.loss_module = Stage2Step(self.model, refine, keys, cameras, perceptual, cfg.loss_reduction)

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        return stage2_param_groups(self.model, self.refine, weight_decay)

    def save_checkpoint(self, folder: Path, weights: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """The refined DiT (checkpoint folder) and, in its ``avatars/``, each refined renderer as an
        avatar folder, written whole (one temporary folder renamed into place)."""
        model = self.model
        live = {k: v.detach().clone() for k, v in model.trainable_state_dict().items()}
        model.load_trainable_(weights)  # the EMA weights, written as the renderers' own
        try:
            with atomic_dir(folder) as tmp:
                entries = []
                for spec in self.specs:
                    sub = tmp / AVATARS_DIR / spec.name
                    write_renderer(sub, spec, {"stage2": {"step": meta.get("step"), "from": spec.source,
                                                          "weights": meta.get("weights")}})
                    entries.append({"name": spec.name, "kind": spec.kind, "folder": f"{AVATARS_DIR}/{spec.name}",
                                    "source": spec.source, "manifest_sha256": sha256_file(sub / MANIFEST)})
                head = {k[len("head."):]: v for k, v in weights.items() if k.startswith("head.")}
                write_checkpoint(tmp, model.head, {**meta, **self.meta, "renderers": entries}, state=head)
        finally:
            model.load_trainable_(live)


def train(data: str | Path | None, out: str | Path, init: str | Path | None = None, avatars: list[str] | None = None,
          preset_name: str | None = None, config_file: str | Path | None = None,
          overrides: dict[str, Any] | None = None, resume: bool = False, device: str | None = None,
          hubert_path: str | None = None, vgg: str | None = None, flame: str | None = None,
          stop_after: int | None = None, progress: bool = True, command: str = "") -> Path:
    """Run (or continue) Stage II (module docstring). Returns the run folder."""
    from ehead_cli.face import load_face_model
    from ehead_cli.metrics.image import load_vgg16_features

    out = Path(out)
    dd, dev = setup_processes(device)
    console = stderr_console()
    if resume:
        if read_record(out).get("stage") != STAGE:
            raise InputError(f"{out}: a Stage-I run; --resume continues it with ehead train --resume {out}")
        resumed = resumed_run(out, overrides)
        record, model_cfg, stats, train_cfg = resumed.record, resumed.model, resumed.stats, resumed.train
        refine = RefineConfig.from_dict(record[SECTION]["refine"], str(out / STATE_DIR))
        data = Path(data) if data else Path(record["data"]["dir"])
        head = EmbodiedHead(model_cfg, stats, hubert_path=hubert_path).to(dev)
        avatars = [str(out / r["folder"]) for r in record["renderers"]]
        sources = {str((out / r["folder"]).resolve()): r["source"] for r in record["renderers"]}
        meta = {k: record[k] for k in ("stage", "stage1", "perceptual", "face_model")}
        if meta["perceptual"] == PERCEPTUAL_VGG and not vgg:
            raise ConfigError(f"{out} was trained with the VGG16 perceptual loss: pass --vgg (or set EHEAD_VGG)")
    else:
        if init is None or data is None:
            raise ConfigError("ehead train --stage 2 needs --init RUN_DIR (a Stage-I run or checkpoint), --data "
                              "DATASET (with frames), --avatar AVATAR_DIR|builtin and --out RUN2")
        if (out / STATE_DIR).exists():
            raise InputError(f"{out}: already holds a training run; use --resume {out} or another --out")
        head = load_checkpoint(init, hubert_path=hubert_path, device=dev).train()
        init_meta = read_config(init).get("meta", {})
        if (overrides or {}).get("compile"):
            raise ConfigError("--compile does not apply to --stage 2 (the rasteriser's pixel lists change size "
                              "every step)")
        train_cfg, refine = resolve_stage2_config(preset_name or head.cfg.preset, Path(config_file) if config_file
                                                  else None, overrides or {})
        refine = refine.validate(head.cfg.window)
        stats = head.stats
        data = Path(data)
        face_model = checkpoint_face_model(init_meta)
        if face_model_of(data) != face_model:
            raise InputError(f"{data}: its motion is for the {face_model_of(data)} face model, the --init checkpoint "
                             f"generates motion for the {face_model} face model")
        perceptual_kind = PERCEPTUAL_VGG if vgg else PERCEPTUAL_SUBSTITUTE
        meta = {"stage": STAGE, "face_model": face_model, "perceptual": perceptual_kind,
                "stage1": _stage1_record(Path(init), init_meta)}
        sources = {}
    if train_cfg.batch_size % dd.world:
        raise ConfigError(f"--batch-size {train_cfg.batch_size} must be divisible by the {dd.world} processes")

    index = load_index(data)
    if dd.main:
        for p in index.problems:
            console.print(f"[yellow]skipped[/] {p}", highlight=False)
    train_clips, val_clips, frames = clips_with_frames(data, index, console if dd.main else None)
    if dd.main and not resume:
        far = {g: z for g, z in label_drift(train_clips, stats).items() if z > DRIFT_WARN}
        if far:
            groups = ", ".join(f"{g} {z:.0f}" for g, z in far.items())
            console.print(f"[yellow]note[/] the labels of {data} lie far outside the --init model's motion statistics "
                          f"(mean |z| per group: {groups}; its training data had about 1): the DiT cannot produce "
                          f"them, and L_I is dominated by them. Train Stage I on {data} first, or give "
                          f"[stage2.refine] coef_weight = 0 (images only)", highlight=False)
    face = load_face_model(flame, device=dev)
    specs = renderer_specs(avatars or [], out, face, frames[train_clips[0].id].camera, train_clips, dev, flame)
    for spec in specs:
        if resume:
            spec.name = Path(spec.source).name
            spec.source = sources[spec.source]
            spec.config = {k: v for k, v in spec.config.items() if k != "stage2"}
        if spec.renderer.size != frames[train_clips[0].id].size:
            raise InputError(f"--avatar {spec.source}: renders {spec.renderer.size} px, the frames of {data} are "
                             f"{frames[train_clips[0].id].size} px")
    clip_renderer, missing = assign_renderers(train_clips + val_clips, specs)
    if missing and dd.main:
        console.print(f"note: {len(missing)} clip(s) have no avatar among --avatar and are left out: "
                      f"{', '.join(missing[:5])}", highlight=False)
    train_clips = [c for c in train_clips if c.id in clip_renderer]
    val_clips = [c for c in val_clips if c.id in clip_renderer]
    if not train_clips:
        raise InputError(f"{data}: no training clip is rendered by the --avatar folders given (an avatar renders the "
                         f"clips of the video it was fitted on)")
    perceptual = None
    if meta["perceptual"] == PERCEPTUAL_VGG:
        perceptual = VGGPerceptual(load_vgg16_features(vgg)).to(dev)

    torch.manual_seed(train_cfg.seed)
    task = Stage2Task(head, specs, train_clips, val_clips, clip_renderer, frames, train_cfg, refine, perceptual, meta)
    if len(task.train_set) < train_cfg.batch_size:
        task.train_set.repeat_to(train_cfg.batch_size)
    record = {"command": command, "family": "embodiedhead", "stage": STAGE, "data": {"dir": str(data.resolve())},
              "model": head.cfg.to_dict(), "train": dataclasses.asdict(train_cfg),
              SECTION: {"refine": dataclasses.asdict(refine), "perceptual": perceptual_note(meta["perceptual"])},
              "perceptual": meta["perceptual"], "face_model": meta["face_model"], "stage1": meta["stage1"],
              "renderers": [{"name": s.name, "kind": s.kind, "source": s.source,
                             "folder": f"{RENDERERS_DIR}/{s.name}"} for s in specs],
              "clips": {"train": len(train_clips), "val": len(val_clips)}, "stats": stats.to_dict()}
    if not resume and dd.main:
        for spec in specs:  # the renderers as they start: the run's record of them, and what --resume rebuilds
            write_renderer(spec.folder, spec)
    run = Run(out, train_cfg, dd, dev, record, resume=resume, console=console, label="stage 2")
    return fit(task, run, stop_after=stop_after, progress=progress)


def _stage1_record(init: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """What the run starts from: the --init folder, its weights' SHA-256 and its checkpoint meta."""
    folder = checkpoint_folder(init)
    rec = {"init": str(init.resolve()), "checkpoint": str(folder.resolve()),
           "weights_sha256": sha256_file(folder / WEIGHTS_NAME), "stage": int(meta.get("stage", 1))}
    for k in ("step", "command", "data", "weights"):
        if meta.get(k) not in (None, ""):
            rec[k] = meta[k]
    if isinstance(meta.get("train"), dict):
        rec["train"] = meta["train"]
    return rec


__all__ = ["BUILTIN", "DRIFT_WARN", "FRAME_STREAM", "LOSS_KEYS", "PERCEPTUAL_SUBSTITUTE", "PERCEPTUAL_VGG", "REFINE",
           "RENDERERS_DIR", "SECTION", "STAGE", "FrameBatch", "FrameWindows", "RefineConfig", "RendererSpec",
           "Stage2Model", "Stage2Step", "Stage2Task", "assign_renderers", "label_drift", "renderer_key",
           "renderer_specs", "resolve_stage2_config", "stage2_param_groups", "train", "write_renderer"]
