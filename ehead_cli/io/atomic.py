"""Atomic writes: every output file appears whole or not at all."""

from __future__ import annotations

import contextlib
import hashlib
import os
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
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=folder)
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
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as err:
        raise _unwritable(path.parent, err, flag) from None
    make_shareable(tmp, 0o777)
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    try:
        yield tmp
        for f in tmp.iterdir():
            make_shareable(f)
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
