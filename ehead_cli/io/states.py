"""Listening/speaking (LS) state files: CSV in, an int8 array at 25 fps out.

Two layouts, told apart by the header:

    frame,state            one row per 25 fps frame, frames 0..n-1 each exactly once
    start,end,state        one row per segment, times in seconds, start < end, no overlaps

State values: ``speak`` / ``1`` / ``+1`` (speaking, +1) and ``listen`` / ``-1`` (listening, -1),
case-insensitive. Blank lines and lines starting with ``#`` are ignored. Any other content is an
``InputError`` naming the file and line.

Length rule (``states_for_frames``): the states must describe the audio to within
``LENGTH_TOLERANCE_S`` (0.5 s). Inside the tolerance, a per-frame file that is short is extended
with its last state and one that is long is cut; beyond it, it is an error. In the segment layout
frames covered by no segment are listening (the avatar listens unless told to speak); a frame
belongs to a segment when its centre time (i + 0.5) / 25 lies in [start, end); a segment that
ends more than the tolerance past the audio is an error.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ehead_cli.checks import seconds
from ehead_cli.errors import InputError
from ehead_cli.layout import LENGTH_TOLERANCE_S, LISTEN, MOTION_FPS, SPEAK, tolerance_frames

_VALUES = {"speak": SPEAK, "speaking": SPEAK, "1": SPEAK, "+1": SPEAK,
           "listen": LISTEN, "listening": LISTEN, "-1": LISTEN}


@dataclass(frozen=True)
class StateTrack:
    """Parsed states. ``frames`` holds per-frame values (per-frame layout) or None; ``segments``
    holds (start_s, end_s, state) rows (segment layout) or None. ``source`` names the file."""

    source: str
    frames: np.ndarray | None = None
    segments: tuple[tuple[float, float, int], ...] | None = None

    @property
    def duration(self) -> float:
        """Seconds described by the file."""
        if self.frames is not None:
            return len(self.frames) / MOTION_FPS
        return max((end for _, end, _ in self.segments), default=0.0)


def parse_state(value: str, where: str) -> int:
    v = value.strip().lower()
    if v not in _VALUES:
        raise InputError(f"{where}: state {value.strip()!r} is not one of speak, listen, 1, -1")
    return _VALUES[v]


def read_states(path: str | Path) -> StateTrack:
    """Parse a states CSV (either layout). Errors name ``path:line``."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: states file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a states file")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise InputError(f"{path}: unreadable states file ({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not UTF-8 text (byte {raw[err.start]:#04x}); save the CSV as UTF-8") from None
    rows = [(i, row) for i, row in enumerate(csv.reader(text.splitlines()), start=1)
            if row and any(c.strip() for c in row) and not row[0].lstrip().startswith("#")]
    if not rows:
        raise InputError(f"{path}: states file is empty")
    line, header = rows[0]
    header = [h.strip().lower() for h in header]
    body = rows[1:]
    if not body:
        raise InputError(f"{path}:{line}: states file has a header but no rows")
    if header == ["frame", "state"]:
        return StateTrack(str(path), frames=_parse_frames(path, body))
    if header == ["start", "end", "state"]:
        return StateTrack(str(path), segments=_parse_segments(path, body))
    raise InputError(f"{path}:{line}: header must be 'frame,state' or 'start,end,state', got {','.join(header)!r}")


def _parse_frames(path: Path, body: list[tuple[int, list[str]]]) -> np.ndarray:
    values: dict[int, int] = {}
    for line, row in body:
        where = f"{path}:{line}"
        if len(row) != 2:
            raise InputError(f"{where}: expected 2 columns (frame,state), got {len(row)}")
        try:
            frame = int(row[0].strip())
        except ValueError:
            raise InputError(f"{where}: frame {row[0].strip()!r} is not an integer") from None
        if frame < 0:
            raise InputError(f"{where}: frame {frame} is negative")
        if frame in values:
            raise InputError(f"{where}: frame {frame} appears twice")
        values[frame] = parse_state(row[1], where)
    n = max(values) + 1
    missing = sorted(set(range(n)) - set(values))
    if missing:
        raise InputError(f"{path}: frames must cover 0..{n - 1}; frame {missing[0]} is missing")
    return np.array([values[i] for i in range(n)], dtype=np.int8)


def _parse_segments(path: Path, body: list[tuple[int, list[str]]]) -> tuple[tuple[float, float, int], ...]:
    segs: list[tuple[float, float, int, int]] = []
    for line, row in body:
        where = f"{path}:{line}"
        if len(row) != 3:
            raise InputError(f"{where}: expected 3 columns (start,end,state), got {len(row)}")
        try:
            start, end = float(row[0]), float(row[1])
        except ValueError:
            raise InputError(f"{where}: start/end must be numbers of seconds, got {row[0].strip()!r}, "
                             f"{row[1].strip()!r}") from None
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
            raise InputError(f"{where}: need 0 <= start < end, got start={start} end={end}")
        segs.append((start, end, parse_state(row[2], where), line))
    segs.sort()
    for (s0, e0, _, l0), (s1, _, _, l1) in zip(segs, segs[1:], strict=False):
        if s1 < e0:
            raise InputError(f"{path}:{l1}: segment starting at {s1} s overlaps the one on line {l0} "
                             f"({s0}-{e0} s)")
    return tuple((s, e, q) for s, e, q, _ in segs)


def states_for_frames(track: StateTrack, n_frames: int, audio_seconds: float | None = None) -> np.ndarray:
    """(n_frames,) int8 states at 25 fps for audio of ``n_frames`` frames (see the length rule);
    ``audio_seconds``, the audio's exact duration, is what messages state (default: n_frames / 25)."""
    tol = tolerance_frames()
    audio_s = seconds(n_frames / MOTION_FPS if audio_seconds is None else audio_seconds)
    if track.frames is not None:
        have = len(track.frames)
        if abs(have - n_frames) > tol:
            raise InputError(f"{track.source}: states cover {have} frames ({seconds(have / MOTION_FPS)}) but the "
                             f"audio lasts {audio_s} ({n_frames} frames); more than {LENGTH_TOLERANCE_S} s apart")
        if have >= n_frames:
            return track.frames[:n_frames].copy()
        return np.concatenate([track.frames, np.full(n_frames - have, track.frames[-1], np.int8)])
    end = track.duration
    if end > n_frames / MOTION_FPS + LENGTH_TOLERANCE_S:
        raise InputError(f"{track.source}: a segment ends at {seconds(end)} but the audio lasts {audio_s}; more "
                         f"than {LENGTH_TOLERANCE_S} s past its end")
    out = np.full(n_frames, LISTEN, np.int8)
    centres = (np.arange(n_frames) + 0.5) / MOTION_FPS
    for start, stop, q in track.segments:
        out[(centres >= start) & (centres < stop)] = q
    return out


def load_states(path: str | Path, n_frames: int, audio_seconds: float | None = None) -> np.ndarray:
    """Read ``path`` and return (n_frames,) int8 states in {+1, -1} (``audio_seconds``: see
    ``states_for_frames``)."""
    return states_for_frames(read_states(path), n_frames, audio_seconds)


def states_to_segments(states: np.ndarray) -> list[tuple[float, float, int]]:
    """Run-length (start_s, end_s, state) segments of a per-frame state array."""
    states = np.asarray(states)
    out = []
    if states.size == 0:
        return out
    change = np.flatnonzero(np.diff(states)) + 1
    bounds = np.concatenate([[0], change, [len(states)]])
    for a, b in zip(bounds[:-1], bounds[1:], strict=False):
        out.append((a / MOTION_FPS, b / MOTION_FPS, int(states[a])))
    return out


def write_states(path: str | Path, states: np.ndarray, layout: str = "segments") -> None:
    """Write states as CSV (``segments``: start,end,state with speak/listen; ``frames``: frame,state)."""
    from ehead_cli.io.atomic import atomic_path

    name = {SPEAK: "speak", LISTEN: "listen"}
    if layout == "segments":
        lines = ["start,end,state"] + [f"{s:.2f},{e:.2f},{name[q]}" for s, e, q in states_to_segments(states)]
    elif layout == "frames":
        lines = ["frame,state"] + [f"{i},{name[int(q)]}" for i, q in enumerate(states)]
    else:
        raise ValueError(f"layout must be 'segments' or 'frames', got {layout!r}")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
