"""Helpers shared by the evidence scripts (``evidence_online.py``, ``evidence_methods.py``):
named variants of one config trained over several seeds, summarized as mean ± std."""

from __future__ import annotations

import re
import statistics
from pathlib import Path


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
