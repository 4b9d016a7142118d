"""MP4 writing: streams, codecs, frame count and durations read back with PyAV; atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ehead_cli.errors import InputError
from ehead_cli.io.video import probe_mp4, read_frames, write_mp4
from ehead_cli.layout import MOTION_FPS, SAMPLE_RATE

SECONDS = 2
N_FRAMES = SECONDS * MOTION_FPS


def _frames(n: int, height: int = 64, width: int = 96):
    """A generator of frames whose grey level ramps up, so frame order is visible after encoding."""
    for i in range(n):
        yield np.full((height, width, 3), 40 + 3 * i, dtype=np.uint8)


def _tone(seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)


def test_two_seconds_with_audio_read_back(tmp_path):
    out = write_mp4(tmp_path / "clip.mp4", _frames(N_FRAMES), _tone(SECONDS))
    info = probe_mp4(out)
    assert info.stream_kinds == ("video", "audio")
    assert (info.video_codec, info.pix_fmt, info.fps) == ("h264", "yuv420p", float(MOTION_FPS))
    assert (info.width, info.height, info.n_frames) == (96, 64, N_FRAMES)
    assert info.audio_codec == "aac" and info.sample_rate == SAMPLE_RATE
    assert abs(info.video_duration - SECONDS) < 1e-6
    assert abs(info.video_duration - info.audio_duration) <= 1 / MOTION_FPS
    assert info.faststart  # index at the front: plays in a browser before the download ends
    grey = read_frames(out)[:, 32, 48, 0].astype(float)
    assert np.allclose(grey, 40 + 3 * np.arange(N_FRAMES), atol=3)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_partial_last_frame_and_resampled_audio(tmp_path):
    # 1.23 s of 11 kHz audio (a rate AAC cannot carry): ceil(1.23 x 25) = 31 frames
    audio = _tone(1.23, rate=11_000)
    info = probe_mp4(write_mp4(tmp_path / "odd.mp4", _frames(31), audio, sample_rate=11_000))
    assert info.n_frames == 31 and info.sample_rate == 48_000
    assert abs(info.audio_duration - 1.23) < 0.01
    assert abs(info.video_duration - info.audio_duration) <= 1 / MOTION_FPS


def test_tensor_input_with_odd_size_and_no_audio(tmp_path):
    frames = torch.randint(0, 255, (7, 33, 47, 3), dtype=torch.uint8)
    info = probe_mp4(write_mp4(tmp_path / "silent.mp4", frames))
    assert info.stream_kinds == ("video",) and info.audio_duration is None
    assert (info.width, info.height, info.n_frames) == (48, 34, 7)  # padded to even for yuv420p


def test_failure_mid_write_leaves_no_file(tmp_path):
    def broken():
        yield from _frames(5)
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError, match="renderer crashed"):
        write_mp4(tmp_path / "clip.mp4", broken(), _tone(SECONDS))
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_the_previous_file_intact(tmp_path):
    path = write_mp4(tmp_path / "clip.mp4", _frames(N_FRAMES), _tone(SECONDS))
    before = path.read_bytes()
    with pytest.raises(ValueError, match="audio"):
        write_mp4(path, _frames(10), _tone(SECONDS))  # 0.4 s of video for 2 s of audio
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_bad_frames_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_mp4(tmp_path / "f.mp4", np.zeros((3, 16, 16, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="frame 1"):
        write_mp4(tmp_path / "f.mp4", [np.zeros((16, 16, 3), np.uint8), np.zeros((18, 16, 3), np.uint8)])
    with pytest.raises(ValueError, match="no frames"):
        write_mp4(tmp_path / "f.mp4", iter([]))
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_is_one_line_input_error(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the output folder should be")
    with pytest.raises(InputError) as err:
        write_mp4(blocker / "clip.mp4", _frames(3))
    message = str(err.value)
    assert "\n" not in message and "not_a_folder" in message and "--out" in message
