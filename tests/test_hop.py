"""Hop streaming (``StreamingSession(hop=H, lookahead=A)``): what each live window holds (the scheduler's
frames, agent audio queued ahead, the look-ahead, end padding), that only its first H frames are sent
and become the next window's history, that a conversation's frames come out whole and in order
(flush included), the option checks and the server's default hop."""

from __future__ import annotations

import numpy as np
import pytest

from ehead_cli import checks
from ehead_cli.errors import ConfigError
from ehead_cli.generate.generator import Generator
from ehead_cli.layout import SAMPLES_PER_FRAME
from ehead_cli.model.checkpoint import load_checkpoint
from ehead_cli.serve.hop import LADDER, choose_hop, measure_window_ms

RATE, F = 16000, SAMPLES_PER_FRAME


@pytest.fixture(scope="module")
def gen(tiny_checkpoint) -> Generator:
    return Generator(load_checkpoint(tiny_checkpoint), "cpu", steps=2)


def speech(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    return (rng.normal(size=n) * 0.1 * (0.5 + 0.5 * np.sin(np.arange(n) / 700))).astype(np.float32)


def test_hop_and_lookahead_are_checked_against_the_window():
    assert checks.hop(None, 100) == 100 and checks.hop(1, 100) == 1 and checks.hop(100, 100) == 100
    assert checks.lookahead(None, 10, 100) == 0 and checks.lookahead(90, 10, 100) == 90
    for bad, message in ((0, "--hop must be in 1..100 (the model's window), got 0"),
                         (101, "--hop must be in 1..100 (the model's window), got 101"),
                         (2.5, "--hop must be a whole number of frames, got 2.5"),
                         (True, "--hop must be a whole number of frames, got True"),
                         ("5", "--hop must be a whole number of frames, got '5'")):
        with pytest.raises(ConfigError) as err:
            checks.hop(bad, 100)
        assert str(err.value) == message
    with pytest.raises(ConfigError, match=r"--lookahead must be in 0\.\.90 \(the window 100 less the hop 10\), got 91"):
        checks.lookahead(91, 10, 100)
    with pytest.raises(ConfigError, match="got -1"):
        checks.lookahead(-1, 10, 100)


def test_a_session_rejects_an_out_of_range_hop(gen):
    with pytest.raises(ConfigError, match="--hop must be in 1..100"):
        gen.stream(hop=0)
    with pytest.raises(ConfigError, match="--lookahead must be in 0..0"):
        gen.stream(hop=100, lookahead=1)


@pytest.mark.parametrize("hop,lookahead", [(10, 0), (5, 2), (1, 0), (25, 5)])
def test_windows_cover_the_conversation_in_order_and_history_is_what_was_sent(gen, hop, lookahead):
    session = gen.stream(seed=5, hop=hop, lookahead=lookahead)
    mic = speech(3.3, seed=hop)
    session.push(speech(1.0, seed=50), "agent", end_of_utterance=True)
    sent, sent_states, starts = [], [], []
    rng = np.random.default_rng(hop)
    pos = 0
    while pos < len(mic):
        n = int(rng.integers(100, 5000))
        for w in session.form(mic[pos:pos + n], "mic"):
            starts.append(w.start)
            assert len(w.states) <= 100 and len(w.audio) == len(w.states) * F and w.n_send == hop
            sent.append(session.generate(w))
            sent_states.append(w.sent_states)
            # the next window's history is the last 75 frames sent, motion and states
            done = np.concatenate(sent)
            L = min(75, len(done))
            assert len(session.job.hist) == 75  # (zeros before the first frame)
            np.testing.assert_allclose(gen.denormalize(session.job.hist[-L:]), done[-L:], rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(session.job.hist_states[-L:].numpy(), np.concatenate(sent_states)[-L:])
        pos += n
        # a window is formed only once the microphone has delivered its frames and the look-ahead
        assert session.committed * F <= session._mic_samples < (session.committed + hop + lookahead) * F
    assert starts == [k * hop for k in range(len(starts))]
    last = session.flush()
    frames = np.concatenate(sent + ([last] if last is not None else []))
    assert len(frames) == len(session.states) == -(-len(mic) // F)  # every frame of microphone time, once
    np.testing.assert_array_equal(np.concatenate(sent_states), session.states[:len(np.concatenate(sent_states))])
    assert (session.states[:25] == 1).all() and (session.states[25:] == -1).all()  # the agent's 25 frames, then the mic
    assert session.flush() is None


def test_agent_audio_queued_ahead_fills_the_window_forward_as_speaking(gen):
    session = gen.stream(seed=1, hop=10)
    agent = speech(1.0, seed=3)  # 25 frames, queued before they play (a TTS ahead of playback)
    session.form(agent, "agent", end_of_utterance=True)
    (w,) = session.form(speech(0.4, seed=4), "mic")  # 10 frames of microphone time: the first tick
    assert w.n_send == 10 and len(w.states) == 25  # the 15 agent frames not yet played ride along
    assert (w.states == 1).all() and (w.sent_states == 1).all()
    np.testing.assert_array_equal(w.audio, agent)
    session.generate(w)
    (w,) = session.form(speech(0.4, seed=5), "mic")
    assert w.start == 10 and len(w.states) == 15 and (w.states == 1).all()
    np.testing.assert_array_equal(w.audio, agent[10 * F:])
    session.generate(w)
    mic = speech(0.4, seed=6)
    (w,) = session.form(mic, "mic")  # 5 agent frames left, then the microphone: speak | listen
    np.testing.assert_array_equal(w.states, [1] * 5 + [-1] * 5)
    np.testing.assert_array_equal(w.audio[:5 * F], agent[20 * F:])
    np.testing.assert_array_equal(w.audio[5 * F:], mic[5 * F:])  # the newest 5 microphone frames
    session.generate(w)


def test_a_lookahead_waits_for_its_frames_and_carries_them_as_right_context(gen):
    session = gen.stream(seed=1, hop=10, lookahead=5)
    assert session.delay_frames == 15
    mic = speech(1.0, seed=7)
    assert session.form(mic[:14 * F], "mic") == []  # 14 frames: the look-ahead is not complete yet
    (w,) = session.form(mic[14 * F:15 * F], "mic")
    assert (w.start, w.n_send, len(w.states)) == (0, 10, 15) and (w.states == -1).all()
    np.testing.assert_array_equal(w.audio, mic[:15 * F])  # frames 0-9 sent, 10-14 right context
    session.generate(w)
    (w,) = session.form(mic[15 * F:25 * F], "mic")
    assert w.start == 10
    np.testing.assert_array_equal(w.audio, mic[10 * F:25 * F])


def test_flush_with_a_lookahead_sends_every_frame_left(gen):
    session = gen.stream(seed=2, hop=10, lookahead=5)
    mic = speech(1.3, seed=8)  # 32.5 frames: windows at 15 and 25 frames, 12.5 frames left to flush
    got = [f for w in session.form(mic, "mic") for f in [session.generate(w)]]
    assert [len(f) for f in got] == [10, 10]
    windows = session.form_flush()
    assert [(w.start, w.n_send) for w in windows] == [(20, 10), (30, 3)]
    total = sum(len(session.generate(w)) for w in windows) + 20
    assert total == len(session.states) == 33


def test_hop_equal_to_the_window_streams_as_before(gen):
    mic = speech(8.0, seed=9)
    a = gen.stream(seed=4, record=False).push(mic, "mic")
    b = gen.stream(seed=4, record=False, hop=100).push(mic, "mic")
    assert len(a) == 2 and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_the_default_hop_is_the_smallest_the_device_keeps_up_with(gen):
    assert choose_hop(10.0, 100) == 1  # 10 ms a window: a frame's 40 ms has room
    assert choose_hop(66.0, 100) == 4  # the small preset on a 2-core CPU
    assert choose_hop(340.0, 100) == 20  # the paper preset there
    assert choose_hop(9000.0, 100) == 100  # too slow for any hop: whole windows
    assert choose_hop(66.0, 3) == 3 and set(LADDER) <= set(range(1, 101))
    ms = measure_window_ms(gen, repeats=2, warmup=1)
    assert 0.0 < ms < 10_000.0


def test_a_hops_first_frames_cross_fade_from_the_previous_windows_prediction(gen):
    mic = speech(1.2, seed=11)
    plain, faded = gen.stream(seed=3, hop=10, blend=0), gen.stream(seed=3, hop=10)
    assert faded.blend == 3
    a1, b1 = plain.push(mic[:10 * F], "mic")[0], faded.push(mic[:10 * F], "mic")[0]
    np.testing.assert_array_equal(a1, b1)  # the first window has no previous prediction
    predicted = gen.denormalize(plain._tail[:3])  # window 1's frames 10-12, not sent
    a2, b2 = plain.push(mic[10 * F:20 * F], "mic")[0], faded.push(mic[10 * F:20 * F], "mic")[0]
    np.testing.assert_array_equal(a2[3:], b2[3:])  # the same window (same history), only its first 3 frames fade
    for i, w in enumerate((0.25, 0.5, 0.75)):  # linear in the normalised space, so in raw motion too
        np.testing.assert_allclose(b2[i], (1 - w) * predicted[i] + w * a2[i], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gen.denormalize(faded.job.hist[-20:]), np.concatenate([b1, b2]), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="blend must be a whole number"):
        gen.stream(blend=-1)


def test_sessions_with_different_hops_batch_together_as_they_run_alone(gen):
    from ehead_cli.generate.streaming import generate_windows

    mic_a, mic_b = speech(2.0, seed=21), speech(2.0, seed=22)
    alone = [gen.stream(seed=1, hop=10, lookahead=2), gen.stream(seed=2, hop=4)]
    together = [gen.stream(seed=1, hop=10, lookahead=2), gen.stream(seed=2, hop=4)]
    expected = [[s.generate(w) for w in s.form(m, "mic")] for s, m in zip(alone, (mic_a, mic_b), strict=True)]
    queues = [s.form(m, "mic") for s, m in zip(together, (mic_a, mic_b), strict=True)]
    got = [[], []]
    while any(queues):  # one forward pass takes the next window of every session that has one
        live = [i for i in range(2) if queues[i]]
        for i, frames in zip(live, generate_windows(gen, [(together[i], queues[i].pop(0)) for i in live]), strict=True):
            got[i].append(frames)
    for e, g in zip(expected, got, strict=True):
        assert len(e) == len(g) > 3
        for x, y in zip(e, g, strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)
