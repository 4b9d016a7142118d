"""The ``/ws`` wire protocol (docs/serve-protocol.md is its full description): message layouts, their
parsing and validation, and the close codes.

Client -> server:

* text: JSON control messages, ``{"type": ...}``. The first message must be ``hello`` (protocol
  version 1 or 2, the token when the server has one, the sample format, optional settings; version 2
  adds ``hop`` and ``lookahead``, a version-1 session streams whole windows as it always did); then
  ``end_of_utterance``, ``reset``, ``flush``, ``magnitude``, ``seed``, ``frames``.
* binary: audio, ``[source u8][reserved u8 = 0][PCM16 little-endian samples...]``, 16 kHz mono;
  source 0 is the microphone (the user), 1 the agent (the LLM's speech); at most
  ``MAX_AUDIO_SAMPLES`` samples (2 s) per message.

Server -> client:

* text: ``ready`` (after hello), ``reset`` and ``flushed`` (acknowledgements), JSON.
* binary motion: a 16-byte header ``b"EHMO"``, window index u32, frame count n u32, reserved u32,
  then n records of ``MOTION_RECORD`` (468 bytes: frame index u32, state i32 (+1 speak, -1 listen),
  115 float32 motion), little-endian; 4-byte aligned, so a Float32Array over the message reads it.
* binary JPEG: ``b"EHJP"``, frame index u32, then the JPEG file of that frame.

Every error closes the connection with a WebSocket close code and a one-line reason (at most 123
bytes, the limit of a close frame).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from ehead_cli import checks
from ehead_cli.errors import ConfigError, EheadError
from ehead_cli.layout import MOTION_DIM, SAMPLE_RATE

PROTOCOL_VERSION = 2  # 2: the hello's ``hop`` and ``lookahead``; a version-1 hello streams whole windows
PROTOCOLS = (1, 2)  # the versions a hello may name
SOURCES = {0: "mic", 1: "agent"}
AUDIO_HEADER = 2  # bytes: source, reserved
MAX_AUDIO_SAMPLES = 32000  # per message: 2 s at 16 kHz, less than a window
MAX_MESSAGE_BYTES = 65536  # any message; larger ones are closed with TOO_BIG by the WebSocket layer
MAX_TEXT_BYTES = 4096  # a control message

MOTION_MAGIC, JPEG_MAGIC = b"EHMO", b"EHJP"
MOTION_HEADER = struct.Struct("<4sIII")  # magic, window index, frame count, reserved
JPEG_HEADER = struct.Struct("<4sI")  # magic, frame index
MOTION_RECORD = np.dtype([("frame", "<u4"), ("state", "<i4"), ("motion", "<f4", (MOTION_DIM,))])

# WebSocket close codes (RFC 6455, section 7.4.1)
NORMAL, UNSUPPORTED, INVALID, POLICY, TOO_BIG, INTERNAL, RESTART, TRY_AGAIN = (
    1000, 1003, 1007, 1008, 1009, 1011, 1012, 1013)  # RESTART: uvicorn's, when the server stops

CONTROL_TYPES = ("hello", "end_of_utterance", "reset", "flush", "magnitude", "seed", "frames")


class ProtocolError(Exception):
    """A message the server refuses: closes the connection with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, close_reason(reason)


def close_reason(text: str) -> str:
    """``text`` cut to the 123 bytes a close frame can carry (on a character boundary)."""
    data = text.encode("utf-8")
    if len(data) <= 123:
        return text
    return data[:120].decode("utf-8", "ignore") + "..."


@dataclass(frozen=True)
class Hello:
    """The first message: the token and the session's initial settings."""

    token: str | None
    seed: int
    magnitude: tuple[float, float] | None  # None: the server's default
    frames: bool
    protocol: int = PROTOCOL_VERSION
    hop: int | None = None  # frames per live window sent (version 2); None: the server's
    lookahead: int | None = None  # frames of right context past them (version 2); None: the server's


def parse_audio(data: bytes) -> tuple[str, np.ndarray]:
    """A binary audio message -> (source "mic" | "agent", (n,) float32 samples in [-1, 1))."""
    if len(data) < AUDIO_HEADER:
        raise ProtocolError(INVALID, f"audio message of {len(data)} bytes is shorter than its 2-byte header")
    if data[0] not in SOURCES:
        raise ProtocolError(UNSUPPORTED, f"unknown audio source {data[0]} (0 = mic, 1 = agent)")
    if data[1] != 0:
        raise ProtocolError(UNSUPPORTED, f"audio header byte 1 must be 0, got {data[1]}")
    n = len(data) - AUDIO_HEADER
    if n % 2:
        raise ProtocolError(INVALID, f"audio payload of {n} bytes: PCM16 samples take 2 bytes each")
    if n // 2 > MAX_AUDIO_SAMPLES:
        raise ProtocolError(TOO_BIG, f"audio message of {n // 2} samples; at most {MAX_AUDIO_SAMPLES} per message")
    pcm = np.frombuffer(data, "<i2", offset=AUDIO_HEADER)
    return SOURCES[data[0]], pcm.astype(np.float32) / 32768.0


def audio_message(source: str, samples: np.ndarray) -> bytes:
    """The client side: float samples in [-1, 1] (clipped) -> one binary audio message."""
    tag = {v: k for k, v in SOURCES.items()}[source]
    pcm = np.clip(np.round(np.asarray(samples, np.float64) * 32768.0), -32768, 32767).astype("<i2")
    return bytes([tag, 0]) + pcm.tobytes()


def parse_control(text: str) -> dict[str, Any]:
    """A text message -> its validated JSON object (``type`` one of ``CONTROL_TYPES``)."""
    if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
        raise ProtocolError(TOO_BIG, f"control message over {MAX_TEXT_BYTES} bytes")
    try:
        msg = json.loads(text)
    except ValueError as err:
        raise ProtocolError(INVALID, f"control message is not JSON ({err.msg} at character {err.pos})") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError(INVALID, 'a control message is a JSON object with a string "type"')
    if msg["type"] not in CONTROL_TYPES:
        raise ProtocolError(UNSUPPORTED, f"unknown control message type {msg['type'][:40]!r}; one of "
                                         f"{', '.join(CONTROL_TYPES)}")
    kind = msg["type"]
    try:
        if kind == "magnitude":
            msg["value"] = checks.magnitude(_number_list(msg.get("value"), "magnitude"), "magnitude")
        elif kind == "seed":
            msg["value"] = seed_value(msg.get("value"))
        elif kind == "frames":
            msg["value"] = _bool(msg.get("value"), "frames")
    except EheadError as err:
        raise ProtocolError(INVALID, str(err)) from None
    return msg


def parse_hello(text: str) -> Hello:
    """The first message: a ``hello`` with the protocol version and a supported sample format."""
    msg = parse_control(text)
    if msg["type"] != "hello":
        raise ProtocolError(POLICY, f'the first message must be {{"type": "hello"}}, got {msg["type"]!r}')
    version = msg.get("protocol")
    if isinstance(version, bool) or version not in PROTOCOLS:
        raise ProtocolError(UNSUPPORTED, f"protocol {version!r} not supported; this server speaks protocol "
                                         f"{' or '.join(map(str, PROTOCOLS))}")
    fmt = (msg.get("format", "pcm16"), msg.get("sample_rate", SAMPLE_RATE), msg.get("channels", 1))
    if fmt != ("pcm16", SAMPLE_RATE, 1):
        raise ProtocolError(UNSUPPORTED, f"unsupported sample format {fmt[0]!r} at {fmt[1]!r} Hz, {fmt[2]!r} "
                                         f"channel(s); send {SAMPLE_RATE} Hz mono pcm16")
    token = msg.get("token")
    if token is not None and not isinstance(token, str):
        raise ProtocolError(INVALID, "hello: token must be a string")
    try:
        magnitude = msg.get("magnitude")
        magnitude = None if magnitude is None else checks.magnitude(_number_list(magnitude, "magnitude"),
                                                                   "magnitude")
        hop, lookahead = msg.get("hop"), msg.get("lookahead")
        if version == 1 and (hop is not None or lookahead is not None):
            raise _value_error("hop and lookahead need protocol 2")
        # their values are checked against the model's window when the session opens (checks.hop)
        hello = Hello(token, seed_value(msg.get("seed", 0)), magnitude, _bool(msg.get("frames", False), "frames"),
                      version, hop, lookahead)
    except EheadError as err:
        raise ProtocolError(INVALID, f"hello: {err}") from None
    return hello


def seed_value(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise _value_error(f"seed must be an integer in [0, 2^63), got {value!r}")
    return value


def _number_list(value: Any, what: str) -> list[float]:
    if (not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)
            or not all(math.isfinite(v) for v in value)):
        raise _value_error(f"{what} must be a list of two numbers, got {value!r}"[:100])
    return value


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise _value_error(f"{what} must be true or false, got {value!r}"[:100])
    return value


def _value_error(text: str) -> EheadError:
    return ConfigError(text)


def ready_message(session: int, window: int, fps: float, motion_dim: int = MOTION_DIM, version: int = PROTOCOL_VERSION,
                  hop: int | None = None, lookahead: int = 0) -> str:
    """The answer to a hello, in the hello's protocol version (version 2 adds the session's hop and look-ahead)."""
    msg = {"type": "ready", "protocol": version, "session": session, "window": window, "fps": fps,
           "sample_rate": SAMPLE_RATE, "motion_dim": motion_dim, "record_bytes": MOTION_RECORD.itemsize,
           "max_audio_samples": MAX_AUDIO_SAMPLES}
    if version >= 2:
        msg.update(hop=window if hop is None else hop, lookahead=lookahead)
    return json.dumps(msg)


def motion_message(k: int, first_frame: int, states: np.ndarray, motion: np.ndarray) -> bytes:
    """Window ``k``'s frames: (n,) states, (n, 115) raw motion, frame indices from ``first_frame``."""
    n = len(states)
    rec = np.zeros(n, MOTION_RECORD)
    rec["frame"] = np.arange(first_frame, first_frame + n)
    rec["state"] = states
    rec["motion"] = motion
    return MOTION_HEADER.pack(MOTION_MAGIC, k, n, 0) + rec.tobytes()


def decode_motion(data: bytes) -> tuple[int, np.ndarray]:
    """The client side: a motion message -> (window index, (n,) ``MOTION_RECORD`` records)."""
    magic, k, n, _ = MOTION_HEADER.unpack_from(data)
    if magic != MOTION_MAGIC or len(data) != MOTION_HEADER.size + n * MOTION_RECORD.itemsize:
        raise ValueError("not a motion message")
    return k, np.frombuffer(data, MOTION_RECORD, n, MOTION_HEADER.size)


def jpeg_message(frame: int, jpeg: bytes) -> bytes:
    return JPEG_HEADER.pack(JPEG_MAGIC, frame) + jpeg


def decode_jpeg(data: bytes) -> tuple[int, bytes]:
    magic, frame = JPEG_HEADER.unpack_from(data)
    if magic != JPEG_MAGIC:
        raise ValueError("not a JPEG message")
    return frame, data[JPEG_HEADER.size:]
