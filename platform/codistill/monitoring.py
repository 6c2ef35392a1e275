"""What a person watching a run sees: TensorBoard event files and console progress.

TensorBoard layout (``tensorboard --logdir RUN_DIR/tensorboard``): one run per peer
(``<peer>``: every loss term, train/val accuracy, learning rate, distillation strength, step time,
time the step waited for its batch (``time/data_wait``) and for the exchange, bytes received from
the other peers per step and per epoch; the mean weight each teacher received,
``policy/weight/<teacher>``, and for a learned policy its reward, advantage, entropy and learner
loss; with codistillation the replicas' staleness in steps since their refresh,
``replicas/staleness``, their forward time and memory) and ``cohort`` (ensemble accuracy,
agreement between peers, epoch time, bytes exchanged in the epoch). With ``data.partition`` each
peer's run also holds its training examples per class (text, ``data/class_counts``). Step scalars
are averaged over ``log_every_steps`` steps, each over the steps that report it.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from torch.utils.tensorboard import SummaryWriter

from codistill import metrics as m
from codistill.errors import WriteFailed
from codistill.safe_io import failed_writes_named


def event_file(writer: SummaryWriter) -> Path:
    """The event file ``writer`` writes (its directory before it has one)."""
    directory = Path(writer.get_logdir())
    return max(directory.glob("events.out.tfevents.*"), key=lambda path: path.stat().st_mtime, default=directory)


@contextmanager
def failures_named(writer: SummaryWriter) -> Iterator[None]:
    """Within: a failed write of ``writer`` raises ``WriteFailed`` naming its event file."""
    try:
        yield
    except WriteFailed:
        raise
    except OSError as error:
        raise WriteFailed(error.errno, error.strerror, str(event_file(writer))) from error


class TensorBoardLog:
    """The run's event files; a failed write (a full disk) raises
    :class:`~codistill.errors.WriteFailed` naming the event file (a writer reports a failure of its
    background thread on its next call)."""

    def __init__(self, directory: Path, peer_names: list[str], log_every_steps: int) -> None:
        self.writers: dict[str, SummaryWriter] = {}
        for name in [*peer_names, "cohort"]:
            with failed_writes_named(directory / name):
                self.writers[name] = SummaryWriter(str(directory / name))
        self.cohort = self.writers.pop("cohort")
        self.peer_names, self.every = peer_names, max(1, log_every_steps)

    def add(self, writer: SummaryWriter, key: str, value: float, step: int) -> None:
        with failures_named(writer):
            writer.add_scalar(key, value, step)

    def flush(self, close: bool = False) -> None:
        for writer in [*self.writers.values(), self.cohort]:
            with failures_named(writer):
                if close:
                    writer.close()
                else:
                    writer.flush()

    def steps(self, epoch_metrics: list[list[dict[str, float]]], first_global_step: int) -> None:
        """Per-step metrics ``[step][peer]``, averaged over windows of ``log_every_steps``."""
        for start in range(0, len(epoch_metrics), self.every):
            window = epoch_metrics[start:start + self.every]
            step = first_global_step + start + len(window) - 1
            for k, name in enumerate(self.peer_names):
                sums: dict[str, float] = defaultdict(float)
                counts: dict[str, int] = defaultdict(int)  # some keys (policy, learner) are absent at some steps
                for row in window:
                    for key, value in row[k].items():
                        sums[key] += value
                        counts[key] += 1
                examples = sums.pop(m.TRAIN_EXAMPLES)
                correct = sums.pop(m.TRAIN_CORRECT)
                writer = self.writers[name]
                self.add(writer, m.TRAIN_ACCURACY_STEP, correct / max(examples, 1.0), step)
                for key, value in sums.items():
                    self.add(writer, key, value / counts[key], step)

    def epoch(self, epoch: int, peer_scalars: list[dict[str, float]], cohort_scalars: dict[str, float]) -> None:
        for name, scalars in zip(self.peer_names, peer_scalars):
            for key, value in scalars.items():
                self.add(self.writers[name], key, value, epoch)
        for key, value in cohort_scalars.items():
            self.add(self.cohort, key, value, epoch)
        self.flush()

    def class_counts(self, counts: list[list[int]]) -> None:
        """Each peer's training examples per class (its shard of a partitioned training split)."""
        for name, row in zip(self.peer_names, counts):
            table = "\n".join(f"| {label} | {count} |" for label, count in enumerate(row))
            self.writers[name].add_text(m.CLASS_COUNTS, f"| class | examples |\n|---|---|\n{table}", 0)
            self.writers[name].flush()

    def recovery(self, epoch: int, recoveries: int) -> None:
        """A lost peer was recovered: the count so far, at the epoch replayed from."""
        self.add(self.cohort, m.RECOVERIES, recoveries, epoch)
        with failures_named(self.cohort):
            self.cohort.flush()

    def close(self) -> None:
        self.flush(close=True)


class ConsoleProgress:
    """Prints a progress line at most every ``every_seconds`` during an epoch, and epoch summaries."""

    def __init__(self, total_epochs: int, every_seconds: float, stream: TextIO | None = None) -> None:
        self.total_epochs, self.every = total_epochs, every_seconds
        self.stream = stream or sys.stdout
        self._epoch, self._started, self._last = 0, 0.0, 0.0

    def print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def start_epoch(self, epoch: int) -> None:
        self._epoch, self._started = epoch, time.perf_counter()
        self._last = self._started

    def step(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if now - self._last < self.every or done == total:
            return
        self._last = now
        rate = done / max(now - self._started, 1e-9)
        self.print(f"  epoch {self._epoch + 1}/{self.total_epochs}  step {done}/{total}  "
                   f"{rate:.1f} steps/s  eta {(total - done) / max(rate, 1e-9):.0f}s")
