"""Exponential moving average of a model's trainable weights (the weights every checkpoint holds)."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """EMA of ``model.trainable_state_dict()`` (by name), in float32. The decay is warmed up as
    min(decay, (1 + k) / (10 + k)) at step k, so early averages are not dominated by the initialisation."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.trainable_state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in model.trainable_state_dict().items():
            if v.is_floating_point():
                self.shadow[k].mul_(d).add_(v.detach().float(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)

    def copy_to(self, model: nn.Module) -> None:
        model.load_trainable_(self.shadow)
