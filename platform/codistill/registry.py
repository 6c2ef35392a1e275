"""Name → component registries: one way to name every kind of component in a config.

A built-in component registers itself where it is defined, with its key written once: a class
that names itself is registered under its ``name``, anything else under the key given::

    @METHODS.register_named
    class KD(DistillationMethod):
        name = "kd"

    MODELS.register("mlp")(MLP)

and user code is named ``package.module:Name`` wherever a built-in name is accepted
(``model: mylab.nets:TinyNet``, ``policy: {name: policies.learned:LearnedPolicy}``). The
registries are declared here, at the bottom of the package, with the modules whose import
registers their built-ins; those are imported on the first lookup, so :mod:`codistill.config`
can ask a registry for a component without importing the layers above it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Named components of one kind; see the module docstring.

    ``builtins``: modules whose import registers the built-in components. ``base``:
    ``module:Class`` that a user's ``module:Name`` must be (a subclass of), if any.
    """

    def __init__(self, kind: str, builtins: tuple[str, ...], base: str | None = None) -> None:
        self.kind, self.builtins, self.base = kind, builtins, base
        self._entries: dict[str, T] = {}
        self._loaded = False
        self._unavailable: dict[str, str] = {}  # built-in module → the dependency it lacks here

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator (or call on a value) registering a built-in component under ``name``."""
        def decorate(component: T) -> T:
            if name in self._entries:
                raise KeyError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = component
            return component

        return decorate

    def register_named(self, component: T) -> T:
        """Decorator registering a built-in component under its own ``name`` attribute."""
        return self.register(component.name)(component)

    def get(self, name: str) -> T:
        """The component called ``name``: a built-in, or ``package.module:Name`` of user code.

        Raises ``KeyError`` (unknown name, or not a component of this kind) or ``ImportError``.
        """
        if ":" in name:
            return self._user_component(name)
        self._load_builtins()
        try:
            return self._entries[name]
        except KeyError:
            missing = "".join(f"; {module} needs {dependency}, not installed" for module, dependency
                              in self._unavailable.items())
            raise KeyError(f"unknown {self.kind} '{name}' (known: {', '.join(self.names())}; "
                           f"or package.module:Name of your own{missing})") from None

    def names(self) -> list[str]:
        """The built-in names, sorted."""
        self._load_builtins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (":" in name or name in self.names())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _load_builtins(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self.builtins:
                try:
                    importlib.import_module(module)
                except ModuleNotFoundError as error:  # an optional dependency (Ray) this machine lacks
                    if (error.name or "").startswith("codistill"):
                        raise
                    self._unavailable[module] = error.name or str(error)

    def _user_component(self, name: str) -> T:
        module_name, _, attribute = name.partition(":")
        if not module_name or not attribute:
            raise KeyError(f"'{name}' is not of the form package.module:Name")
        try:
            component = getattr(importlib.import_module(module_name), attribute)
        except ModuleNotFoundError as error:
            raise ImportError(f"cannot import '{module_name}' for the {self.kind} '{name}': {error}") from None
        except AttributeError:
            raise KeyError(f"module '{module_name}' has no {self.kind} '{attribute}'") from None
        if self.base is not None and not _is_a(component, _resolve(self.base)):
            raise KeyError(f"'{name}' is not a {self.base.partition(':')[2]} subclass")
        return component


def _resolve(path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def _is_a(component: Any, base: type) -> bool:
    return isinstance(component, type) and issubclass(component, base)


MODELS: Registry = Registry("model", ("codistill.models",))
DATASETS: Registry = Registry("dataset", ("codistill.data",), base="codistill.data.base:DatasetFactory")
METHODS: Registry = Registry("distillation method", ("codistill.methods",),
                             base="codistill.methods.base:DistillationMethod")
POLICIES: Registry = Registry("teacher-weighting policy", ("codistill.policy",),
                              base="codistill.policy:TeacherWeightingPolicy")
OPTIMIZERS: Registry = Registry("optimizer", ("codistill.optimizers",))
SCHEDULES: Registry = Registry("schedule", ("codistill.schedules",))
EXCHANGES: Registry = Registry("exchange", ("codistill.cohort.exchanges",), base="codistill.cohort.exchanges:Exchange")
