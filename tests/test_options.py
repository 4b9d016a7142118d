"""Every option is checked once (ehead_cli.checks), the same way by every command that takes it and by
the Python API: a bad value is one line naming the flag, exit status 2, no traceback."""

from __future__ import annotations

import numpy as np
import pytest
from cli_runner import run_cli

from ehead_cli import checks
from ehead_cli.errors import ConfigError, InputError

CLIP = ["--audio", "sample_data/clips/conv009_fr.flac", "--states", "sample_data/clips/conv009_fr.csv"]


@pytest.mark.parametrize("args, message", [
    (["generate", *CLIP, "--steps", "0"], "--steps must be in 1..25, got 0"),
    (["generate", *CLIP, "--steps", "26"], "--steps must be in 1..25, got 26"),
    (["generate", *CLIP, "--steps", "-1"], "--steps must be in 1..25, got -1"),
    (["generate", *CLIP, "--size", "7"], "--size must be an even number of pixels >= 16, got 7"),
    (["generate", *CLIP, "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["generate", *CLIP, "--threads", "0"], "--threads must be >= 1, got 0"),
    (["generate", *CLIP, "--magnitude", "1.5", "0.3"], "--magnitude takes two values in [0, 1]"),
    (["bench", "--fps", "--steps", "30"], "--steps must be in 1..25, got 30"),
    (["bench", "--fps", "--steps", "1,0"], "--steps must be in 1..25, got 0"),
    (["bench", "--fps", "--seconds", "0"], "--seconds must be a positive number of seconds, got 0.0"),
    (["bench", "--fps", "--size", "7"], "--size must be an even number of pixels >= 16, got 7"),
    (["bench", "--fps", "--repeats", "0"], "--repeats must be >= 1, got 0"),
    (["bench", "--fps", "--threads", "0"], "--threads must be >= 1, got 0"),
    (["bench", "--fps", "--batch-sizes", "4,x"], "--batch-sizes takes a comma list of integers"),
    (["render", "nothing.npz", "--size", "7"], "--size must be an even number of pixels >= 16, got 7"),
    (["prepare", "nothing.mp4", "--out", "x", "--workers", "0"], "--workers must be >= 1, got 0"),
    (["eval", "--pred", "p", "--gt", "g", "--threads", "0"], "--threads must be >= 1, got 0"),
    (["train", "--data", "d", "--out", "o", "--threads", "0"], "--threads must be >= 1, got 0"),
])
def test_a_bad_option_is_one_line_naming_the_flag(args, message):
    code, _, err = run_cli(*args)
    assert code == 2
    assert err.strip() == f"error: {message}" or (err.startswith(f"error: {message}") and err.count("\n") == 1)


def test_the_api_checks_with_the_same_messages(tiny_checkpoint):
    from ehead_cli.generate.generator import Generator

    with pytest.raises(ConfigError, match="--steps must be in 1..25, got 0"):
        Generator.from_checkpoint(tiny_checkpoint, device="cpu", steps=0)
    gen = Generator.from_checkpoint(tiny_checkpoint, device="cpu")
    audio = np.zeros(16000, np.float32)
    with pytest.raises(InputError, match=r"frame 0 has state 5; states are 1 \(speak\) or -1 \(listen\)"):
        gen.generate(audio, np.full(25, 5))
    with pytest.raises(InputError, match="frame 3 has state 0"):
        gen.generate(audio, np.r_[np.ones(3), 0, np.ones(21)])
    with pytest.raises(InputError, match=r"audio must be mono.*got shape \(16000, 2\)"):
        gen.generate(np.zeros((16000, 2), np.float32), np.ones(25))
    with pytest.raises(InputError, match="states have 24 frames but the audio has 25"):
        gen.generate(audio, np.ones(24))
    with pytest.raises(ConfigError, match=r"--magnitude takes two values in \[0, 1\]"):
        gen.generate(audio, np.ones(25), magnitude=(0.3, 2.0))
    assert gen.generate(audio, np.ones(25)).motion.shape == (25, 115)


def test_durations_in_messages_are_the_real_ones():
    assert checks.seconds(0.1) == "0.1 s" and checks.seconds(8.375) == "8.375 s" and checks.seconds(12.0) == "12 s"


def test_threads_come_from_the_flag_the_environment_or_the_load(monkeypatch):
    import torch

    from ehead_cli import devices

    before = torch.get_num_threads()
    try:
        assert devices.set_threads(1) == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("EHEAD_THREADS", "2")
        assert devices.set_threads(None) == 2
        monkeypatch.setenv("EHEAD_THREADS", "zero")
        with pytest.raises(ConfigError, match="EHEAD_THREADS must be a whole number"):
            devices.set_threads(None)
        monkeypatch.delenv("EHEAD_THREADS")
        monkeypatch.setattr(devices, "_cores", lambda: 2)
        monkeypatch.setattr(devices.os, "getloadavg", lambda: (1.2, 1.0, 1.0))  # the other core is busy
        assert devices.default_threads() == 1
        monkeypatch.setattr(devices.os, "getloadavg", lambda: (0.1, 0.1, 0.1))  # a quiet machine
        assert devices.default_threads() == 2
        monkeypatch.setattr(devices.os, "getloadavg", lambda: (5.0, 5.0, 5.0))  # overloaded: still one
        assert devices.default_threads() == 1
    finally:
        torch.set_num_threads(before)
