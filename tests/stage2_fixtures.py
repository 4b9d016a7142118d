"""Tiny data for the Stage-II tests: the toy dataset of conftest with video frames of the built-in
head rendered from a 'clean' motion whose jaw opens wider than the labels say (the labels are
attenuated, as a tracker's are), at a small size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from conftest import write_dataset

from ehead_cli.face import BuiltinHead
from ehead_cli.io.dataset import clips_dir, motion_path, read_manifest
from ehead_cli.io.frames import write_frames
from ehead_cli.io.motionfile import Motion, load_motion, save_motion
from ehead_cli.layout import JAW
from ehead_cli.render import Renderer
from ehead_cli.render.clip_camera import ClipCamera

SIZE = 32  # px of the test frames (the tiny avatar's size)
LABEL_GAIN = 0.5  # the labels' jaw / the frames' jaw


def frames_dataset(root: Path, size: int = SIZE, clips: dict[str, tuple[str, float]] | None = None) -> Path:
    """A dataset folder whose clips have frames: the head rendered from the clean motion (jaw
    1 / LABEL_GAIN times the label's), the labels left as write_dataset made them."""
    write_dataset(root, clips or {"a": ("train", 4.4), "b": ("train", 4.4), "c": ("val", 4.4), "d": ("test", 4.4)})
    renderer = Renderer(BuiltinHead().eval(), size=size)
    camera = ClipCamera.from_camera(renderer.mesh.camera, size, size)
    for cid in read_manifest(root)["id"]:
        m = load_motion(motion_path(root, cid))
        shape = np.zeros(300, np.float32)  # one person
        save_motion(motion_path(root, cid), Motion(m.motion, shape, m.states, m.fps))
        clean = m.motion.copy()
        clean[:, JAW] /= LABEL_GAIN
        with torch.no_grad():
            write_frames(root, cid, renderer.iter_frames(shape, clean), camera)
    assert all(p.is_file() for p in clips_dir(root).glob("*.frames.json"))
    return root
