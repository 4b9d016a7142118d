"""The renderer interface: what every renderer of motion offers, whatever draws the pixels.

A renderer turns frames of (shape, motion) into images of one person seen through a camera:

* ``size`` (square image side, px), ``device``, ``batch_size`` (frames per call when it makes
  video frames) and ``needs`` (the name of the face model its motion must be for: "builtin" or
  "flame"; an avatar fitted on one cannot draw the other's coefficients);
* ``images(shape, motion, camera=None)`` -> an object with ``.image`` (N, S, S, 3) float in
  [0, 1], differentiable with respect to the motion (Stage II trains through it); ``camera`` (a
  ``render.clip_camera.ClipCamera`` of S x S images) replaces the renderer's own for the call, so
  each clip is seen through the camera of its video;
* ``render(shape, motion)`` -> (N, S, S, 3) uint8 on the CPU and ``iter_frames(shape, motion)``
  -> (S, S, 3) uint8 frames one by one, for video (``io.video.write_mp4``) and the server's JPEGs.

``FrameSource`` implements the last two for any renderer that gives ``frame_inputs`` (validated
inputs on its device) and ``frame_images`` (float images of a batch): the built-in mesh
``render.Renderer`` and the trainable avatars of ``avatar.mesh`` and ``avatar.neural``. Which
renderer a command gets (``builtin``, an avatar folder, a Stage-II checkpoint) is decided in one
place, ``avatar.renderers``; the trainable kinds an avatar folder can hold ("neural", "mesh") are
registered in ``avatar.kinds``: a new renderer is a ``FrameSource`` plus one registration there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from ehead_cli.layout import MOTION_DIM, N_SHAPE


@runtime_checkable
class FrameRenderer(Protocol):
    """The interface every renderer offers (module docstring)."""

    batch_size: int

    @property
    def size(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def needs(self) -> str: ...

    def images(self, shape: torch.Tensor, motion: torch.Tensor, camera: Any = None) -> Any: ...

    def render(self, shape: torch.Tensor, motion: torch.Tensor) -> torch.Tensor: ...

    def iter_frames(self, shape: torch.Tensor, motion: torch.Tensor) -> Iterator[np.ndarray]: ...


class FrameSource:
    """Uint8 video frames from a renderer's float images, ``batch_size`` frames per call. A
    subclass gives ``size``, ``device``, ``batch_size`` and ``frame_images`` ((n, S, S, 3) float in
    [0, 1]); ``frame_inputs`` (checked (N|1, 300), (N, 115) on its device) is float32 unless it says
    otherwise."""

    batch_size: int
    size: int

    device: torch.device

    def frame_inputs(self, shape: torch.Tensor, motion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 on ``device`` by default; a renderer computing in another dtype overrides it."""
        return check_frames(shape, motion, self.device)

    def frame_images(self, shape: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def render(self, shape: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """shape (300,) or (N, 300), motion (N, 115) -> (N, S, S, 3) uint8 on the CPU."""
        chunks = list(self._uint8_batches(shape, motion))
        return torch.cat(chunks) if chunks else torch.zeros(0, self.size, self.size, 3, dtype=torch.uint8)

    def iter_frames(self, shape: torch.Tensor, motion: torch.Tensor) -> Iterator[np.ndarray]:
        """Yield (S, S, 3) uint8 frames one by one, rendering ``batch_size`` at a time; feed to
        ``ehead_cli.io.video.write_mp4`` to stream a video without holding it in memory."""
        for batch in self._uint8_batches(shape, motion):
            yield from batch.numpy()

    @torch.no_grad()
    def _uint8_batches(self, shape: torch.Tensor, motion: torch.Tensor) -> Iterator[torch.Tensor]:
        shape, motion = self.frame_inputs(shape, motion)
        for start in range(0, motion.shape[0], self.batch_size):
            stop = start + self.batch_size
            sub_shape = shape if shape.shape[0] == 1 else shape[start:stop]
            yield to_uint8(self.frame_images(sub_shape, motion[start:stop])).cpu()


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """(..., 3) float in [0, 1] -> uint8 in [0, 255], rounded."""
    return (image.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)


def check_frames(shape: torch.Tensor, motion: torch.Tensor, device: torch.device,
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate and bring to (1 or N, 300) shape and (N, 115) motion in ``dtype`` on ``device``;
    ValueError on wrong shapes."""
    shape = torch.as_tensor(shape, device=device).to(dtype)
    motion = torch.as_tensor(motion, device=device).to(dtype)
    if motion.dim() == 1:
        motion = motion[None]
    if shape.dim() == 1:
        shape = shape[None]
    if motion.dim() != 2 or motion.shape[1] != MOTION_DIM:
        raise ValueError(f"motion must be (N, {MOTION_DIM}), got {tuple(motion.shape)}")
    if shape.dim() != 2 or shape.shape[1] != N_SHAPE or shape.shape[0] not in (1, motion.shape[0]):
        raise ValueError(f"shape must be ({N_SHAPE},) or ({motion.shape[0]}, {N_SHAPE}), got {tuple(shape.shape)}")
    return shape, motion
