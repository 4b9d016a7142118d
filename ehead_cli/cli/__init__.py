"""The ``ehead`` command line: a thin shell that parses, validates and calls the library.

One module per command (``info``, ``train``, ``generate``, ``render``, ``export``, ``eval``, ``prepare``,
``bench``, ``serve``, ``avatar``); the options several commands share are defined once in ``options``;
which flags apply to which model family or stage is data (``flags``: each command's ``*_FLAGS`` table).
User errors (``EheadError``) print one line on stderr and exit with status 2; anything else is a bug and
keeps its traceback. Nothing in the library imports this package.
"""

from __future__ import annotations

import sys

import typer
import typer.core

from ehead_cli.cli import shell
from ehead_cli.cli.avatar import avatar_app
from ehead_cli.cli.bench import bench
from ehead_cli.cli.eval import eval_
from ehead_cli.cli.export import export
from ehead_cli.cli.generate import generate
from ehead_cli.cli.info import info
from ehead_cli.cli.prepare import prepare
from ehead_cli.cli.render import render
from ehead_cli.cli.serve import serve
from ehead_cli.cli.shell import console, err_console, set_threads
from ehead_cli.cli.train import train
from ehead_cli.errors import EheadError

__all__ = ["app", "main", "console", "err_console", "set_threads"]


class _Commands(typer.core.TyperGroup):
    """The command group: Ctrl-C or SIGTERM during a command ends it with one line saying what was
    kept (the command sets ``shell.note_interruption``) instead of click's bare "Aborted!"."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as err:
            from ehead_cli.io.atomic import Terminated

            what = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
            note = shell.interrupted_note() if shell.interrupted_note else "nothing half-written was left behind"
            if note:  # None: the library already said what it kept (training saves its state)
                err_console.print(f"{what}: {note}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(143 if isinstance(err, Terminated) else 130) from None


app = typer.Typer(
    cls=_Commands,
    name="ehead",
    help="EmbodiedHead: a listening-and-speaking 3D head avatar for conversational agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """EmbodiedHead: a listening-and-speaking 3D head avatar for conversational agents."""


for _command in (info, train, generate, render, export):
    app.command()(_command)
app.command("eval")(eval_)
for _command in (prepare, bench, serve):
    app.command()(_command)
app.add_typer(avatar_app, name="avatar")


def _terminate(signum, frame) -> None:
    from ehead_cli.io.atomic import Terminated

    raise Terminated()


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _terminate)  # clean up like Ctrl-C: temporaries removed, state saved
    try:
        app()
    except EheadError as err:
        err_console.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
