"""One video -> one prepared clip (``ehead prepare``'s per-video work, steps 1-6 of ``prepare.pipeline``).

``prepare_clip`` ingests the video, runs the landmark pass when the chosen tracker or labeller
needs it, tracks and labels it with the methods the options name (``prepare.methods``), makes the
track head-centred, writes Stage II's frames where the tracker places the face in the video, then
the clip's files, each atomically, the ``.json`` marker last. The loaded models (face model,
labeller weights) are cached per process, so each worker loads them once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ehead_cli.avatar.capture import crop_frames, crop_square
from ehead_cli.avatar.config import FitConfig
from ehead_cli.errors import InputError
from ehead_cli.face.loading import load_face_model
from ehead_cli.io.atomic import atomic_path
from ehead_cli.io.dataset import MIN_CLIP_FRAMES
from ehead_cli.io.frames import FRAME_SIZE, FramesInfo, write_frames
from ehead_cli.io.motionfile import Motion, save_motion
from ehead_cli.io.states import write_states
from ehead_cli.layout import MOTION_FPS, SAMPLE_RATE, SPEAK
from ehead_cli.prepare import ingest
from ehead_cli.prepare.head_centred import head_centred
from ehead_cli.prepare.landmarks import detect_landmarks
from ehead_cli.prepare.manifest import clip_files, manifest_row, source_fingerprint
from ehead_cli.prepare.methods import LABELLERS, TRACKERS, Clip, PrepareOptions, needs_landmarks
from ehead_cli.prepare.talknet import to_grey

CROP_BATCH = 64  # video frames cropped at a time while writing the frames


class _Models:
    """Per-process cache of the loaded models (each worker loads them once)."""

    face = None
    labellers: dict[str, Any] = {}


def _face(options: PrepareOptions):
    if _Models.face is None:
        _Models.face = load_face_model(options.flame, landmarks=options.flame_landmarks)
    return _Models.face


def load_models(options: PrepareOptions) -> None:
    """Load (once per process) the face model and the chosen labeller's model."""
    _face(options)
    labeller = LABELLERS[options.states]
    if labeller.load is not None and labeller.name not in _Models.labellers:
        _Models.labellers[labeller.name] = labeller.load(options)


def prepare_clip(source: Path, clip_id: str, clips_dir: Path, options: PrepareOptions, single: bool = False) -> dict:
    """Prepare one video into ``clips_dir``; returns its manifest row. Raises EheadError for bad input."""
    tracker, labeller = TRACKERS[options.tracker], LABELLERS[options.states]
    probe = ingest.probe_media(source)
    audio = ingest.load_clip_audio(source)
    ingest.check_coverage(probe, audio)
    warnings = ingest.duration_warnings(probe, audio, MIN_CLIP_FRAMES / MOTION_FPS)
    T = audio.n_frames
    face = _face(options)
    landmarks, grey = None, None
    summary: dict = {}

    if needs_landmarks(options):
        frames = ingest.iter_video_frames(source, T, audio.start)
        kept: list[np.ndarray] = []  # the greyscale frames, kept from the landmark pass
        landmarks = detect_landmarks(_keeping_grey(frames, kept) if labeller.needs_grey else frames)
        summary["face_found"] = float(landmarks.found.mean())
        if not landmarks.found.any():
            raise InputError(f"{source}: no face found in any frame")
        grey = np.stack(kept) if labeller.needs_grey else None

    clip = Clip(source, audio, T, face, options, single, landmarks, grey)
    track = tracker.track(clip)
    summary.update(track.summary)
    motion, camera = head_centred(face, track.shape, track.motion, *track.intrinsics)
    if options.frame_size:
        frames = write_clip_frames(source, T, audio.start, motion, track.shape, camera, landmarks.found, face,
                                   clips_dir.parent, clip_id, options.frame_size)
        summary["frames"] = {"size": frames.size, "crop": list(frames.crop)}
    states, scores = labeller.label(clip, track, _Models.labellers.get(labeller.name))

    files = clip_files(clips_dir, clip_id)
    with atomic_path(files["audio"]) as tmp:
        sf.write(str(tmp), np.clip(audio.audio, -1.0, 1.0), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    save_motion(files["motion"], Motion(motion, track.shape, states, MOTION_FPS, camera))
    write_states(files["states"], states, layout="frames")
    with atomic_path(files["scores"]) as tmp:
        scores.round(5).to_csv(tmp, index=False)
    info = {
        "id": clip_id,
        "source": source_fingerprint(source),
        "settings": options.settings(),
        "duration": audio.duration,
        "n_frames": T,
        "speak_fraction": float((states == SPEAK).mean()),
        "source_fps": probe.source_fps,
        "width": probe.width,
        "height": probe.height,
        **summary,
        "warnings": warnings,
    }
    with atomic_path(files["info"]) as tmp:  # last: its presence marks the clip finished
        tmp.write_text(json.dumps(info, indent=1))
    return manifest_row(info)


def write_clip_frames(source: Path, n_frames: int, start, motion: np.ndarray, shape: np.ndarray, camera, found,
                      face, root: Path, clip_id: str, size: int = FRAME_SIZE) -> FramesInfo:
    """Stage II's frames of a clip (``prepare.pipeline``, step 6): the video's ``n_frames`` frames at
    25 fps from ``start``, cropped to the avatar capture's square of the clip's head-centred ``motion``
    seen by the video's ``camera`` (``found``: the frames with a tracked face), streamed to the frames MP4."""
    (x0, y0, side), crop_camera = crop_square(motion, shape, camera, found, face, size, FitConfig().crop_scale)

    def crops():
        batch = []
        for frame in ingest.iter_video_frames(source, n_frames, start):
            batch.append(frame)
            if len(batch) == CROP_BATCH:
                yield from crop_frames(np.stack(batch), x0, y0, side, size).numpy()
                batch = []
        if batch:
            yield from crop_frames(np.stack(batch), x0, y0, side, size).numpy()

    return write_frames(root, clip_id, crops(), crop_camera, (x0, y0, side), (camera.height, camera.width))


def _keeping_grey(frames: Iterator[np.ndarray], grey: list[np.ndarray]) -> Iterator[np.ndarray]:
    """Pass ``frames`` through, appending each one's uint8 greyscale (H, W) to ``grey`` (a third of RGB)."""
    for f in frames:
        grey.append(to_grey(f[None])[0].round().clamp(0, 255).byte().numpy())
        yield f
