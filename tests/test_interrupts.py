"""Ctrl-C and SIGTERM while a command writes: no temporary is left, one line says what was kept, and
temporaries that only SIGKILL can leave are removed by the next write into the folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ehead_cli.io.atomic import atomic_path, remove_stale_temporaries


def _long_job(tmp_path: Path, seconds: int = 60) -> list[str]:
    audio, states = tmp_path / "long.wav", tmp_path / "long.csv"
    sf.write(audio, (np.random.default_rng(0).normal(size=16000 * seconds) * 0.1).astype(np.float32), 16000)
    states.write_text(f"start,end,state\n0,{seconds},speak\n")
    return ["generate", "--audio", str(audio), "--states", str(states), "--out", str(tmp_path / "out"),
            "--threads", "1"]


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                             (signal.SIGINT, 130, "interrupted")])
def test_a_signal_during_encoding_leaves_no_temporary(tmp_path, sig, code, word):
    proc = subprocess.Popen([sys.executable, "-m", "ehead_cli", *_long_job(tmp_path)], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    out = tmp_path / "out"
    deadline = time.monotonic() + 120
    while not list(out.glob(".long.*.tmp.mp4")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the job ended before its MP4 was being written"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert sorted(p.name for p in out.iterdir()) == ["long.npz"]  # the finished NPZ, no temporary
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"{word}: kept 1 finished file(s) (long.npz)"), err


def test_the_next_write_removes_temporaries_of_dead_writers(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    stale = tmp_path / f".clip.ehead-{pid}-abcd1234.tmp.mp4"
    stale.write_bytes(b"half a video")
    live = tmp_path / f".clip.ehead-{os.getpid()}-efgh5678.tmp.mp4"  # this process: still writing
    live.write_bytes(b"in progress")
    other = tmp_path / ".notes.tmp"  # not ours
    other.write_text("keep")
    with atomic_path(tmp_path / "clip.npz") as tmp:
        tmp.write_bytes(b"x")
    assert not stale.exists() and live.exists() and other.exists() and (tmp_path / "clip.npz").is_file()
    assert remove_stale_temporaries(tmp_path) == []  # once per folder and process
