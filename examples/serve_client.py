"""A minimal client of ``ehead serve``: stream agent speech and a microphone, read the motion back.

Start a server (``ehead serve``), then run from a checkout:
python examples/serve_client.py [ws://127.0.0.1:8000/ws]   (the tests run it too)
"""

import json
import sys

import numpy as np
import soundfile as sf
from websockets.sync.client import connect

url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8000/ws"
RECORD = np.dtype([("frame", "<u4"), ("state", "<i4"), ("motion", "<f4", (115,))])  # 468 bytes a frame


def audio(source: int, samples: np.ndarray) -> bytes:
    """One audio message: source (0 mic, 1 agent), a zero byte, 16 kHz mono PCM16 little-endian."""
    return bytes([source, 0]) + (np.clip(samples, -1, 1 - 2**-15) * 32768).astype("<i2").tobytes()


with connect(url, max_size=None) as ws:
    ws.send(json.dumps({"type": "hello", "protocol": 2, "seed": 0}))  # add "token": ... if the server has one
    print(json.loads(ws.recv()))  # {"type": "ready", "session": 1, "window": 100, "hop": 4, ...}

    agent, rate = sf.read("sample_data/clips/conv000_en.flac", dtype="float32")  # 16 kHz mono
    for second in range(4):  # 4 s of the agent's speech, as a TTS delivers it (at most 2 s a message)
        ws.send(audio(1, agent[second * rate:(second + 1) * rate]))
    ws.send(json.dumps({"type": "end_of_utterance"}))
    mic = np.zeros(9 * rate, np.float32)  # 9 s of a quiet microphone, in 20 ms chunks
    for start in range(0, len(mic), 320):
        ws.send(audio(0, mic[start:start + 320]))
    ws.send(json.dumps({"type": "flush"}))  # the end of the conversation: the frames not yet sent

    frames = []
    while True:
        msg = ws.recv()
        if isinstance(msg, str):  # {"type": "flushed", "frames": 25}: everything has arrived
            break
        if msg[:4] == b"EHMO":  # header: magic, window index, frame count, reserved (4 x 4 bytes)
            frames.append(np.frombuffer(msg, RECORD, offset=16))
    frames = np.concatenate(frames)
    speaking = int((frames["state"] == 1).sum())
    print(f"received {len(frames)} frames: {speaking} speaking, {len(frames) - speaking} listening")
