"""Where training stands: the single input of every schedule."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """Position in training. ``epoch`` counts from 0; ``step`` is the step inside that epoch."""

    epoch: int
    step: int
    steps_per_epoch: int
    total_epochs: int

    @property
    def epoch_float(self) -> float:
        """Epochs completed, fractional: 2.5 is half-way through the third epoch."""
        return self.epoch + self.step / max(self.steps_per_epoch, 1)

    @property
    def fraction(self) -> float:
        """Share of training completed, in [0, 1]."""
        return min(self.epoch_float / max(self.total_epochs, 1), 1.0)

    @property
    def global_step(self) -> int:
        return self.epoch * self.steps_per_epoch + self.step
