"""A trained network saved by a run (``RUN_DIR/models/<peer>.pt``): its format and its checks.

The file holds the model's registered name, its input shape and its weights (see
:meth:`codistill.peer.PeerTrainer.model_bytes`); it is read with ``weights_only=True``, so a file
that would need arbitrary unpickling is refused without running it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from codistill import safe_io
from codistill.errors import ConfigError
from codistill.shapes import DataShape

#: What a saved network holds besides the weights: the model's name and input shape.
NETWORK_FIELDS = {"model": str, "state": dict, "num_classes": int, "in_channels": int, "image_size": int}


def read_saved_network(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The contents of a saved network, loaded with ``weights_only=True``.

    Raises :class:`~codistill.safe_io.UnsafeFileError` for a file that needs arbitrary unpickling
    and :class:`~codistill.safe_io.UnreadableFileError` for anything else that is not a saved network.
    """
    saved = safe_io.load(path, map_location=device)
    if not isinstance(saved, dict):
        raise safe_io.UnreadableFileError(f"{path} holds a {type(saved).__name__}, not a network saved by codistill")
    for key, kind in NETWORK_FIELDS.items():
        if not isinstance(saved.get(key), kind):
            raise safe_io.UnreadableFileError(f"{path} is not a network saved by codistill (no '{key}' of type "
                                              f"{kind.__name__}; expected RUN_DIR/models/<peer>.pt)")
    return saved


def check_teacher_file(path: str, model: str, field: str, shape: DataShape | None = None) -> None:
    """Raise :class:`ConfigError` naming ``field`` unless ``path`` is a safe saved network of
    ``model``, for the data's classes and channels (checked before anything is written)."""
    if not Path(path).expanduser().is_file():
        raise ConfigError(field, f"no such file: {path}")
    try:
        saved = read_saved_network(path)
    except safe_io.UnreadableFileError as error:
        raise ConfigError(field, str(error)) from None
    if saved["model"] != model:
        raise ConfigError(field, f"{path} holds a '{saved['model']}' network, the config says '{model}'")
    if shape is not None and (saved["num_classes"], saved["in_channels"]) != (shape.num_classes, shape.in_channels):
        raise ConfigError(field, f"{path} holds a network for {saved['num_classes']} classes of "
                                 f"{saved['in_channels']}-channel images; the data have {shape.num_classes} classes of "
                                 f"{shape.in_channels}-channel images")
