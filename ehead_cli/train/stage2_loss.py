"""Stage II's model and loss: the DiT and the renderers trained together (``Stage2Model``) and one
forward of L_II = coef_weight L_I + l1_weight |I_hat - I|_1 + perceptual_weight P(I_hat, I) on a
``FrameBatch`` (``Stage2Step``, eq. 8; ``train.stage2``'s docstring has the whole step)."""

from __future__ import annotations

import re

import torch
from torch import nn

from ehead_cli.avatar.losses import ms_ssim
from ehead_cli.layout import MOTION_DIM
from ehead_cli.model.flow import PathSample, endpoint, flow_loss
from ehead_cli.model.network import EmbodiedHead
from ehead_cli.render.clip_camera import ClipCamera
from ehead_cli.train.stage2_config import RefineConfig
from ehead_cli.train.stage2_data import FrameBatch

LOSS_KEYS = ("loss", "coef", "l1", "perceptual", "jaw", "psnr")
PERCEPTUAL_VGG = "vgg16"
PERCEPTUAL_SUBSTITUTE = "ms-ssim"  # 1 - MS-SSIM, the offline substitute for the VGG term (no --vgg)


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


def perceptual_note(kind: str) -> str:
    if kind == PERCEPTUAL_VGG:
        return "vgg16: squared differences of frozen VGG16 features (relu1_2, relu2_2, relu3_3, relu4_3), --vgg"
    return ("ms-ssim: 1 - MS-SSIM, the offline substitute for the paper's VGG term (no --vgg weights were given; "
            "the avatar fit's loss)")
