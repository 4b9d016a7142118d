"""Ingest: any container PyAV reads -> 16 kHz mono audio and RGB video frames at exactly 25 fps.

The audio decides the clip: sample 0 of the 16 kHz track is time zero, and the clip has
``n_frames = ceil(n_samples / 640)`` motion frames (``layout.n_frames_for``), frame ``i`` standing
for the instant ``audio_start + i / 25`` in the container's clock. Video is resampled onto those
instants frame-accurately: output frame ``i`` is the decoded source frame whose presentation time
is nearest to it (a tie goes to the earlier frame), computed in exact rational arithmetic from
the stream's time base, so a 30 fps source gives source frames ``round(i * 30 / 25)`` and a 25 fps
source maps one to one. Instants before the first or after the last source frame hold that
frame. Keeping both streams on the container clock keeps the lips in sync with the audio even
when the two streams start at different times (MPEG programs often do).

Decoding streams: frames are produced one at a time, so a long video never sits in memory unless
the caller stacks it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import numpy as np

from ehead_cli.errors import InputError, first_line
from ehead_cli.io.audio import load_audio
from ehead_cli.layout import MOTION_FPS, SAMPLE_RATE, n_frames_for

# The video must cover the audio to within this many seconds; a larger gap means the streams
# do not belong together (or the file is truncated) and the frames would be mostly held copies.
MAX_AV_GAP_S = 0.5

T_ = TypeVar("T_")


@dataclass(frozen=True)
class MediaProbe:
    """What ingest needs to know about a file before decoding it. Times in seconds on the
    container clock; ``video_duration`` is None when the container does not say."""

    path: Path
    width: int
    height: int
    source_fps: float | None
    video_start: float
    video_duration: float | None
    audio_start: float
    declared_duration: float | None = None  # what the container's header says, when it says


@dataclass(frozen=True)
class IngestedAudio:
    """audio (N,) float32 16 kHz mono; start: container time of sample 0 (s); n_frames at 25 fps."""

    audio: np.ndarray
    start: Fraction
    n_frames: int

    @property
    def duration(self) -> float:
        return self.audio.shape[0] / SAMPLE_RATE


def _open(path: Path):
    import av

    try:
        return av.open(str(path))
    except Exception as err:  # PyAV raises many error types (InvalidDataError, FileNotFoundError, ...)
        raise InputError(f"{path}: unreadable media file ({type(err).__name__}: {first_line(err)})") from None


def _start(stream) -> Fraction:
    """Container time (s) at which ``stream`` starts, exact; 0 when the container does not say."""
    if stream.start_time is None or stream.time_base is None:
        return Fraction(0)
    return stream.start_time * stream.time_base


def probe_media(path: str | Path) -> MediaProbe:
    """Open ``path`` and check it has a video and an audio stream; one-line InputError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: media file not found")
    with _open(path) as container:
        if not container.streams.video:
            raise InputError(f"{path}: no video stream (ehead prepare needs a talking-face video)")
        if not container.streams.audio:
            raise InputError(f"{path}: no audio stream (ehead prepare needs the speech)")
        v, a = container.streams.video[0], container.streams.audio[0]
        # the packets' own timestamps (no decoding): stream headers may copy the container's
        # duration (Matroska does), which would hide a video shorter than its audio
        duration = _packet_span(container, v, path)
        if duration is None and v.duration is not None and v.time_base:
            duration = float(v.duration * v.time_base)
        rate = float(v.average_rate) if v.average_rate else None
        declared = container.duration / 1_000_000 if container.duration else None  # AV_TIME_BASE (us)
        return MediaProbe(path, int(v.codec_context.width), int(v.codec_context.height), rate,
                          float(_start(v)), duration, float(_start(a)), declared)


def _packet_span(container, stream, path: Path) -> float | None:
    """Seconds from the stream's start to the end of its last packet, from the demuxed packets."""
    end = None
    try:
        for packet in container.demux(stream):
            if packet.pts is not None and packet.time_base is not None:
                stop = (packet.pts + (packet.duration or 0)) * packet.time_base
                end = stop if end is None else max(end, stop)
    except Exception as err:
        raise InputError(f"{path}: broken video stream ({type(err).__name__}: {first_line(err)})") from None
    return None if end is None else float(end - _start(stream))


def load_clip_audio(path: str | Path) -> IngestedAudio:
    """The clip's audio, 16 kHz mono float32 (``ehead_cli.io.audio.load_audio``), with its start time."""
    path = Path(path)
    with _open(path) as container:
        if not container.streams.audio:
            raise InputError(f"{path}: no audio stream (ehead prepare needs the speech)")
        start = _start(container.streams.audio[0])
    wave = load_audio(path)
    return IngestedAudio(wave, start, n_frames_for(wave.shape[0]))


def target_times(n_frames: int, start: Fraction, fps: int = MOTION_FPS) -> list[Fraction]:
    """Exact container times (s) of the ``n_frames`` output frames: start + i / fps."""
    return [start + Fraction(i, fps) for i in range(n_frames)]


def iter_video_frames(path: str | Path, n_frames: int, start: Fraction = Fraction(0),
                      fps: int = MOTION_FPS) -> Iterator[np.ndarray]:
    """Yield exactly ``n_frames`` (H, W, 3) uint8 RGB frames at ``fps``, frame i nearest to
    ``start + i / fps`` (see the module docstring). Raises InputError for an unreadable stream."""
    path = Path(path)
    yield from _resample(_decoded_frames(path, rgb=True), target_times(n_frames, Fraction(start), fps), path)


def read_video_frames(path: str | Path, n_frames: int, start: Fraction = Fraction(0),
                      fps: int = MOTION_FPS) -> np.ndarray:
    """(n_frames, H, W, 3) uint8 RGB frames at ``fps``; ``iter_video_frames`` stacked."""
    return np.stack(list(iter_video_frames(path, n_frames, start, fps)))


def source_frame_indices(path: str | Path, n_frames: int, start: Fraction = Fraction(0),
                         fps: int = MOTION_FPS) -> tuple[np.ndarray, int]:
    """Which decoded source frame each of the ``n_frames`` output frames shows (the same choice
    as ``iter_video_frames``): ((n_frames,) int64 indices into the decoded frames, their count)."""
    path = Path(path)
    count = 0

    def numbered() -> Iterator[tuple[Fraction, int]]:
        nonlocal count
        for time, _ in _decoded_frames(path, rgb=False):
            yield time, count
            count += 1

    frames = numbered()
    chosen = np.array(list(_resample(frames, target_times(n_frames, Fraction(start), fps), path)), dtype=np.int64)
    for _ in frames:  # count the frames after the last one used
        pass
    return chosen, count


def _resample(timed: Iterator[tuple[Fraction, T_]], targets: list[Fraction], path: Path) -> Iterator[T_]:
    """For each target time (ascending), the item whose time is nearest (ties: the earlier item).
    Items must come in presentation order; a repeated or earlier time is skipped."""
    n = len(targets)
    emitted = 0
    prev: tuple[Fraction, T_] | None = None
    for time, item in timed:
        if prev is not None:
            if time <= prev[0]:
                continue
            midpoint = (prev[0] + time) / 2
            while emitted < n and targets[emitted] <= midpoint:  # tie -> the earlier item
                yield prev[1]
                emitted += 1
            if emitted == n:
                return
        prev = (time, item)
    if n and prev is None:
        raise InputError(f"{path}: the video stream holds no decodable frame")
    while emitted < n:
        yield prev[1]
        emitted += 1


def _decoded_frames(path: Path, rgb: bool) -> Iterator[tuple[Fraction, np.ndarray | None]]:
    """(exact presentation time in s, (H, W, 3) uint8 RGB or None when ``rgb`` is False) of every
    decoded frame, in presentation order."""
    with _open(path) as container:
        if not container.streams.video:
            raise InputError(f"{path}: no video stream (ehead prepare needs a talking-face video)")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame-parallel decoding; the frame order is unchanged
        rate = stream.average_rate or stream.guessed_rate or Fraction(MOTION_FPS)
        base = _start(stream)
        try:
            for count, frame in enumerate(container.decode(stream)):
                if frame.pts is not None and frame.time_base is not None:
                    time = frame.pts * frame.time_base
                else:  # no timestamp: count frames at the stream's nominal rate
                    time = base + count / Fraction(rate)
                yield Fraction(time), (frame.to_ndarray(format="rgb24") if rgb else None)
        except InputError:
            raise
        except Exception as err:
            raise InputError(f"{path}: broken video stream ({type(err).__name__}: {first_line(err)})") from None


def duration_warnings(probe: MediaProbe, audio: IngestedAudio, min_seconds: float) -> list[str]:
    """Why a decoded clip may not be what the user meant: far shorter than its container declares (a
    truncated or damaged file), or shorter than ``min_seconds``, the least a training clip needs."""
    out = []
    declared = probe.declared_duration
    if declared and audio.duration < declared - max(MAX_AV_GAP_S, 0.1 * declared):
        out.append(f"{probe.path}: decoded {audio.duration:.2f} s of the {declared:.2f} s the file declares "
                   "(truncated or damaged?)")
    if audio.duration < min_seconds:
        out.append(f"{probe.path}: only {audio.duration:.2f} s long; training leaves clips under {min_seconds:g} s "
                   "out (truncated?)")
    return out


def check_coverage(probe: MediaProbe, audio: IngestedAudio) -> None:
    """InputError when the video is known to cover the audio's span badly (see ``MAX_AV_GAP_S``)."""
    if probe.video_duration is None:
        return
    a0, a1 = float(audio.start), float(audio.start) + audio.duration
    v0, v1 = probe.video_start, probe.video_start + probe.video_duration
    gap = max(v0 - a0, a1 - v1, 0.0)
    if gap > MAX_AV_GAP_S:
        raise InputError(f"{probe.path}: the video ({v0:.2f}-{v1:.2f} s) misses {gap:.2f} s of the audio "
                         f"({a0:.2f}-{a1:.2f} s); more than {MAX_AV_GAP_S} s")


