"""The one way tests run the ``ehead`` command line.

``run_cli(*args)`` runs it in this process as a user types it: ``ehead_cli.cli.main`` with its
one-line errors and exit statuses, stdout and stderr captured; it returns ``CliResult(code, out, err)``.
``run_cli_process(*args)`` runs ``python -m ehead_cli`` in a child process, for what only a real process
shows (a piped stdout's width, no traceback on stderr, the installed entry point).
"""

from __future__ import annotations

import contextlib
import io
import signal
import subprocess
import sys
from typing import NamedTuple

import pytest

COLUMNS = "200"  # rich and click wrap at this width in process: a long message stays on one line


class CliResult(NamedTuple):
    code: int  # the exit status: 0, 1 (some inputs failed), 2 (a user error), 130/143 (interrupted)
    out: str
    err: str


def _status(code) -> int:
    """SystemExit's code as a process exit status (``sys.exit(None)`` is 0, ``sys.exit("msg")`` is 1)."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def run_cli(*args: str, env: dict[str, str] | None = None) -> CliResult:
    """``ehead ARGS...`` in this process, with ``env`` added to the environment for the call; the
    SIGTERM handler ``main`` installs is put back afterwards."""
    from ehead_cli.cli import main

    out, err = io.StringIO(), io.StringIO()
    sigterm = signal.getsignal(signal.SIGTERM)
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.setattr(sys, "argv", ["ehead", *args])
        mp.setenv("COLUMNS", COLUMNS)
        for name, value in (env or {}).items():
            mp.setenv(name, value)
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = _status(exit_.code)
        finally:
            signal.signal(signal.SIGTERM, sigterm)
    return CliResult(code, out.getvalue(), err.getvalue())


def run_cli_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m ehead_cli ARGS...`` in a child process (``env``: its whole environment, None: this
    one's); returns the completed process with text stdout and stderr."""
    return subprocess.run([sys.executable, "-m", "ehead_cli", *args], capture_output=True, text=True, env=env)
