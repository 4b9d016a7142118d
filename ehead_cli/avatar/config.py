"""The two configurations of a neural avatar: the renderer's architecture and the fitting schedule.

Both are frozen dataclasses, validated in one place and written into the avatar folder's
``config.json``, so the folder alone rebuilds the renderer and says how it was fitted.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ehead_cli.errors import ConfigError
from ehead_cli.model.config import check_fields

SIZES = (256, 512)  # px: 256 is Stage II's image size (supplementary B.1); 512 for sharper video


@dataclass(frozen=True)
class NeuralConfig:
    """The differentiable renderer (``avatar.neural``), field by field:

    size:            square image side in pixels (the CLI offers 256 and 512; tests use smaller ones)
    learned_features: learned channels per vertex of the feature field (``avatar.field``)
    unshuffle:       the image network runs at size / unshuffle (pixel unshuffle in, pixel shuffle out:
                     full-resolution detail at a quarter of the cost for 2)
    channels:        channels of the U-Net's levels, finest first; one 2x down-sampling between levels
    pose_hidden:     hidden width of the MLP that turns the head pose into the bottleneck's FiLM
    """

    size: int = 256
    learned_features: int = 10
    unshuffle: int = 2
    channels: tuple[int, ...] = (32, 48, 64, 96, 128)
    pose_hidden: int = 64

    def validate(self) -> NeuralConfig:
        if self.size < 16:
            raise ConfigError(f"--size must be one of {', '.join(map(str, SIZES))}, got {self.size}")
        if self.unshuffle not in (1, 2, 4):
            raise ConfigError(f"avatar unshuffle must be 1, 2 or 4, got {self.unshuffle}")
        levels = len(self.channels)
        if levels < 2 or min(self.channels) < 1 or (self.size // self.unshuffle) % (1 << (levels - 1)):
            raise ConfigError(f"avatar channels {self.channels} do not fit a {self.size} px image "
                              f"at unshuffle {self.unshuffle}")
        if self.learned_features < 0 or self.pose_hidden < 1:
            raise ConfigError("avatar learned_features must be >= 0 and pose_hidden >= 1")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str) -> NeuralConfig:
        check_fields(cls, d, source, "renderer")
        d = dict(d)
        if "channels" in d:
            d["channels"] = tuple(int(c) for c in d["channels"])
        return cls(**d).validate()


@dataclass(frozen=True)
class FitConfig:
    """How ``ehead avatar fit`` fits a renderer to a video, field by field:

    steps:          optimiser steps (Adam)
    batch_size:     frames per step
    lr:             peak learning rate of the image network and background (cosine decay to 5 %)
    feature_lr:     learning rate of the per-vertex features
    warmup_steps:   linear warm-up from 0
    holdout:        fraction of each video's frames held out for the card's metrics: its last frames
    l1_weight, ssim_weight, vgg_weight: weights of L1, 1 - MS-SSIM and the VGG perceptual loss
                    (the last only with --vgg weights)
    mouth_weight:   extra L1 weight on the mouth box (its pixels count 1 + mouth_weight times)
    coverage_weight: weight of mean(mesh coverage x (1 - alpha)): the face is drawn by the network
                    where the mesh is, never left to the static background
    feature_decay:  L2 weight pulling the learned features toward 0, so vertices the video never
                    showed (deep in the mouth) keep the neutral value the network learned to read
    pose_jitter:    std of the noise added to the pose given to the network (rad and m): the pose
                    of one frame must not become that frame's name
    crop_scale:     side of the face-centred square crop, in face heights (brows to chin)
    background_init: "median" (the per-pixel median of the training frames: the static scene, and
                    the person at rest, which the coverage term keeps out of the face) or "flat"
                    (the mean colour of the frames' border: the network must draw the whole person)
    seed:           initialisation and the order of frames
    log_every:      steps per progress update
    eval_every:     steps between held-out evaluations reported while fitting (0: only after the
                    first step and at the end)
    ckpt_every:     steps between saved training states (for --resume)
    precision:      "auto" (bf16 autocast on GPUs with native bf16, fp32 elsewhere), "bf16" or "fp32"
    """

    steps: int = 1500
    batch_size: int = 2
    lr: float = 2e-3
    feature_lr: float = 1e-2
    warmup_steps: int = 100
    holdout: float = 0.1
    l1_weight: float = 0.16
    ssim_weight: float = 0.84
    vgg_weight: float = 0.1
    mouth_weight: float = 2.0
    coverage_weight: float = 1.0
    feature_decay: float = 1e-4
    pose_jitter: float = 0.01
    crop_scale: float = 2.4
    background_init: str = "median"
    seed: int = 0
    log_every: int = 10
    eval_every: int = 500
    ckpt_every: int = 500
    precision: str = "auto"

    def validate(self) -> FitConfig:
        if self.steps < 1 or self.batch_size < 1 or self.log_every < 1 or self.ckpt_every < 1:
            raise ConfigError("--steps, --batch-size, log_every and ckpt_every must be >= 1")
        if not (self.lr > 0 and self.feature_lr > 0):
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if not 0.0 < self.holdout < 0.5:
            raise ConfigError(f"the held-out fraction must be in (0, 0.5), got {self.holdout}")
        if min(self.l1_weight, self.ssim_weight, self.vgg_weight, self.mouth_weight, self.coverage_weight,
               self.feature_decay, self.pose_jitter) < 0 or self.warmup_steps < 0 or self.eval_every < 0:
            raise ConfigError("avatar loss weights, warm-up steps and pose jitter must be >= 0")
        if not self.crop_scale >= 1.0:
            raise ConfigError(f"the crop scale must be >= 1 face height, got {self.crop_scale}")
        if self.background_init not in ("median", "flat"):
            raise ConfigError(f"background_init must be median or flat, got {self.background_init!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str) -> FitConfig:
        check_fields(cls, d, source, "fit")
        return cls(**d).validate()
