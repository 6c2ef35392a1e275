"""Helpers shared by the evidence scripts (``jobs/evidence_*.py``): named variants of one config
trained over several seeds, summarized as mean ± std in Markdown tables."""

from __future__ import annotations

import argparse
import json
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
