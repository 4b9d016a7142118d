"""Atomic writes: every output file appears whole or not at all.

A file is written to a hidden temporary in its destination folder (``.<stem>.ehead-<pid>-XXXX.tmp<suffix>``)
and renamed into place when complete. On an exception, Ctrl-C or SIGTERM (which the CLI turns into
an exception, ``Terminated``) the temporary is removed. What only SIGKILL or a power cut can leave
behind, the next write into that folder removes: a temporary of this pattern whose process is gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ehead_cli.errors import InputError


def _unwritable(folder: Path, err: OSError, flag: str) -> InputError:
    return InputError(f"{folder}: cannot write output here ({err.strerror or err}); choose another folder ({flag})")


def make_shareable(path: Path, mode: int = 0o666) -> None:
    """Give a file made by mkstemp/mkdtemp (private) the permissions the umask gives new files."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so every clean-up (temporaries, training state)
    runs; the CLI installs the handler."""


_TEMP_PREFIX = "ehead-"
_TEMP = re.compile(r"^\..+\.ehead-(\d+)-[^.]+\.tmp")
_cleaned: set[Path] = set()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporaries of writers that died (their process is gone) from ``folder``, once per
    folder and process; returns what was removed."""
    folder = Path(folder)
    if folder in _cleaned or not folder.is_dir():
        return []
    _cleaned.add(folder)
    removed = []
    for p in folder.iterdir():
        m = _TEMP.match(p.name)
        if m and not _alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
                removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path, flag: str = "--out") -> Iterator[Path]:
    """Yield a temp path in the destination folder; on success it is renamed onto ``path``.

    On any exception the temp file is removed and ``path`` is left untouched. The temp name keeps
    the destination's suffix so format-sniffing writers (numpy, soundfile, PyAV) behave. An
    unwritable folder is an InputError naming it and ``flag``.
    """
    path = Path(path)
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(folder)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.{_TEMP_PREFIX}{os.getpid()}-", suffix=f".tmp{path.suffix}",
                                   dir=folder)
    except OSError as err:
        raise _unwritable(folder, err, flag) from None
    os.close(fd)
    tmp_path = Path(tmp)
    make_shareable(tmp_path)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path, flag: str = "--out") -> Iterator[Path]:
    """Yield a temp folder beside ``path``; on success it replaces ``path`` whole (the old folder, if
    any, is moved aside first and removed after), on failure it is removed and ``path`` is untouched."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{_TEMP_PREFIX}{os.getpid()}-", suffix=".tmp",
                                    dir=path.parent))
    except OSError as err:
        raise _unwritable(path.parent, err, flag) from None
    make_shareable(tmp, 0o777)
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    try:
        yield tmp
        for f in tmp.iterdir():
            make_shareable(f, 0o777 if f.is_dir() else 0o666)  # a sub-folder (a checkpoint's avatar) stays enterable
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
