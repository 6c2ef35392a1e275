"""Errors raised to users."""


class ConfigError(ValueError):
    """A configuration value is invalid. The message names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"config error in '{field}': {message}")
