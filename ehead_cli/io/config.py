"""One configuration merge for every family and stage: preset <- ``--config FILE.toml`` <- flags.

A configuration is a dict of TOML sections (``{"model": {...}, "train": {...}}``; a sub-table such
as ``[model.audio]`` or ``[stage2.refine]`` is a dict inside its section). ``merge_config`` lays
``Layer``s over each other in order, later wins, field by field within each section (a sub-table
merges the same way; any other value replaces). Every layer is checked against a ``schema``, {section
name (sub-sections dotted: "model.audio"): the frozen dataclass whose fields it may hold}: an unknown
section or field is a ConfigError naming the layer's file and the section. ``build_section`` then
turns a merged section into its typed dataclass (field types checked, the class's ``validate()``
run), each error naming the file and the section.

Schedules: a layer that sets ``phases`` without ``steps`` / ``lr`` also drops the totals derived from
the old phases (``TrainConfig.from_dict`` derives them again from the new ones).
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ehead_cli.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

COMMAND_LINE = "the command line"  # the source named for flag overrides
DERIVED_FROM_PHASES = ("steps", "lr")


def load_toml(path: Path) -> dict[str, Any]:
    """A TOML file's tables; ConfigError naming the file when it is missing or invalid."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML ({err})") from None


def check_fields(cls: type, d: Mapping[str, Any], source: str, section: str) -> None:
    """ConfigError naming ``source`` if ``d`` has keys that are not fields of dataclass ``cls``."""
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ConfigError(f"{source}: unknown {section} field(s) {', '.join(sorted(unknown))}")


@dataclass(frozen=True)
class Layer:
    """One source of configuration: ``values`` {section: {field: value}} from ``source`` (a file
    name, or ``COMMAND_LINE`` for flags: ``file`` False)."""

    values: Mapping[str, Any]
    source: str
    file: bool = True


def _and(names: Sequence[str]) -> str:
    quoted = [f"[{n}]" for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def check_layer(layer: Layer, schema: Mapping[str, type], context: str = "") -> None:
    """ConfigError naming ``layer.source`` for a section ``schema`` does not list (``context`` is
    added to that message, e.g. " for --stage 2") or a field the section's dataclass lacks."""
    tops = [s for s in schema if "." not in s]
    bad = set(layer.values) - set(tops)
    if bad:
        raise ConfigError(f"{layer.source}: unknown section(s) {', '.join(sorted(bad))}{context}; "
                          f"use {_and(list(schema))}")

    def check(name: str, table: Mapping[str, Any]) -> None:
        subs = {k: v for k, v in table.items() if f"{name}.{k}" in schema and isinstance(v, Mapping)}
        # a sub-table is a field of its section's dataclass ([model.audio]) or a section of its own
        # ([stage2.refine] beside the schedule's fields)
        check_fields(schema[name], {k: v for k, v in table.items() if k not in subs}, layer.source, name)
        for key, value in subs.items():
            check(f"{name}.{key}", value)

    for name, table in layer.values.items():
        if not isinstance(table, Mapping):
            raise ConfigError(f"{layer.source}: [{name}] must be a table of fields")
        check(name, table)


def merge_tables(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, field by field, sub-tables recursively (module docstring's phases rule)."""
    out = dict(base)
    if "phases" in extra:
        for derived in DERIVED_FROM_PHASES:
            if derived not in extra:
                out.pop(derived, None)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_tables(out[key], value)
        else:
            out[key] = value
    return out


def merge_config(layers: Sequence[Layer], schema: Mapping[str, type], context: str = ""
                 ) -> tuple[dict[str, Any], str]:
    """(the sections of ``layers`` merged in order, later wins; the last file's name, the source
    later errors name). Every layer is checked first (``check_layer``)."""
    merged: dict[str, Any] = {}
    source = "config"
    for layer in layers:
        check_layer(layer, schema, context)
        merged = merge_tables(merged, layer.values)
        if layer.file:
            source = layer.source
    return merged, source


def preset_layer(data: Mapping[str, Any], source: str, schema: Mapping[str, type]) -> Layer:
    """A preset file's sections that ``schema`` names (a preset also holds other commands' sections)."""
    return Layer({k: v for k, v in data.items() if k in schema and "." not in k}, source)


def file_layer(path: str | Path | None) -> list[Layer]:
    """``--config FILE.toml`` as a layer (none without a file)."""
    return [] if path is None else [Layer(load_toml(Path(path)), str(path))]


def flag_layer(section: str, flags: Mapping[str, Any]) -> list[Layer]:
    """Command-line flags into ``section``; flags left at None are not given."""
    given = {k: v for k, v in flags.items() if v is not None}
    return [Layer({section: given}, COMMAND_LINE, file=False)] if given else []


_SCALARS = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def check_types(cls: type, d: Mapping[str, Any], source: str, section: str) -> None:
    """ConfigError naming ``source`` and ``section`` for a value whose type is not its field's
    (scalar fields: int, float (an int is a float), bool, str; other fields are the class's to check)."""
    hints = typing.get_type_hints(cls)
    for name, value in d.items():
        want = getattr(hints.get(name), "__name__", None)
        ok = _SCALARS.get(want)
        if ok is None:
            continue
        if isinstance(value, bool) and want != "bool" or not isinstance(value, ok):
            raise ConfigError(f"{source}: [{section}] {name} must be {want}, got {value!r}")


def build_section(cls: type, d: Mapping[str, Any], source: str, section: str) -> Any:
    """The frozen dataclass ``cls`` of a merged section: fields and types checked, ``validate()``
    run when the class has one; errors name ``source`` and ``section``."""
    check_fields(cls, d, source, section)
    check_types(cls, d, source, section)
    try:
        obj = cls(**d)
    except TypeError as err:
        raise ConfigError(f"{source}: [{section}] {err}") from None
    return obj.validate() if hasattr(obj, "validate") else obj
