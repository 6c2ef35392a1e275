"""Overhead of the learned teacher policy: seconds per training epoch of one cohort with the
``uniform`` policy and with ``policies.learned:LearnedPolicy``, measured side by side in one run.

    python jobs/benchmark_policy.py --config jobs/configs/digits_cohort.yaml --epochs 5

Both cohorts train in this process (the sequential backend) on identical data: the same
``data.probe_fraction`` is set for both, so they take the same steps and differ only in the
policy. Their epochs alternate (uniform, learned, uniform, ...) so that a busy machine slows
both alike; the first epoch of each is a warm-up. The learned policy's cost is its observation,
its scorer, the two probe forward passes per peer and step, and the learner's updates.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import _bootstrap  # noqa: F401
import torch

from codistill.config import load_config
from codistill.local import SequentialCohort

LEARNED = "policies.learned:LearnedPolicy"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="jobs/configs/digits_cohort.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="applied to both cohorts")
    parser.add_argument("--probe-fraction", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per policy (after one warm-up)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--out", type=Path, help="write the measurements as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    common = args.overrides + [f"data.probe_fraction={args.probe_fraction}"]
    cohorts = {"uniform": SequentialCohort(load_config(args.config, common + ["distillation.policy=uniform"])),
               "learned": SequentialCohort(load_config(args.config, common + [f"distillation.policy={{name: '{LEARNED}'}}"]))}
    seconds: dict[str, list[float]] = {name: [] for name in cohorts}
    for epoch in range(args.epochs + 1):
        for name, cohort in cohorts.items():
            started = time.perf_counter()
            cohort.train_epoch(epoch)
            if epoch > 0:
                seconds[name].append(time.perf_counter() - started)
    median = {name: statistics.median(times) for name, times in seconds.items()}
    ratio = median["learned"] / median["uniform"]
    steps = cohorts["uniform"].steps_per_epoch()
    print(f"sequential cohort of {len(cohorts['uniform'].peers)} peers, {steps} steps per epoch, "
          f"{args.threads} threads, median of {args.epochs} epochs")
    for name, value in median.items():
        print(f"{name:<10}{value:>8.3f} s/epoch")
    print(f"learned / uniform: {ratio:.2f}x  (+{1000 * (median['learned'] - median['uniform']) / steps:.1f} ms per step)")
    if args.out:
        args.out.write_text(json.dumps({"seconds": seconds, "median": median, "ratio": ratio, "steps": steps}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
