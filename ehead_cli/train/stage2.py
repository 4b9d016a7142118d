"""Stage II: joint image-domain refinement of the DiT and the renderer (paper 3.4, supplementary B.1).

Long module: not one concept but five (config, data, loss, renderer assembly, the loop) still together;
splitting them along those jobs is open work of issue 23, named here so the layering test holds it.

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

import copy
import dataclasses
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ehead_cli.avatar.folder import IDENTITY, MANIFEST, REFERENCE_PNG, load_avatar, save_avatar
from ehead_cli.avatar.losses import VGGPerceptual, ms_ssim
from ehead_cli.avatar.mesh import MeshAvatar, MeshConfig
from ehead_cli.avatar.rendering import checkpoint_face_model
from ehead_cli.errors import ConfigError, InputError
from ehead_cli.io.atomic import atomic_dir, sha256_file
from ehead_cli.io.dataset import Clip, face_model_of, load_index
from ehead_cli.io.frames import FramesInfo, FrameStore, read_frames_info
from ehead_cli.layout import GROUPS, MOTION_DIM
from ehead_cli.model.checkpoint import (
    AVATARS_DIR,
    WEIGHTS_NAME,
    checkpoint_folder,
    load_checkpoint,
    read_config,
    write_checkpoint,
)
from ehead_cli.model.config import check_fields, load_toml, models_dir
from ehead_cli.model.encoders import FeatureCache
from ehead_cli.model.flow import PathSample, endpoint, flow_loss
from ehead_cli.model.network import EmbodiedHead
from ehead_cli.model.stats import MotionStats
from ehead_cli.model.windows import WindowBatch
from ehead_cli.render.clip_camera import ClipCamera
from ehead_cli.train.config import TrainConfig
from ehead_cli.train.data import WindowDataset
from ehead_cli.train.distributed import setup_processes
from ehead_cli.train.loop import Run, fit, param_groups
from ehead_cli.train.state import STATE_DIR, read_record

STAGE = 2
BUILTIN = "builtin"  # --avatar builtin: the mesh renderer
RENDERERS_DIR = "renderers"  # RUN2/renderers/<name>/: the renderers as they started
SECTION, REFINE = "stage2", "refine"  # the preset's [stage2] (schedule) and [stage2.refine]
PERCEPTUAL_VGG = "vgg16"
PERCEPTUAL_SUBSTITUTE = "ms-ssim"  # 1 - MS-SSIM, the offline substitute for the VGG term (no --vgg)
FRAME_STREAM = 2  # the frames' random stream beside the window's (train.data draws from [seed, epoch, index])
LOSS_KEYS = ("loss", "coef", "l1", "perceptual", "jaw", "psnr")


@dataclass(frozen=True)
class RefineConfig:
    """What Stage II adds to a schedule (the preset's ``[stage2.refine]``), field by field:

    coef_weight:        lambda_coef, the weight of Stage I's loss L_I (paper 0.2)
    l1_weight:          lambda_1 of the image L1 (paper 0.2; eq. 8's lambda_img is 1)
    perceptual_weight:  lambda_p of the perceptual term (paper 0.2)
    renderer_lr_scale:  the renderer's learning rate / the DiT's (paper 0.5)
    renderer_weight_decay: AdamW decay of the renderer's weights (the paper gives none; 0: the
                        avatar fit had none either)
    frames_per_window:  frames of each window rendered and compared with the video (the paper does
                        not say; the paper preset renders the whole window)
    """

    coef_weight: float = 0.2
    l1_weight: float = 0.2
    perceptual_weight: float = 0.2
    renderer_lr_scale: float = 0.5
    renderer_weight_decay: float = 0.0
    frames_per_window: int = 100

    def validate(self, window: int | None = None) -> RefineConfig:
        if min(self.coef_weight, self.l1_weight, self.perceptual_weight, self.renderer_weight_decay) < 0:
            raise ConfigError("stage2.refine: the loss weights and the renderer's weight decay must be >= 0")
        if not self.renderer_lr_scale >= 0:
            raise ConfigError(f"stage2.refine.renderer_lr_scale must be >= 0, got {self.renderer_lr_scale}")
        if self.frames_per_window < 1 or (window is not None and self.frames_per_window > window):
            raise ConfigError(f"stage2.refine.frames_per_window must be in 1..{window or 'the window'}, "
                              f"got {self.frames_per_window}")
        return self

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str) -> RefineConfig:
        check_fields(cls, d, source, f"{SECTION}.{REFINE}")
        return cls(**d).validate()


def resolve_stage2_config(preset_name: str, config_file: Path | None,
                          overrides: dict[str, Any]) -> tuple[TrainConfig, RefineConfig]:
    """The preset's [stage2] (a TrainConfig: the schedule) and [stage2.refine] -> ``--config FILE.toml``'s
    -> flags, later wins."""
    path = models_dir() / "presets" / f"{preset_name}.toml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {preset_name!r} for --preset")
    sched = dict(load_toml(path).get(SECTION, {}))
    if not sched:
        raise ConfigError(f"{path}: the preset has no [{SECTION}] section (Stage II's schedule)")
    refine = dict(sched.pop(REFINE, {}))
    source = str(path)
    if config_file is not None:
        extra = load_toml(config_file)
        bad = set(extra) - {SECTION}
        if bad:
            raise ConfigError(f"{config_file}: unknown section(s) {', '.join(sorted(bad))} for --stage 2; "
                              f"use [{SECTION}] and [{SECTION}.{REFINE}]")
        more = dict(extra.get(SECTION, {}))
        refine.update(more.pop(REFINE, {}))
        sched.update(more)
        source = str(config_file)
    sched.update({k: v for k, v in overrides.items() if v is not None})
    return (TrainConfig.from_dict(sched, source, section=SECTION), RefineConfig.from_dict(refine, source))


# --- data ------------------------------------------------------------------------------------------------
@dataclass
class FrameBatch:
    """Stage II's batch: ``window`` (a WindowBatch), ``frames`` (B, K, S, S, 3) uint8 video frames of
    ``index`` (B, K) frames of the window, ``shape`` (B, 300) the clips' identities, ``clip`` (B,) the
    clips' positions in the task's clip list (which renderer and camera)."""

    window: WindowBatch
    frames: torch.Tensor
    index: torch.Tensor
    shape: torch.Tensor
    clip: torch.Tensor

    def to(self, device, non_blocking: bool = False) -> FrameBatch:
        return FrameBatch(self.window.to(device, non_blocking), *(t.to(device, non_blocking=non_blocking)
                                                                   for t in (self.frames, self.index, self.shape,
                                                                             self.clip)))

    def __len__(self) -> int:
        return len(self.window)

    @staticmethod
    def collate(items: list[FrameBatch]) -> FrameBatch:
        return FrameBatch(WindowBatch.collate([it.window for it in items]),
                          *(torch.stack([getattr(it, f) for it in items]) for f in ("frames", "index", "shape",
                                                                                    "clip")))


class FrameWindows(Dataset):
    """``windows`` with the video frames of ``k`` of each window's real frames, drawn (without
    replacement when the window has k real frames) as a fixed function of (seed, epoch, index).
    Items name their clip by ``offset`` + its position in ``windows.clips``."""

    def __init__(self, windows: WindowDataset, frames: list[FramesInfo], k: int, seed: int,
                 store: FrameStore | None = None, offset: int = 0):
        self.windows, self.frames, self.k, self.seed, self.offset = windows, frames, k, seed, offset
        self.store = store or FrameStore()
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.windows)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.windows.set_epoch(epoch)

    def repeat_to(self, n: int) -> int:
        return self.windows.repeat_to(n)

    def __getitem__(self, index: int) -> FrameBatch:
        window, ci, s = self.windows.window_at(index)
        n = int(window.mask.sum())
        rng = np.random.default_rng([self.seed, self.epoch, index, FRAME_STREAM])
        pick = np.sort(rng.choice(n, size=self.k, replace=n < self.k))  # (k,) frames of the window
        clip = self.windows.clips[ci]
        return FrameBatch(window, torch.from_numpy(self.store.take(self.frames[ci], s + pick)),
                          torch.from_numpy(pick.astype(np.int64)), torch.from_numpy(clip.shape.astype(np.float32)),
                          torch.tensor(self.offset + ci))


# --- the model and its loss --------------------------------------------------------------------------------
def renderer_key(name: str) -> str:
    """A renderer's name as a module name (letters, digits, '_')."""
    return re.sub(r"\W", "_", name) or "renderer"


class Stage2Model(nn.Module):
    """What Stage II trains: the motion model ``head`` and the ``renderers`` (by name). Its
    ``trainable_state_dict`` (what EMA, the state and the checkpoint hold) is ``head.*`` (the
    DiT and a trainable audio encoder) and ``renderers.<name>.*``."""

    def __init__(self, head: EmbodiedHead, renderers: dict[str, nn.Module]):
        super().__init__()
        self.head = head
        self.renderers = nn.ModuleDict({renderer_key(k): r for k, r in renderers.items()})

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        sd = {f"head.{k}": v for k, v in self.head.trainable_state_dict().items()}
        for name, r in self.renderers.items():
            sd.update({f"renderers.{name}.{k}": v for k, v in r.trainable_state_dict().items()})
        return sd

    @torch.no_grad()
    def load_trainable_(self, state: dict[str, torch.Tensor]) -> None:
        sd = self.trainable_state_dict()
        for k, v in state.items():
            sd[k].copy_(v)


class Stage2Step(nn.Module):
    """One forward = L_II of a FrameBatch (module docstring); what DDP wraps. ``clip_renderer`` and
    ``clip_camera``: per clip of the task, its renderer's key and its frames' camera."""

    def __init__(self, model: Stage2Model, cfg: RefineConfig, clip_renderer: list[str],
                 clip_camera: list[ClipCamera], perceptual: nn.Module | None, reduction: str = "mean"):
        super().__init__()
        self.model, self.cfg, self.reduction = model, cfg, reduction
        self.perceptual = perceptual
        self.clip_renderer, self.clip_camera = clip_renderer, clip_camera

    def render(self, shape: torch.Tensor, motion: torch.Tensor, clips: list[int]) -> torch.Tensor:
        """(B, 300) shapes, (B, K, 115) raw motion of clips ``clips`` -> (B, K, S, S, 3) images in [0, 1],
        one renderer call per group of windows sharing a renderer and a camera; in float32 (the
        neural renderer runs its U-Net in its own autocast dtype)."""
        B, K = motion.shape[:2]
        groups: dict[tuple[str, ClipCamera], list[int]] = {}
        for b, ci in enumerate(clips):
            groups.setdefault((self.clip_renderer[ci], self.clip_camera[ci]), []).append(b)
        out: list[torch.Tensor | None] = [None] * B
        with torch.autocast(motion.device.type, enabled=False):
            for (key, camera), items in groups.items():
                idx = torch.tensor(items, device=motion.device)
                m = motion.index_select(0, idx).reshape(-1, MOTION_DIM).float()
                s = shape.index_select(0, idx).repeat_interleave(K, 0).float()
                image = self.model.renderers[key].images(s, m, camera=camera).image  # (n K, S, S, 3)
                for j, b in enumerate(items):
                    out[b] = image[j * K:(j + 1) * K]
        return torch.stack(out)

    def forward(self, batch: FrameBatch) -> dict[str, torch.Tensor]:
        head, w = self.model.head, batch.window
        front = w.front if w.front is not None else head.encoder.frontend(w.wave)
        audio = head.audio_stack(front)
        path = PathSample.between(w.x0, w.x1, w.t)
        v = head.dit(path.x_t, path.t, audio, *w.condition_inputs())
        coef = flow_loss(v.float(), path, reduction=self.reduction, mask=w.mask)
        x1_hat = endpoint(path.x_t.to(v.dtype), path.t.to(v.dtype), v)  # (B, T, 115) normalised, autocast dtype
        picked = x1_hat.gather(1, batch.index[..., None].expand(-1, -1, x1_hat.shape[-1]))  # (B, K, 115)
        motion = head.stats.denormalize(picked.float())
        pred = self.render(batch.shape, motion, batch.clip.tolist())  # (B, K, S, S, 3)
        target = batch.frames.float() / 255.0
        pred_nchw = pred.flatten(0, 1).permute(0, 3, 1, 2)
        target_nchw = target.flatten(0, 1).permute(0, 3, 1, 2)
        l1 = (pred - target).abs().mean()
        if self.perceptual is not None:
            perceptual = self.perceptual(pred_nchw, target_nchw)
        else:
            perceptual = (1 - ms_ssim(pred_nchw, target_nchw)).mean()
        cfg = self.cfg
        loss = cfg.coef_weight * coef["loss"] + cfg.l1_weight * l1 + cfg.perceptual_weight * perceptual
        # every renderer's weights take part in every step (zero weight for those this batch did not use),
        # so DDP finds a gradient for each of them
        loss = loss + 0.0 * sum(p.sum() for p in self.model.renderers.parameters() if p.requires_grad)
        mse = (pred.detach() - target).pow(2).mean((1, 2, 3, 4)).clamp_min(1e-10)
        return {"loss": loss, "coef": coef["loss"].detach(), "l1": l1.detach(), "perceptual": perceptual.detach(),
                "jaw": coef["jaw"], "psnr": (-10 * torch.log10(mse)).mean()}


# --- the task ------------------------------------------------------------------------------------------------
@dataclass
class RendererSpec:
    """A renderer of the run: ``name``; ``renderer`` (NeuralAvatar or MeshAvatar); the identity
    ``shape`` (300,) and ``reference`` (115,) its avatar folder holds; ``config`` the folder's
    config.json sections to keep (fit, crop, sources, ...); ``source`` where it came from (a path or
    "builtin"); ``folder`` its starting copy in the run."""

    name: str
    renderer: nn.Module
    shape: np.ndarray
    reference: np.ndarray
    config: dict[str, Any]
    source: str
    folder: Path

    @property
    def kind(self) -> str:
        return "mesh" if isinstance(self.renderer, MeshAvatar) else "neural"


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


def write_renderer(out: Path, spec: RendererSpec, extra: dict[str, Any] | None = None) -> Path:
    """``spec``'s renderer (its current weights) as an avatar folder ``out``."""
    src = Path(spec.source)
    files = {}
    if spec.source != BUILTIN and (src / REFERENCE_PNG).is_file():
        files[REFERENCE_PNG] = lambda p: shutil.copyfile(src / REFERENCE_PNG, p)
    stage2 = (extra or {}).get("stage2")
    files["AVATAR_CARD.md"] = lambda p: p.write_text(_card(spec, stage2))
    licence = _licence(spec)
    return save_avatar(out, spec.renderer, spec.shape, spec.reference, {**spec.config, **(extra or {})}, files,
                       licence)


def _licence(spec: RendererSpec) -> str:
    if spec.source == BUILTIN:
        return "Apache-2.0 (this project): ehead's built-in head"
    import json

    try:
        entries = json.loads((Path(spec.source) / MANIFEST).read_text())["files"]
        return str(entries[IDENTITY]["licence"])
    except (OSError, ValueError, KeyError, TypeError):
        from ehead_cli.avatar.folder import USER_LICENCE

        return USER_LICENCE


def _card(spec: RendererSpec, stage2: dict[str, Any] | None) -> str:
    what = ("ehead's built-in mesh renderer (the face model's mesh, Lambert-shaded; learnable per-vertex albedo)"
            if spec.kind == "mesh" else f"a neural avatar renderer, from {Path(spec.source).name}")
    done = (f"Refined by Stage II (ehead train --stage 2) up to step {stage2.get('step')}, with the DiT of the same "
            f"checkpoint." if stage2 else "As it entered Stage II (before any refinement).")
    return f"# {spec.name}\n\n{what}.\n\n{done}\n"


# --- building a run ------------------------------------------------------------------------------------------
def _console():
    from rich.console import Console

    return Console(stderr=True)


def renderer_specs(avatars: list[str], out: Path, face, camera: ClipCamera | None, train_clips: list[Clip],
                   device: torch.device, flame: str | None) -> list[RendererSpec]:
    """The run's renderers from ``--avatar`` values: avatar folders (deep copies: the loaded folder
    stays as it is) or ``builtin`` (through ``camera``, the first training clip's frames camera)."""
    specs: list[RendererSpec] = []
    if not avatars:
        raise ConfigError("--stage 2 needs --avatar AVATAR_DIR (an ehead avatar fit folder) or --avatar builtin")
    if BUILTIN in avatars and len(avatars) > 1:
        raise ConfigError("--avatar builtin renders every clip: give it alone")
    for value in avatars:
        if value == BUILTIN:
            first = train_clips[0]
            spec = RendererSpec(BUILTIN, MeshAvatar(face, camera, MeshConfig(camera.height)).to(device),
                                first.shape.copy(), np.median(first.motion, axis=0).astype(np.float32),
                                {"meta": {"note": "the built-in mesh renderer"}}, BUILTIN,
                                out / RENDERERS_DIR / BUILTIN)
        else:
            loaded = load_avatar(value, device=device, flame=flame)
            keep = {k: v for k, v in loaded.config.items() if k not in ("format", "version", "face", "renderer",
                                                                        "camera", "stage2")}
            name = loaded.path.name
            if any(s.name == name for s in specs):
                raise ConfigError(f"--avatar {value}: two avatars are named {name}; rename one folder")
            spec = RendererSpec(name, copy.deepcopy(loaded.renderer).train(), loaded.shape.copy(),
                                loaded.reference.copy(), keep, str(loaded.path), out / RENDERERS_DIR / name)
        specs.append(spec)
    return specs


def assign_renderers(clips: list[Clip], specs: list[RendererSpec]) -> tuple[dict[str, str], list[str]]:
    """{clip id: renderer name} (module docstring) and the ids of the clips no renderer matches."""
    if len(specs) == 1:
        return {c.id: specs[0].name for c in clips}, []
    by_source = {}
    for s in specs:
        for src in s.config.get("sources", []):
            by_source.setdefault(str(src.get("file")), s.name)
    names = {s.name for s in specs}
    out, missing = {}, []
    for c in clips:
        name = by_source.get(str(c.meta.get("source"))) or (c.id if c.id in names else None)
        if name is None:
            missing.append(c.id)
        else:
            out[c.id] = name
    return out, missing


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
    console = _console()
    if resume:
        record = read_record(out)
        if record.get("stage") != STAGE:
            raise InputError(f"{out}: a Stage-I run; --resume continues it with ehead train --resume {out}")
        from ehead_cli.model.config import ModelConfig

        model_cfg = ModelConfig.from_dict(record["model"], source=str(out / STATE_DIR))
        stats = MotionStats.from_dict(record["stats"])
        tcfg = dict(record["train"])
        tcfg.update({k: v for k, v in (overrides or {}).items() if v is not None})
        train_cfg = TrainConfig.from_dict(tcfg, source=str(out / STATE_DIR))
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
    train_clips, val_clips, frames = _clips_with_frames(data, index, console if dd.main else None)
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
              SECTION: {"refine": dataclasses.asdict(refine), "perceptual": _perceptual_note(meta["perceptual"])},
              "perceptual": meta["perceptual"], "face_model": meta["face_model"], "stage1": meta["stage1"],
              "renderers": [{"name": s.name, "kind": s.kind, "source": s.source,
                             "folder": f"{RENDERERS_DIR}/{s.name}"} for s in specs],
              "clips": {"train": len(train_clips), "val": len(val_clips)}, "stats": stats.to_dict()}
    if not resume and dd.main:
        for spec in specs:  # the renderers as they start: the run's record of them, and what --resume rebuilds
            write_renderer(spec.folder, spec)
    run = Run(out, train_cfg, dd, dev, record, resume=resume, console=console, label="stage 2")
    return fit(task, run, stop_after=stop_after, progress=progress)


DRIFT_WARN = 10.0  # a group's mean |z| beyond this: the labels are not the data the model was trained on


def label_drift(clips: list[Clip], stats: MotionStats) -> dict[str, float]:
    """Per motion group, the mean |z| of the clips' labels under the model's statistics (about 0.8 on
    the data the statistics came from): how far the labels lie from what the model was trained on."""
    mean, std = np.asarray(stats.mean, np.float64), np.asarray(stats.std, np.float64)
    z = np.abs((np.concatenate([c.motion for c in clips]).astype(np.float64) - mean) / std)
    return {g: float(z[:, sl].mean()) for g, sl in GROUPS.items()}


def _perceptual_note(kind: str) -> str:
    if kind == PERCEPTUAL_VGG:
        return "vgg16: squared differences of frozen VGG16 features (relu1_2, relu2_2, relu3_3, relu4_3), --vgg"
    return ("ms-ssim: 1 - MS-SSIM, the offline substitute for the paper's VGG term (no --vgg weights were given; "
            "the avatar fit's loss)")


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


def _clips_with_frames(data: Path, index, console) -> tuple[list[Clip], list[Clip], dict[str, FramesInfo]]:
    """The train and val clips that have frames covering their motion, and the frames; InputError
    (naming the fix) when no training clip has any."""
    frames, kept = {}, {"train": [], "val": []}
    without = []
    for split in ("train", "val"):
        for c in index.split(split):
            info = read_frames_info(data, c.id)
            if info is None:
                without.append(c.id)
                continue
            if info.n_frames < c.n_frames:
                raise InputError(f"{info.path}: {info.n_frames} frames for the {c.n_frames} motion frames of clip "
                                 f"{c.id}; prepare the clip again")
            frames[c.id] = info
            kept[split].append(c)
    if not kept["train"]:
        raise InputError(f"{data}: no training clip has video frames (clips/<id>.frames.mp4); Stage II trains on them: "
                         f"prepare the videos again with `ehead prepare VIDEOS --out {data}` (frames are kept unless "
                         f"--no-frames), or for the synthetic data build `python -m ehead_cli.sampledata "
                         f"--tracker-bias --from sample_data --out DIR`")
    if without and console is not None:
        console.print(f"note: {len(without)} clip(s) have no frames and are left out: {', '.join(without[:5])}",
                      highlight=False)
    sizes = {f.size for f in frames.values()}
    if len(sizes) > 1:
        raise InputError(f"{data}: frames of several sizes ({', '.join(map(str, sorted(sizes)))} px)")
    return kept["train"], kept["val"], frames
