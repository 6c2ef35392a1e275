"""Peer architectures, registered by name: ``build_model("resnet20", num_classes=10, ...)``."""

from __future__ import annotations

from codistill.models.base import ModelOutput, PeerNetwork
from codistill.registry import Registry

MODELS: Registry = Registry("model")


def build_model(name: str, num_classes: int, in_channels: int = 3, image_size: int = 32) -> PeerNetwork:
    """Build a registered model for inputs of ``in_channels`` × ``image_size`` × ``image_size``."""
    _load_architectures()
    return MODELS.get(name)(num_classes=num_classes, in_channels=in_channels, image_size=image_size)


def model_names() -> list[str]:
    _load_architectures()
    return MODELS.names()


def _load_architectures() -> None:
    # Importing the modules runs their @MODELS.register decorators.
    from codistill.models import (  # noqa: F401
        alexnet, cnn, densenet, mlp, mobilenetv2, resnet, shufflenetv2, vgg, wrn,
    )


__all__ = ["MODELS", "ModelOutput", "PeerNetwork", "build_model", "model_names"]
