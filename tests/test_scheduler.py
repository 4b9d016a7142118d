"""The Streaming Audio Scheduler (Algorithm 1): its three branches, the ordering rule, labels by
source, and the offline session simulation."""

from __future__ import annotations

import numpy as np

from ehead_cli.generate.scheduler import AgentUtterance, StreamingAudioScheduler, schedule_session

T, F = 10, 640  # a short window keeps the arithmetic readable


def frames(value: float, n: int) -> np.ndarray:
    return np.full(n * F, value, np.float32)


def frame_values(audio: np.ndarray) -> list[float]:
    return audio.reshape(-1, F)[:, 0].tolist()


def test_pure_listening_takes_the_most_recent_mic_frames():
    s = StreamingAudioScheduler(T)
    s.push_listening(np.concatenate([frames(1, 5), frames(2, 7)]))
    tick = s.tick()
    assert tick.branch == "listen" and tick.states.tolist() == [-1] * T
    assert frame_values(tick.audio) == [1, 1, 1] + [2] * 7 and len(tick.audio) == T * F
    assert s.m_prev == "listen"


def test_start_of_session_pads_the_mic_with_silence():
    s = StreamingAudioScheduler(T)
    s.push_listening(frames(3, 4))
    assert frame_values(s.tick().audio) == [0] * 6 + [3] * 4


def test_full_speaking_window_consumes_the_queue():
    s = StreamingAudioScheduler(T)
    s.push_listening(frames(1, T))
    s.push_speaking(np.concatenate([frames(5, 10), frames(6, 5)]))
    tick = s.tick()
    assert tick.branch == "speak" and tick.states.tolist() == [1] * T
    assert frame_values(tick.audio) == [5] * 10 and s.unconsumed == 5 and s.m_prev == "speak"


def test_mixed_window_order_follows_the_previous_tail_and_flips():
    s = StreamingAudioScheduler(T)
    s.push_listening(frames(1, 30))
    s.push_speaking(frames(7, 4))
    a = s.tick()  # previous tail: listen -> listen|speak, then the tail mode becomes speak
    assert a.branch == "mixed" and a.order == "listen|speak"
    assert a.states.tolist() == [-1] * 6 + [1] * 4 and frame_values(a.audio) == [1] * 6 + [7] * 4
    assert s.m_prev == "speak"
    s.push_speaking(frames(8, 3))
    b = s.tick()  # previous tail: speak -> speak|listen, tail becomes listen
    assert b.order == "speak|listen" and b.states.tolist() == [1] * 3 + [-1] * 7
    assert frame_values(b.audio) == [8] * 3 + [1] * 7 and s.m_prev == "listen"
    c = s.tick()
    assert c.branch == "listen" and s.unconsumed == 0


def test_partial_frames_and_flush():
    s = StreamingAudioScheduler(T)
    s.push_speaking(np.ones(F + 100, np.float32))
    assert s.unconsumed == 1
    s.push_speaking(np.ones(100, np.float32), flush=True)  # the utterance ends: pad to a whole frame
    assert s.unconsumed == 2


def test_session_simulation_is_causal_and_complete():
    rng = np.random.default_rng(0)
    mic = rng.normal(size=25 * F).astype(np.float32)  # 25 frames of microphone
    agent = np.concatenate([frames(4, 6), frames(9, 13)])
    utts = [AgentUtterance(0.0, 6 / 25, 0.5), AgentUtterance(6 / 25, 19 / 25, 0.9)]
    audio, states, ticks = schedule_session(mic, agent, utts, window=T)
    # tick 0 (at 10 frames = 0.4 s): nothing available yet; tick 1 (0.8 s): the first utterance;
    # tick 2 (1.2 s): the second (13 frames): a full speaking window, 3 frames left for tick 3
    assert [t.branch for t in ticks] == ["listen", "mixed", "speak", "mixed"]
    assert ticks[1].order == "listen|speak" and ticks[3].order == "speak|listen"
    assert (states == 1).sum() == 19 and len(audio) == len(states) * F == len(ticks) * T * F
    # every agent frame is emitted exactly once, in order
    spoken = [v for v, q in zip(frame_values(audio), states, strict=True) if q == 1]
    assert spoken == [4] * 6 + [9] * 13
    # a listening frame is always microphone audio that had already arrived
    mic_frames = mic.reshape(-1, F)[:, 0].tolist()
    for k, t in enumerate(ticks):
        for v, q in zip(frame_values(t.audio), t.states, strict=True):
            if q == -1 and v != 0:
                assert mic_frames.index(v) < (k + 1) * T
