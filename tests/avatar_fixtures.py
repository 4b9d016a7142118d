"""Tiny avatars for the avatar tests: a talking, nodding built-in head rendered through a video
camera (the 'person'), its capture, and a few-step fit of a small renderer to it."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ehead_cli.avatar.capture import make_capture
from ehead_cli.avatar.config import FitConfig, NeuralConfig
from ehead_cli.face import BuiltinHead
from ehead_cli.face.builtin import EXPR_BLINK
from ehead_cli.layout import EXPR, JAW, MOTION_DIM, ROT, TRANS
from ehead_cli.render.clip_camera import ClipCamera
from ehead_cli.render.renderer import MeshRenderer

VIDEO_H, VIDEO_W = 72, 88  # px of the rendered 'video'
TINY = NeuralConfig(size=32, learned_features=4, unshuffle=2, channels=(8, 12), pose_hidden=8)
TINY_FIT = FitConfig(steps=40, batch_size=2, lr=5e-3, feature_lr=1e-2, warmup_steps=5, log_every=5, eval_every=0,
                     ckpt_every=10, crop_scale=2.4)


def video_camera() -> ClipCamera:
    """The camera of the rendered video: 1.1 m in front of the head, turned a little, 18 degrees."""
    angle = 0.1
    R = np.array([[np.cos(angle), 0, -np.sin(angle)], [0, 1, 0], [np.sin(angle), 0, np.cos(angle)]])
    focal = 0.5 * VIDEO_H / np.tan(np.radians(9.0))
    return ClipCamera.from_rt(R, np.array([0.005, -0.01, -1.1]), focal, VIDEO_W / 2 + 1.5, VIDEO_H / 2, VIDEO_H,
                              VIDEO_W)


def talking_motion(T: int, seed: int = 0) -> np.ndarray:
    """(T, 115) head-centred motion: the jaw opening and closing, a nod, a blink."""
    rng = np.random.default_rng(seed)
    t = np.arange(T) / 25.0
    m = np.zeros((T, MOTION_DIM), np.float32)
    m[:, JAW.start] = 0.12 * (0.5 + 0.5 * np.sin(2 * np.pi * 2.0 * t))
    m[:, ROT.start] = 0.04 * np.sin(2 * np.pi * 0.7 * t)
    m[:, ROT.start + 1] = 0.03 * np.cos(2 * np.pi * 0.5 * t)
    m[:, TRANS] = 0.002 * rng.standard_normal((T, 3)).cumsum(0) / np.sqrt(T)
    m[T // 3: T // 3 + 3, EXPR.start + EXPR_BLINK] = 1.0
    return m


@torch.no_grad()
def rendered_video(T: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, ClipCamera]:
    """(T, H, W, 3) uint8 frames of the built-in head, their motion, shape and the video camera."""
    face = BuiltinHead()
    camera = video_camera()
    shape = np.zeros(300, np.float32)
    shape[:4] = (0.8, -0.5, 0.3, 0.6)
    motion = talking_motion(T, seed)
    mesh = MeshRenderer(VIDEO_H, VIDEO_W, camera, background=(0.35, 0.55, 0.75))
    verts = face(torch.from_numpy(shape), torch.from_numpy(motion))
    frames = (mesh(verts, face.faces, face.vertex_colors).image.clamp(0, 1) * 255).round().byte().numpy()
    return frames, motion, shape, camera


def tiny_capture(T: int = 30, lengths: list[int] | None = None, size: int = TINY.size):
    frames, motion, shape, camera = rendered_video(T)
    return make_capture(frames, motion, shape, camera, np.ones(T, bool), BuiltinHead(), size, TINY_FIT.crop_scale,
                        TINY_FIT.holdout, lengths)


def tiny_fit(**changes) -> FitConfig:
    return dataclasses.replace(TINY_FIT, **changes)
