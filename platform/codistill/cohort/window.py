"""The window of steps in flight: how a driver asks for chunks of steps and collects them in order."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from codistill.cohort.base import StepCallback


def run_in_window(total: int, steps_per_call: int, max_steps_in_flight: int,
                  submit: Callable[[range], Any], collect: Callable[[Any], list],
                  on_step: StepCallback | None = None, breaks: Iterable[int] = ()) -> list:
    """Steps ``0 … total−1`` asked for in calls of ``steps_per_call`` (a call also starts at each
    of ``breaks``), never more than ``max_steps_in_flight`` asked for and not yet collected (at
    least one call); results in order. ``on_step(done, total)`` runs after each collected call."""
    results: list = []
    pending: deque[tuple[range, Any]] = deque()
    in_flight = 0
    starts = sorted(set(range(0, total, steps_per_call)) | {step for step in breaks if 0 < step < total})
    for start, stop in zip(starts, starts[1:] + [total]):
        steps = range(start, stop)
        while pending and in_flight + len(steps) > max_steps_in_flight:
            in_flight -= _collect_oldest(pending, collect, results, total, on_step)
        pending.append((steps, submit(steps)))
        in_flight += len(steps)
    while pending:
        _collect_oldest(pending, collect, results, total, on_step)
    return results


def _collect_oldest(pending: deque, collect: Callable[[Any], list], results: list, total: int,
                    on_step: StepCallback | None) -> int:
    steps, handle = pending.popleft()
    results.extend(collect(handle))
    if on_step is not None:
        on_step(steps.stop, total)
    return len(steps)
