"""The Python API in a few lines: offline generation, then a live session fed in chunks.

Run from a checkout: python examples/python_api.py (the tests run it too).
"""

import numpy as np

from ehead_cli.generate import Generator
from ehead_cli.io.audio import load_audio
from ehead_cli.io.states import load_states
from ehead_cli.layout import SAMPLES_PER_FRAME, n_frames_for

gen = Generator.from_checkpoint()  # the shipped demo model; or a run folder / checkpoint folder
audio = load_audio("sample_data/clips/conv009_fr.flac")  # (N,) 16 kHz mono float32
states = load_states("sample_data/clips/conv009_fr.csv", n_frames_for(len(audio)))  # (T,) +1 speak / -1 listen
motion = gen.generate(audio, states)  # nothing is written
print("offline:", motion.motion.shape)  # (T, 115) at 25 fps

# Live: the agent's speech arrives as the LLM's TTS produces it, the microphone in 20 ms chunks.
session = gen.stream(seed=0)
agent = load_audio("sample_data/clips/conv000_en.flac")[: 3 * 16000]  # 3 s of agent speech
session.push(agent, "agent", end_of_utterance=True)
mic = np.zeros(9 * 16000 + 5 * SAMPLES_PER_FRAME, np.float32)  # 9.2 s of a quiet microphone
frames = []
for start in range(0, len(mic), 320):
    for window in session.push(mic[start:start + 320], "mic"):  # a (100, 115) window every 4 s
        frames.append(window)
last = session.flush()  # the end of the conversation: the 1.2 s since the last window
frames.append(last)
print("live:", [f.shape[0] for f in frames])  # [100, 100, 30]
