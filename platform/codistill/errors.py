"""Errors raised to users."""


class ConfigError(ValueError):
    """A configuration value is invalid. The message names the offending field.

    The message is kept on one line (the command line prints it as is), and the error pickles, so
    one raised inside a Ray actor reaches the driver intact.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = " ".join(str(message).split())
        super().__init__(f"config error in '{field}': {self.message}")

    def __reduce__(self):
        return type(self), (self.field, self.message)
