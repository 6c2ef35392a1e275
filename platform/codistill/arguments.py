"""Command lines whose mistakes are config errors: one line naming the option, exit status 2
(:class:`~codistill.errors.ConfigError`), not argparse's usage dump."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from codistill.errors import ConfigError


class ArgumentParser(argparse.ArgumentParser):
    """``argparse``'s parser, raising :class:`ConfigError` on a mistake (the message names the option)."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError("command line", message)


def whole_number(minimum: int) -> Callable[[str], int]:
    """An ``argparse`` type: a whole number ≥ ``minimum``."""
    return at_least(minimum, int, "a whole number")


def number(minimum: float) -> Callable[[str], float]:
    """An ``argparse`` type: a number ≥ ``minimum``."""
    return at_least(minimum, float, "a number")


def at_least(minimum: Any, kind: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what} ≥ {minimum}, got {text!r}") from None
        if not value >= minimum:  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be ≥ {minimum}, got {value}")
        return value

    return parse


def reported(error: ConfigError) -> int:
    """Print ``error`` as the one line of a bad input; its exit status, 2."""
    print(f"codistill: {error}", file=sys.stderr)
    return 2
