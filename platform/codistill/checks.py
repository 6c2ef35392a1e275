"""Small, reusable checks of user-supplied values; each failure is a :class:`ConfigError` naming the field.

Range checks are values of type :data:`Check` — a function returning a complaint or ``None`` —
so a config field declares its range where it is declared:
``lr: float = setting(0.05, "the base learning rate", positive)`` (:mod:`codistill.config.fields`).
Components (datasets, methods, policies) check their own parameters with
:func:`check_keyword_params` and :func:`check_finite`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from codistill.errors import ConfigError

Check = Callable[[Any], "str | None"]


def positive(value: float) -> str | None:
    return None if value > 0 else f"must be > 0, got {value}"


def non_negative(value: float) -> str | None:
    return None if value >= 0 else f"must be ≥ 0, got {value}"


def at_least_one(value: int) -> str | None:
    return None if value >= 1 else f"must be ≥ 1, got {value}"


def rate(value: float) -> str | None:
    """A probability-like rate in [0, 1)."""
    return None if 0.0 <= value < 1.0 else f"must lie in [0, 1), got {value}"


def unit_interval(value: float) -> str | None:
    return None if 0.0 <= value <= 1.0 else f"must lie in [0, 1], got {value}"


def interval(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Check:
    """A number in the interval from ``low`` to ``high``, each end closed unless said open."""
    text = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def check(value: float) -> str | None:
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        return None if above and below else f"must lie in {text}, got {value}"

    return check


def off_or(check: Check) -> Check:
    """0 (the feature is off) or a value ``check`` accepts."""
    def either(value: float) -> str | None:
        complaint = check(value) if value != 0 else None
        return f"must be 0 (off) or {complaint.removeprefix('must ')}" if complaint else None

    return either


def one_of(*allowed: str) -> Check:
    """One of the names ``allowed``."""
    def check(value: str) -> str | None:
        return None if value in allowed else f"must be one of {', '.join(allowed)}, got {value!r}"

    return check


def each(check: Check) -> Check:
    """Every item of a list passes ``check``."""
    def check_all(values: tuple) -> str | None:
        return next((f"{complaint} (in {list(values)})" for complaint in map(check, values) if complaint), None)

    return check_all


def distinct(values: tuple) -> str | None:
    return None if values and len(set(values)) == len(values) else f"must be distinct and not empty, got {list(values)}"


def all_of(*checks: Check) -> Check:
    def check_all(value: Any) -> str | None:
        return next((complaint for complaint in (check(value) for check in checks) if complaint), None)

    return check_all


def component(registry: Any, name: str, field: str) -> Any:
    """The component ``name`` of a :class:`~codistill.registry.Registry`, or a :class:`ConfigError` naming ``field``."""
    try:
        return registry.get(name)
    except (KeyError, ImportError, ValueError) as error:
        raise ConfigError(field, str(error).strip("'\"")) from None


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_finite(value: Any, field: str) -> None:
    """Refuse NaN and infinity anywhere in a number, list or mapping (``field`` names the place)."""
    if is_number(value) and not math.isfinite(value):
        raise ConfigError(field, f"must be a finite number, got {value}")
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_finite(item, f"{field}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_finite(item, f"{field}.{key}")


def keyword_parameters(factory: Callable[..., Any], skip: tuple[str, ...] = ("self",)) -> set[str] | None:
    """Names of the keyword parameters ``factory`` takes, or ``None`` when it takes ``**kwargs``."""
    if factory is object.__init__:  # a class without its own __init__ takes no parameters
        return set()
    parameters = inspect.signature(factory).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.name not in skip and p.kind is not inspect.Parameter.VAR_POSITIONAL}


def check_keyword_params(factory: Callable[..., Any], params: dict[str, Any], field: str, owner: str,
                         skip: tuple[str, ...] = ("self",)) -> None:
    """Refuse parameters ``factory`` does not take and non-finite numbers among them."""
    accepted = keyword_parameters(factory, skip)
    if accepted is not None:
        unknown = sorted(set(params) - accepted)
        if unknown:
            raise ConfigError(f"{field}.{unknown[0]}", f"{owner} takes no such parameter "
                                                      f"(takes: {', '.join(sorted(accepted)) or 'none'})")
    for key, value in params.items():
        check_finite(value, f"{field}.{key}")


def positive_int(value: Any) -> str | None:
    return None if isinstance(value, int) and not isinstance(value, bool) and value >= 1 \
        else f"must be a whole number ≥ 1, got {value!r}"


def epoch_boundaries(value: Any) -> str | None:
    """A non-decreasing list of whole epochs ≥ 0."""
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                for v in value) and list(value) == sorted(value):
        return None
    return f"must be a non-decreasing list of epochs ≥ 0, got {value!r}"


def numeric(check: Check) -> Check:
    """``check`` for a number: anything else is refused before ``check`` sees it."""
    def checked(value: Any) -> str | None:
        return check(value) if is_number(value) else f"expected a number, got {value!r}"
    return checked


def optional(check: Check) -> Check:
    """``check``, or ``None`` (the parameter's default chosen elsewhere)."""
    return lambda value: None if value is None else check(value)


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def check_declared_params(params: dict[str, Any], checks: dict[str, Check], field: str) -> None:
    """Run each declared check on the parameter it names, when given; a complaint names ``field.<param>``."""
    for key, check in checks.items():
        if key in params:
            complaint = check(params[key])
            if complaint:
                raise ConfigError(f"{field}.{key}", complaint)
