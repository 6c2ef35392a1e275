"""Overhead of the learned teacher policy: seconds per training epoch with the ``uniform`` policy
and with ``policies.learned:LearnedPolicy``, side by side in one run
(:mod:`codistill.benchmarks.policy`).

    python jobs/benchmark_policy.py --config jobs/configs/digits_cohort.yaml --epochs 5
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from codistill.benchmarks.policy import time_policies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="jobs/configs/digits_cohort.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="applied to both cohorts")
    parser.add_argument("--probe-fraction", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per policy (after one warm-up)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--out", type=Path, help="write the measurements as JSON here")
    args = parser.parse_args(argv)
    timed = time_policies(args.config, args.overrides, probe_fraction=args.probe_fraction, epochs=args.epochs,
                          threads=args.threads)
    median, steps = timed["median"], timed["steps"]
    print(f"sequential cohort of {timed['peers']} peers, {steps} steps per epoch, "
          f"{args.threads} threads, median of {args.epochs} epochs")
    for name, value in median.items():
        print(f"{name:<10}{value:>8.3f} s/epoch")
    print(f"learned / uniform: {timed['ratio']:.2f}x  (+{1000 * (median['learned'] - median['uniform']) / steps:.1f} "
          "ms per step)")
    if args.out:
        args.out.write_text(json.dumps({key: timed[key] for key in ("seconds", "median", "ratio", "steps")}, indent=2))
    return 0

