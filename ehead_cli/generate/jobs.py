"""Batch generation as the CLI runs it: validate every job, generate the good ones together
(windows batched across jobs), write NPZ + MP4 per job, report the bad ones.

Job sources: repeated ``--audio/--states`` pairs, or a jobs CSV with columns ``audio,states`` and
optional ``out`` (output path without suffix) and ``avatar``; relative paths in the CSV are
resolved against the CSV's folder. A states value of ``auto`` derives the states from the audio's
voice activity (``ehead_cli.generate.auto_states``). Outputs go to ``OUT/<audio stem>.npz`` and ``.mp4`` unless a
job names its own ``out``.

Two-stream mode (one session): ``--user-audio`` (the microphone) and ``--agent-audio`` (the agent's
speech), with ``--agent-segments`` (CSV ``start,end[,available]`` in seconds: where each agent
utterance lies in the agent track and when it becomes available; ``available`` defaults to
``start``). Without a segments file, agent utterances are the stretches of the agent track louder
than ``AGENT_SILENCE_DB`` below its peak, split at pauses of at least ``AGENT_PAUSE_S``, each
available at its start. The scheduler (ehead_cli.generate.scheduler) turns them into the single stream and
the states, which are written next to the outputs (``<stem>.states.csv``, ``<stem>.single.wav``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ehead_cli.avatar.identity import Avatar
from ehead_cli.avatar.rendering import avatar_checkpoint_mismatch, renderer_for
from ehead_cli.errors import EheadError, InputError
from ehead_cli.generate.auto_states import AUTO, auto_states
from ehead_cli.generate.generator import Generator
from ehead_cli.generate.runner import mark_duplicate_outputs, run_batch
from ehead_cli.generate.scheduler import AgentUtterance, schedule_session, trim_to_content
from ehead_cli.io.audio import load_audio, save_wav
from ehead_cli.io.motionfile import Motion, save_motion
from ehead_cli.io.states import load_states, write_states
from ehead_cli.layout import MOTION_FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, n_frames_for

AGENT_SILENCE_DB = 35.0
AGENT_PAUSE_S = 0.5


@dataclass
class FileJob:
    """One clip to generate; ``error`` is set when it cannot run (reported, skipped)."""

    name: str
    audio_path: Path | None = None
    states_path: Path | None = None  # None with ``audio`` unset: --states auto
    out: Path | None = None  # output path without suffix
    avatar_path: Path | None = None
    audio: np.ndarray | None = None
    states: np.ndarray | None = None
    avatar: Avatar | None = None
    extra_outputs: dict[str, Path] = field(default_factory=dict)
    error: str | None = None
    outputs: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def n_frames(self) -> int:
        """Motion frames the job generates (0 before its inputs are read)."""
        return 0 if self.states is None else len(self.states)


def jobs_from_pairs(audios: list[Path], states: list[Path], out_dir: Path, avatar: Path | None) -> list[FileJob]:
    if len(audios) != len(states):
        raise InputError(f"give one --states per --audio: got {len(audios)} --audio and {len(states)} --states")
    return [FileJob(a.stem, a, _states_path(s), out_dir / a.stem, avatar) for a, s in zip(audios, states, strict=True)]


def _states_path(value: Path | str, base: Path | None = None) -> Path | None:
    """A states CSV, or None for ``auto`` (states from the audio's voice activity)."""
    if str(value).strip().lower() == AUTO:
        return None
    return base / value if base is not None else Path(value)


def jobs_from_csv(path: Path, out_dir: Path, avatar: Path | None) -> list[FileJob]:
    """Read a jobs CSV (audio,states[,out][,avatar]); errors name the line."""
    if not path.is_file():
        raise InputError(f"{path}: jobs file not found (--jobs)")
    base = path.parent
    jobs = []
    for line, row in _csv_rows(path, {"audio", "states"}, "a jobs CSV needs the columns audio,states "
                                                          "(optional: out,avatar)"):
        if not row.get("audio") or not row.get("states"):
            raise InputError(f"{path}:{line}: audio and states must both be given")
        audio = base / row["audio"]
        out = base / row["out"] if row.get("out") else out_dir / audio.stem
        av = base / row["avatar"] if row.get("avatar") else avatar
        jobs.append(FileJob(f"{audio.stem} (line {line})", audio, _states_path(row["states"], base), out, av))
    if not jobs:
        raise InputError(f"{path}: no jobs listed")
    return jobs


def read_agent_segments(path: Path) -> list[AgentUtterance]:
    if not path.is_file():
        raise InputError(f"{path}: agent segments file not found (--agent-segments)")
    out = []
    for line, row in _csv_rows(path, {"start", "end"}, "header must be start,end[,available]"):
        try:
            start, end = float(row["start"]), float(row["end"])
            avail = float(row["available"]) if row.get("available") else start
        except ValueError:
            raise InputError(f"{path}:{line}: start, end and available must be seconds") from None
        if not (0 <= start < end) or avail < 0:
            raise InputError(f"{path}:{line}: need 0 <= start < end and available >= 0")
        out.append(AgentUtterance(start, end, avail))
    return out


def _csv_rows(path: Path, required: set[str], header_error: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row with stripped keys and values) of a CSV whose header has ``required``;
    InputError "<path>:1: <header_error>" otherwise."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not required <= {c.strip() for c in (reader.fieldnames or [])}:
            raise InputError(f"{path}:1: {header_error}")
        for line, row in enumerate(reader, start=2):
            yield line, {k.strip(): (v or "").strip() for k, v in row.items() if k}


def detect_utterances(agent: np.ndarray) -> list[AgentUtterance]:
    """Non-silent stretches of the agent track (see the module docstring), available at their start."""
    n = len(agent) // SAMPLES_PER_FRAME
    if n == 0:
        return []
    rms = np.sqrt((agent[: n * SAMPLES_PER_FRAME].reshape(n, -1) ** 2).mean(1) + 1e-12)
    loud = 20 * np.log10(rms / rms.max()) > -AGENT_SILENCE_DB
    gap = int(round(AGENT_PAUSE_S * MOTION_FPS))
    out, i = [], 0
    while i < n:
        if not loud[i]:
            i += 1
            continue
        j = i
        while j < n and (loud[j] or loud[j:j + gap].any()):
            j += 1
        out.append(AgentUtterance(i / MOTION_FPS, j / MOTION_FPS, i / MOTION_FPS))
        i = j
    return out


def two_stream_job(user: Path, agent: Path, segments: Path | None, out_dir: Path, avatar: Path | None,
                   window: int) -> FileJob:
    job = FileJob(user.stem, user, None, out_dir / user.stem, avatar)
    mic, speech = load_audio(user), load_audio(agent)
    utts = read_agent_segments(segments) if segments else detect_utterances(speech)
    single, states, _ = schedule_session(mic, speech, utts, window)
    job.audio, job.states = trim_to_content(single, states, len(mic))
    job.extra_outputs = {"states": job.out.with_suffix(".states.csv"), "single": job.out.with_suffix(".single.wav")}
    return job


def load_job(job: FileJob, device="cpu", flame=None) -> None:
    """Read and validate a job's inputs; on failure set ``job.error`` (one line). ``device`` and
    ``flame`` are where an avatar folder's neural renderer runs and the FLAME file it may need."""
    try:
        if job.audio is None:
            job.audio = load_audio(job.audio_path)
            if job.states_path is None:
                job.states = auto_states(job.audio)
            else:
                job.states = load_states(job.states_path, n_frames_for(len(job.audio)),
                                         len(job.audio) / SAMPLE_RATE)
        job.avatar = Avatar.load(job.avatar_path, device=device, flame=flame) if job.avatar_path else None
        job.out.parent.mkdir(parents=True, exist_ok=True)
        probe = job.out.parent / f".ehead-write-test-{job.out.name}"
        probe.touch()
        probe.unlink()
    except EheadError as err:
        job.error = str(err)
    except OSError as err:
        job.error = f"{job.out.parent}: cannot write output here ({err.strerror or err})"


def write_outputs(job: FileJob, motion: Motion, renderer, video: bool) -> None:
    """NPZ (and MP4 with the job's audio) for one job; each file atomic."""
    npz = job.out.with_suffix(".npz")
    if job.avatar is not None and job.avatar.camera is not None:
        motion.camera = job.avatar.camera  # `ehead render` of the NPZ frames it the same way
    renderer = renderer_for(job.avatar, renderer)
    save_motion(npz, motion)
    job.outputs.append(npz)
    if "states" in job.extra_outputs:
        write_states(job.extra_outputs["states"], job.states)
        save_wav(job.extra_outputs["single"], job.audio, SAMPLE_RATE)
        job.outputs += [job.extra_outputs["states"], job.extra_outputs["single"]]
    if video:
        from ehead_cli.io.video import write_mp4

        mp4 = job.out.with_suffix(".mp4")
        write_mp4(mp4, renderer.iter_frames(motion.shape, motion.motion), job.audio, SAMPLE_RATE, MOTION_FPS)
        job.outputs.append(mp4)


def run_jobs(generator: Generator, jobs: list[FileJob], seed: int = 0, renderer=None, video: bool = True,
             console=None, flame=None) -> list[FileJob]:
    """Validate, generate (batched) and write every job; bad jobs keep their ``error``
    (``ehead_cli.generate.runner.run_batch``)."""
    for j in jobs:
        load_job(j, generator.device, flame)
        if j.error is None and j.avatar is not None:
            j.error = avatar_checkpoint_mismatch(j.avatar, j.avatar_path, generator)
    mark_duplicate_outputs(jobs, "give each job its own out")
    good = [j for j in jobs if j.error is None]

    def generate(batch: list[FileJob], advance) -> list[Motion]:
        return generator.generate_many([(j.audio, j.states, j.avatar, seed) for j in batch], on_window=advance)

    return run_batch(jobs, generate, lambda j, m: write_outputs(j, m, renderer, video), description="motion windows",
                     total=sum(generator.n_windows(len(j.states)) for j in good), console=console)
