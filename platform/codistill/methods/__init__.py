"""Distillation methods, one file each, registered by name for YAML configs."""

from __future__ import annotations

from typing import Any

from codistill.checks import keyword_parameters
from codistill.methods.base import DistillationMethod, MethodContext, TeacherView
from codistill.registry import Registry

METHODS: Registry = Registry("distillation method")


def method_class(name: str) -> type[DistillationMethod]:
    _load_methods()
    return METHODS.get(name)


def build_method(name: str, context: MethodContext, params: dict[str, Any] | None = None) -> DistillationMethod:
    """Instantiate a registered method with its keyword parameters."""
    return method_class(name)(context, **(params or {}))


def method_parameters(name: str) -> set[str]:
    """Names of the keyword parameters a method accepts."""
    return keyword_parameters(method_class(name).__init__, skip=("self", "context")) or set()


def method_names() -> list[str]:
    _load_methods()
    return METHODS.names()


def _load_methods() -> None:
    # Importing the modules runs their @METHODS.register decorators.
    from codistill.methods import dckd, dkd, feature_decoupled, indistill, kd, sfr  # noqa: F401


__all__ = ["METHODS", "DistillationMethod", "MethodContext", "TeacherView", "build_method",
           "method_class", "method_names", "method_parameters"]
