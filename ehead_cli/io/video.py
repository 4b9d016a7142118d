"""MP4 files through PyAV: H.264 yuv420p video at 25 fps with the speech muxed in as AAC.

``write_mp4`` streams frames from any iterable (a renderer's generator never holds the video in
memory), writes atomically (a hidden temp file in the target folder, then ``os.replace``) and puts
the index at the front of the file (``+faststart``) so browsers start playing before the download
ends. ``probe_mp4`` and ``read_frames`` read a file back, for tests and checks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soxr
import torch

from ehead_cli.errors import InputError
from ehead_cli.io.atomic import atomic_path
from ehead_cli.layout import MOTION_FPS, SAMPLE_RATE

VIDEO_CODEC = "libx264"
PIXEL_FORMAT = "yuv420p"  # 4:2:0 chroma: the format every browser decodes; needs even sizes
X264_OPTIONS = {"crf": "18", "preset": "veryfast"}  # visually clean, several hundred 256 px frames/s
AUDIO_CODEC = "aac"
AUDIO_BITRATE = 64_000  # bit/s, ample for mono speech and within what AAC allows at 16 kHz
# Sample rates AAC (ISO 14496-3) can signal; any other input rate is resampled to AAC_FALLBACK_RATE.
AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
AAC_FALLBACK_RATE = 48_000


@dataclass(frozen=True)
class MediaInfo:
    """What a media file holds, as read back by PyAV. Durations in seconds; None when absent."""

    stream_kinds: tuple[str, ...]  # e.g. ("video", "audio")
    video_codec: str | None
    pix_fmt: str | None
    fps: float | None
    width: int | None
    height: int | None
    n_frames: int  # decoded video frames
    video_duration: float | None
    audio_codec: str | None
    sample_rate: int | None
    audio_duration: float | None
    faststart: bool  # the index ('moov') precedes the media data ('mdat')


def write_mp4(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray | torch.Tensor] | np.ndarray | torch.Tensor,
    audio: np.ndarray | torch.Tensor | None = None,
    sample_rate: int = SAMPLE_RATE,
    fps: int = MOTION_FPS,
    x264: dict[str, str] | None = None,
    pixel_format: str = PIXEL_FORMAT,
) -> Path:
    """Write frames (and audio) to an MP4 at ``path`` atomically; returns the path.

    frames: (T, H, W, 3) uint8 array/tensor, or an iterable of (H, W, 3) uint8 frames, consumed
            one at a time. Odd sizes are padded by one edge pixel (yuv420p needs even sizes).
    audio:  (N,) float waveform in [-1, 1] at ``sample_rate`` Hz, or None for a silent video.
            It must last as long as the frames, within one frame (T / fps vs N / sample_rate).
    x264, pixel_format: encoder options and pixel format (default ``X264_OPTIONS``, yuv420p: what
            browsers play); dataset frames use near-lossless 4:4:4 (``ehead_cli.io.frames``).
    Raises InputError when the folder cannot be written; no partial file is ever left behind.
    """
    path = Path(path)
    wave = _mono(audio) if audio is not None else None
    with atomic_path(path) as tmp:
        n_frames = _encode(tmp, iter(_frames(frames)), wave, sample_rate, fps, x264 or X264_OPTIONS, pixel_format)
        if wave is not None:
            video_s, audio_s = n_frames / fps, wave.shape[0] / sample_rate
            if abs(video_s - audio_s) > 1.0 / fps + 1e-9:
                raise ValueError(f"{n_frames} frames last {video_s:.3f} s but the audio lasts {audio_s:.3f} s; "
                                 f"they must agree within one frame (1/{fps} s)")
    return path


def _encode(tmp: Path, frames: Iterator[np.ndarray], wave: np.ndarray | None, sample_rate: int, fps: int,
            x264: dict[str, str], pixel_format: str) -> int:
    """Encode into ``tmp``; returns the number of video frames. Audio is interleaved with the video
    (each frame's stretch of samples follows it) so the file streams well."""
    first = next(frames, None)
    if first is None:
        raise ValueError("write_mp4 got no frames")
    height, width = first.shape[:2]
    with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        video = container.add_stream(VIDEO_CODEC, rate=fps, options=dict(x264))
        video.width, video.height, video.pix_fmt = width, height, pixel_format
        video.codec_context.time_base = Fraction(1, fps)
        audio_stream, audio_rate = None, sample_rate
        if wave is not None:
            if sample_rate not in AAC_RATES:
                wave = soxr.resample(wave, sample_rate, AAC_FALLBACK_RATE).astype(np.float32)
                audio_rate = AAC_FALLBACK_RATE
            audio_stream = container.add_stream(AUDIO_CODEC, rate=audio_rate, layout="mono")
            audio_stream.bit_rate = AUDIO_BITRATE
        sent = 0  # audio samples handed to the encoder so far
        n = 0
        for image in _chain(first, frames):
            if image.shape[:2] != (height, width):
                raise ValueError(f"frame {n} is {image.shape[1]}x{image.shape[0]}, the first was {width}x{height}")
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = n
            container.mux(video.encode(frame))
            n += 1
            if audio_stream is not None:
                upto = min(wave.shape[0], round(n * audio_rate / fps))
                sent = _send_audio(container, audio_stream, wave, sent, upto, audio_rate)
        if audio_stream is not None:
            _send_audio(container, audio_stream, wave, sent, wave.shape[0], audio_rate)
            container.mux(audio_stream.encode(None))
        container.mux(video.encode(None))
    return n


def _send_audio(container, stream, wave: np.ndarray, start: int, stop: int, rate: int) -> int:
    """Encode samples [start, stop) of ``wave``; returns the new cursor."""
    if stop > start:
        chunk = av.AudioFrame.from_ndarray(wave[None, start:stop], format="flt", layout="mono")
        chunk.sample_rate = rate
        chunk.pts = start
        container.mux(stream.encode(chunk))
    return max(start, stop)


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def _frames(frames) -> Iterator[np.ndarray]:
    """Normalise the accepted frame containers to a stream of C-contiguous (H', W', 3) uint8
    arrays, H' and W' rounded up to even by repeating the last row/column."""
    for i, f in enumerate(frames):
        if isinstance(f, torch.Tensor):
            f = f.detach().cpu().numpy()
        f = np.asarray(f)
        if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
            raise ValueError(f"frame {i} must be (H, W, 3) uint8, got {f.shape} {f.dtype}")
        pad_h, pad_w = f.shape[0] % 2, f.shape[1] % 2
        if pad_h or pad_w:
            f = np.pad(f, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        yield np.ascontiguousarray(f)


def _mono(audio: np.ndarray | torch.Tensor) -> np.ndarray:
    """(N,) float32 waveform."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    wave = np.asarray(audio, dtype=np.float32)
    if wave.ndim != 1 or wave.shape[0] == 0:
        raise ValueError(f"audio must be a non-empty mono waveform (N,), got shape {wave.shape}")
    return np.ascontiguousarray(wave)


def probe_mp4(path: str | os.PathLike) -> MediaInfo:
    """Read back stream kinds, codecs, rates and durations of a media file; decodes the video to
    count its frames."""
    path = Path(path)
    with av.open(str(path)) as container:
        kinds = tuple(s.type for s in container.streams)
        v = container.streams.video[0] if container.streams.video else None
        a = container.streams.audio[0] if container.streams.audio else None
        n_frames = sum(1 for _ in container.decode(video=0)) if v is not None else 0
        return MediaInfo(  # inside the block: PyAV 18 refuses to read a closed container's streams
            stream_kinds=kinds,
            video_codec=v.codec_context.name if v is not None else None,
            pix_fmt=v.codec_context.pix_fmt if v is not None else None,
            fps=float(v.average_rate) if v is not None and v.average_rate else None,
            width=v.codec_context.width if v is not None else None,
            height=v.codec_context.height if v is not None else None,
            n_frames=n_frames,
            video_duration=_seconds(v),
            audio_codec=a.codec_context.name if a is not None else None,
            sample_rate=a.codec_context.sample_rate if a is not None else None,
            audio_duration=_seconds(a),
            faststart=_moov_before_mdat(path),
        )


def read_frames(path: str | os.PathLike) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames of a video file's first video stream."""
    return np.stack(list(iter_frames(path)))


def iter_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """(H, W, 3) uint8 RGB frames of a video file's first video stream, one at a time."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise InputError(f"{path}: no video stream")
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def _seconds(stream) -> float | None:
    if stream is None or stream.duration is None:
        return None
    return float(stream.duration * stream.time_base)


def _moov_before_mdat(path: Path) -> bool:
    """Walk the top-level MP4 boxes: True when 'moov' comes before 'mdat'."""
    with open(path, "rb") as fh:
        while header := fh.read(8):
            if len(header) < 8:
                return False
            size, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if kind in (b"moov", b"mdat"):
                return kind == b"moov"
            if size == 1:  # 64-bit size follows the type
                size = int.from_bytes(fh.read(8), "big") - 8
            elif size == 0:  # box runs to the end of the file
                return False
            fh.seek(size - 8, os.SEEK_CUR)
    return False
