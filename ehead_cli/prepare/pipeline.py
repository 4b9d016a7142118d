"""``ehead prepare``: talking-face videos -> a dataset folder that ``ehead train --data`` reads.

Per input video (any container PyAV reads), in a worker:

1. ingest (``ingest``): 16 kHz mono audio; the clip has T = ceil(samples / 640) frames at 25 fps;
   video frames resampled onto those instants;
2. track (``tracker="landmarks"``: MediaPipe landmarks + the built-in fit of the face model;
   ``"gagavatar"``: import ``<gagavatar_track>/<video stem>/`` from the GAGAvatar tracker);
3. label listening/speaking (``states="vad"``: Silero VAD gated by the tracked mouth motion;
   ``"talknet"``: TalkNet-ASD on the demo's face crops, boxes from the landmarks);
4. convert the camera-space track to head-centred motion plus the clip's camera
   (``head_centred``; docs/formats.md);
5. write ``clips/<id>.flac``, ``clips/<id>.npz`` (motion, shape, states, camera), ``clips/<id>.states.csv``
   (``frame,state``), ``clips/<id>.scores.csv`` (the continuous score and its parts) and, last,
   ``clips/<id>.json`` (source, settings, summary), each atomically;
6. with the landmark tracker (and unless ``frames=False``), Stage II's frames: the video decoded a
   second time and cropped, frame by frame, to the face-centred square that ``ehead avatar fit``
   crops from the same video (``avatar.capture.crop_square``, resampled to 256 px), as
   ``clips/<id>.frames.mp4`` + ``.frames.json`` with the crop's camera (``ehead_cli.io.frames``;
   written before the ``.json``). The GAGAvatar tracker works on its own crops, whose placement in
   the video its output does not keep, so its clips get no frames.

The ``.json`` marks a finished clip: a rerun skips every clip whose ``.json`` names the same source
file (path, size, modification time) and settings and whose files are all there, so an
interrupted run resumes where it stopped. ``manifest.csv`` is rebuilt from the ``.json`` files at
the end of every run (after all clip files exist), listing every finished clip in the folder.

Clip ids are the file stem with characters outside [A-Za-z0-9_.-] replaced by '_'; a stem taken
by another source gets '-' and 8 hex digits of its path's SHA-1. The split is a fixed function of
the id (``ehead_cli.io.dataset.split_for``), so adding files never moves a clip between splits.

Files that fail (unreadable, no audio, no face, ...) are reported with a one-line reason and
skipped; the rest are finished. Parallelism is across files (``workers`` processes).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from ehead_cli.avatar.capture import crop_frames, crop_square
from ehead_cli.avatar.config import FitConfig
from ehead_cli.errors import ConfigError, EheadError, InputError, first_line
from ehead_cli.face.flame import FlameModel
from ehead_cli.face.loading import flame_configured, load_face_model
from ehead_cli.io.atomic import atomic_path
from ehead_cli.io.dataset import MANIFEST, MIN_CLIP_FRAMES, clip_id_for, frames_files, split_for
from ehead_cli.io.dataset import clips_dir as dataset_clips_dir
from ehead_cli.io.dataset import write_manifest as write_manifest_file
from ehead_cli.io.frames import FRAME_SIZE, FramesInfo, write_frames
from ehead_cli.io.motionfile import Motion, save_motion
from ehead_cli.io.states import write_states
from ehead_cli.layout import MOTION_FPS, SAMPLE_RATE, SPEAK
from ehead_cli.prepare import ingest
from ehead_cli.prepare.gagavatar import load_gagavatar_track, track_intrinsics
from ehead_cli.prepare.head_centred import head_centred
from ehead_cli.prepare.landmarks import detect_landmarks, face_boxes, require_mediapipe
from ehead_cli.prepare.smoothing import scores_to_states
from ehead_cli.prepare.talknet import load_talknet, resolve_talknet_path, talknet_face_crops, talknet_scores, to_grey
from ehead_cli.prepare.tracker import TrackerConfig, fit_landmarks, focal_px, lip_gap
from ehead_cli.prepare.vad import silero_weights_path, vad_states

STATES_METHODS = ("vad", "talknet")
TRACKERS = ("landmarks", "gagavatar")
MEDIA_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".flv", ".wmv", ".ts",
                  ".mts", ".m2ts", ".3gp", ".ogv")
PIPELINE_VERSION = 2  # bump when a change makes earlier outputs stale (2: head-centred motion + camera)
CROP_BATCH = 64  # video frames cropped at a time while writing the frames


@dataclass(frozen=True)
class PrepareOptions:
    """What every clip is prepared with (sent to the workers; part of the resume check).

    states: "vad" or "talknet"; tracker: "landmarks" or "gagavatar"; talknet: TalkNet-ASD
    weights (or EHEAD_TALKNET); gagavatar_track: folder of GAGAvatar tracker outputs, one
    sub-folder per video stem; flame: FLAME model (or EHEAD_FLAME; the built-in head otherwise);
    fov_deg: the landmark tracker's camera field of view (degrees); flame_landmarks: FLAME's 68-point
    landmark embedding (or EHEAD_FLAME_LANDMARKS, or the file next to the model) for tracking on FLAME;
    frames: write Stage II's frames (landmark tracker only; module docstring).
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
        return FRAME_SIZE if self.frames and self.tracker == "landmarks" else 0

    def settings(self) -> dict:
        """The options that decide a clip's content (asset paths excluded: moving a file changes nothing)."""
        return {"states": self.states, "tracker": self.tracker, "fov_deg": self.fov_deg,
                "face": "flame" if flame_configured(self.flame) else "builtin", "version": PIPELINE_VERSION,
                "frames": self.frame_size}


@dataclass
class PrepareReport:
    """What a run did. done/skipped: clip ids prepared now / found finished; failed: (clip id, or
    the path when it does not exist, and a one-line reason); manifest: the manifest written (every
    finished clip in the folder)."""

    out_dir: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    manifest: pd.DataFrame | None = None

    @property
    def ok(self) -> bool:
        return not self.failed


# --- inputs and ids ---------------------------------------------------------------------------------
def find_inputs(inputs: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """(videos, missing): files as given and folders searched recursively for ``MEDIA_SUFFIXES``,
    sorted, duplicates removed; and the inputs that do not exist. InputError when there is no video."""
    inputs = list(inputs)
    found: list[Path] = []
    missing: list[Path] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            found += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in MEDIA_SUFFIXES)
        elif p.is_file():
            found.append(p)
        else:
            missing.append(p)
    unique = list(dict.fromkeys(q.resolve() for q in found))
    if not unique and missing and len(missing) == len(inputs):
        raise InputError(f"{missing[0]}: not found" + (f" (nor {len(missing) - 1} other input(s))"
                                                       if len(missing) > 1 else ""))
    if not unique:
        raise InputError(f"no video files in {', '.join(str(i) for i in inputs) or 'the arguments'} "
                         f"(VIDEO_OR_FOLDER; looked for {', '.join(MEDIA_SUFFIXES)})")
    return unique, missing


def _path_hash(path: Path) -> str:
    return hashlib.sha1(str(path).encode()).hexdigest()[:8]


def assign_ids(sources: Sequence[Path], clips_dir: Path) -> dict[Path, str]:
    """A clip id per source (see the module docstring): the stem unless another source claims it
    (in this run, or a finished clip of the folder)."""
    by_stem: dict[str, list[Path]] = {}
    for s in sources:
        by_stem.setdefault(clip_id_for(s.stem), []).append(s)
    ids = {}
    for stem, group in by_stem.items():
        previous = _read_json(clips_dir / f"{stem}.json")
        owner = Path(previous["source"]["path"]) if previous else None
        for s in group:
            shared = len(group) > 1 or (owner is not None and owner != s)
            ids[s] = f"{stem}-{_path_hash(s)}" if shared else stem
    return ids


def source_fingerprint(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def clip_files(clips_dir: Path, clip_id: str) -> dict[str, Path]:
    names = {"audio": ".flac", "motion": ".npz", "states": ".states.csv", "scores": ".scores.csv", "info": ".json"}
    return {k: clips_dir / f"{clip_id}{suffix}" for k, suffix in names.items()}


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("source"), dict) else None


def is_finished(clips_dir: Path, clip_id: str, source: Path, options: PrepareOptions) -> bool:
    """True when clip ``clip_id`` was finished from this very ``source`` with these settings."""
    files = list(clip_files(clips_dir, clip_id).values())
    if options.frame_size:
        files += frames_files(clips_dir.parent, clip_id)
    info = _read_json(clips_dir / f"{clip_id}.json")
    return (info is not None and info["source"] == source_fingerprint(source)
            and info.get("settings") == options.settings() and all(p.is_file() for p in files))


# --- one clip ------------------------------------------------------------------------------------------
class _Models:
    """Per-process cache of the loaded models (each worker loads them once)."""

    face = None
    talknet = None


def _face(options: PrepareOptions):
    if _Models.face is None:
        _Models.face = load_face_model(options.flame, landmarks=options.flame_landmarks)
    return _Models.face


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


def prepare_clip(source: Path, clip_id: str, clips_dir: Path, options: PrepareOptions, single: bool = False) -> dict:
    """Prepare one video into ``clips_dir``; returns its manifest row. Raises EheadError for bad input."""
    probe = ingest.probe_media(source)
    audio = ingest.load_clip_audio(source)
    ingest.check_coverage(probe, audio)
    warnings = ingest.duration_warnings(probe, audio, MIN_CLIP_FRAMES / MOTION_FPS)
    T = audio.n_frames
    face = _face(options)
    landmarks = None
    summary: dict = {}
    grey: list[np.ndarray] = []  # TalkNet's greyscale frames, kept from the landmark pass

    if options.tracker == "landmarks" or options.states == "talknet":
        frames = ingest.iter_video_frames(source, T, audio.start)
        landmarks = detect_landmarks(_keeping_grey(frames, grey) if options.states == "talknet" else frames)
        summary["face_found"] = float(landmarks.found.mean())
        if not landmarks.found.any():
            raise InputError(f"{source}: no face found in any frame")

    if options.tracker == "landmarks":
        cfg = TrackerConfig() if options.fov_deg is None else TrackerConfig(fov_deg=options.fov_deg)
        track = fit_landmarks(face, landmarks, cfg)
        motion, shape, gap = track.motion, track.shape, track.lip_gap_m
        summary["landmark_rmse_px"] = float(np.nanmean(track.rmse_px))
        H, W = track.image_size
        intrinsics = (focal_px(H, track.fov_deg), 0.5 * W, 0.5 * H, H, W)
    else:
        motion, shape = _import_gagavatar(source, T, audio.start, options, face, single)
        gap = lip_gap(face, shape, motion)
        intrinsics = track_intrinsics()
    motion, camera = head_centred(face, shape, motion, *intrinsics)
    if options.frame_size:
        frames = write_clip_frames(source, T, audio.start, motion, shape, camera, landmarks.found, face,
                                   clips_dir.parent, clip_id, options.frame_size)
        summary["frames"] = {"size": frames.size, "crop": list(frames.crop)}

    if options.states == "vad":
        labels = vad_states(audio.audio, T, gap)
        states = labels.states
        scores = pd.DataFrame({"frame": np.arange(T), "score": labels.score, "voice": labels.voice,
                               "mouth_gate": labels.gate})
    else:
        states, scores = _talknet_states(np.stack(grey), T, audio, landmarks)

    files = clip_files(clips_dir, clip_id)
    with atomic_path(files["audio"]) as tmp:
        sf.write(str(tmp), np.clip(audio.audio, -1.0, 1.0), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    save_motion(files["motion"], Motion(motion, shape, states, MOTION_FPS, camera))
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
    """Stage II's frames of a clip (module docstring, step 6): the video's ``n_frames`` frames at 25 fps
    from ``start``, cropped to the avatar capture's square of the clip's head-centred ``motion`` seen
    by the video's ``camera`` (``found``: the frames with a tracked face), streamed to the frames MP4."""
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


def _import_gagavatar(source: Path, T: int, start, options: PrepareOptions, face, single: bool):
    """GAGAvatar track of ``source`` -> (motion (T, 115) at 25 fps, shape (300,))."""
    path = _gagavatar_source(options, source, single)
    # the root-joint pivot correction applies to FLAME; the built-in head has no FLAME root joint
    track = load_gagavatar_track(path, face=face if isinstance(face, FlameModel) else None)
    chosen, n_source = ingest.source_frame_indices(source, T, start)
    if len(track.keys) != n_source:
        raise InputError(f"{path}: the GAGAvatar track has {len(track.keys)} frames but {source.name} has "
                         f"{n_source}; frames without a detected face cannot be aligned")
    return track.motion[chosen], track.shape


def _keeping_grey(frames: Iterator[np.ndarray], grey: list[np.ndarray]) -> Iterator[np.ndarray]:
    """Pass ``frames`` through, appending each one's uint8 greyscale (H, W) to ``grey`` (a third of RGB)."""
    for f in frames:
        grey.append(to_grey(f[None])[0].round().clamp(0, 255).byte().numpy())
        yield f


def _talknet_states(grey: np.ndarray, T: int, audio, landmarks) -> tuple[np.ndarray, pd.DataFrame]:
    """TalkNet-ASD states from the clip's (T, H, W) greyscale frames: the demo's crops around the
    landmark boxes, scored, smoothed, binarised."""
    crops = talknet_face_crops(grey, face_boxes(landmarks))
    logits = talknet_scores(_Models.talknet, crops, audio.audio)
    states, smoothed = scores_to_states(logits, logits=True)
    return states, pd.DataFrame({"frame": np.arange(T), "score": smoothed, "talknet_logit": logits})


def manifest_row(info: dict) -> dict:
    """The manifest row of a finished clip's ``.json``."""
    row = {"id": info["id"], "split": split_for(info["id"]), "duration": float(info["duration"]),
           "n_frames": int(info["n_frames"]), "source": Path(info["source"]["path"]).name,
           "states": info["settings"]["states"], "tracker": info["settings"]["tracker"],
           "speak_fraction": round(float(info["speak_fraction"]), 4)}
    for key in ("face_found", "landmark_rmse_px"):
        if key in info:
            row[key] = round(float(info[key]), 4)
    return row


def write_manifest(out_dir: Path) -> pd.DataFrame:
    """Rebuild ``manifest.csv`` from every finished clip in ``out_dir/clips`` (atomically)."""
    rows = []
    clips_dir = dataset_clips_dir(out_dir)
    for path in sorted(clips_dir.glob("*.json")):
        info = _read_json(path)
        if info is None or info.get("id") != path.stem:
            continue
        if all(p.is_file() for p in clip_files(clips_dir, path.stem).values()):
            rows.append(manifest_row(info))
    manifest = pd.DataFrame(rows)
    if rows:
        write_manifest_file(out_dir, manifest)
    else:  # no finished clip: no manifest (a header-only one would look like a dataset)
        (out_dir / MANIFEST).unlink(missing_ok=True)
    return manifest


# --- the batch -------------------------------------------------------------------------------------------
def check_options(options: PrepareOptions) -> None:
    """Fail fast, before any file is touched: flags, assets and optional extras."""
    if options.states not in STATES_METHODS:
        raise ConfigError(f"--states must be one of {', '.join(STATES_METHODS)}, got {options.states!r}")
    if options.tracker not in TRACKERS:
        raise ConfigError(f"--tracker must be one of {', '.join(TRACKERS)}, got {options.tracker!r}")
    if options.states == "vad":
        silero_weights_path()
    if options.states == "talknet":
        resolve_talknet_path(options.talknet)
    if options.tracker == "landmarks" or options.states == "talknet":  # TalkNet's face boxes come from landmarks
        require_mediapipe()
    if options.tracker == "gagavatar":
        if not options.gagavatar_track:
            raise ConfigError("--tracker gagavatar needs --gagavatar-track DIR (the GAGAvatar tracker's outputs)")
        if not Path(options.gagavatar_track).expanduser().exists():
            raise InputError(f"{options.gagavatar_track}: GAGAvatar track folder not found (--gagavatar-track)")
    if options.fov_deg is not None and not 0.0 < options.fov_deg < 180.0:
        raise ConfigError(f"the tracker's field of view must be in (0, 180) degrees, got {options.fov_deg}")


def _init_worker(options: PrepareOptions, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _load_models(options)


def _load_models(options: PrepareOptions) -> None:
    _face(options)
    if options.states == "talknet" and _Models.talknet is None:
        _Models.talknet = load_talknet(options.talknet)


def _run_one(source: Path, clip_id: str, clips_dir: Path, options: PrepareOptions, single: bool) \
        -> tuple[str, dict | None, str | None]:
    """(clip id, manifest row or None, one-line failure or None); never raises for a bad file. The
    clip's warnings are in the row under "warnings"."""
    try:
        row = prepare_clip(source, clip_id, clips_dir, options, single)
        row["warnings"] = _read_json(clips_dir / f"{clip_id}.json").get("warnings", [])
        return clip_id, row, None
    except EheadError as err:
        return clip_id, None, str(err)
    except Exception as err:  # a decoder or numeric failure on one file must not stop the batch
        return clip_id, None, f"{source}: {type(err).__name__}: {first_line(err)}"


def prepare(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, states: str = "vad",
            tracker: str = "landmarks", workers: int = 1, talknet: str | os.PathLike | None = None,
            gagavatar_track: str | os.PathLike | None = None, flame: str | os.PathLike | None = None,
            fov_deg: float | None = None, progress: bool = True,
            on_result: Callable[[str, str, str | None], None] | None = None,
            flame_landmarks: str | os.PathLike | None = None, frames: bool = True) -> PrepareReport:
    """Prepare every video in ``inputs`` (files or folders) into the dataset folder ``out_dir``.

    Returns a report; the caller decides the exit status (``report.ok``). Raises ConfigError,
    AssetError or InputError (one line) before any work when a flag, asset or extra is wrong.
    ``on_result(clip_id, status, message)`` is called per file with status done/skipped/failed.
    """
    options = PrepareOptions(states, tracker, _str(talknet), _str(gagavatar_track), _str(flame), fov_deg,
                             _str(flame_landmarks), frames)
    check_options(options)
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    sources, missing = find_inputs(inputs)
    out = Path(out_dir).expanduser()
    clips_dir = dataset_clips_dir(out)
    try:
        clips_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{out}: cannot create the dataset folder here ({err.strerror or err}) (--out)") from None
    ids = assign_ids(sources, clips_dir)
    report = PrepareReport(out)

    def record(clip_id: str, status: str, message: str | None) -> None:
        if status == "done":
            report.done.append(clip_id)
        elif status == "skipped":
            report.skipped.append(clip_id)
        else:
            report.failed.append((clip_id, message or "failed"))
        if on_result is not None:
            on_result(clip_id, status, message)

    for path in missing:
        record(str(path), "failed", f"{path}: no such file or folder (VIDEO_OR_FOLDER)")
    todo = []
    for s in sources:
        if is_finished(clips_dir, ids[s], s, options):
            record(ids[s], "skipped", None)
        else:
            todo.append(s)
    single = len(sources) == 1
    with _progress_bar(progress, len(todo)) as advance:
        if todo and workers == 1:
            _load_models(options)
            for s in todo:
                clip_id, row, err = _run_one(s, ids[s], clips_dir, options, single)
                record(clip_id, "failed" if err else "done", err)
                advance(clip_id, err, row["warnings"] if row else [])
        elif todo:
            import multiprocessing

            threads = max(1, (os.cpu_count() or 1) // workers)
            context = multiprocessing.get_context("spawn")  # torch and MediaPipe are not fork-safe
            with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context,
                                     initializer=_init_worker, initargs=(options, threads)) as pool:
                futures = [pool.submit(_run_one, s, ids[s], clips_dir, options, single) for s in todo]
                for fut in as_completed(futures):
                    clip_id, row, err = fut.result()
                    record(clip_id, "failed" if err else "done", err)
                    advance(clip_id, err, row["warnings"] if row else [])
    report.manifest = write_manifest(out)
    return report


def _str(value) -> str | None:
    return None if value in (None, "") else str(value)


class _progress_bar:
    """A rich progress bar over files on stderr; failures and warnings are printed above it (on
    stderr too, one line each, also when the bar is disabled)."""

    def __init__(self, enabled: bool, total: int) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.enabled, self.total = enabled and total > 0 and self.console.is_terminal, total
        self.bar = None

    def __enter__(self) -> Callable[[str, str | None], None]:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn("[bold]prepare"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.description}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                console=self.console, transient=False)
            self.bar.start()
            self.task = self.bar.add_task("", total=self.total)
        return self.advance

    def advance(self, clip_id: str, error: str | None, warnings: Sequence[str] = ()) -> None:
        from rich.markup import escape

        if error:
            self.console.print(f"[red]failed[/red] {escape(error)}", highlight=False, soft_wrap=True)
        for w in warnings:
            self.console.print(f"[yellow]warning[/yellow] {escape(w)}", highlight=False, soft_wrap=True)
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=clip_id)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
