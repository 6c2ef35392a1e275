"""The sweep's trial table: one row per trial (its searched values, validation accuracy, state),
written as CSV and printed. No Ray: rows are plain dictionaries, built from Tune's results by
:func:`summarize`."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codistill.safe_io import write_atomic
from codistill.tuning.layout import trial_id_of

if TYPE_CHECKING:
    from codistill.tuning.settings import SweepSettings

COMPLETE, STOPPED, FAILED = "complete", "stopped early", "failed"


def trial_row(trial_id: str, values: dict[str, Any], keys: Sequence[str], epochs_done: int, total_epochs: int,
              last: dict[str, float], best_metric: float | None, metric: str, failed: bool) -> dict[str, Any]:
    """A row: id, searched values, state, epochs, the metric at its best epoch and its last, the others last."""
    state = FAILED if failed else COMPLETE if epochs_done >= total_epochs else STOPPED
    row: dict[str, Any] = {"trial": trial_id, **{key: values.get(key) for key in keys}, "state": state,
                           "epochs": epochs_done, f"best {metric}": best_metric, f"last {metric}": last.get(metric)}
    row.update({f"last {name}": value for name, value in last.items() if name != metric})
    return row


def summarize(results: Iterable[Any], settings: SweepSettings) -> tuple[list[dict[str, Any]], str | None]:
    """One row per trial of Tune's ``results`` (a ``ResultGrid``), and the id of the best complete
    trial by its last ``metric`` (None when no trial completed)."""
    keys, metric, epochs = [d.key for d in settings.dimensions], settings.options.metric, settings.config.epochs
    rows = []
    for result in results:
        history, last = result.metrics_dataframe, result.metrics or {}
        reported = {name: value for name, value in last.items()
                    if name.endswith("_accuracy") and isinstance(value, float)}
        best = float(history[metric].max()) if history is not None and metric in history else None
        rows.append(trial_row(trial_id_of(result.path), result.config or {}, keys, int(last.get("epoch", 0)), epochs,
                              reported, best, metric, result.error is not None))
    complete = [row for row in rows if row["state"] == COMPLETE and row[f"last {metric}"] is not None]
    best_id = max(complete, key=lambda row: row[f"last {metric}"])["trial"] if complete else None
    return rows, best_id


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """The rows as CSV, with every column any row has, written atomically."""
    columns = list(dict.fromkeys(column for row in rows for column in row))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, text.getvalue().encode())


def format_table(rows: list[dict[str, Any]], sort_by: str) -> str:
    """A fixed-width console table, best ``sort_by`` first (accuracies in %)."""
    if not rows:
        return "(no trials)"
    ordered = sorted(rows, key=lambda row: -(row.get(sort_by) if row.get(sort_by) is not None else -1.0))
    columns = list(dict.fromkeys(column for row in ordered for column in row))
    cells = [[_cell(column, row.get(column)) for column in columns] for row in ordered]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    lines = ["  ".join(column.rjust(width) for column, width in zip(columns, widths))]
    lines += ["  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in cells]
    return "\n".join(lines)


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{100 * value:.2f}" if "accuracy" in column else f"{value:.4g}"
    return str(value)
