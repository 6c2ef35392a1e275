"""Saving and loading tensors without pickled code.

Every ``.pt`` file codistill writes (checkpoints, ``models/<peer>.pt``, saved policies) holds only
tensors, numbers, strings, ``None`` and plain containers (dict, list, tuple), with names and
shapes stored as plain values, so it loads with ``torch.load(weights_only=True)``. Loading never
falls back to full unpickling: a file that would need it (a class instance, a function, a crafted
``__reduce__``) is refused with :class:`UnsafeFileError` before any of its objects is built.

    blob = dumps({"model": "resnet8", "state": network.state_dict()})
    state = loads(blob, source="peer_00.pt")
    save(path, obj); load(path)
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from codistill.errors import WriteFailed

#: Leaf values a saved object may hold besides tensors (all accepted by ``weights_only=True``).
PLAIN_LEAVES = (bool, int, float, str, bytes, type(None), torch.Size, torch.dtype, torch.device)


class UnreadableFileError(ValueError):
    """A file is missing, truncated, or not a torch file codistill wrote."""


class UnsafeFileError(UnreadableFileError):
    """A file that ``weights_only=True`` refuses: reading it would need unpickling arbitrary objects
    (which may run code), or it is not a pickle of tensors at all."""


def check_plain(value: Any, where: str = "object") -> None:
    """Raise ``TypeError`` naming the first value under ``where`` that is not a tensor or plain value."""
    if isinstance(value, torch.Tensor) or isinstance(value, PLAIN_LEAVES):
        return
    if isinstance(value, (dict, OrderedDict)):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where} has a key of type {type(key).__name__}; saved files use str or int keys")
            check_plain(item, f"{where}[{key!r}]")
        return
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        for index, item in enumerate(value):
            check_plain(item, f"{where}[{index}]")
        return
    raise TypeError(f"{where} is a {type(value).__module__}.{type(value).__qualname__}; saved files hold only "
                    "tensors, numbers, strings and plain containers (loadable with weights_only=True)")


def dumps(value: Any) -> bytes:
    """``value`` (tensors and plain containers only, see :func:`check_plain`) as torch-file bytes."""
    check_plain(value)
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def loads(blob: bytes, map_location: Any = None, source: str = "file") -> Any:
    """Read bytes written by :func:`dumps` with ``weights_only=True``; ``source`` names them in errors."""
    try:
        with warnings.catch_warnings():  # a foreign file's protocol is refused below, not warned about
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(io.BytesIO(blob), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeFileError(f"{source} refused: it does not load as tensors and plain values "
                              f"({_unpickler_complaint(str(error))}); codistill never unpickles other objects, "
                              "which can run code") from None
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError, TypeError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UnreadableFileError(f"{source} is not a readable torch file (truncated or corrupt?): "
                                  f"{first[:200]}") from None


def _unpickler_complaint(message: str) -> str:
    """The line of torch's weights-only error that says what was refused (e.g. ``Unsupported global: ...``)."""
    after = message.split("WeightsUnpickler error:", 1)[-1]
    line = next((text.strip() for text in after.splitlines() if text.strip()), message.strip())
    return line.split(". Please")[0][:200]


def save(path: str | os.PathLike, value: Any) -> None:
    """Write ``value`` to ``path`` atomically (temporary file, then rename)."""
    write_atomic(Path(path), dumps(value))


def load(path: str | os.PathLike, map_location: Any = None) -> Any:
    """Read a file written by :func:`save` (or any weights-only torch file)."""
    path = Path(path).expanduser()
    try:
        blob = path.read_bytes()
    except OSError as error:
        raise UnreadableFileError(f"cannot read {path}: {error.strerror or error}") from None
    return loads(blob, map_location, source=str(path))


@contextmanager
def failed_writes_named(path: Path) -> Iterator[None]:
    """Within: an ``OSError`` (a full disk: ``ENOSPC``) becomes :class:`~codistill.errors.WriteFailed`
    naming ``path`` (the file being written), as every write of a run reports it."""
    try:
        yield
    except WriteFailed:
        raise
    except OSError as error:
        raise WriteFailed(error.errno, error.strerror, str(path)) from error


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.

    A failed write (a full disk: ``ENOSPC``) removes its temporary file, leaves ``path`` as it
    was and raises :class:`~codistill.errors.WriteFailed` naming ``path``.
    """
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise WriteFailed(error.errno, error.strerror, str(path)) from error



def write_directory_atomic(path: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (name → bytes, in that order) as directory ``path``, replacing any old one:
    they are written into a hidden sibling that is then renamed, so ``path`` never holds part of
    the set. A failed write removes what it wrote and raises :class:`~codistill.errors.WriteFailed`
    naming the file in ``path``."""
    staging = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    writing = path
    try:
        staging.mkdir()
        for name, blob in files.items():
            writing = path / name
            write_atomic(staging / name, blob)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise WriteFailed(error.errno, error.strerror, str(writing)) from error
    shutil.rmtree(path, ignore_errors=True)
    staging.replace(path)
