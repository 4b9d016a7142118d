"""The face trackers and speech-state labellers ``ehead prepare`` chooses from, and the options of a run.

``TRACKERS`` (``--tracker``) and ``LABELLERS`` (``--states``) map a name to what it needs and what it
does: ``check`` (its flags and assets, before any file is touched), whether it needs the MediaPipe
landmark pass over the video, and the function that does the work on one clip (a ``Clip``). A new
tracker or labeller is one entry here; the per-clip work (``prepare.clip``) and the option checks
(``check_options``) read these entries and name no method.

Trackers give the clip's camera-space track (``Track``: motion, shape, lip gap, the camera's
intrinsics), which ``prepare.clip`` makes head-centred; labellers give the per-frame listening /
speaking states and the scores they came from (``clips/<id>.scores.csv``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ehead_cli.errors import ConfigError, InputError
from ehead_cli.face.base import FaceModel
from ehead_cli.face.flame import FlameModel
from ehead_cli.face.loading import flame_configured
from ehead_cli.io.frames import FRAME_SIZE
from ehead_cli.prepare import ingest
from ehead_cli.prepare.gagavatar import load_gagavatar_track, track_intrinsics
from ehead_cli.prepare.landmarks import FaceLandmarks, face_boxes, require_mediapipe
from ehead_cli.prepare.smoothing import scores_to_states
from ehead_cli.prepare.talknet import load_talknet, resolve_talknet_path, talknet_face_crops, talknet_scores
from ehead_cli.prepare.tracker import TrackerConfig, fit_landmarks, focal_px, lip_gap
from ehead_cli.prepare.vad import silero_weights_path, vad_states

PIPELINE_VERSION = 2  # bump when a change makes earlier outputs stale (2: head-centred motion + camera)


@dataclass(frozen=True)
class PrepareOptions:
    """What every clip is prepared with (sent to the workers; part of the resume check).

    states: a ``LABELLERS`` name; tracker: a ``TRACKERS`` name; talknet: TalkNet-ASD
    weights (or EHEAD_TALKNET); gagavatar_track: folder of GAGAvatar tracker outputs, one
    sub-folder per video stem; flame: FLAME model (or EHEAD_FLAME; the built-in head otherwise);
    fov_deg: the landmark tracker's camera field of view (degrees); flame_landmarks: FLAME's 68-point
    landmark embedding (or EHEAD_FLAME_LANDMARKS, or the file next to the model) for tracking on FLAME;
    frames: write Stage II's frames (trackers with ``writes_frames`` only; ``prepare.pipeline``).
    """

    states: str = "vad"
    tracker: str = "landmarks"
    talknet: str | None = None
    gagavatar_track: str | None = None
    flame: str | None = None
    fov_deg: float | None = None
    flame_landmarks: str | None = None
    frames: bool = True

    @property
    def frame_size(self) -> int:
        """Side of the frames written (0: none)."""
        return FRAME_SIZE if self.frames and TRACKERS[self.tracker].writes_frames else 0

    def settings(self) -> dict:
        """The options that decide a clip's content (asset paths excluded: moving a file changes nothing)."""
        return {"states": self.states, "tracker": self.tracker, "fov_deg": self.fov_deg,
                "face": "flame" if flame_configured(self.flame) else "builtin", "version": PIPELINE_VERSION,
                "frames": self.frame_size}


@dataclass(frozen=True)
class Clip:
    """One video as the methods see it: ``audio`` (``ingest.IngestedAudio``, ``n_frames`` frames at
    25 fps), the face model, the landmark pass (when a chosen method needs it) with each frame's
    uint8 greyscale (T, H, W) where the labeller asked for it, and ``single``: the run's only video."""

    source: Path
    audio: ingest.IngestedAudio
    n_frames: int
    face: FaceModel
    options: PrepareOptions
    single: bool = False
    landmarks: FaceLandmarks | None = None
    grey: np.ndarray | None = None


@dataclass(frozen=True)
class Track:
    """A tracker's result: motion (T, 115) camera-space at 25 fps, shape (300,), lip gap (T,) metres,
    the camera's intrinsics (focal px, cx, cy, height, width) and the summary keys it adds."""

    motion: np.ndarray
    shape: np.ndarray
    lip_gap: np.ndarray
    intrinsics: tuple[float, float, float, int, int]
    summary: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Tracker:
    """``--tracker NAME``: ``track(clip)`` -> Track; ``check(options)`` raises on a missing flag or
    asset; ``needs_landmarks``: run the MediaPipe landmark pass first; ``writes_frames``: its track
    places the face in the video, so Stage II's frames can be cropped from it."""

    name: str
    help: str
    track: Callable[[Clip], Track]
    check: Callable[[PrepareOptions], None] = lambda options: None
    needs_landmarks: bool = False
    writes_frames: bool = False


@dataclass(frozen=True)
class Labeller:
    """``--states NAME``: ``label(clip, track, model)`` -> (states (T,) int8, scores: a ``frame``
    column and the score columns); ``load(options)`` loads its model once per worker (None: none);
    ``check(options)`` raises on a missing flag or asset; ``needs_landmarks`` / ``needs_grey``: it
    reads the landmark pass / the greyscale frames."""

    name: str
    help: str
    label: Callable[[Clip, Track, Any], tuple[np.ndarray, pd.DataFrame]]
    check: Callable[[PrepareOptions], None] = lambda options: None
    load: Callable[[PrepareOptions], Any] | None = None
    needs_landmarks: bool = False
    needs_grey: bool = False


# --- trackers -----------------------------------------------------------------------------------------
def _track_landmarks(clip: Clip) -> Track:
    """MediaPipe landmarks + the built-in fit of the face model (``prepare.tracker``)."""
    options = clip.options
    cfg = TrackerConfig() if options.fov_deg is None else TrackerConfig(fov_deg=options.fov_deg)
    track = fit_landmarks(clip.face, clip.landmarks, cfg)
    H, W = track.image_size
    return Track(track.motion, track.shape, track.lip_gap_m, (focal_px(H, track.fov_deg), 0.5 * W, 0.5 * H, H, W),
                 {"landmark_rmse_px": float(np.nanmean(track.rmse_px))})


def _gagavatar_source(options: PrepareOptions, video: Path, single: bool) -> Path:
    """The tracker output for ``video``: ``<track dir>/<stem>/`` (or the folder itself for a single video)."""
    root = Path(options.gagavatar_track).expanduser()
    for candidate in (root / video.stem, root / "outputs" / video.stem):
        if candidate.exists():
            return candidate
    if single:
        return root
    raise InputError(f"{video}: no GAGAvatar track for it (expected {root / video.stem}/smoothed.pkl; "
                     f"--gagavatar-track)")


def _track_gagavatar(clip: Clip) -> Track:
    """The GAGAvatar tracker's output for the video, resampled to the clip's 25 fps frames."""
    path = _gagavatar_source(clip.options, clip.source, clip.single)
    face = clip.face
    # the root-joint pivot correction applies to FLAME; the built-in head has no FLAME root joint
    track = load_gagavatar_track(path, face=face if isinstance(face, FlameModel) else None)
    chosen, n_source = ingest.source_frame_indices(clip.source, clip.n_frames, clip.audio.start)
    if len(track.keys) != n_source:
        raise InputError(f"{path}: the GAGAvatar track has {len(track.keys)} frames but {clip.source.name} has "
                         f"{n_source}; frames without a detected face cannot be aligned")
    motion, shape = track.motion[chosen], track.shape
    return Track(motion, shape, lip_gap(face, shape, motion), track_intrinsics())


def _check_gagavatar(options: PrepareOptions) -> None:
    if not options.gagavatar_track:
        raise ConfigError("--tracker gagavatar needs --gagavatar-track DIR (the GAGAvatar tracker's outputs)")
    if not Path(options.gagavatar_track).expanduser().exists():
        raise InputError(f"{options.gagavatar_track}: GAGAvatar track folder not found (--gagavatar-track)")


# --- labellers ----------------------------------------------------------------------------------------
def _label_vad(clip: Clip, track: Track, model: None) -> tuple[np.ndarray, pd.DataFrame]:
    """Silero VAD gated by the tracked mouth motion (``prepare.vad``)."""
    T = clip.n_frames
    labels = vad_states(clip.audio.audio, T, track.lip_gap)
    return labels.states, pd.DataFrame({"frame": np.arange(T), "score": labels.score, "voice": labels.voice,
                                        "mouth_gate": labels.gate})


def _label_talknet(clip: Clip, track: Track, model) -> tuple[np.ndarray, pd.DataFrame]:
    """TalkNet-ASD on the demo's crops around the landmark boxes of the greyscale frames, scored,
    smoothed, binarised."""
    crops = talknet_face_crops(clip.grey, face_boxes(clip.landmarks))
    logits = talknet_scores(model, crops, clip.audio.audio)
    states, smoothed = scores_to_states(logits, logits=True)
    return states, pd.DataFrame({"frame": np.arange(clip.n_frames), "score": smoothed, "talknet_logit": logits})


# --- the registries -----------------------------------------------------------------------------------
TRACKERS: Mapping[str, Tracker] = {t.name: t for t in (
    Tracker("landmarks", "needs the landmarks extra", _track_landmarks, needs_landmarks=True, writes_frames=True),
    Tracker("gagavatar", "imports tracker output", _track_gagavatar, check=_check_gagavatar),
)}

LABELLERS: Mapping[str, Labeller] = {s.name: s for s in (
    Labeller("vad", "offline default", _label_vad, check=lambda options: silero_weights_path()),
    Labeller("talknet", "TalkNet-ASD weights, --talknet", _label_talknet,
             check=lambda options: resolve_talknet_path(options.talknet),
             load=lambda options: load_talknet(options.talknet), needs_landmarks=True, needs_grey=True),
)}


def choices_help(registry: Mapping[str, Tracker] | Mapping[str, Labeller]) -> str:
    """``landmarks (needs the landmarks extra) or gagavatar (imports tracker output)``: a flag's choices."""
    items = [f"{name} ({m.help})" if m.help else name for name, m in registry.items()]
    return ", ".join(items[:-1]) + " or " + items[-1] if len(items) > 1 else items[0]


def needs_landmarks(options: PrepareOptions) -> bool:
    """Whether the clip's video goes through the landmark pass (the tracker's, or the labeller's face boxes)."""
    return TRACKERS[options.tracker].needs_landmarks or LABELLERS[options.states].needs_landmarks


def check_options(options: PrepareOptions) -> None:
    """Fail fast, before any file is touched: flags, assets and optional extras."""
    if options.states not in LABELLERS:
        raise ConfigError(f"--states must be one of {', '.join(LABELLERS)}, got {options.states!r}")
    if options.tracker not in TRACKERS:
        raise ConfigError(f"--tracker must be one of {', '.join(TRACKERS)}, got {options.tracker!r}")
    LABELLERS[options.states].check(options)
    if needs_landmarks(options):
        require_mediapipe()
    TRACKERS[options.tracker].check(options)
    if options.fov_deg is not None and not 0.0 < options.fov_deg < 180.0:
        raise ConfigError(f"the tracker's field of view must be in (0, 180) degrees, got {options.fov_deg}")
