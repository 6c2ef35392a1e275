"""Data-parallel peers measured: the step-time overhead of a peer on R workers against one, side by
side, and a cohort of R = [2, 1, 1] on a two-node cluster on this machine:

    python jobs/benchmark_data_parallel.py                     # the tiny digits cohort, R = 2 vs 1

What is measured: :mod:`codistill.benchmarks.data_parallel`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from codistill.cohort.ray_runtime import start_ray  # before ray: loopback

# isort: split
import ray  # noqa: E402

from codistill.benchmarks.data_parallel import overhead, two_nodes
from codistill.validation import load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="jobs/configs/digits_cohort.yaml", help="the cohort")
    parser.add_argument("--peer", type=int, default=1, help="the peer run on several workers")
    parser.add_argument("--workers", type=int, default=2, help="its workers R")
    parser.add_argument("--repeats", type=int, default=2, help="side-by-side rounds")
    parser.add_argument("--shape", type=int, nargs="*", default=[2, 1, 1], help="R per peer on two nodes")
    parser.add_argument("--node-cpus", type=int, default=2, help="logical CPUs of each of the two nodes")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config overrides")
    parser.add_argument("--out", type=Path, help="write the measurements as JSON here")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides)
    start_ray(config, num_cpus=len(config.peers) + args.workers - 1)  # one logical CPU per worker
    try:
        side_by_side = overhead(config, args.peer, args.workers, args.repeats)
    finally:
        ray.shutdown()
    print(f"{os.cpu_count()} cores; peer '{side_by_side['peer']}' on R workers, median of {args.repeats} "
          "timed epochs (after a warm-up epoch each)")
    for r, seconds in side_by_side["seconds_per_step"].items():
        print(f"  R = {r}: {seconds * 1000:.1f} ms/step, "
              f"{side_by_side['bytes_received_per_worker'][r]:.0f} payload bytes received per worker per step")
    print(f"  ratio R = {args.workers} / R = 1: {side_by_side['ratio']:.2f}")
    cluster = two_nodes(config, args.shape, args.node_cpus)
    print(f"two nodes, R = {args.shape}: nodes per worker {cluster['nodes']}; "
          f"val accuracy after {cluster['epochs']} epochs {cluster['val_accuracy']}")
    if args.out:
        args.out.write_text(json.dumps({"cores": os.cpu_count(), "overhead": side_by_side, "two_nodes": cluster},
                                       indent=2))
    return 0
