"""The model-family interface and its registry.

A model family is what ``ehead train --family``, ``ehead generate --family`` and ``ehead bench
--family`` choose between: EmbodiedHead (``family.embodiedhead``) and the listener
(``family.listener``). A family says

* what it trains: its ``stages``, each with the library call that trains it (``Stage.train``);
* how its checkpoint folder reads: its ``checkpoint_format`` (the ``format`` string of its
  config.json, read by the one reader ``ehead_cli.io.checkpoint``) and ``load``;
* how it generates a batch of jobs: its ``job_type``, ``generator`` and ``run_jobs`` (both families
  run their jobs through ``ehead_cli.generate.runner.run_batch``);
* what eval and bench call: ``evaluate`` (and ``checkpoint_metrics``, a checkpoint's own metrics
  where the family has them) and ``bench``.

The registry maps a family's name and its format string to it; ``family_of`` tells which family a
checkpoint or run folder holds. A new family is a module here with one ``ModelFamily`` subclass,
registered in ``family/__init__.py``; the command line keeps the flags each family accepts as a table.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ehead_cli.errors import ConfigError, InputError
from ehead_cli.io.checkpoint import CONFIG_NAME, CheckpointFormat, read_format

DEFAULT_FAMILY = "embodiedhead"


@dataclass(frozen=True)
class Stage:
    """One stage a family trains: its ``--stage`` name, a line saying what it trains, and the library
    call (``call`` names it; ``train(*args, **kwargs)`` runs it)."""

    name: str
    summary: str
    call: str  # dotted name of the library function, e.g. "ehead_cli.train.stage1.train"
    train: Callable[..., Any]


class ModelFamily(ABC):
    """A model family (module docstring). Subclasses set the class attributes and the methods."""

    name: ClassVar[str]
    summary: ClassVar[str]
    checkpoint_format: ClassVar[CheckpointFormat]
    stages: ClassVar[tuple[Stage, ...]]
    default_stage: ClassVar[str | None]  # the stage ``ehead train`` runs without --stage (None: required)
    job_type: ClassVar[type]

    @property
    def format_name(self) -> str:
        """The ``format`` string of this family's checkpoint config.json."""
        return self.checkpoint_format.name

    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def stage(self, name: str) -> Stage:
        """The stage ``name``; ConfigError naming the family's stages otherwise."""
        for s in self.stages:
            if s.name == name:
                return s
        raise ConfigError(f"--stage {name}: the {self.name} family trains --stage {', '.join(self.stage_names())}")

    def checkpoint_folder(self, path: str | os.PathLike) -> Path:
        """The checkpoint folder of a checkpoint or run folder, by the one rule
        (``ehead_cli.io.checkpoint.resolve_folder``, with this family's ``prefer_best``)."""
        from ehead_cli.io.checkpoint import resolve_folder

        return resolve_folder(path, self.checkpoint_format.prefer_best)

    @abstractmethod
    def load(self, checkpoint: str | os.PathLike, device: str = "cpu") -> Any:
        """The model of a checkpoint or run folder, in eval mode on ``device``."""

    @abstractmethod
    def generator(self, checkpoint: str | os.PathLike | None, device: str | None = None, **options: Any) -> Any:
        """A generator ready for ``run_jobs`` (``checkpoint`` None: the shipped one)."""

    @abstractmethod
    def run_jobs(self, generator: Any, jobs: list[Any], **options: Any) -> list[Any]:
        """Generate and write a batch of ``job_type`` jobs; failing jobs keep their ``error``."""

    @abstractmethod
    def evaluate(self, pred_dir: str | os.PathLike, gt_dir: str | os.PathLike, **options: Any) -> Any:
        """``ehead eval``'s report of predictions against a dataset folder."""

    checkpoint_metrics: Callable[..., dict[str, float]] | None = None  # a checkpoint's own metrics, if any

    @abstractmethod
    def bench(self, config: Any, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """``ehead bench``'s JSON-able result for ``config`` (the family's bench config)."""


FAMILIES: dict[str, ModelFamily] = {}


def register(family: ModelFamily) -> ModelFamily:
    """Add ``family`` to the registry (its name and format string must be new)."""
    if family.name in FAMILIES:
        raise ValueError(f"model family {family.name!r} is registered twice")
    if any(f.format_name == family.format_name for f in FAMILIES.values()):
        raise ValueError(f"checkpoint format {family.format_name!r} belongs to two families")
    FAMILIES[family.name] = family
    return family


def family_names() -> tuple[str, ...]:
    return tuple(FAMILIES)


def get_family(name: str | None = None) -> ModelFamily:
    """The family ``name`` (None: ``DEFAULT_FAMILY``); ConfigError naming the known ones."""
    name = name or DEFAULT_FAMILY
    if name not in FAMILIES:
        raise ConfigError(f"--family {name}: choose one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


def family_of_format(format_name: str | None) -> ModelFamily | None:
    for f in FAMILIES.values():
        if f.format_name == format_name:
            return f
    return None


def family_of(checkpoint: str | os.PathLike) -> ModelFamily:
    """The family whose checkpoint ``checkpoint`` (a checkpoint or run folder) holds, by the format
    string of its config.json; InputError naming the folder when it holds none or an unknown one."""
    path = Path(checkpoint)
    found = read_format(path)
    family = family_of_format(found)
    if family is None:
        if found is None:
            raise InputError(f"{path}: not a checkpoint folder (no readable {CONFIG_NAME}, nor a run folder "
                             f"with one)")
        known = ", ".join(f"{f.format_name} ({f.name})" for f in FAMILIES.values())
        raise InputError(f"{path}: checkpoint format {found!r} belongs to no model family (known: {known})")
    return family
