"""Reading audio: any file libsndfile or FFmpeg (through PyAV) reads -> 16 kHz mono float32.

WAV, FLAC and OGG go through soundfile; everything else (MP3, M4A, MP4, MPG, ...) through PyAV.
Channels are averaged (downmix), the rate is converted with soxr (high quality), and the result
is checked: a missing, unreadable, empty or non-finite file raises a one-line ``InputError``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ehead_cli.errors import InputError, first_line
from ehead_cli.layout import SAMPLE_RATE

SOUNDFILE_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif"}


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read ``path`` as (N,) float32 mono at ``sample_rate`` Hz (16 kHz by default)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an audio file")
    if not path.is_file():
        raise InputError(f"{path}: audio file not found")
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        try:
            wave, rate = _read_soundfile(path)
        except (sf.LibsndfileError, RuntimeError, ValueError):
            wave, rate = _read_pyav(path)  # a mislabelled container still gets a chance
    else:
        wave, rate = _read_pyav(path)
    return _finish(wave, rate, sample_rate, path)


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    wave, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (N, C)
    return wave.mean(axis=1), int(rate)


def _read_pyav(path: Path) -> tuple[np.ndarray, int]:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise InputError(f"{path}: no audio stream in this file")
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate or stream.rate
            # resample to packed float32 mono in FFmpeg: handles every sample format and layout
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            chunks = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except InputError:
        raise
    except Exception as err:  # PyAV raises many error types (InvalidDataError, OSError, ...)
        raise InputError(f"{path}: unreadable audio ({type(err).__name__}: {first_line(err)})") from None
    wave = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return wave.astype(np.float32, copy=False), int(rate)


def _finish(wave: np.ndarray, rate: int, sample_rate: int, path: Path) -> np.ndarray:
    if wave.size == 0:
        raise InputError(f"{path}: audio is empty")
    if not np.isfinite(wave).all():
        raise InputError(f"{path}: audio contains NaN or infinite samples")
    if rate != sample_rate:
        wave = soxr.resample(wave, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(wave, dtype=np.float32)


def save_wav(path: str | Path, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write (N,) float audio as 16-bit PCM WAV, atomically."""
    from ehead_cli.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.asarray(wave, np.float32), sample_rate, subtype="PCM_16", format="WAV")


