"""Per-step cost of the collective payload exchange among K processes (median ms per step).

    python jobs/benchmark_exchange.py --sizes 2 3 8
    python jobs/benchmark_exchange.py --group codistill.cohort.tensor_group:PayloadGroup --steps 200

Prints one JSON line per K; ``--group`` names the payload group class to time.
"""

from __future__ import annotations

import argparse
import json

from codistill.benchmarks.exchange import exchange_ms_per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 3, 8], help="peers K")
    parser.add_argument("--group", default="codistill.cohort.tensor_group:PayloadGroup", help="module:Class")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    for size in args.sizes:
        ms = exchange_ms_per_step(size, args.group, (args.batch, 10, 64), steps=args.steps)
        print(json.dumps({"group": args.group, "peers": size, "ms_per_step": round(ms, 4)}), flush=True)


if __name__ == "__main__":
    main()
