"""Overhead of the learned teacher policy: seconds per training epoch with the ``uniform`` policy
and with ``policies.learned:LearnedPolicy``, side by side in one run, in rounds
(:mod:`codistill.benchmarks.policy`).

    python jobs/benchmark_policy.py --config jobs/configs/digits_cohort.yaml --epochs 5 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from codistill.arguments import ArgumentParser, reported, whole_number
from codistill.benchmarks.policy import policy_configs, time_policies
from codistill.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="jobs/configs/digits_cohort.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="applied to both cohorts")
    parser.add_argument("--probe-fraction", type=float, default=0.1)
    parser.add_argument("--epochs", type=whole_number(1), default=5,
                        help="timed epochs per policy and round (after one warm-up)")
    parser.add_argument("--rounds", type=whole_number(1), default=1,
                        help="rounds on fresh cohorts, the first policy swapped")
    parser.add_argument("--params", default="{}",
                        help="the learned policy's parameters (YAML), e.g. '{update_every: 2}'")
    parser.add_argument("--threads", type=whole_number(1), default=os.cpu_count())
    parser.add_argument("--out", type=Path, help="write the measurements as JSON here")
    try:
        args = parser.parse_args(argv)
        configs = policy_configs(args.config, args.overrides, probe_fraction=args.probe_fraction,
                                 learned_params=args.params)
    except ConfigError as error:
        return reported(error)
    timed = time_policies(configs, epochs=args.epochs, threads=args.threads, rounds=args.rounds)
    steps = timed["steps"]
    print(f"sequential cohort of {timed['peers']} peers, {steps} steps per epoch, {args.threads} threads, "
          f"{args.rounds} round(s) of {args.epochs} epochs, learned policy params {args.params}")
    for clock in ("wall", "cpu"):
        median, ratios = timed[clock]["median"], timed[clock]["ratios"]
        seconds = ", ".join(f"{name} {value:.3f}" for name, value in median.items())
        print(f"{clock:<5} s/epoch (median): {seconds}; "
              f"learned / uniform per epoch: median {timed[clock]['ratio']:.2f}x "
              f"(range {min(ratios):.2f}-{max(ratios):.2f}x), "
              f"+{1000 * (median['learned'] - median['uniform']) / steps:.1f} ms per step")
    if args.out:
        args.out.write_text(json.dumps(timed, indent=2))
    return 0
