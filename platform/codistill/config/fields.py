"""A config field written once, and the reader derived from it.

Each field of :mod:`codistill.config.schema` is declared with :func:`setting`: its type is the
annotation, and the declaration holds its default, its range (a :data:`~codistill.checks.Check`)
and what it means. :func:`read_section` turns a YAML mapping into a schema dataclass from those
declarations alone, and :func:`check_fields` applies the same ranges to a config built in code.
Every mistake is a :class:`~codistill.errors.ConfigError` naming the field (``peers[1].model``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from codistill.checks import Check
from codistill.errors import ConfigError

T = TypeVar("T")
Derived = Callable[[dict[str, Any], int], Any]


def setting(default: Any = dataclasses.MISSING, doc: str = "", check: Check | None = None, *,
            factory: Callable[[], Any] | Any = dataclasses.MISSING, shorthand: Callable[[Any], Any] | None = None,
            canonical: Callable[[Any], Any] | None = None, derived: Derived | None = None,
            required: str = "required") -> Any:
    """A schema field. ``check``: a complaint about a value of the right type, or None.
    ``shorthand``: rewrites a short form (``amp: false``) before the type is read. ``canonical``:
    the stored form of a valid value (``classes`` sorted). ``derived``: the default of a field left
    out, from the other fields read and the entry's index in its list (a peer's name). ``required``:
    the complaint when a field without a default is left out."""
    metadata = {"doc": doc, "check": check, "shorthand": shorthand, "canonical": canonical, "derived": derived,
                "required": required}
    return dataclasses.field(default=default, default_factory=factory, metadata=metadata)


def read_section(cls: type[T], raw: Any, path: str, index: int = 0) -> T:
    """The schema dataclass ``cls`` read from the mapping ``raw`` found at ``path`` (``""``: the
    top level); ``index``: the entry's place in its list. Unknown keys are errors."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(path or "<root>", f"expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    derived: list[dataclasses.Field] = []
    for spec in dataclasses.fields(cls):
        where = f"{path}.{spec.name}" if path else spec.name
        if spec.name in raw:
            values[spec.name] = read_value(spec, hints[spec.name], raw[spec.name], where)
        elif spec.metadata.get("derived") is not None:
            derived.append(spec)
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise ConfigError(where, spec.metadata.get("required", "required"))
    for spec in derived:
        values[spec.name] = spec.metadata["derived"](values, index)
    unknown = sorted(set(raw) - {spec.name for spec in dataclasses.fields(cls)}, key=str)
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}" if path else str(unknown[0]), "unknown field")
    return cls(**values)


def read_value(spec: dataclasses.Field, kind: Any, value: Any, where: str) -> Any:
    """One field's value: its shorthand expanded, its type read, its range checked."""
    if spec.metadata.get("shorthand") is not None:
        value = spec.metadata["shorthand"](value)
    if value is None and spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
        raise ConfigError(where, spec.metadata.get("required", "required"))
    value = read_typed(kind, value, where, _default_of(spec))
    complaint = spec.metadata["check"](value) if value is not None and spec.metadata.get("check") else None
    if complaint:
        raise ConfigError(where, complaint)
    if value is not None and spec.metadata.get("canonical") is not None:
        value = spec.metadata["canonical"](value)
    return value


def read_typed(kind: Any, value: Any, where: str, default: Any = None) -> Any:
    """``value`` read as the annotation ``kind``: a schema dataclass, ``tuple[X, ...]``, ``X | None``,
    ``dict``, ``Any`` or a scalar (floats: any finite number, also written as a string such as ``"1e6"``)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    optional = origin in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        kind = next(arg for arg in args if arg is not type(None))
        origin, args = typing.get_origin(kind), typing.get_args(kind)
    if dataclasses.is_dataclass(kind):
        return None if value is None and optional else read_section(kind, value, where)
    if origin is tuple:
        return None if value is None and optional else _read_tuple(args[0], value, where)
    if kind is Any:
        return value
    if value is None:
        if optional:
            return None
        if origin is dict:
            return {}
        raise ConfigError(where, f"needs a value (the default is {default!r})")
    if origin is dict:
        kind = dict
    return _read_scalar(kind, value, where)


def _read_tuple(item: Any, value: Any, where: str) -> tuple:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise ConfigError(where, f"expected a list, got {value!r}")
    if dataclasses.is_dataclass(item):
        return tuple(read_section(item, entry, f"{where}[{i}]", i) for i, entry in enumerate(value))
    if typing.get_origin(item) is tuple:
        return tuple(read_typed(item, entry, f"{where}[{i}]") for i, entry in enumerate(value))
    try:
        return tuple(_read_scalar(item, entry, where) for entry in value)
    except ConfigError:
        raise ConfigError(where, f"expected a list of {item.__name__}, got {list(value)!r}") from None


def _read_scalar(kind: type, value: Any, where: str) -> Any:
    if kind is float and isinstance(value, str):
        value = _float_or_text(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind in (int, float) and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(where, f"expected {kind.__name__}, got {value!r}")
    if kind is float and not math.isfinite(value):
        raise ConfigError(where, f"must be a finite number, got {value}")
    return value


def check_fields(config: Any, path: str = "") -> None:
    """Apply every field's own range to a schema object built in code (``dataclasses.replace``)."""
    for spec in dataclasses.fields(config):
        where = f"{path}.{spec.name}" if path else spec.name
        value = getattr(config, spec.name)
        if dataclasses.is_dataclass(value):
            check_fields(value, where)
        elif isinstance(value, tuple) and value and all(dataclasses.is_dataclass(entry) for entry in value):
            for i, entry in enumerate(value):
                check_fields(entry, f"{where}[{i}]")
        elif value is not None and spec.metadata.get("check") is not None:
            complaint = spec.metadata["check"](value)
            if complaint:
                raise ConfigError(where, complaint)


def _default_of(spec: dataclasses.Field) -> Any:
    return spec.default if spec.default_factory is dataclasses.MISSING else spec.default_factory()


def _float_or_text(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text
