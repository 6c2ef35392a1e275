"""Recovery time when one peer of K is lost, only that peer restarted against every peer, in one run:

    python jobs/benchmark_recovery.py                   # K = 3 and 8 tiny peers, 2 runs of each way

What is measured: :mod:`codistill.benchmarks.recovery`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from codistill.benchmarks.recovery import benchmark_recovery
from codistill.validation import load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="jobs/configs/digits_cohort.yaml", help="the tiny peers")
    parser.add_argument("--sizes", type=int, nargs="*", default=[3, 8], help="cohort sizes K")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each way per K")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config overrides")
    parser.add_argument("--out", type=Path, help="write the measurements as JSON here")
    args = parser.parse_args(argv)
    rows = benchmark_recovery(load_config(args.config, args.overrides), args.sizes, args.repeats,
                              measured=lambda name: print(f"measured {name}", flush=True))
    print(f"\n{os.cpu_count()} cores; seconds from SIGKILL of one peer to the redone epoch's first step; "
          f"median of {args.repeats}")
    print(f"{'K':>3}{'only lost s':>13}{'every peer s':>14}{'every/only lost':>17}{'restarted':>11}")
    for row in rows:
        print(f"{row['K']:>3}{row['only_lost_seconds']:>13.2f}{row['all_seconds']:>14.2f}"
              f"{row['all_over_only_lost']:>16.2f}x{row['restarted_only_lost']:>5} / {row['restarted_all']}")
    if args.out:
        args.out.write_text(json.dumps({"cores": os.cpu_count(), "rows": rows}, indent=2))
    return 0

