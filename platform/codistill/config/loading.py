"""Loading a run configuration: YAML (and ``--set`` overrides) read into the typed schema.

``--set key=value`` overrides address fields with dots and list indices:
``distillation.weight=0.5``, ``peers.0.optimizer.lr=0.1``, ``seed=3``. Every mistake is a
:class:`~codistill.errors.ConfigError` naming the field, e.g.
``config error in 'peers[1].model': unknown model 'resnet7' (known: ...)``. Each field's type and
range come from its declaration (:mod:`codistill.config.schema`); :func:`codistill.validation.load_config`
adds the rules across fields and the components' own checks.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from codistill.config.fields import read_section
from codistill.config.schema import RunConfig
from codistill.errors import ConfigError


class _ConfigLoader(yaml.SafeLoader):
    """Safe YAML that reads numbers as users type them: ``1e6`` and ``1e-3`` are floats
    (YAML 1.1, PyYAML's default, reads an exponent without a decimal point as a string), and
    refuses a key given twice in one mapping (plain YAML silently keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key '{key}' appears twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


_ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float",
                                    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                                    list("-+0123456789"))


def read_yaml(text: str, field: str) -> Any:
    """Parse YAML text; malformed YAML is a one-line :class:`ConfigError` naming ``field``."""
    try:
        return yaml.load(text, Loader=_ConfigLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(field, f"not valid YAML{where}: {getattr(error, 'problem', None) or error}") from None


def read_mapping(path: str | os.PathLike, overrides: list[str] | None = None, *,
                 field: str = "--config") -> dict[str, Any]:
    """The mapping a YAML file holds, with ``key=value`` overrides applied.

    ``field`` names the file in errors about the file itself.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(field, f"no such file: {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(field, f"cannot read {path}: {error}") from None
    raw = read_yaml(text, field)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(field, f"{path} must hold a mapping of fields, got {type(raw).__name__}")
    for override in overrides or []:
        apply_override(raw, override)
    return raw


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set ``a.b.0.c=value`` in a nested mapping; the value is parsed as YAML.

    Errors name the key: an empty value, an index past a list's end, a path through a scalar.
    """
    if "=" not in override:
        raise ConfigError("--set", f"expected key=value, got '{override}'")
    key, text = (part.strip() for part in override.split("=", 1))
    parts = key.split(".")
    if not all(parts):
        raise ConfigError("--set", f"expected a dotted key such as peers.0.optimizer.lr, got '{key}'")
    if not text:
        raise ConfigError(key, "--set gives no value (write key=value)")
    set_field(raw, key, read_yaml(text, key))


def set_field(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set the dotted path ``key`` (``a.b.0.c``) of a nested mapping to ``value``.

    Errors name the key: an index past a list's end, a path through a scalar.
    """
    parts = key.split(".")
    node: Any = raw
    for depth, part in enumerate(parts):
        here, last = ".".join(parts[: depth + 1]), depth == len(parts) - 1
        if isinstance(node, dict):
            if last:
                node[part] = value
            elif node.get(part) is None:
                node[part] = {}
            node = node[part]
        elif isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(here, f"no entry {part} in a list of {len(node)} (indices 0 to {len(node) - 1})")
            if last:
                node[int(part)] = value
            node = node[int(part)]
        else:
            parent = ".".join(parts[:depth])
            raise ConfigError(here, f"'{parent}' holds the value {node!r}, which has no fields to set: "
                                    f"set it whole, e.g. '{parent}={{{part}: ...}}'")


def changed_fields(before: RunConfig, after: RunConfig) -> list[str]:
    """Paths of the fields whose values differ between two configs (``peers[0].optimizer.lr``)."""

    def leaves(value: Any, prefix: str) -> dict[str, Any]:
        if isinstance(value, dict):
            return {k: v for key, item in value.items()
                    for k, v in leaves(item, f"{prefix}.{key}" if prefix else key).items()}
        if isinstance(value, (list, tuple)):
            return {k: v for i, item in enumerate(value)
                    for k, v in leaves(item, f"{prefix}[{i}]").items()} or {prefix: ()}
        return {prefix: value}

    old, new = leaves(before.to_dict(), ""), leaves(after.to_dict(), "")
    return sorted(key for key in old.keys() | new.keys() if old.get(key, KeyError) != new.get(key, KeyError))


def build_config(raw: dict[str, Any]) -> RunConfig:
    """A raw mapping read into a :class:`RunConfig`, each field's type and range checked
    (:mod:`codistill.config.fields`); the rules across fields and components are checked by
    :func:`codistill.validation.validate`."""
    return read_section(RunConfig, raw, "")
