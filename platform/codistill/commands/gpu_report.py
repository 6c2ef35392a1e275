"""The GPU check's report: ``report.md`` and ``report.json`` in the check's output folder.

    python jobs/gpu_report.py OUT --mode gpu --step tests 0 95.2 --step benchmark 0 140.8
    python jobs/gpu_report.py OUT --mode cpu --step self-check 0 41.0

Reads what ``jobs/gpu_check.sh`` left in ``OUT`` (``tests.xml``, pytest's JUnit XML of the GPU
tests; ``benchmark.json``, from ``jobs/benchmark_gpu.py``), adds the machine (card, driver,
torch, CUDA, NCCL) and each step's exit status and time, and writes both files. The exit status
is 0 when every step succeeded. The library: :mod:`codistill.benchmarks.gpu_report`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from codistill.benchmarks.gpu_report import build_report, markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the check's output folder")
    parser.add_argument("--mode", choices=("gpu", "cpu"), required=True)
    parser.add_argument("--step", nargs=3, action="append", default=[], metavar=("NAME", "EXIT_STATUS", "SECONDS"))
    args = parser.parse_args(argv)
    steps = [{"name": name, "exit_code": int(code), "seconds": float(seconds)} for name, code, seconds in args.step]
    report = build_report(args.out, args.mode, steps)
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    (args.out / "report.md").write_text(markdown(report))
    print(report["summary"])
    return 0 if report["status"] == "passed" else 1

