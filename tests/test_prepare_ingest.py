"""Ingest: decoding, 25 fps resampling with exact timestamps, audio to 16 kHz mono, bad files.

Test videos are generated here with PyAV: every frame shows its own index as an 8-bit code of
black/white stripes (robust to H.264), the audio is a tone (or noise) of known length.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from ehead_cli.errors import InputError
from ehead_cli.layout import SAMPLE_RATE, n_frames_for
from ehead_cli.prepare.ingest import (
    check_coverage,
    iter_video_frames,
    load_clip_audio,
    probe_media,
    read_video_frames,
    source_frame_indices,
)

CODE_BITS = 8
STRIPE = 8  # pixels per code bit
SIZE = CODE_BITS * STRIPE  # 64 x 64 frames
AUDIO_RATE = 44_100  # the source rate; ingest must bring it to 16 kHz


def frame_with_code(index: int) -> np.ndarray:
    """(64, 64, 3) uint8: stripe b is white when bit b of ``index`` is set."""
    bits = (index >> np.arange(CODE_BITS)) & 1
    row = np.repeat(bits * 255, STRIPE).astype(np.uint8)
    return np.repeat(np.repeat(row[None, :, None], SIZE, axis=0), 3, axis=2)


def read_code(frame: np.ndarray) -> int:
    """Inverse of ``frame_with_code`` on a decoded (lossy) frame."""
    centres = frame[SIZE // 2, STRIPE // 2:: STRIPE, :].mean(axis=-1)
    return int(((centres > 127) << np.arange(CODE_BITS)).sum())


def write_test_video(path, n_frames: int, fps: int = 25, audio: str | np.ndarray | None = "tone",
                     seconds: float | None = None, images=None, audio_codec: str = "pcm_s16le"):
    """Write an H.264 video of ``n_frames`` coded frames at ``fps`` (or the given (H, W, 3) uint8
    ``images``) with ``seconds`` of audio (default: as long as the video): a 220 Hz tone, white
    noise, or a (N,) float array at 16 kHz. PCM keeps the audio length exact (MKV, MOV); AAC
    (for MP4) pads it to whole 1024-sample blocks."""
    seconds = n_frames / fps if seconds is None else seconds
    with av.open(str(path), mode="w") as out:
        v = out.add_stream("libx264", rate=fps, options={"crf": "10", "preset": "ultrafast"})
        first = images[0] if images is not None else frame_with_code(0)
        v.height, v.width, v.pix_fmt = first.shape[0], first.shape[1], "yuv420p"
        a = None
        if audio is not None:
            rate = SAMPLE_RATE if isinstance(audio, np.ndarray) else AUDIO_RATE
            a = out.add_stream(audio_codec, rate=rate, layout="mono")
            if isinstance(audio, np.ndarray):
                wave = audio.astype(np.float32)
            else:
                t = np.arange(int(round(seconds * rate))) / rate
                rng = np.random.default_rng(0)
                wave = (0.3 * np.sin(2 * np.pi * 220 * t) if audio == "tone"
                        else 0.1 * rng.standard_normal(t.size)).astype(np.float32)
        for i in range(n_frames):
            image = images[i] if images is not None else frame_with_code(i)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
        if a is not None:
            step = 1024
            for start in range(0, wave.size, step):
                samples = wave[None, start: start + step]
                if audio_codec.startswith("pcm_s16"):
                    chunk = av.AudioFrame.from_ndarray((samples * 32767).astype(np.int16), format="s16", layout="mono")
                else:
                    chunk = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
                chunk.sample_rate, chunk.pts = a.rate, start
                out.mux(a.encode(chunk))
            out.mux(a.encode(None))
    return path


def nearest_source_frame(i: int, source_fps: int, fps: int = 25) -> int:
    """The source frame nearest to output instant i / fps (a tie goes to the earlier frame)."""
    x = Fraction(i * source_fps, fps)  # position of the instant in source frames
    lower = x.numerator // x.denominator
    return lower if x - lower <= Fraction(1, 2) else lower + 1


def test_30fps_input_is_resampled_to_25fps_with_frame_accurate_timestamps(tmp_path):
    path = write_test_video(tmp_path / "thirty.mkv", n_frames=60, fps=30)  # 2 s
    audio = load_clip_audio(path)
    assert audio.n_frames == 50 == n_frames_for(audio.audio.shape[0])
    frames = read_video_frames(path, audio.n_frames, audio.start)
    assert frames.shape == (50, SIZE, SIZE, 3) and frames.dtype == np.uint8
    got = [read_code(f) for f in frames]
    want = [nearest_source_frame(i, 30) for i in range(50)]
    assert got == want  # e.g. output 1 (40 ms) shows source 1 (33 ms), output 4 (160 ms) source 5 (167 ms)
    indices, count = source_frame_indices(path, audio.n_frames, audio.start)
    assert count == 60 and indices.tolist() == want


def test_25fps_input_maps_one_to_one_and_short_video_holds_its_last_frame(tmp_path):
    path = write_test_video(tmp_path / "same.mkv", n_frames=20, fps=25, seconds=1.0)  # audio 0.2 s longer
    audio = load_clip_audio(path)
    assert audio.n_frames == 25
    got = [read_code(f) for f in iter_video_frames(path, audio.n_frames, audio.start)]
    assert got == list(range(20)) + [19] * 5
    check_coverage(probe_media(path), audio)  # a 0.2 s gap is within MAX_AV_GAP_S


def test_audio_becomes_16k_mono_of_the_right_length(tmp_path):
    path = write_test_video(tmp_path / "tone.mp4", n_frames=30, fps=25, audio_codec="aac")
    audio = load_clip_audio(path)
    assert audio.audio.dtype == np.float32 and audio.audio.ndim == 1
    assert abs(audio.duration - 1.2) < 0.03  # AAC pads by at most one 1024-sample block at 44.1 kHz
    # a 220 Hz tone survives the resampling: the spectrum peaks there
    spec = np.abs(np.fft.rfft(audio.audio[2000:14000]))
    peak_hz = np.argmax(spec) * SAMPLE_RATE / 12000
    assert abs(peak_hz - 220) < 3


def test_broken_and_incomplete_files_raise_one_line_errors_naming_them(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01 definitely not a video" * 50)
    silent = write_test_video(tmp_path / "silent.mkv", n_frames=10, audio=None)
    short_video = write_test_video(tmp_path / "short.mkv", n_frames=5, seconds=2.0)
    for path, reason in ((garbage, "unreadable media"), (silent, "no audio stream"),
                         (tmp_path / "missing.mp4", "not found")):
        with pytest.raises(InputError) as err:
            probe_media(path)
        assert str(path) in str(err.value) and reason in str(err.value) and "\n" not in str(err.value)
    probe = probe_media(short_video)
    with pytest.raises(InputError, match="misses"):
        check_coverage(probe, load_clip_audio(short_video))
