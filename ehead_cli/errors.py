"""User-facing errors: one line, naming the file, line or flag that fixes them.

The CLI prints ``EheadError`` messages without a traceback and exits with status 2; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class EheadError(Exception):
    """An error caused by the user's input or set-up; ``str(err)`` is a complete one-line message."""


class InputError(EheadError):
    """A file the user gave us is missing, unreadable or malformed."""


class AssetError(EheadError):
    """A third-party asset (FLAME, mHuBERT-147, TalkNet, GAGAvatar, VGG) is not configured or invalid."""


class ConfigError(EheadError):
    """A configuration value or flag is invalid."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message ("" if it has none), for one-line errors."""
    text = str(err).strip().splitlines()
    return text[0] if text else ""
