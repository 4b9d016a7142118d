"""Generation: frame counts, causality, the last partial window, batching, streaming parity,
MP4 output, and the command line's handling of many jobs and bad input."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import soundfile as sf
from cli_runner import run_cli

from ehead_cli.avatar.identity import Avatar
from ehead_cli.generate.generator import Generator
from ehead_cli.generate.scheduler import AgentUtterance, schedule_session
from ehead_cli.io.motionfile import Motion, load_motion, save_motion
from ehead_cli.io.video import probe_mp4
from ehead_cli.layout import SAMPLES_PER_FRAME
from ehead_cli.model.checkpoint import load_checkpoint

RATE = 16000


@pytest.fixture(scope="module")
def gen(tiny_checkpoint) -> Generator:
    return Generator(load_checkpoint(tiny_checkpoint), "cpu", steps=2)


def speech(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * np.arange(n) / RATE)
    return (rng.normal(size=n) * 0.1 * env).astype(np.float32)


def alternating(n: int) -> np.ndarray:
    return np.where((np.arange(n) // 60) % 2 == 0, 1, -1).astype(np.int8)


def test_frame_count_is_ceil_of_duration(gen):
    for seconds in (0.5, 3.99, 4.0, 4.03, 9.1):
        audio = speech(seconds)
        n = -(-len(audio) // SAMPLES_PER_FRAME)
        m = gen.generate(audio, alternating(n))
        assert m.motion.shape == (n, 115) and m.states.shape == (n,) and np.isfinite(m.motion).all()


def test_no_window_sees_audio_past_its_end(gen):
    audio = speech(8.0)
    q = alternating(200)
    a = gen.generate(audio, q, seed=1)
    later = audio.copy()
    later[100 * SAMPLES_PER_FRAME:] = speech(4.0, seed=9)  # change only the second window's audio
    b = gen.generate(later, q, seed=1)
    np.testing.assert_array_equal(a.motion[:100], b.motion[:100])
    assert not np.allclose(a.motion[100:], b.motion[100:])
    states = q.copy()
    states[150:] *= -1  # later states do not reach back either
    np.testing.assert_array_equal(gen.generate(audio, states, seed=1).motion[:100], a.motion[:100])


def test_last_partial_window_is_padded_with_silence_and_listening(gen):
    audio = speech(5.2)  # 130 frames: a full window and 30 frames
    q = alternating(130)
    m = gen.generate(audio, q, seed=2)
    padded = np.concatenate([audio, np.zeros(200 * SAMPLES_PER_FRAME - len(audio), np.float32)])
    full = gen.generate(padded, np.concatenate([q, np.full(70, -1, np.int8)]), seed=2)
    np.testing.assert_allclose(m.motion, full.motion[:130], atol=1e-6)


def test_batched_jobs_equal_single_jobs(gen):
    jobs = [(speech(5.0, s), alternating(125), None, s) for s in range(3)]
    together = gen.generate_many(jobs)
    for (a, q, av, s), m in zip(jobs, together, strict=True):
        np.testing.assert_allclose(gen.generate(a, q, av, s).motion, m.motion, atol=1e-4)
    assert not np.allclose(together[0].motion, together[1].motion)


def test_avatar_reference_and_shape(gen, tmp_path):
    rng = np.random.default_rng(0)
    shape = rng.normal(size=300).astype(np.float32)
    np.save(tmp_path / "s.npy", shape)
    assert np.array_equal(Avatar.load(tmp_path / "s.npy").shape, shape)
    ref = Motion(rng.normal(size=(3, 115)) * 0.05, shape, np.ones(3), 25)
    save_motion(tmp_path / "m.npz", ref)
    av = Avatar.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(av.reference, ref.motion[0])
    a, q = speech(2.0), alternating(50)
    out = gen.generate(a, q, av)
    assert np.array_equal(out.shape, shape)
    assert not np.allclose(out.motion, gen.generate(a, q).motion)
    np.save(tmp_path / "bad.npy", np.zeros(10))
    with pytest.raises(Exception, match="bad.npy: shape must be 300"):
        Avatar.load(tmp_path / "bad.npy")


def test_streaming_equals_offline(gen):
    rng = np.random.default_rng(3)
    mic = speech(10.0, seed=4) * 0.5
    agent = speech(6.0, seed=5)
    utts = [AgentUtterance(0.0, 2.5, 1.0), AgentUtterance(2.5, 6.0, 6.0)]
    single, states, _ = schedule_session(mic, agent, utts)
    offline = gen.generate(single, states, seed=7)

    session = gen.stream(seed=7)
    pending = list(utts)
    produced, pos = [], 0
    while pos < len(mic) + 2 * 100 * SAMPLES_PER_FRAME and len(produced) * 100 < len(states):
        tick_time = (session.k + 1) * 100  # frames; agent audio available by then is pushed first
        while pending and pending[0].available * 25 <= tick_time:
            u = pending.pop(0)
            session.push(agent[int(u.start * RATE):int(u.end * RATE)], "agent", end_of_utterance=True)
        n = int(rng.integers(200, 12000))
        chunk = np.zeros(n, np.float32)
        seg = mic[pos:pos + n]
        chunk[: len(seg)] = seg
        limit = tick_time * SAMPLES_PER_FRAME - pos  # never deliver past the next tick in one chunk
        chunk = chunk[: max(1, min(n, limit))]
        produced += session.push(chunk, "mic")
        pos += len(chunk)
    streamed = np.concatenate(produced)
    np.testing.assert_array_equal(session.states, states)
    np.testing.assert_array_equal(session.audio, single)
    np.testing.assert_array_equal(streamed, offline.motion)


@pytest.mark.parametrize("extra_frames", [0, 1, 37])
def test_flush_ends_a_conversation_with_its_last_partial_window(gen, extra_frames):
    """``flush`` gives the frames of the microphone time since the last window, and the whole session
    still equals offline generation of its audio and states (the last window padded the same way)."""
    session = gen.stream(seed=3)
    session.push(speech(2.0, seed=8), "agent", end_of_utterance=True)
    mic = speech(8.0, seed=9) * 0.3
    mic = np.concatenate([mic, 0.1 * speech(2.0, seed=1)[: extra_frames * SAMPLES_PER_FRAME - 17 * bool(extra_frames)]])
    frames = []
    for start in range(0, len(mic), 1000):
        frames += session.push(mic[start:start + 1000], "mic")
    last = session.flush()
    assert (last is None) == (extra_frames == 0)
    if last is not None:
        assert last.shape == (extra_frames, 115)
        frames.append(last)
    assert session.flush() is None  # nothing pending any more
    streamed = np.concatenate(frames)
    assert len(streamed) == len(session.states) == -(-len(mic) // SAMPLES_PER_FRAME)
    offline = gen.generate(session.audio, session.states, seed=3)
    np.testing.assert_array_equal(streamed, offline.motion)


def test_an_unrecorded_session_keeps_only_its_window(gen):
    session = gen.stream(seed=3, record=False)
    recorded = gen.stream(seed=3)
    mic = speech(8.0, seed=9) * 0.3
    a = session.push(mic, "mic")
    b = recorded.push(mic, "mic")
    assert len(a) == 2 and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert session.audio.size == 0 and session.states.size == 0 and recorded.audio.size == len(mic)


# --- the command line --------------------------------------------------------------------------
def write_clip(folder, name: str, seconds: float, seed: int = 0):
    audio = folder / f"{name}.wav"
    sf.write(audio, speech(seconds, seed), RATE)
    states = folder / f"{name}.csv"
    states.write_text(f"start,end,state\n0,{seconds / 2:.2f},speak\n{seconds / 2:.2f},{seconds:.2f},listen\n")
    return audio, states


def test_cli_writes_npz_and_mp4(tiny_checkpoint, tmp_path):
    audio, states = write_clip(tmp_path, "hello", 3.3)
    code, out, err = run_cli("generate", "--audio", str(audio), "--states", str(states),
                             "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "out"), "--size", "64",
                             "--steps", "1")
    assert code == 0, err
    m = load_motion(tmp_path / "out" / "hello.npz")
    assert m.n_frames == 83  # ceil(3.3 x 25)
    assert m.states[:41].tolist() == [1] * 41 and m.states[-1] == -1
    info = probe_mp4(tmp_path / "out" / "hello.mp4")
    assert info.stream_kinds == ("video", "audio") and info.video_codec == "h264" and info.pix_fmt == "yuv420p"
    assert info.n_frames == 83 and abs(info.video_duration - 3.3) <= 1 / 25 + 1e-6
    assert abs(info.audio_duration - 3.3) <= 1 / 25 + 1e-6 and info.faststart
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["hello.mp4", "hello.npz"]


def test_cli_three_jobs_one_broken(tiny_checkpoint, tmp_path):
    a1, s1 = write_clip(tmp_path, "one", 2.0, 1)
    a2, s2 = write_clip(tmp_path, "two", 2.5, 2)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEjunk")
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(f"audio,states,out\n{a1.name},{s1.name},res/one\n{broken.name},{s1.name},res/broken\n"
                    f"{a2.name},{s2.name},res/two\n")
    code, out, err = run_cli("generate", "--jobs", str(jobs), "--checkpoint", str(tiny_checkpoint),
                             "--no-video")
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == ["one.npz", "two.npz"]
    assert "broken.wav" in err and "Traceback" not in err and "failed" in out
    assert load_motion(tmp_path / "res" / "two.npz").n_frames == 63


@pytest.mark.parametrize("case", ["unreadable", "states_error", "length", "unwritable", "checkpoint", "cuda"])
def test_cli_bad_input_is_one_line(case, tiny_checkpoint, tmp_path):
    audio, states = write_clip(tmp_path, "clip", 2.0)
    out_dir = tmp_path / "out"
    args = ["generate", "--audio", str(audio), "--states", str(states), "--checkpoint", str(tiny_checkpoint),
            "--out", str(out_dir), "--size", "64"]
    needle = {"unreadable": "clip.wav: unreadable audio", "states_error": "clip.csv:2: state 'talk'",
              "length": "more than 0.5 s", "unwritable": "cannot write output", "checkpoint": "nowhere",
              "cuda": "CUDA is not available"}[case]
    if case == "unreadable":
        audio.write_bytes(b"nonsense")
    elif case == "states_error":
        states.write_text("start,end,state\n0,1,talk\n")
    elif case == "length":
        states.write_text("frame,state\n" + "".join(f"{i},speak\n" for i in range(100)))
    elif case == "unwritable":
        out_dir.write_text("a file where the folder should be")
    elif case == "checkpoint":
        args[args.index("--checkpoint") + 1] = str(tmp_path / "nowhere")
    elif case == "cuda":
        if __import__("torch").cuda.is_available():
            pytest.skip("this machine has CUDA")
        args += ["--device", "cuda"]
    code, out, err = run_cli(*args)
    assert code != 0 and needle in err, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err
    leftovers = [p.name for p in out_dir.iterdir()] if out_dir.is_dir() else []
    assert leftovers == []


def test_cli_two_stream_mode(tiny_checkpoint, tmp_path):
    sf.write(tmp_path / "mic.wav", speech(6.0, 1) * 0.3, RATE)
    agent = np.concatenate([np.zeros(RATE, np.float32), speech(2.0, 2), np.zeros(RATE, np.float32)])
    sf.write(tmp_path / "agent.wav", agent, RATE)
    (tmp_path / "segs.csv").write_text("start,end,available\n1.0,3.0,4.5\n")
    code, out, err = run_cli("generate", "--user-audio", str(tmp_path / "mic.wav"), "--agent-audio",
                             str(tmp_path / "agent.wav"), "--agent-segments", str(tmp_path / "segs.csv"),
                             "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "o"), "--no-video")
    assert code == 0, err
    m = load_motion(tmp_path / "o" / "mic.npz")
    assert m.n_frames == 200 and (m.states == 1).sum() == 50  # 2 s of agent speech, available at 4.5 s
    assert m.states[100:150].tolist() == [-1] * 50 and m.states[150:].tolist() == [1] * 50  # listen|speak
    assert (tmp_path / "o" / "mic.states.csv").is_file() and (tmp_path / "o" / "mic.single.wav").is_file()


def test_two_stream_output_ends_with_its_content(gen, tmp_path):
    """13.49 s of microphone and an agent reply that ends at 12 s: the session's whole 4 s windows are
    cut to the microphone's length, and the motion kept is what the whole windows gave."""
    from ehead_cli.generate.jobs import two_stream_job
    from ehead_cli.generate.scheduler import trim_to_content

    mic = speech(13.49, 1) * 0.3
    sf.write(tmp_path / "mic.wav", mic, RATE)
    sf.write(tmp_path / "agent.wav", speech(3.0, 2), RATE)
    (tmp_path / "segs.csv").write_text("start,end,available\n0.0,3.0,9.0\n")
    job = two_stream_job(tmp_path / "mic.wav", tmp_path / "agent.wav", tmp_path / "segs.csv", tmp_path, None, 100)
    assert len(job.audio) == len(mic) and len(job.states) == -(-len(mic) // 640) == 338
    from ehead_cli.io.audio import load_audio

    single, states, _ = schedule_session(load_audio(tmp_path / "mic.wav"), load_audio(tmp_path / "agent.wav"),
                                         [AgentUtterance(0.0, 3.0, 9.0)])  # what the job read, whole windows
    assert len(states) == 400
    whole = gen.generate(single, states, seed=2).motion
    np.testing.assert_array_equal(gen.generate(job.audio, job.states, seed=2).motion, whole[:338])
    # agent speech that runs past the microphone's end is kept whole
    late_audio, late_states = trim_to_content(single, np.where(np.arange(400) < 390, states, 1).astype(np.int8),
                                              len(mic))
    assert len(late_states) == 400 and len(late_audio) == 400 * 640


def test_cli_render_existing_npz(tiny_checkpoint, tmp_path):
    m = Motion(np.zeros((30, 115)), np.zeros(300), np.ones(30), 25)
    save_motion(tmp_path / "m.npz", m)
    sf.write(tmp_path / "a.wav", speech(1.2), RATE)
    code, out, err = run_cli("render", str(tmp_path / "m.npz"), "--audio", str(tmp_path / "a.wav"),
                             "--size", "48")
    assert code == 0, err
    info = probe_mp4(tmp_path / "m.mp4")
    assert info.n_frames == 30 and info.audio_codec == "aac"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                    reason="torch.compile on the CPU needs a C compiler")
def test_compiled_sampler_matches_eager(tiny_checkpoint):
    """``Generator.compile`` (what ``ehead bench --compile`` uses): same motion as eager, and the
    whole velocity network is generated code (no complex-number fallback)."""
    eager = Generator(load_checkpoint(tiny_checkpoint), "cpu", steps=2)
    compiled = Generator(load_checkpoint(tiny_checkpoint), "cpu", steps=2).compile()
    audio, states = speech(5.0), alternating(125)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = compiled.generate(audio, states).motion
    assert not [w for w in caught if "complex" in str(w.message)]
    np.testing.assert_allclose(out, eager.generate(audio, states).motion, atol=1e-5)


def test_encoder_and_sampler_each_trace_to_one_graph(gen):
    """What ``Generator.compile`` relies on for two CUDA graphs per window: no graph breaks in the
    audio encoder or in the sampler (condition + every Euler step)."""
    import torch

    jobs = [gen.begin(speech(4.0), alternating(100))]
    b = gen.window_batch(jobs, 0)
    with torch.inference_mode():
        audio = gen._encode(b.wave)
        for fn, args in ((gen._encode, (b.wave,)), (gen._sample, (audio, b, 4))):
            report = torch._dynamo.explain(fn)(*args)
            assert (report.graph_count, report.graph_break_count) == (1, 0), report.break_reasons
