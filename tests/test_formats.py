"""File formats: audio, states CSV, motion NPZ, checkpoint folders. Every bad input gives a
one-line error naming the file (and line)."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from ehead_cli.errors import InputError
from ehead_cli.io.audio import load_audio
from ehead_cli.io.motionfile import Motion, load_motion, save_motion
from ehead_cli.io.states import load_states, read_states, states_to_segments, write_states
from ehead_cli.model.checkpoint import load_checkpoint, save_checkpoint
from ehead_cli.model.config import preset
from ehead_cli.model.network import EmbodiedHead


def one_line(err: pytest.ExceptionInfo, *needles: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, (n, msg)


# --- audio ------------------------------------------------------------------------------------
def test_audio_resamples_and_downmixes(tmp_path):
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t) * 0.5], 1).astype(np.float32)
    sf.write(tmp_path / "a.wav", stereo, 44100)
    sf.write(tmp_path / "a.flac", stereo, 44100)
    for name in ("a.wav", "a.flac"):
        w = load_audio(tmp_path / name)
        assert w.dtype == np.float32 and w.ndim == 1 and abs(len(w) - 16000) <= 1
        assert abs(np.abs(w).max() - 0.75) < 0.02  # mean of the channels


def test_audio_other_containers_through_pyav(tmp_path):
    path = tmp_path / "a.m4a"
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=22050)
        s.layout = "mono"
        t = np.arange(22050) / 22050
        wave = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
        frame.sample_rate = 22050
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    w = load_audio(path)
    assert abs(len(w) / 16000 - 1.0) < 0.1 and np.abs(w).max() > 0.3


def test_audio_bad_inputs(tmp_path):
    with pytest.raises(InputError) as e:
        load_audio(tmp_path / "missing.wav")
    one_line(e, "missing.wav", "not found")
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    with pytest.raises(InputError) as e:
        load_audio(tmp_path / "junk.wav")
    one_line(e, "junk.wav", "unreadable")
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(InputError) as e:
        load_audio(tmp_path / "empty.wav")
    one_line(e, "empty.wav", "empty")
    bad = np.zeros(1600, np.float32)
    bad[5] = np.nan
    sf.write(tmp_path / "nan.wav", bad, 16000, subtype="FLOAT")
    with pytest.raises(InputError) as e:
        load_audio(tmp_path / "nan.wav")
    one_line(e, "nan.wav", "NaN")


# --- states -----------------------------------------------------------------------------------
def test_states_per_frame_and_segments(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text("frame,state\n0,listen\n1,speak\n2,1\n3,-1\n")
    assert load_states(p, 4).tolist() == [-1, 1, 1, -1]
    assert load_states(p, 6).tolist() == [-1, 1, 1, -1, -1, -1]  # short: extended with the last state
    assert load_states(p, 2).tolist() == [-1, 1]
    s = tmp_path / "s.csv"
    s.write_text("start,end,state\n0.0,0.2,speak\n# a comment\n\n0.4,1.0,SPEAK\n")
    q = load_states(s, 25)
    assert q.dtype == np.int8
    assert q[:5].tolist() == [1] * 5 and q[5:10].tolist() == [-1] * 5 and q[10:].tolist() == [1] * 15
    assert load_states(s, 40)[30:].tolist() == [-1] * 10  # uncovered frames listen


def test_states_round_trip(tmp_path):
    q = np.array([-1] * 7 + [1] * 13 + [-1] * 5, np.int8)
    for layout in ("segments", "frames"):
        write_states(tmp_path / f"{layout}.csv", q, layout)
        assert load_states(tmp_path / f"{layout}.csv", len(q)).tolist() == q.tolist()
    assert states_to_segments(q) == [(0.0, 0.28, -1), (0.28, 0.8, 1), (0.8, 1.0, -1)]


@pytest.mark.parametrize("text, needle", [
    ("frame,state\n0,speak\n1,talk\n", ":3: state 'talk'"),
    ("frame,state\n0,speak\n0,listen\n", ":3: frame 0 appears twice"),
    ("frame,state\n0,speak\n2,listen\n", "frame 1 is missing"),
    ("frame,state\nx,speak\n", ":2: frame 'x' is not an integer"),
    ("frame,state\n0\n", ":2: expected 2 columns"),
    ("time,state\n0,speak\n", ":1: header must be"),
    ("start,end,state\n0,1,speak\n0.5,2,listen\n", ":3: segment starting at 0.5 s overlaps"),
    ("start,end,state\n1,0.5,speak\n", ":2: need 0 <= start < end"),
    ("start,end,state\n0,abc,speak\n", ":2: start/end must be numbers"),
    ("", "states file is empty"),
    ("frame,state\n", "has a header but no rows"),
])
def test_states_errors_name_the_line(tmp_path, text, needle):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(InputError) as e:
        read_states(p)
    one_line(e, "bad.csv", needle)


def test_states_length_mismatch_beyond_tolerance(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text("frame,state\n" + "".join(f"{i},speak\n" for i in range(100)))
    load_states(p, 112)  # 12 frames = 0.48 s: inside the 0.5 s tolerance
    with pytest.raises(InputError) as e:
        load_states(p, 150)
    one_line(e, "f.csv", "more than 0.5 s apart")
    s = tmp_path / "s.csv"
    s.write_text("start,end,state\n0,10,speak\n")
    with pytest.raises(InputError) as e:
        load_states(s, 100)
    one_line(e, "s.csv", "ends at 10 s")
    with pytest.raises(InputError) as e:
        load_states(tmp_path / "none.csv", 10)
    one_line(e, "none.csv", "not found")


# --- motion NPZ -------------------------------------------------------------------------------
def make_motion(T: int = 30) -> Motion:
    rng = np.random.default_rng(0)
    return Motion(rng.normal(size=(T, 115)), rng.normal(size=300), np.where(rng.random(T) > 0.5, 1, -1), 25)


def test_motion_round_trip_is_atomic(tmp_path):
    m = make_motion()
    save_motion(tmp_path / "m.npz", m)
    r = load_motion(tmp_path / "m.npz")
    assert r.motion.dtype == np.float32 and r.states.dtype == np.int8 and r.fps == 25
    np.testing.assert_array_equal(r.motion, m.motion)
    np.testing.assert_array_equal(r.states, m.states)
    bad = make_motion()
    bad.motion[3, 4] = np.inf
    with pytest.raises(InputError):
        save_motion(tmp_path / "m.npz", bad)
    np.testing.assert_array_equal(load_motion(tmp_path / "m.npz").motion, m.motion)  # old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]  # no temp file left


@pytest.mark.parametrize("arrays, needle", [
    ({"motion": np.zeros((5, 114), np.float32)}, "'motion' must have shape (T, 115)"),
    ({"shape": np.zeros(100, np.float32)}, "'shape' must have shape (300,)"),
    ({"states": np.ones(4, np.int8)}, "'states' must have shape (5,)"),
    ({"states": np.zeros(5, np.int8)}, "only +1 (speak) and -1 (listen)"),
    ({"motion": np.full((5, 115), np.nan, np.float32)}, "NaN"),
    ({"motion": np.zeros((5, 115), np.int32)}, "'motion' has dtype int32"),
    ({"fps": np.array([25, 25])}, "'fps' must be a scalar"),
])
def test_motion_bad_files(tmp_path, arrays, needle):
    data = {"motion": np.zeros((5, 115), np.float32), "shape": np.zeros(300, np.float32),
            "states": np.ones(5, np.int8), "fps": np.float32(25)}
    data.update(arrays)
    np.savez(tmp_path / "bad.npz", **data)
    with pytest.raises(InputError) as e:
        load_motion(tmp_path / "bad.npz")
    one_line(e, "bad.npz", needle)


def test_motion_missing_key_and_junk(tmp_path):
    np.savez(tmp_path / "k.npz", motion=np.zeros((5, 115), np.float32))
    with pytest.raises(InputError) as e:
        load_motion(tmp_path / "k.npz")
    one_line(e, "k.npz", "missing key(s) shape, states, fps")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(InputError) as e:
        load_motion(tmp_path / "junk.npz")
    one_line(e, "junk.npz", "not an NPZ file")
    np.savez(tmp_path / "obj.npz", motion=np.array([object()]), shape=np.zeros(300), states=np.ones(1), fps=25)
    with pytest.raises(InputError) as e:  # object arrays would need unpickling: refused
        load_motion(tmp_path / "obj.npz")
    one_line(e, "obj.npz")


# --- checkpoints ------------------------------------------------------------------------------
def test_checkpoint_rebuilds_the_model_from_the_folder(tmp_path):
    m = EmbodiedHead(preset("tiny"))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    save_checkpoint(tmp_path / "ck", m, {"steps": 3})
    r = load_checkpoint(tmp_path / "ck")
    assert r.cfg == m.cfg and r.meta == {"steps": 3}
    for (k, a), b in zip(m.trainable_state_dict().items(), r.trainable_state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    save_checkpoint(tmp_path / "half", m, dtype=torch.float16)
    h = load_checkpoint(tmp_path / "half")
    assert all(v.dtype == torch.float32 for v in h.trainable_state_dict().values())


def test_checkpoint_bad_folders(tmp_path):
    with pytest.raises(InputError) as e:
        load_checkpoint(tmp_path / "nope")
    one_line(e, "nope", "--checkpoint")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError) as e:
        load_checkpoint(tmp_path / "empty")
    one_line(e, "empty", "no config.json")
    m = EmbodiedHead(preset("tiny"))
    save_checkpoint(tmp_path / "ck", m)
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["model"]["d_model"] = 96
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError) as e:
        load_checkpoint(tmp_path / "ck")
    one_line(e, "model.safetensors", "shape")
    (tmp_path / "ck" / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(InputError) as e:
        load_checkpoint(tmp_path / "ck")
    one_line(e, "model.safetensors", "unreadable")


# --- the first-day defects (issue: messages a newcomer met) ----------------------------------------
def test_messages_state_the_real_durations(tmp_path):
    s = tmp_path / "s.csv"
    s.write_text("start,end,state\n0,9,speak\n")
    with pytest.raises(InputError) as e:  # 0.1 s of audio is 3 frames, but it lasts 0.1 s, not 0.12 s
        load_states(s, 3, audio_seconds=0.1)
    one_line(e, "s.csv", "the audio lasts 0.1 s;")
    f = tmp_path / "f.csv"
    f.write_text("frame,state\n" + "".join(f"{i},speak\n" for i in range(300)))
    with pytest.raises(InputError) as e:
        load_states(f, 210, audio_seconds=8.375)
    one_line(e, "f.csv", "cover 300 frames (12 s) but the audio lasts 8.375 s (210 frames)")


def test_a_non_utf8_states_file_names_its_line(tmp_path):
    p = tmp_path / "latin1.csv"
    p.write_bytes("frame,state\n0,speak\n1,écouter\n".encode("latin-1"))
    with pytest.raises(InputError) as e:
        load_states(p, 2)
    one_line(e, "latin1.csv:3:", "not UTF-8")


def test_folders_given_as_files_are_named_as_folders(tmp_path):
    from ehead_cli.io.audio import load_audio

    with pytest.raises(InputError) as e:
        load_audio(tmp_path)
    one_line(e, "is a folder, not an audio file")
    with pytest.raises(InputError) as e:
        load_states(tmp_path, 10)
    one_line(e, "is a folder, not a states file")
    with pytest.raises(InputError) as e:
        load_motion(tmp_path)
    one_line(e, "is a folder")


def test_unsafe_loading_is_never_suggested(tmp_path):
    p = tmp_path / "states.csv"
    p.write_text("frame,state\n0,speak\n")
    np.save(tmp_path / "obj.npy", np.array([object()]), allow_pickle=True)
    from ehead_cli.avatar.identity import Avatar

    for call in (lambda: load_motion(p), lambda: load_motion(tmp_path / "obj.npz"),
                 lambda: Avatar.load(tmp_path / "obj.npy")):
        if not (tmp_path / "obj.npz").exists():
            np.savez(tmp_path / "obj.npz", motion=np.array([object()]))
        with pytest.raises(InputError) as e:
            call()
        assert "allow_pickle" not in str(e.value) and "pickle.load" not in str(e.value), str(e.value)
