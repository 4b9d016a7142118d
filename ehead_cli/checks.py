"""Validation of the values a user gives, one check per option, shared by every command that takes the
option and by the Python API (which raises the same one-line messages, naming the CLI flag).

Each check returns the value (normalised where that is its job) or raises ``ConfigError`` /
``InputError``; the CLI uses them as option callbacks, so a bad value stops before any work starts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ehead_cli.errors import ConfigError, InputError
from ehead_cli.layout import LISTEN, SAMPLE_RATE, SPEAK

MAX_STEPS = 25  # the paper's ablation goes from 1 to 25 Euler steps
MIN_SIZE = 16


def seconds(x: float) -> str:
    """A duration for a message: up to millisecond precision, no trailing zeros ("8.375 s", "0.1 s")."""
    text = f"{x:.3f}".rstrip("0").rstrip(".")
    return f"{text} s"


def steps(value: int, flag: str = "--steps") -> int:
    """Euler sampling steps, 1..25."""
    if not isinstance(value, (int, np.integer)) or not 1 <= value <= MAX_STEPS:
        raise ConfigError(f"{flag} must be in 1..{MAX_STEPS}, got {value}")
    return int(value)


def size(value: int, flag: str = "--size") -> int:
    """A square video or render size: an even number of pixels >= 16 (yuv420p needs even sides)."""
    if value < MIN_SIZE or value % 2:
        raise ConfigError(f"{flag} must be an even number of pixels >= {MIN_SIZE}, got {value}")
    return value


def positive(value: int | None, flag: str) -> int | None:
    """A count that must be >= 1 (batch sizes, repeats, threads, workers); None passes (a default)."""
    if value is not None and value < 1:
        raise ConfigError(f"{flag} must be >= 1, got {value}")
    return value


def device(value: str | None, flag: str = "--device") -> str | None:
    """A device name: cpu, cuda or cuda:N (None passes: cuda when available, decided where torch is loaded;
    whether CUDA is there is ``devices.resolve_device``'s check)."""
    if value is None:
        return None
    kind, colon, index = str(value).partition(":")
    if value != "cpu" and not (kind == "cuda" and (not colon or index.isdigit())):
        raise ConfigError(f"{flag} must be cpu or cuda (cuda:N for one GPU), got {value!r}")
    return value


def _whole(value, flag: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{flag} must be a whole number of frames, got {value!r}")
    return int(value)


def hop(value: int | None, window: int, flag: str = "--hop") -> int:
    """Frames a live window advances by: 1..T (T = the model's window; None: T, the paper's streaming)."""
    if value is None:
        return int(window)
    value = _whole(value, flag)
    if not 1 <= value <= window:
        raise ConfigError(f"{flag} must be in 1..{window} (the model's window), got {value}")
    return value


def lookahead(value: int | None, hop_frames: int, window: int, flag: str = "--lookahead") -> int:
    """Frames of right context past a hop's frames: 0..T - H (None: 0)."""
    if value is None:
        return 0
    value = _whole(value, flag)
    if not 0 <= value <= window - hop_frames:
        raise ConfigError(f"{flag} must be in 0..{window - hop_frames} (the window {window} less the hop "
                          f"{hop_frames}), got {value}")
    return value


def probability(value: float | None, flag: str) -> float | None:
    """A probability in [0, 1] (None passes: not given)."""
    if value is not None and not 0.0 <= value <= 1.0:
        raise ConfigError(f"{flag} is a probability in [0, 1], got {value:g}")
    return value


def port(value: int, flag: str = "--port") -> int:
    """A TCP port, 1..65535."""
    if not 1 <= value <= 65535:
        raise ConfigError(f"{flag} must be in 1..65535, got {value}")
    return value


def one_of(value: str | None, options: Sequence[str], flag: str) -> str | None:
    """A value from a fixed set (None passes: a default decided later)."""
    if value is not None and value not in options:
        raise ConfigError(f"{flag} must be one of {', '.join(options)}, got {value!r}")
    return value


def temperature(value: float, flag: str = "--temperature") -> float:
    """A sampling temperature: finite and >= 0 (0 = greedy decoding)."""
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"{flag} must be a number >= 0 (0 = greedy), got {value}")
    return value


def duration(value: float, flag: str = "--seconds") -> float:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{flag} must be a positive number of seconds, got {value}")
    return value


def magnitude(value: Sequence[float], flag: str = "--magnitude") -> tuple[float, float]:
    """[m_r, m_t], each in [0, 1]."""
    value = tuple(float(m) for m in value)
    if len(value) != 2 or not all(0.0 <= m <= 1.0 for m in value):
        raise ConfigError(f"{flag} takes two values in [0, 1], got {value}")
    return value


def int_list(value: str, flag: str, check=None) -> tuple[int, ...]:
    """A comma list of positive integers, each also passed through ``check(v, flag)`` when given."""
    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{flag} takes a comma list of integers, got {value!r}") from None
    if not out:
        raise ConfigError(f"{flag} takes a comma list of integers, got {value!r}")
    for v in out:
        (check or positive)(v, flag)
    return out


def audio_array(audio, what: str = "audio") -> np.ndarray:
    """(N,) mono float32 samples at 16 kHz, finite (N = 0 is allowed: a live session starts empty). A
    2-D array is refused rather than flattened: channels must be averaged by the caller (``load_audio`` does)."""
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise InputError(f"{what} must be mono, an (N,) array of {SAMPLE_RATE} Hz samples; got shape "
                         f"{audio.shape} (average the channels, or read the file with load_audio)")
    audio = audio.astype(np.float32, copy=False)
    if not np.isfinite(audio).all():
        raise InputError(f"{what} contains NaN or infinite samples")
    return audio


def states_array(states, n_frames: int, what: str = "states") -> np.ndarray:
    """(n_frames,) int8 states, each +1 (speak) or -1 (listen), as the states CSV reader gives them."""
    states = np.asarray(states)
    if states.ndim != 1:
        raise InputError(f"{what} must be a 1-D array of per-frame states, got shape {states.shape}")
    bad = np.flatnonzero((states != SPEAK) & (states != LISTEN))
    if bad.size:
        raise InputError(f"{what}: frame {bad[0]} has state {states[bad[0]].item()!r}; states are 1 (speak) or -1 "
                         "(listen)")
    if len(states) != n_frames:
        raise InputError(f"{what} have {len(states)} frames but the audio has {n_frames} (ceil(duration x 25))")
    return states.astype(np.int8)
