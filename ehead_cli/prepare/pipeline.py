"""``ehead prepare``: talking-face videos -> a dataset folder that ``ehead train --data`` reads.

Per input video (any container PyAV reads), in a worker:

1. ingest (``ingest``): 16 kHz mono audio; the clip has T = ceil(samples / 640) frames at 25 fps;
   video frames resampled onto those instants;
2. track (``tracker="landmarks"``: MediaPipe landmarks + the built-in fit of the face model;
   ``"gagavatar"``: import ``<gagavatar_track>/<video stem>/`` from the GAGAvatar tracker);
3. label listening/speaking (``states="vad"``: Silero VAD gated by the tracked mouth motion;
   ``"talknet"``: TalkNet-ASD on the demo's face crops, boxes from the landmarks); trackers and
   labellers are the entries of ``prepare.methods`` (``TRACKERS``, ``LABELLERS``);
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

The jobs live in their own modules: ``inputs`` (videos and clip ids), ``methods`` (trackers,
labellers, the options), ``clip`` (one video, steps 1-6), ``workers`` (the process pool and the
progress bar), ``manifest`` (a clip's files, the resume check, ``manifest.csv``); this module runs
a batch through them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ehead_cli.errors import ConfigError, InputError
from ehead_cli.io.dataset import clips_dir as dataset_clips_dir
from ehead_cli.prepare.clip import prepare_clip, write_clip_frames
from ehead_cli.prepare.inputs import MEDIA_SUFFIXES, assign_ids, find_inputs
from ehead_cli.prepare.manifest import clip_files, is_finished, manifest_row, source_fingerprint, write_manifest
from ehead_cli.prepare.methods import LABELLERS, PIPELINE_VERSION, TRACKERS, PrepareOptions, check_options
from ehead_cli.prepare.workers import progress_bar, run_clips

__all__ = ["LABELLERS", "MEDIA_SUFFIXES", "PIPELINE_VERSION", "TRACKERS", "PrepareOptions", "PrepareReport",
           "assign_ids", "check_options", "clip_files", "find_inputs", "is_finished", "manifest_row", "prepare",
           "prepare_clip", "source_fingerprint", "write_clip_frames", "write_manifest"]

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
    with progress_bar(progress, len(todo)) as advance:
        def on_clip(clip_id: str, status: str, err: str | None, warnings: Sequence[str]) -> None:
            record(clip_id, status, err)
            advance(clip_id, err, warnings)

        run_clips(todo, ids, clips_dir, options, len(sources) == 1, workers, on_clip)
    report.manifest = write_manifest(out)
    return report


def _str(value) -> str | None:
    return None if value in (None, "") else str(value)
