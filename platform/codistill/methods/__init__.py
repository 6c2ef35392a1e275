"""Distillation methods, one file each, registered by name in :data:`codistill.registry.METHODS`;
a user's own is named ``package.module:Class`` (a :class:`DistillationMethod` subclass)."""

from __future__ import annotations

from typing import Any

from codistill.checks import keyword_parameters
from codistill.methods.base import DistillationMethod, MethodContext, TeacherView
from codistill.registry import METHODS


def method_class(name: str) -> type[DistillationMethod]:
    return METHODS.get(name)


def build_method(name: str, context: MethodContext, params: dict[str, Any] | None = None) -> DistillationMethod:
    """Instantiate a registered method with its keyword parameters."""
    return method_class(name)(context, **(params or {}))


def method_parameters(name: str) -> set[str]:
    """Names of the keyword parameters a method accepts."""
    return keyword_parameters(method_class(name).__init__, skip=("self", "context")) or set()


def method_names() -> list[str]:
    return METHODS.names()


__all__ = ["DistillationMethod", "MethodContext", "TeacherView", "build_method", "method_class", "method_names",
           "method_parameters"]

# The built-in methods register themselves (imported last: they import this package's modules).
from codistill.methods import dckd, dkd, feature_decoupled, indistill, kd, sfr  # noqa: E402,F401
