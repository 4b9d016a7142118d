"""Videos of one person -> an avatar ``Capture`` (``ehead avatar fit VIDEO...``), tracked as ``ehead prepare`` tracks.

``read_capture`` reuses ``ehead prepare``'s ingest (frame-accurate 25 fps frames) and its landmark
tracker (MediaPipe landmarks + the face-model fit: built-in head by default, FLAME when given),
then makes the track head-centred with the clip's camera (``prepare.head_centred``), exactly as
``ehead prepare`` does, and crops it with ``ehead_cli.avatar.capture.make_capture``. Several videos
of one person from one static camera are tracked as one sequence (one identity shape, one rest
pose, one crop). It lives here, not in ``avatar/``, because the avatar layer sits below prepare.

Checks, each a one-line InputError before any fitting: a video under ``MIN_SECONDS``; a variable
frame rate (more than ``VFR_TOLERANT_FRACTION`` of the frame intervals off the median by over
``VFR_INTERVAL_TOLERANCE``); no face; a face in too few frames; two or more faces (MediaPipe face
detection on ``FACE_COUNT_SAMPLES`` frames spread over the video); videos of different sizes.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from ehead_cli.avatar.capture import Capture, make_capture
from ehead_cli.errors import InputError, first_line
from ehead_cli.face.base import FaceModel
from ehead_cli.layout import MOTION_FPS
from ehead_cli.prepare.head_centred import head_centred
from ehead_cli.prepare.ingest import read_video_frames
from ehead_cli.prepare.landmarks import FaceLandmarks, detect_landmarks, quiet_native_logs, require_mediapipe
from ehead_cli.prepare.tracker import TrackerConfig, fit_landmarks, focal_px

MIN_SECONDS = 1.0
VFR_INTERVAL_TOLERANCE = 0.25  # relative deviation of a frame interval from the median
VFR_TOLERANT_FRACTION = 0.05  # intervals allowed beyond it (a dropped frame here and there)
MIN_FACE_FRACTION = 0.5  # of the frames must have a tracked face
FACE_COUNT_SAMPLES = 8
FACE_SCORE = 0.5  # MediaPipe face detection confidence that counts as a face


# --- checks on a video ----------------------------------------------------------------------------
def frame_times(path: Path) -> list[Fraction]:
    """Sorted presentation times (s) of the video packets of ``path``, from demuxing (no decoding)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream (an avatar is fitted from a talking-face video)")
            stream = container.streams.video[0]
            times = sorted({Fraction(p.pts) * p.time_base for p in container.demux(stream)
                            if p.pts is not None and p.time_base is not None})
    except InputError:
        raise
    except Exception as err:  # PyAV raises many error types
        raise InputError(f"{path}: unreadable media file ({type(err).__name__}: {first_line(err)})") from None
    return times


def check_video(path: Path) -> tuple[Fraction, int, tuple[int, int]]:
    """(start time, frames at 25 fps, (height, width)) of a video fit for an avatar, or InputError."""
    times = frame_times(path)
    if len(times) < 2:
        raise InputError(f"{path}: the video stream holds {len(times)} frame(s); an avatar needs at least "
                         f"{MIN_SECONDS:g} s of video")
    intervals = np.array([float(b - a) for a, b in zip(times, times[1:], strict=False)])
    median = float(np.median(intervals))
    duration = float(times[-1] - times[0]) + median
    if duration < MIN_SECONDS:
        raise InputError(f"{path}: lasts {duration:.2f} s; an avatar needs at least {MIN_SECONDS:g} s of video")
    off = np.abs(intervals - median) > VFR_INTERVAL_TOLERANCE * median
    if off.mean() > VFR_TOLERANT_FRACTION:
        raise InputError(f"{path}: variable frame rate (frame intervals from {1000 * intervals.min():.0f} to "
                         f"{1000 * intervals.max():.0f} ms); re-encode it at a constant rate, e.g. "
                         f"ffmpeg -i IN -vf fps=25 OUT.mp4")
    return times[0], int(math.floor(duration * MOTION_FPS)), _video_size(path)


def _video_size(path: Path) -> tuple[int, int]:
    import av

    with av.open(str(path)) as container:
        ctx = container.streams.video[0].codec_context
        return int(ctx.height), int(ctx.width)


def count_faces(frames: np.ndarray) -> np.ndarray:
    """(K,) number of faces MediaPipe face detection (full range) finds in each (K, H, W, 3) frame."""
    require_mediapipe()
    from mediapipe.python.solutions import face_detection

    counts = []
    with quiet_native_logs(), face_detection.FaceDetection(model_selection=1,
                                                          min_detection_confidence=FACE_SCORE) as detector:
        for frame in frames:
            result = detector.process(np.ascontiguousarray(frame))
            counts.append(len(result.detections or []))
    return np.array(counts)



# --- the capture --------------------------------------------------------------------------------------
def read_capture(videos: list[str | os.PathLike], face: FaceModel, size: int, crop_scale: float,
                 holdout: float, progress=None) -> Capture:
    """Videos of one person -> a Capture (module docstring). ``progress(message)`` reports stages."""
    say = progress or (lambda _msg: None)
    paths = [Path(v).expanduser() for v in videos]
    for p in paths:
        if not p.is_file():
            raise InputError(f"{p}: video not found (VIDEO)")
    checked = [check_video(p) for p in paths]
    sizes = {c[2] for c in checked}
    if len(sizes) > 1:
        raise InputError(f"the videos have different sizes ({', '.join(f'{w}x{h}' for h, w in sorted(sizes))}); "
                         f"an avatar is fitted from one static camera")
    require_mediapipe()
    frames, marks, sources = [], [], []
    for p, (start, n, _) in zip(paths, checked, strict=True):
        say(f"reading {p.name}")
        video = read_video_frames(p, n, start)  # (n, H, W, 3) uint8 at 25 fps
        counts = count_faces(video[np.linspace(0, n - 1, min(n, FACE_COUNT_SAMPLES)).round().astype(int)])
        if (counts == 0).all():
            raise InputError(f"{p}: no face found in the video")
        if (counts >= 2).mean() >= 0.5:
            raise InputError(f"{p}: {int(np.median(counts[counts >= 2]))} faces in the video; an avatar is "
                             f"fitted from videos of one person alone")
        say(f"landmarks {p.name}")
        lm = detect_landmarks(video)
        if lm.found.mean() < MIN_FACE_FRACTION:
            raise InputError(f"{p}: a face was tracked in only {100 * lm.found.mean():.0f}% of the frames "
                             f"(need {100 * MIN_FACE_FRACTION:.0f}%)")
        frames.append(video)
        marks.append(lm)
        sources.append((str(p), n))
    H, W = sizes.pop()
    joined = FaceLandmarks(np.concatenate([m.points for m in marks]), np.concatenate([m.found for m in marks]),
                           np.concatenate([m.iris for m in marks]), (H, W))
    say("fitting the face model")
    track = fit_landmarks(face, joined, TrackerConfig())
    motion, camera = head_centred(face, track.shape, track.motion, focal_px(H, track.fov_deg), 0.5 * W, 0.5 * H, H, W)
    capture = make_capture(np.concatenate(frames), motion, track.shape, camera, joined.found, face, size, crop_scale,
                           holdout, [n for _, n in sources])
    capture.sources = sources
    capture.rmse_px = float(np.nanmean(track.rmse_px))
    return capture
