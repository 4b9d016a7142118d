"""The whole motion model: audio encoder + DiT + the dataset statistics it was trained with."""

from __future__ import annotations

import os

import torch
from torch import nn

from ehead_cli.model.config import ModelConfig
from ehead_cli.model.dit import EmbodiedHeadDiT
from ehead_cli.model.encoders import build_encoder
from ehead_cli.model.stats import MotionStats


class EmbodiedHead(nn.Module):
    """``encoder`` (MelEncoder, trainable, or HubertEncoder, frozen), ``dit`` and ``stats``."""

    def __init__(self, cfg: ModelConfig, stats: MotionStats | None = None,
                 hubert_path: str | os.PathLike | None = None, encoder: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg.validate()
        self.stats = stats or MotionStats.identity()
        self.encoder = encoder if encoder is not None else build_encoder(cfg.audio, hubert_path)
        self.dit = EmbodiedHeadDiT(cfg)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights a checkpoint stores: the DiT, plus the encoder unless it is frozen."""
        sd = {f"dit.{k}": v for k, v in self.dit.state_dict().items()}
        if not getattr(self.encoder, "frozen", False):
            sd.update({f"encoder.{k}": v for k, v in self.encoder.state_dict().items()})
        return sd

    @torch.no_grad()
    def load_trainable_(self, state: dict[str, torch.Tensor]) -> None:
        """Copy ``state`` (names as in ``trainable_state_dict``) into the weights, in place."""
        sd = self.trainable_state_dict()
        for k, v in state.items():
            sd[k].copy_(v)

    def audio_stack(self, front: torch.Tensor) -> torch.Tensor:
        """Encoder front-end output (see ehead_cli.model.encoders) -> (B, N_l, S, C) hidden stack."""
        return self.encoder(front)
