"""The batch job runner every model family's ``ehead generate`` uses.

A family brings its job type (any object with the ``Job`` fields) and two calls: ``generate`` (all
good jobs in one batch -> one result per job) and ``write`` (one job's result -> its files, each
written atomically, appended to ``job.outputs``). ``run_batch`` skips the jobs that already carry an
``error``, shows progress on a terminal, records a failing write as that job's one-line ``error`` and
still writes the others, and gives every job its ``seconds``: its share of the batch's generation
time (by frames) plus its own writing time. What the command prints afterwards reads the fields of
``Job``: ``name, outputs, error, seconds`` (and ``n_frames``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ehead_cli.errors import EheadError


class Job(Protocol):
    """What the runner and the summary read of a job."""

    name: str
    out: Path | None  # the output path without suffix
    outputs: list[Path]
    error: str | None  # why the job did not run or its outputs failed (one line); None: done
    seconds: float

    @property
    def n_frames(self) -> int: ...


J = TypeVar("J", bound=Job)


def run_batch(jobs: list[J], generate: Callable[[list[J], Callable[[int], None]], Sequence[Any]],
              write: Callable[[J, Any], None], *, description: str, total: int | None = None,
              console=None) -> list[J]:
    """Generate every job without an ``error`` in one batch, then write each (module docstring).
    ``generate(good_jobs, advance)`` calls ``advance(n)`` as it completes ``n`` of ``total`` units
    (``total`` None: no count, the bar just runs); ``console``: a rich console for the progress bar
    (shown only on a terminal). Returns ``jobs``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    good = [j for j in jobs if j.error is None]
    if not good:
        return jobs
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True, disable=console is None or not console.is_terminal) as bar:
        task = bar.add_task(description, total=total)
        t0 = time.perf_counter()
        results = generate(good, lambda n: bar.advance(task, n))
        gen_s = time.perf_counter() - t0
        frames_total = sum(j.n_frames for j in good)
        writing = bar.add_task("writing", total=len(good))
        for j, result in zip(good, results, strict=True):
            t1 = time.perf_counter()
            try:
                write(j, result)
            except EheadError as err:
                j.error = str(err)
            j.seconds = time.perf_counter() - t1 + gen_s * j.n_frames / max(frames_total, 1)
            bar.advance(writing)
    return jobs


def mark_duplicate_outputs(jobs: Sequence[Job], fix: str) -> None:
    """Set ``error`` on every good job whose ``out`` an earlier good job also writes, naming the
    first (``fix``: what to change, ending the message). A job that already failed claims nothing."""
    seen: dict[Path, str] = {}
    for j in jobs:
        if j.error is None:
            if j.out in seen:
                j.error = f"its output {j.out}.npz is also written by job {seen[j.out]}; {fix}"
            else:
                seen[j.out] = j.name
