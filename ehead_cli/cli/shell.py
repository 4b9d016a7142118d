"""What every command shares at run time: the two consoles, the note an interruption prints, and --threads.

Nothing here imports torch (``ehead --help`` stays fast); ``set_threads`` imports it when a command runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from rich.console import Console


def _make_console(stderr: bool = False) -> Console:
    """Rich output at the terminal's width; piped into a file or another program (where rich would
    assume 80 columns and cut tables), at the content's full width instead, unless COLUMNS says."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not (hasattr(stream, "isatty") and stream.isatty()) and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=1000 if piped else None)


console = _make_console()
err_console = _make_console(stderr=True)

# a command's () -> str | None: what an interruption leaves behind (read by ehead_cli.cli._Commands)
interrupted_note: Callable[[], str | None] | None = None


def note_interruption(note: Callable[[], str | None]) -> None:
    """Say what Ctrl-C or SIGTERM from now on leaves behind; a note returning None: the library says it."""
    global interrupted_note
    interrupted_note = note


def say(message: str) -> None:
    """A progress or note line on stderr, printed as it is (no rich markup)."""
    err_console.print(message, markup=False, highlight=False)


def set_threads(threads: int | None) -> int:
    """Apply --threads (torch is imported here, not when the CLI starts: --help stays fast)."""
    from ehead_cli.devices import set_threads as apply

    return apply(threads)


def command_line() -> str:
    """The command as the user typed it, for a run's record."""
    return " ".join(["ehead", *sys.argv[1:]])


def is_rank_zero() -> bool:
    """True outside torchrun and in its first process: the one that reports."""
    return int(os.environ.get("RANK", "0")) == 0
