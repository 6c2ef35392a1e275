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


class NonFiniteLoss(RuntimeError):
    """A peer diverged: its loss, gradient or predictions are NaN or infinite.

    ``epoch`` and ``step`` count from 1, as the console does; ``step`` is None when the
    divergence showed in the validation after the epoch. Picklable (it travels from Ray actors).
    """

    def __init__(self, peer: str, epoch: int, step: int | None, detail: str) -> None:
        super().__init__(peer, epoch, step, detail)
        self.peer, self.epoch, self.step, self.detail = peer, epoch, step, detail

    def __str__(self) -> str:
        where = f"at epoch {self.epoch}, step {self.step}" if self.step is not None else f"after epoch {self.epoch}"
        return f"peer '{self.peer}' diverged: {self.detail} {where}"


class WriteFailed(OSError):
    """A run's file could not be written (e.g. the disk is full: ``errno.ENOSPC``).

    ``filename`` is the file that was being written; the run stops, its last verified
    checkpoint untouched. Picklable, like the other run-time failures.
    """

    def __init__(self, errno: int | None, strerror: str | None, filename: str) -> None:
        super().__init__(errno, strerror, filename)

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror or 'write failed'}"


class UnreadableFile(RuntimeError):
    """A data file could not be read or decoded during training (a corrupt, truncated or vanished
    image). It surfaces as the error of the step whose batch holds the file. Picklable."""

    def __init__(self, filename: str, detail: str) -> None:
        super().__init__(filename, detail)
        self.filename, self.detail = filename, detail

    def __str__(self) -> str:
        return f"cannot read {self.filename}: {self.detail}"
