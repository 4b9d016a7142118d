"""Running ``ehead prepare``'s clips: in this process or a pool of worker processes, with a progress bar.

Parallelism is across files (``workers`` spawned processes, each with its share of the CPU
threads and its own copy of the models). A file that fails is reported with a one-line reason and
the rest are finished: ``run_one`` never raises for a bad file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from ehead_cli.errors import EheadError, first_line
from ehead_cli.prepare.clip import load_models, prepare_clip
from ehead_cli.prepare.manifest import read_clip_info
from ehead_cli.prepare.methods import PrepareOptions

# (clip id, "done" or "failed", the one-line failure or None, the clip's warnings)
OnClip = Callable[[str, str, str | None, Sequence[str]], None]


def _init_worker(options: PrepareOptions, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    load_models(options)


def run_one(source: Path, clip_id: str, clips_dir: Path, options: PrepareOptions, single: bool) \
        -> tuple[str, dict | None, str | None]:
    """(clip id, manifest row or None, one-line failure or None); never raises for a bad file. The
    clip's warnings are in the row under "warnings"."""
    try:
        row = prepare_clip(source, clip_id, clips_dir, options, single)
        row["warnings"] = read_clip_info(clips_dir / f"{clip_id}.json").get("warnings", [])
        return clip_id, row, None
    except EheadError as err:
        return clip_id, None, str(err)
    except Exception as err:  # a decoder or numeric failure on one file must not stop the batch
        return clip_id, None, f"{source}: {type(err).__name__}: {first_line(err)}"


def run_clips(todo: Sequence[Path], ids: dict[Path, str], clips_dir: Path, options: PrepareOptions, single: bool,
              workers: int, on_clip: OnClip) -> None:
    """Prepare every source of ``todo`` (``workers`` processes; 1: here), calling ``on_clip`` as each ends."""
    if not todo:
        return
    if workers == 1:
        load_models(options)
        for s in todo:
            clip_id, row, err = run_one(s, ids[s], clips_dir, options, single)
            on_clip(clip_id, "failed" if err else "done", err, row["warnings"] if row else [])
        return
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # torch and MediaPipe are not fork-safe
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context,
                             initializer=_init_worker, initargs=(options, threads)) as pool:
        futures = [pool.submit(run_one, s, ids[s], clips_dir, options, single) for s in todo]
        for fut in as_completed(futures):
            clip_id, row, err = fut.result()
            on_clip(clip_id, "failed" if err else "done", err, row["warnings"] if row else [])


class progress_bar:
    """A rich progress bar over files on stderr; failures and warnings are printed above it (on
    stderr too, one line each, also when the bar is disabled)."""

    def __init__(self, enabled: bool, total: int) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.enabled, self.total = enabled and total > 0 and self.console.is_terminal, total
        self.bar = None

    def __enter__(self) -> Callable[[str, str | None], None]:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn("[bold]prepare"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.description}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                console=self.console, transient=False)
            self.bar.start()
            self.task = self.bar.add_task("", total=self.total)
        return self.advance

    def advance(self, clip_id: str, error: str | None, warnings: Sequence[str] = ()) -> None:
        from rich.markup import escape

        if error:
            self.console.print(f"[red]failed[/red] {escape(error)}", highlight=False, soft_wrap=True)
        for w in warnings:
            self.console.print(f"[yellow]warning[/yellow] {escape(w)}", highlight=False, soft_wrap=True)
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=clip_id)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
