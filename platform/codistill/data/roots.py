"""Where a dataset's files live: ``data.root``, and the error that says what it must hold."""

from __future__ import annotations

from pathlib import Path

from codistill.errors import ConfigError


def required_root(dataset: str, root: str | None, expected: str) -> Path:
    """The dataset's root directory, or a ``data.root`` error saying what it must hold."""
    if root is None:
        raise ConfigError("data.root", f"dataset '{dataset}' needs data.root, a directory holding {expected}")
    return Path(root).expanduser()
