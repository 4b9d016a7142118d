"""Ctrl-C and SIGTERM while a command writes: no temporary is left, one line says what was kept, and
temporaries that only SIGKILL can leave are removed by the next write into the folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ehead_cli.io.atomic import atomic_path, remove_stale_temporaries

# The signal arrives at a known point, not after a guessed delay: the command runs in a child process
# whose ``write_mp4`` (ehead_cli.io.video, looked up by the generate job when it writes) pauses after
# the first frame, once the temporary MP4 is open, and says so on stdout; the test sends the signal
# then. Nothing depends on how fast the machine is.
PAUSED = "encoding: paused after the first frame"
CHILD = f"""
import sys, time

from ehead_cli.cli import main
from ehead_cli.io import video

write_mp4 = video.write_mp4


def paused(frames):
    frames = iter(frames)
    yield next(frames)
    print({PAUSED!r}, flush=True)  # the temporary MP4 is open and holds a frame
    time.sleep(300)  # the signal ends the sleep; 300 s only bounds a test that never sends it
    yield from frames


video.write_mp4 = lambda path, frames, *args, **kwargs: write_mp4(path, paused(frames), *args, **kwargs)
sys.argv = ["ehead", *sys.argv[1:]]
main()
"""


def _long_job(tmp_path: Path, seconds: int = 4) -> list[str]:
    audio, states = tmp_path / "long.wav", tmp_path / "long.csv"
    sf.write(audio, (np.random.default_rng(0).normal(size=16000 * seconds) * 0.1).astype(np.float32), 16000)
    states.write_text(f"start,end,state\n0,{seconds},speak\n")
    return ["generate", "--audio", str(audio), "--states", str(states), "--out", str(tmp_path / "out"),
            "--threads", "1"]


@pytest.mark.slow  # a child process signalled mid-encoding, twice: ~11 s
@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                             (signal.SIGINT, 130, "interrupted")])
def test_a_signal_during_encoding_leaves_no_temporary(tmp_path, sig, code, word):
    with open(tmp_path / "stderr.txt", "w+") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, *_long_job(tmp_path)], stdout=subprocess.PIPE,
                                stderr=stderr, text=True)
        line = proc.stdout.readline().strip()  # blocks until the child pauses (or ends: then "")
        out = tmp_path / "out"
        assert line == PAUSED and list(out.glob(".long.*.tmp.mp4")), "the job ended before its MP4 was being written"
        assert proc.poll() is None, "the job ended before its MP4 was being written"
        proc.send_signal(sig)
        proc.communicate(timeout=60)
        stderr.seek(0)
        err = stderr.read()
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
