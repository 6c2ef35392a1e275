"""Helpers shared by the evidence scripts (``jobs/evidence_*.py``): named variants of one config
trained over several seeds, summarized as mean ± std in Markdown tables."""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from pathlib import Path
from typing import Any


def add_common_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    """``--seeds``, ``--set``, ``--only`` and ``--out`` (default ``out``)."""
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="applied to every run")
    parser.add_argument("--only", nargs="*", help="run only the variants whose name contains one of these")
    parser.add_argument("--out", type=Path, default=Path(out))


def mean_std(values: list[float]) -> str:
    """``mean ± sample std`` of accuracies in [0, 1], printed in percent."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * spread:.2f}"


def fresh_output(out: Path) -> None:
    """Refuse, before anything is trained, to mix new runs into an earlier evidence directory."""
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} holds earlier runs: remove it or pass another --out")
    out.mkdir(parents=True, exist_ok=True)


def run_dir_for(out: Path, variant: str, seed: int) -> Path:
    """``out/<variant as a slug>-seed<seed>``."""
    return out / f"{re.sub(r'[^a-z0-9]+', '-', variant.lower()).strip('-')}-seed{seed}"


def selected(variants: dict[str, list[str]], only: list[str] | None) -> dict[str, list[str]]:
    """The variants whose name contains one of ``only`` (all of them when ``only`` is empty)."""
    return {name: overrides for name, overrides in variants.items()
            if not only or any(part in name for part in only)}


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def write_summary(out: Path, seeds: list[int], heading: str, body: str, raw: dict[str, Any],
                  measure: str = "validation top-1 (%)") -> None:
    """Print the tables and keep them (``summary.md``) with the raw numbers (``summary.json``)."""
    text = (f"{len(seeds)} seeds ({', '.join(map(str, seeds))}), mean ± std, {measure}"
            f"{heading}\n\n{body}\n")
    print("\n" + text)
    (out / "summary.md").write_text(text)
    (out / "summary.json").write_text(json.dumps(raw, indent=2))


def plotting_available() -> bool:
    """Whether matplotlib (the ``evidence`` extra) can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def mean_curve(curves: list[list[float | None]]) -> list[float]:
    """The epoch-by-epoch mean of several runs' curves (None: not recorded that epoch; NaN where
    no run recorded it), as long as the shortest."""
    length = min(map(len, curves))
    means = []
    for epoch in range(length):
        values = [curve[epoch] for curve in curves if curve[epoch] is not None]
        means.append(statistics.mean(values) if values else math.nan)
    return means


def plot_curves(path: Path, title: str, rows: dict[str, list[dict[str, Any]]], accuracy_label: str) -> None:
    """A PNG at ``path``: one panel per teacher with the mean weight each row gave it per epoch,
    and one with the row's accuracy per epoch, each the mean over the row's runs (seeds).

    ``rows``: row name → one curve record per run, ``{"accuracy": [per epoch], "weights":
    {teacher: [per epoch, None where it was not weighted]}}``. Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    teachers = list(dict.fromkeys(t for runs in rows.values() for run in runs for t in run["weights"]))
    figure, axes = pyplot.subplots(1, len(teachers) + 1, figsize=(3.4 * (len(teachers) + 1), 3.4), squeeze=False)
    colors = pyplot.get_cmap("tab10")
    for index, (name, runs) in enumerate(rows.items()):
        style = {"color": colors(index % 10), "label": name}
        for axis, teacher in zip(axes[0], teachers):
            weights = [run["weights"][teacher] for run in runs if teacher in run["weights"]]
            if weights:
                curve = mean_curve(weights)
                axis.plot(range(1, len(curve) + 1), curve, **style)
        accuracy = mean_curve([[100 * a for a in run["accuracy"]] for run in runs])
        axes[0][-1].plot(range(1, len(accuracy) + 1), accuracy, **style)
    for axis, teacher in zip(axes[0], teachers):
        axis.set(title=f"weight on {teacher}", xlabel="epoch", ylim=(-0.02, 1.02))
    axes[0][-1].set(title=accuracy_label, xlabel="epoch", ylabel="validation top-1 (%)")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize="small", frameon=False)
    figure.suptitle(title)
    figure.tight_layout(rect=(0, 0.06 + 0.04 * ((len(labels) - 1) // 4), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
