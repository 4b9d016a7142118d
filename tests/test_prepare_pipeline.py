"""``prepare``: the dataset-folder contract, broken files reported and skipped, resume, ids and
splits, flags and missing extras, worker processes; on real GRID videos the done-when of issue 7.

The fast tests use videos generated here (tests/test_prepare_ingest.py writes them) with the
GAGAvatar importer as the tracker, so they need neither MediaPipe nor real media.
"""

from __future__ import annotations

import math
import os
import pickle
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import shared_media
from test_prepare_ingest import nearest_source_frame, write_test_video

from ehead_cli.errors import AssetError, ConfigError, InputError
from ehead_cli.face import BuiltinHead
from ehead_cli.io.dataset import load_index, split_for
from ehead_cli.io.motionfile import load_motion
from ehead_cli.io.states import load_states
from ehead_cli.layout import LISTEN, MOTION_FPS, SAMPLE_RATE, SPEAK, n_frames_for
from ehead_cli.prepare.gagavatar import load_gagavatar_track, track_intrinsics
from ehead_cli.prepare.head_centred import head_centred
from ehead_cli.prepare.pipeline import assign_ids, prepare
from ehead_cli.prepare.smoothing import scores_to_states

FRONTAL = np.diag([-1.0, 1.0, -1.0])  # GAGAvatar's R for a face looking into the camera


def write_gagavatar_track(folder, video_stem: str, n_frames: int, seed: int = 0):
    """``folder/<stem>/smoothed.pkl`` in the GAGAvatar tracker's layout, one entry per source frame;
    the jaw opening of frame i is i / 100 so the frame order can be read back from the motion."""
    rng = np.random.default_rng(seed)
    shape = rng.standard_normal(300).astype(np.float32)
    frames = {}
    for i in range(n_frames):
        frames[f"{video_stem}_{i}"] = {
            "bbox": np.array([0.2, 0.1, 0.8, 0.9], np.float32),
            "shapecode": shape,
            "expcode": (0.1 * rng.standard_normal(100)).astype(np.float32),
            "posecode": np.array([0, 0, 0, i / 100, 0, 0], np.float32),
            "eyecode": np.zeros(6, np.float32),
            "transform_matrix": np.concatenate([FRONTAL, [[0.0], [0.0], [9.0]]], axis=1).astype(np.float32),
        }
    out = folder / video_stem
    out.mkdir(parents=True)
    with open(out / "smoothed.pkl", "wb") as f:
        pickle.dump(frames, f)
    return out


@pytest.fixture
def videos(tmp_path):
    """A folder of inputs: two good videos (30 and 25 fps), a broken file, a video without audio and
    a text file; GAGAvatar tracks for the good ones."""
    src = tmp_path / "videos"
    src.mkdir()
    write_test_video(src / "talk_30fps.mkv", n_frames=60, fps=30, audio="noise")
    write_test_video(src / "talk 25fps.mov", n_frames=40, fps=25)  # a space in the name
    (src / "broken.mp4").write_bytes(b"\x00" * 4096)
    write_test_video(src / "mute.mkv", n_frames=25, audio=None)
    (src / "notes.txt").write_text("not a video")
    tracks = tmp_path / "tracks"
    write_gagavatar_track(tracks, "talk_30fps", 60)
    write_gagavatar_track(tracks, "talk 25fps", 40, seed=1)
    return src, tracks


def run(src, tracks, out, **kwargs):
    return prepare([src], out, states="vad", tracker="gagavatar", gagavatar_track=tracks, progress=False, **kwargs)


def test_dataset_contract_and_broken_files_reported_and_skipped(videos, tmp_path):
    src, tracks = videos
    out = tmp_path / "dataset"
    report = prepare([src, tmp_path / "typo.mp4"], out, states="vad", tracker="gagavatar", gagavatar_track=tracks,
                     progress=False)

    assert sorted(report.done) == ["talk_25fps", "talk_30fps"] and not report.skipped and not report.ok
    failed = dict(report.failed)
    assert set(failed) == {"broken", "mute", str(tmp_path / "typo.mp4")}
    assert "no such file" in failed[str(tmp_path / "typo.mp4")]
    assert "broken.mp4" in failed["broken"] and "unreadable media" in failed["broken"]
    assert "mute.mkv" in failed["mute"] and "no audio stream" in failed["mute"]
    assert all("\n" not in m for m in failed.values())

    manifest = pd.read_csv(out / "manifest.csv")
    assert sorted(manifest["id"]) == ["talk_25fps", "talk_30fps"]
    assert {"id", "split", "duration", "n_frames", "source", "speak_fraction"} <= set(manifest.columns)
    for row in manifest.itertuples():
        assert row.split in ("train", "val", "test") and row.split == split_for(row.id)
        clip = out / "clips" / row.id
        wave, rate = sf.read(f"{clip}.flac")
        assert rate == SAMPLE_RATE and wave.ndim == 1
        motion = load_motion(f"{clip}.npz")
        T = motion.n_frames
        assert T == row.n_frames == math.ceil(row.duration * MOTION_FPS) == n_frames_for(len(wave))
        assert motion.fps == MOTION_FPS and set(np.unique(motion.states)) <= {SPEAK, LISTEN}
        np.testing.assert_array_equal(load_states(f"{clip}.states.csv", T), motion.states)
        scores = pd.read_csv(f"{clip}.scores.csv")
        assert len(scores) == T and scores["score"].between(0, 1).all()
    # the 30 fps track was resampled onto 25 fps with the video: frame i holds source frame round(1.2 i),
    # made head-centred with the tracker's camera stored beside it (docs/formats.md)
    track = load_gagavatar_track(tracks / "talk_30fps")
    motion = load_motion(out / "clips" / "talk_30fps.npz")
    expected, camera = head_centred(BuiltinHead(), track.shape, track.motion[[nearest_source_frame(i, 30)
                                                                              for i in range(50)]],
                                    *track_intrinsics())
    np.testing.assert_array_equal(motion.motion, expected)
    np.testing.assert_allclose(motion.camera.pose, camera.pose, atol=1e-6)
    assert motion.camera.focal == pytest.approx(camera.focal) and abs(camera.pose[2][3] + 1.8) < 1e-3  # 1.8 m away
    np.testing.assert_array_equal(motion.shape, track.shape)

    index = load_index(out)  # what `ehead train --data` reads
    assert len(index.clips) == 2 and not index.problems


def test_resume_does_not_redo_finished_clips(videos, tmp_path):
    src, tracks = videos
    out = tmp_path / "dataset"
    run(src, tracks, out)
    clips = out / "clips"
    stamps = {p.name: p.stat().st_mtime_ns for p in clips.iterdir()}

    again = run(src, tracks, out)
    assert not again.done and sorted(again.skipped) == ["talk_25fps", "talk_30fps"]
    assert {p.name: p.stat().st_mtime_ns for p in clips.iterdir()} == stamps  # nothing rewritten
    assert len(pd.read_csv(out / "manifest.csv")) == 2

    # a changed source and a clip whose marker is missing (an interrupted run) are redone
    st = (src / "talk_30fps.mkv").stat()
    os.utime(src / "talk_30fps.mkv", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    (clips / "talk_25fps.json").unlink()
    third = run(src, tracks, out)
    assert sorted(third.done) == ["talk_25fps", "talk_30fps"] and not third.skipped
    assert len(pd.read_csv(out / "manifest.csv")) == 2


@pytest.mark.slow  # a worker pool over the videos: ~8 s
def test_worker_processes_give_the_same_clips(videos, tmp_path):
    src, tracks = videos
    serial = run(src, tracks, tmp_path / "serial")
    parallel = run(src, tracks, tmp_path / "parallel", workers=2)
    assert sorted(parallel.done) == sorted(serial.done) and dict(parallel.failed) == dict(serial.failed)
    for clip_id in serial.done:
        a = load_motion(tmp_path / "serial" / "clips" / f"{clip_id}.npz")
        b = load_motion(tmp_path / "parallel" / "clips" / f"{clip_id}.npz")
        # a worker runs torch on one thread, the serial run on several: sums reorder (~1e-10)
        np.testing.assert_allclose(a.motion, b.motion, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(a.states, b.states)


def test_ids_are_unique_and_stable(tmp_path):
    a, b = tmp_path / "x" / "clip.mp4", tmp_path / "y" / "clip.mp4"
    lone = tmp_path / "x" / "my clip!.mkv"
    ids = assign_ids([a, b, lone], tmp_path / "clips")
    assert ids[lone] == "my_clip_" and ids[a] != ids[b] and ids[a].startswith("clip-")
    assert assign_ids([b, a, lone], tmp_path / "clips") == ids
    assert {split_for(f"clip{i}") for i in range(200)} == {"train", "val", "test"}


def test_bad_flags_missing_assets_and_missing_extra_fail_before_any_work(videos, tmp_path, monkeypatch):
    src, tracks = videos
    out = tmp_path / "dataset"
    with pytest.raises(ConfigError, match="--states"):
        prepare([src], out, states="asr", tracker="gagavatar", gagavatar_track=tracks, progress=False)
    with pytest.raises(ConfigError, match="--tracker"):
        prepare([src], out, tracker="dlib", progress=False)
    with pytest.raises(ConfigError, match="--gagavatar-track"):
        prepare([src], out, tracker="gagavatar", progress=False)
    with pytest.raises(InputError, match="nowhere: not found"):  # a path that does not exist is named as such
        run(tmp_path / "nowhere", tracks, out)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no video files"):  # an existing folder without videos
        run(tmp_path / "empty", tracks, out)
    monkeypatch.delenv("EHEAD_TALKNET", raising=False)
    with pytest.raises(AssetError, match="--talknet"):
        prepare([src], out, states="talknet", tracker="gagavatar", gagavatar_track=tracks, progress=False)
    for name in [m for m in sys.modules if m == "mediapipe" or m.startswith("mediapipe.")] + ["mediapipe"]:
        monkeypatch.setitem(sys.modules, name, None)  # the landmarks extra is not installed
    with pytest.raises(AssetError) as err:
        prepare([src], out, tracker="landmarks", progress=False)
    assert "\n" not in str(err.value) and 'pip install -e ".[landmarks]"' in str(err.value)
    assert not out.exists()  # nothing was written


@pytest.mark.media
@pytest.mark.slow
def test_grid_videos_become_a_training_dataset_listening_at_both_ends(shared_data, tmp_path):
    """Issue 7's done-when: ``ehead prepare grid/*.mpg --states vad --tracker landmarks``."""
    import mediapipe  # noqa: F401 (the landmarks extra, installed by `make install`: fail, not skip)
    videos = shared_media(shared_data, "grid", "*.mpg")
    report = prepare(videos, tmp_path / "prepared", states="vad", tracker="landmarks", workers=2, progress=False)
    assert report.ok and len(report.done) == len(videos)
    index = load_index(tmp_path / "prepared")
    assert len(index.clips) == len(videos) and not index.problems
    for clip in index.clips:
        assert (clip.states[:10] == LISTEN).all() and (clip.states[-10:] == LISTEN).all(), clip.id
        assert clip.states[clip.n_frames // 2] == SPEAK, clip.id
        assert clip.meta["face_found"] == 1.0 and clip.meta["landmark_rmse_px"] < 5.0


@pytest.mark.slow
def test_talknet_states_from_a_rendered_face(tmp_path):
    """``states="talknet"`` end to end on a rendered head (random TalkNet weights in the official
    layout; MediaPipe finds the face boxes, so this needs the landmarks extra)."""
    import mediapipe  # noqa: F401 (the landmarks extra, installed by `make install`: fail, not skip)
    import torch

    from ehead_cli.face.builtin import BuiltinHead
    from ehead_cli.prepare.talknet import TalkNet
    from ehead_cli.render import Renderer

    weights = tmp_path / "pretrain_TalkSet.model"
    torch.manual_seed(0)
    torch.save(TalkNet().state_dict(), weights)
    face = BuiltinHead().eval()
    motion = torch.zeros(25, 115)
    motion[:, 100] = torch.linspace(0.0, 0.3, 25)
    images = Renderer(face, size=128).render(torch.zeros(300), motion).numpy()
    write_test_video(tmp_path / "head.mkv", n_frames=25, images=images, audio="noise")
    report = prepare([tmp_path / "head.mkv"], tmp_path / "out", states="talknet", tracker="landmarks",
                     talknet=weights, progress=False)
    assert report.ok and report.done == ["head"]
    scores = pd.read_csv(tmp_path / "out" / "clips" / "head.scores.csv")
    assert len(scores) == 25 and np.isfinite(scores["talknet_logit"]).all() and scores["score"].between(0, 1).all()
    motion_out = load_motion(tmp_path / "out" / "clips" / "head.npz")
    states, _ = scores_to_states(scores["talknet_logit"].to_numpy(), logits=True)
    np.testing.assert_array_equal(motion_out.states, states)


def test_problems_go_to_stderr_and_a_failed_run_leaves_no_manifest(videos, tmp_path, capsys):
    src, tracks = videos
    out = tmp_path / "only-bad"
    report = prepare([src / "broken.mp4", src / "mute.mkv"], out, tracker="gagavatar", gagavatar_track=tracks,
                     progress=True)
    assert not report.ok and len(report.failed) == 2
    captured = capsys.readouterr()
    assert "broken.mp4" in captured.err and "mute.mkv" in captured.err and "broken.mp4" not in captured.out
    assert not (out / "manifest.csv").exists()  # a header-only manifest would look like a dataset


def test_a_clip_far_shorter_than_declared_or_than_a_second_is_warned_about(tmp_path):
    from fractions import Fraction

    from ehead_cli.prepare.ingest import IngestedAudio, MediaProbe, duration_warnings

    def probe(declared):
        return MediaProbe(tmp_path / "v.mp4", 64, 64, 25.0, 0.0, 0.6, 0.0, declared)

    short = IngestedAudio(np.zeros(int(0.6 * SAMPLE_RATE), np.float32), Fraction(0), 15)
    warned = duration_warnings(probe(3.0), short, 1.0)
    assert len(warned) == 2 and "decoded 0.60 s of the 3.00 s the file declares" in warned[0]
    assert "only 0.60 s long" in warned[1]
    whole = IngestedAudio(np.zeros(3 * SAMPLE_RATE, np.float32), Fraction(0), 75)
    assert duration_warnings(probe(3.02), whole, 1.0) == [] and duration_warnings(probe(None), whole, 1.0) == []


def test_the_default_tracker_on_a_rendered_face(tmp_path):
    """``prepare`` with its defaults (``--tracker landmarks``: MediaPipe, then the built-in head's fit)
    on 1 s of a rendered head: the fast check of the default tracker that `make test` runs."""
    import mediapipe  # noqa: F401 (the landmarks extra, installed by `make install`: fail, not skip)
    import torch

    from ehead_cli.render import Renderer

    face = BuiltinHead().eval()
    motion = torch.zeros(25, 115)
    motion[:, 100] = torch.linspace(0.0, 0.3, 25)  # the jaw opens
    images = Renderer(face, size=128).render(torch.zeros(300), motion).numpy()
    write_test_video(tmp_path / "head.mkv", n_frames=25, images=images, audio="noise")
    report = prepare([tmp_path / "head.mkv"], tmp_path / "out", progress=False)
    assert report.ok and report.done == ["head"], report.failed
    clip = load_motion(tmp_path / "out" / "clips" / "head.npz")
    assert clip.n_frames == 25 and np.isfinite(clip.motion).all() and clip.camera is not None
    assert load_index(tmp_path / "out").clips[0].meta["face_found"] == 1.0
