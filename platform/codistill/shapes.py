"""What a network for a dataset takes and predicts, known before the data are read.

On the ground floor: a dataset's check returns it (:mod:`codistill.data`), and a saved network
is checked against it (:mod:`codistill.saved_network`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataShape:
    """The classes a network predicts and the images it takes (channels, side)."""

    num_classes: int
    in_channels: int
    image_size: int
