"""A command's parsed options, and which of its flags apply where, as data.

A command that serves several model families (or stages) lists, per scope ("listener", "embodiedhead 2
resume", ...), the groups of flags that do not apply there and the one-line reason a user is told;
``Options.refuse`` names the first such flag given. What does apply in a scope is every other flag
(``allowed``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import typer

from ehead_cli.errors import ConfigError


@dataclass(frozen=True)
class Excluded:
    """Flags (by parameter name; the first given one is named) that do not apply in a scope, and why:
    the error reads ``f"{flag} {why}"``."""

    flags: tuple[str, ...]
    why: str


FlagTable = Mapping[str, tuple[Excluded, ...]]  # scope -> the flag groups excluded there, checked in order

_GIVEN = ("COMMANDLINE", "ENVIRONMENT", "PROMPT")


def given_flags(ctx: typer.Context) -> dict[str, str]:
    """The parameters the user gave (not left at their defaults), name -> flag as typed in help. By the
    source's name: typer carries its own copy of click, whose ParameterSource is another class."""
    return {p.name: p.opts[0] for p in ctx.command.params
            if getattr(ctx.get_parameter_source(p.name), "name", None) in _GIVEN}


@dataclass(frozen=True)
class Options:
    """One command's parsed option values (``o.steps``) and the flags the user gave: what a command's
    helpers take instead of a long list of positional arguments."""

    values: Mapping[str, Any]
    given: Mapping[str, str]

    @classmethod
    def of(cls, ctx: typer.Context) -> Options:
        return cls(dict(ctx.params), given_flags(ctx))

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def gave(self, name: str) -> bool:
        return name in self.given

    def refuse(self, table: FlagTable, *scopes: str) -> None:
        """ConfigError naming the first given flag that ``table`` excludes in any of ``scopes``."""
        for scope in scopes:
            for group in table[scope]:
                for name in group.flags:
                    if name in self.given:
                        raise ConfigError(f"{self.given[name]} {group.why}")


def allowed(params: Iterable[str], table: FlagTable, *scopes: str) -> set[str]:
    """The parameters of a command that apply in all of ``scopes`` (those no group there excludes)."""
    excluded = {name for scope in scopes for group in table[scope] for name in group.flags}
    return set(params) - excluded
