"""Stage II's data: the dataset's frames format, ehead prepare's frames, and the sample data's
tracker-bias variant."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from avatar_fixtures import rendered_video
from conftest import write_dataset

from ehead_cli.avatar.capture import crop_frames, crop_square
from ehead_cli.errors import InputError
from ehead_cli.face import BuiltinHead
from ehead_cli.io.dataset import frames_files, motion_path
from ehead_cli.io.frames import FrameStore, decode_frames, read_frames_info, write_frames
from ehead_cli.io.motionfile import load_motion
from ehead_cli.layout import EXPR, JAW, ROT, TRANS
from ehead_cli.render import Renderer
from ehead_cli.render.clip_camera import ClipCamera


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / ((a.astype(float) - b.astype(float)) ** 2).mean()))


def test_clip_camera_from_a_look_at_camera_projects_identically():
    cam = Renderer(BuiltinHead(), size=40).mesh.camera
    points = torch.randn(3, 50, dtype=torch.float64) * 0.1
    clip = ClipCamera.from_camera(cam, 40, 40)
    torch.testing.assert_close(clip.project_channels(points, 40, 40), cam.project_channels(points, 40, 40))


def test_frames_round_trip_near_lossless_and_the_store(tmp_path):
    frames, _, _, _ = rendered_video(T=12)  # (12, 72, 88, 3): crop to squares first
    squares = crop_frames(frames, 8, 0, 72, 48).numpy()
    camera = ClipCamera.from_rt(np.eye(3), np.array([0, 0, -1.0]), 100.0, 24, 24, 48, 48)
    info = write_frames(tmp_path, "clip", iter(squares), camera, crop=(8, 0, 72), source_size=(72, 88))
    mp4, meta = frames_files(tmp_path, "clip")
    assert info.path == mp4 and info.n_frames == 12 and info.size == 48 and info.crop == (8, 0, 72)
    assert info.camera == camera and json.loads(meta.read_text())["source_size"] == [72, 88]
    decoded = decode_frames(info)
    assert decoded.shape == squares.shape and _psnr(decoded, squares) > 36  # 4:4:4 at CRF 12 (46 dB at 256 px)
    store = FrameStore(budget_mb=0)
    np.testing.assert_array_equal(store.take(info, np.array([3, 0])), decoded[[3, 0]])
    assert read_frames_info(tmp_path, "other") is None  # a clip without frames
    meta.write_text("{")
    with pytest.raises(InputError, match="frames description"):
        read_frames_info(tmp_path, "clip")
    with pytest.raises(ValueError, match="square"):
        write_frames(tmp_path, "bad", iter(frames), camera)


def test_prepare_crops_the_frames_to_the_avatar_capture_square(tmp_path):
    """ehead prepare's frames (the step after tracking): the video decoded again and cropped to
    crop_square of its motion, which is the crop an avatar fit of the same video takes."""
    from test_prepare_ingest import write_test_video

    from ehead_cli.avatar.capture import make_capture
    from ehead_cli.prepare.pipeline import write_clip_frames

    frames, motion, shape, camera = rendered_video(T=25)
    write_test_video(tmp_path / "head.mkv", n_frames=25, images=frames, audio="noise")
    face = BuiltinHead()
    found = np.ones(25, bool)
    info = write_clip_frames(tmp_path / "head.mkv", 25, 0, motion, shape, camera, found, face, tmp_path, "head", 32)
    box, crop_camera = crop_square(motion, shape, camera, found, face, 32, 2.4)
    capture = make_capture(frames, motion, shape, camera, found, face, 32, 2.4, 0.1)
    assert info.crop == box == capture.crop and info.camera == crop_camera == capture.camera
    assert info.n_frames == 25 and _psnr(decode_frames(info), capture.frames.numpy()) > 30  # video codec round trip


@pytest.fixture
def clean(tmp_path):
    root = write_dataset(tmp_path / "clean", {"a": ("train", 2.0), "b": ("val", 2.0), "c": ("test", 2.0)})
    table = pd.read_csv(root / "manifest.csv")
    table["identity"] = ["id00", "id01", "id00"]
    table.to_csv(root / "manifest.csv", index=False)
    for cid in table["id"]:
        (root / "clips" / f"{cid}.csv").write_text("start,end,state\n0,2,speak\n")
    return root


def test_tracker_bias_variant(clean, tmp_path):
    from ehead_cli.sampledata.tracker_bias import (
        EXPR_NOISE,
        JAW_GAIN,
        JAW_LAG_FRAMES,
        ROT_JITTER,
        TRANS_JITTER,
        build_tracker_bias,
    )

    out = tmp_path / "biased"
    manifest = build_tracker_bias(clean, out, size=32)
    assert list(manifest["id"]) == ["a", "b", "c"] and set(manifest["identity"]) == {"id00"}
    person = load_motion(motion_path(clean, "a")).shape
    renderer = Renderer(BuiltinHead(), size=32)
    for cid in ("a", "b", "c"):
        truth, labels = load_motion(motion_path(clean, cid)), load_motion(motion_path(out, cid))
        np.testing.assert_array_equal(load_motion(motion_path(out / "clean", cid)).motion, truth.motion)
        np.testing.assert_array_equal(labels.shape, person)  # one person throughout
        np.testing.assert_array_equal(labels.states, truth.states)
        late = np.concatenate([np.repeat(truth.motion[:1, JAW], JAW_LAG_FRAMES, 0),
                               truth.motion[:-JAW_LAG_FRAMES, JAW]])
        np.testing.assert_allclose(labels.motion[:, JAW], JAW_GAIN * late, rtol=1e-6, atol=1e-7)
        for sl, std in ((EXPR, EXPR_NOISE), (ROT, ROT_JITTER), (TRANS, TRANS_JITTER)):
            noise = labels.motion[:, sl] - truth.motion[:, sl]
            assert abs(noise.mean()) < 0.2 * std and 0.9 * std < noise.std() < 1.1 * std
        # the frames show the clean motion, seen as ehead generate --size 32 would draw it
        frames = decode_frames(read_frames_info(out, cid))
        assert _psnr(frames, renderer.render(person, truth.motion).numpy()) > 34  # H.264 at 32 px: ~36 dB
        assert _psnr(frames, renderer.render(person, labels.motion).numpy()) < 31  # the labels' motion: ~28 dB
    jobs = pd.read_csv(out / "test_jobs.csv")
    assert list(jobs["audio"]) == ["clips/c.flac"] and (out / jobs["states"][0]).is_file()
    again = build_tracker_bias(clean, tmp_path / "again", size=32)  # a fixed function of the seed
    np.testing.assert_array_equal(load_motion(motion_path(tmp_path / "again", "a")).motion,
                                  load_motion(motion_path(out, "a")).motion)
    assert len(again) == 3


def test_tracker_bias_command_line(clean, tmp_path, capsys):
    from ehead_cli.sampledata.__main__ import main

    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x"), "--tracker-bias"])  # needs --from
    assert "--from" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x"), "--size", "64"])  # --size is the variant's
    assert "--size applies to --tracker-bias" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "x"), "--tracker-bias", "--from", str(clean), "--identity", "id07"]) == 1
    assert "id07" in capsys.readouterr().err
