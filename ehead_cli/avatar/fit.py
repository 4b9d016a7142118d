"""Fitting a neural avatar to a capture: ``ehead avatar fit VIDEO... --out AVATAR_DIR``.

The loop: each step takes ``batch_size`` training frames (a fixed function of (seed, step), so a
resumed fit sees the frames an uninterrupted one would), renders them from their tracked
head-centred motion, and minimises

    l1_weight L1 (mouth box weighted 1 + mouth_weight) + ssim_weight (1 - MS-SSIM)
    [+ vgg_weight VGG perceptual, with --vgg] + coverage_weight mean(mesh coverage x (1 - alpha))
    + feature_decay mean(learned features^2)

with Adam (features at ``feature_lr``, the rest at ``lr``), a linear warm-up and a cosine decay to
``LR_FLOOR`` of the peak. The pose the network sees is jittered by ``pose_jitter``. On a GPU with
native bf16 the U-Net runs under bf16 autocast (``precision``); elsewhere in fp32.

The last frames of each video are held out (``Capture.heldout``); the card reports PSNR, SSIM, the
mouth-box PSNR and LPIPS (with its weights) on them after the first step and at the end.

Resume: every ``ckpt_every`` steps the exact state (weights, Adam moments, step) and the capture
itself (cropped frames, motion, camera: the tracking is not redone) are saved beside the output, in
the hidden folder ``.<AVATAR_DIR name>.fit-state``; ``--resume`` continues from it. The avatar
folder is written whole at the end and the state folder removed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ehead_cli import __version__
from ehead_cli.avatar.capture import Capture
from ehead_cli.avatar.config import FitConfig, NeuralConfig
from ehead_cli.avatar.folder import CARD, HELDOUT_PNG, REFERENCE_PNG, USER_LICENCE, face_fingerprint, save_avatar
from ehead_cli.avatar.losses import VGGPerceptual, ms_ssim, weighted_l1
from ehead_cli.avatar.neural import NeuralAvatar
from ehead_cli.avatar.report import card_text, heldout_metrics, save_png, side_by_side
from ehead_cli.devices import processor_name, sync
from ehead_cli.errors import InputError
from ehead_cli.face.base import FaceModel
from ehead_cli.io.atomic import atomic_dir
from ehead_cli.layout import EXPR, JAW
from ehead_cli.render.clip_camera import ClipCamera

LR_FLOOR = 0.05
REST_JAW_QUANTILE = 0.25
STATE_WEIGHTS, STATE_JSON, STATE_CAPTURE = "state.safetensors", "state.json", "capture.npz"


def state_dir(out: Path) -> Path:
    """The hidden folder beside AVATAR_DIR that holds an unfinished fit (for --resume)."""
    return out.parent / f".{out.name}.fit-state"


def lr_factor(cfg: FitConfig, step: int) -> float:
    """Learning-rate multiplier at ``step`` (0-based): linear warm-up, then cosine to LR_FLOOR."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def initial_background(capture: Capture, how: str) -> torch.Tensor:
    """(3, S, S) in [0, 1]: the per-pixel median of the training frames, or their border's mean colour."""
    frames = capture.frames[capture.train_index].float() / 255.0  # (N, S, S, 3)
    if how == "median":
        return frames.median(0).values.permute(2, 0, 1).contiguous()
    border = torch.cat([frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]], 1)  # (N, 4S, 3)
    return border.mean((0, 1))[:, None, None].expand(3, *frames.shape[1:3]).contiguous()


def reference_index(capture: Capture) -> int:
    """A typical resting face, the generation's reference and the folder's reference.png: among the
    training frames with the jaw in its lowest ``REST_JAW_QUANTILE`` (mouth closed), the one nearest
    (expression and jaw) to their median."""
    idx = capture.train_index
    jaw = capture.motion[idx, JAW.start]
    idx = idx[jaw <= np.quantile(jaw, REST_JAW_QUANTILE)]
    m = capture.motion[idx]
    keys = np.concatenate([m[:, EXPR], m[:, JAW]], axis=1)
    return int(idx[np.argmin(((keys - np.median(keys, axis=0)) ** 2).sum(1))])


@dataclass
class FitResult:
    path: Path
    metrics: dict[str, Any]
    first_step: dict[str, Any]
    seconds: float
    steps: int


class _Progress:
    """A rich progress bar with the loss and the ETA (a no-op when disabled)."""

    def __init__(self, enabled: bool, total: int, done: int, console=None) -> None:
        self.bar = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]avatar fit"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(),
                                console=console, transient=False)
            self.bar.start()
            self.task = self.bar.add_task("", total=total, completed=done, loss=float("nan"))

    def update(self, steps: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=steps, loss=loss)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _train_step_inputs(capture: Capture, cfg: FitConfig, step: int, device: torch.device):
    """The step's frames: indices, targets (N, 3, S, S) in [0, 1], mouth weights (N, 1, S, S), pose noise."""
    rng = np.random.default_rng([cfg.seed, step])
    train = capture.train_index
    idx = rng.choice(train, size=min(cfg.batch_size, len(train)), replace=False)
    target = capture.frames[idx].to(device).permute(0, 3, 1, 2).float() / 255.0
    S = target.shape[-1]
    weight = torch.ones(len(idx), 1, S, S, device=device)
    for i, (x0, y0, x1, y1) in enumerate(capture.mouth[idx]):
        weight[i, :, y0:y1, x0:x1] += cfg.mouth_weight
    noise = torch.from_numpy(rng.normal(0.0, cfg.pose_jitter, (len(idx), 6)).astype(np.float32)).to(device)
    return idx, target, weight, noise


def fit_avatar(capture: Capture, face: FaceModel, out: str | os.PathLike, neural: NeuralConfig | None = None,
               fit: FitConfig | None = None, device: str | torch.device = "cpu", vgg: str | None = None,
               lpips: str | None = None, resume: bool = False, progress: bool = True, console=None,
               licence: str = USER_LICENCE, attribution: str | None = None,
               on_log: Callable[[int, float], None] | None = None,
               on_eval: Callable[[int, dict[str, Any]], None] | None = None) -> FitResult:
    """Fit an avatar to ``capture`` and write AVATAR_DIR ``out`` (module docstring)."""
    from ehead_cli.metrics.image import load_lpips, load_vgg16_features

    neural = (neural or NeuralConfig()).validate()
    cfg = (fit or FitConfig()).validate()
    out = Path(out)
    dev = torch.device(device)
    state = state_dir(out)
    if resume:  # the saved settings win; only the number of steps may change
        saved = _read_state_json(state)
        neural = NeuralConfig.from_dict(saved["neural"], str(state / STATE_JSON))
        cfg = dataclasses.replace(FitConfig.from_dict(saved["fit"], str(state / STATE_JSON)), steps=cfg.steps)
    if len(capture.train_index) == 0 or len(capture.heldout_index) == 0:
        raise InputError("the video is too short to hold out its last frames and still train on the rest")
    torch.manual_seed(cfg.seed)
    background = initial_background(capture, cfg.background_init)
    avatar = NeuralAvatar(face, capture.camera, neural, background).to(dev).train()
    avatar.compute_dtype = {"auto": None, "bf16": torch.bfloat16, "fp32": torch.float32}[cfg.precision]
    feature_params = [avatar.field.learned]
    other = [p for n, p in avatar.named_parameters() if p.requires_grad and n != "field.learned"]
    opt = torch.optim.Adam([{"params": feature_params, "lr": cfg.feature_lr, "base_lr": cfg.feature_lr},
                            {"params": other, "lr": cfg.lr, "base_lr": cfg.lr}])
    perceptual = VGGPerceptual(load_vgg16_features(vgg)).to(dev) if vgg and cfg.vgg_weight > 0 else None
    lpips_model = load_lpips(vgg, lpips) if (vgg or lpips) else None  # an Unavailable is reported as such
    if isinstance(lpips_model, torch.nn.Module):
        lpips_model = lpips_model.to(dev)
    shape = torch.from_numpy(capture.shape).to(dev)
    motion = torch.from_numpy(capture.motion).to(dev)

    step, first, seconds = 0, {}, 0.0
    if resume:
        step, first, seconds = _load_state(state, avatar, opt)
    else:
        _save_capture(state, capture)
        _save_state(state, avatar, opt, 0, {}, 0.0, neural, cfg)
    bar = _Progress(progress, cfg.steps, step, console)
    t0 = time.perf_counter()
    loss_value = float("nan")
    try:
        while step < cfg.steps:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * lr_factor(cfg, step)
            idx, target, weight, noise = _train_step_inputs(capture, cfg, step, dev)
            rendered = avatar.images(shape, motion[idx], pose_noise=noise)
            pred = rendered.image.permute(0, 3, 1, 2)
            loss = cfg.l1_weight * weighted_l1(pred, target, weight)
            loss = loss + cfg.ssim_weight * (1 - ms_ssim(pred, target)).mean()
            if perceptual is not None:
                loss = loss + cfg.vgg_weight * perceptual(pred, target)
            loss = loss + cfg.coverage_weight * (rendered.mask.float() * (1 - rendered.alpha)).mean()
            loss = loss + cfg.feature_decay * avatar.field.learned.pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise RuntimeError(f"the avatar fit diverged at step {step} (loss {loss_value})")
            if step == 1 or (cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps):
                held = heldout_metrics(avatar, capture, lpips_model)
                first = held if step == 1 else first
                if on_eval:
                    on_eval(step, held)
            if step % cfg.log_every == 0 or step == cfg.steps:
                bar.update(cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every, loss_value)
                if on_log:
                    on_log(step, loss_value)
            if step % cfg.ckpt_every == 0 and step < cfg.steps:
                sync(dev)
                _save_state(state, avatar, opt, step, first, seconds + time.perf_counter() - t0, neural, cfg)
    finally:
        bar.close()
    sync(dev)
    seconds += time.perf_counter() - t0
    train_dtype = str(avatar._dtype()).replace("torch.", "")
    avatar.eval()
    metrics = heldout_metrics(avatar, capture, lpips_model)
    ref = reference_index(capture)
    config = {
        "face": face_fingerprint(face),
        "renderer": neural.to_dict(),
        "fit": cfg.to_dict(),
        "crop": dict(zip(("x0", "y0", "side"), capture.crop, strict=True)),
        "source_camera": capture.source_camera.to_dict(),
        # file names only: an avatar folder is shared, the folders it was made in are the user's own
        "sources": [{"file": Path(p).name, "frames": n} for p, n in capture.sources],
        "landmark_rmse_px": capture.rmse_px if math.isfinite(capture.rmse_px) else None,
        "reference_frame": ref,
        "metrics": {**metrics, "first_step": first},
        "meta": {"ehead": __version__, "torch": torch.__version__, "device": _device_name(dev),
                 "threads": torch.get_num_threads(), "seconds": seconds, "steps": step, "vgg": perceptual is not None,
                 "dtype": train_dtype},
    }
    name = out.name
    files = {
        REFERENCE_PNG: lambda p: save_png(p, capture.frames[ref].numpy()),
        HELDOUT_PNG: lambda p: side_by_side(avatar, capture, p),
        CARD: lambda p: p.write_text(card_text(name, config, licence, attribution)),
    }
    save_avatar(out, avatar, capture.shape, capture.motion[ref], config, files, licence)
    shutil.rmtree(state, ignore_errors=True)
    return FitResult(out, metrics, first, seconds, step)


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return processor_name() or platform.machine()


# --- resume ------------------------------------------------------------------------------------------
def _save_capture(state: Path, capture: Capture) -> None:
    """A fresh state folder holding the capture (the tracking is not redone on --resume)."""
    with atomic_dir(state) as tmp:
        np.savez(tmp / STATE_CAPTURE, frames=capture.frames.numpy(), motion=capture.motion, shape=capture.shape,
                 found=capture.found, mouth=capture.mouth, heldout=capture.heldout,
                 crop=np.array(capture.crop), rmse=np.float64(capture.rmse_px))
        (tmp / "capture.json").write_text(json.dumps({"camera": capture.camera.to_dict(),
                                                      "source_camera": capture.source_camera.to_dict(),
                                                      "sources": capture.sources}))


def load_saved_capture(out: Path) -> Capture:
    """The capture of an unfinished fit of AVATAR_DIR ``out``; InputError when there is none."""
    state = state_dir(out)
    if not (state / STATE_CAPTURE).is_file() or not (state / STATE_JSON).is_file():
        raise InputError(f"{out}: no unfinished fit to resume (no {state.name} beside it; --resume)")
    meta = json.loads((state / "capture.json").read_text())
    with np.load(state / STATE_CAPTURE, allow_pickle=False) as z:
        return Capture(torch.from_numpy(z["frames"]), z["motion"], z["shape"], ClipCamera.from_dict(meta["camera"]),
                       ClipCamera.from_dict(meta["source_camera"]), tuple(int(v) for v in z["crop"]), z["found"],
                       z["mouth"], z["heldout"], [tuple(s) for s in meta["sources"]], float(z["rmse"]))


def _save_state(state: Path, avatar: NeuralAvatar, opt: torch.optim.Optimizer, step: int, first: dict,
                seconds: float, neural: NeuralConfig, cfg: FitConfig) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in avatar.trainable_state_dict().items()}
    osd = opt.state_dict()
    steps = {}
    for pid, st in osd["state"].items():
        for key, val in st.items():
            if key == "step":
                steps[str(pid)] = float(val)
            else:
                tensors[f"opt.{pid}.{key}"] = val.detach().cpu().contiguous()
    tmp_w, tmp_j = state / f".{STATE_WEIGHTS}", state / f".{STATE_JSON}"
    save_file(tensors, str(tmp_w))
    tmp_j.write_text(json.dumps({"step": step, "first_step": first, "seconds": seconds, "opt_steps": steps,
                                 "param_groups": osd["param_groups"], "neural": neural.to_dict(),
                                 "fit": cfg.to_dict()}))
    os.replace(tmp_w, state / STATE_WEIGHTS)
    os.replace(tmp_j, state / STATE_JSON)


def _read_state_json(state: Path) -> dict[str, Any]:
    try:
        return json.loads((state / STATE_JSON).read_text())
    except (OSError, ValueError):
        raise InputError(f"{state}: no readable saved fit state to resume (--resume)") from None


def _load_state(state: Path, avatar: NeuralAvatar, opt: torch.optim.Optimizer) -> tuple[int, dict, float]:
    meta = _read_state_json(state)
    try:
        tensors = load_file(str(state / STATE_WEIGHTS))
    except Exception as err:  # noqa: BLE001 - a damaged state is the same user-facing problem
        raise InputError(f"{state / STATE_WEIGHTS}: unreadable fit state ({type(err).__name__})") from None
    avatar.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=False)
    opt_state: dict[int, dict[str, Any]] = {}
    for key, val in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = val.to(avatar.device)
    for pid, st in meta["opt_steps"].items():
        opt_state.setdefault(int(pid), {})["step"] = torch.tensor(st)
    opt.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
    return int(meta["step"]), meta["first_step"], float(meta["seconds"])

