"""Peer architectures, one file per family, registered by name in :data:`codistill.registry.MODELS`:
``build_model("resnet20", num_classes=10, ...)``; a user's own is named ``package.module:Factory``."""

from __future__ import annotations

from codistill.models.base import ModelOutput, PeerNetwork
from codistill.registry import MODELS


def build_model(name: str, num_classes: int, in_channels: int = 3, image_size: int = 32) -> PeerNetwork:
    """Build a registered model for inputs of ``in_channels`` × ``image_size`` × ``image_size``."""
    return MODELS.get(name)(num_classes=num_classes, in_channels=in_channels, image_size=image_size)


def model_names() -> list[str]:
    return MODELS.names()


__all__ = ["ModelOutput", "PeerNetwork", "build_model", "model_names"]

# The built-in architectures register themselves (imported last: they import this package's modules).
from codistill.models import (  # noqa: E402,F401
    alexnet,
    cnn,
    densenet,
    mlp,
    mobilenetv2,
    resnet,
    shufflenetv2,
    vgg,
    wrn,
)
