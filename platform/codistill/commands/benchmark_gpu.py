"""The GPU benchmark of a cohort, without Ray, on CIFAR-shaped synthetic batches:

    python jobs/benchmark_gpu.py --out runs/gpu-check/benchmark.json              # on a CUDA machine
    python jobs/benchmark_gpu.py --self-check --out /tmp/benchmark.json           # tiny, on the CPU

What is measured: :mod:`codistill.benchmarks.gpu`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

from codistill.benchmarks.gpu import GPU_PLAN, SELF_CHECK_PLAN, benchmark
from codistill.data.synthetic_cifar import write_synthetic_cifar10


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--self-check", action="store_true", help="the tiny CPU run (gloo) instead of the GPU plan")
    parser.add_argument("--budget-s", type=float, default=180.0, help="time budget; the extra peer's round fits in it")
    parser.add_argument("--out", type=Path, required=True, help="write the measurements as JSON here")
    args = parser.parse_args(argv)
    plan = SELF_CHECK_PLAN if args.self_check else GPU_PLAN
    os.environ.setdefault("NCCL_MULTI_RANK_GPU_ENABLE", "1")  # forced NCCL: lets NCCL ≥ 2.30 put ranks on one GPU
    if plan.device == "cuda" and not torch.cuda.is_available():
        print("benchmark_gpu: no CUDA device; run with --self-check on the CPU", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="synthetic-cifar-") as root:
        write_synthetic_cifar10(Path(root), train_images=plan.steps * plan.batch_size, test_images=plan.batch_size)
        result = benchmark(plan, Path(root), args.budget_s, lambda partial_result: args.out.write_text(
            json.dumps(partial_result, indent=2)))
    for problem in result["failures"]:
        print(f"benchmark_gpu: {problem}", file=sys.stderr)
    return 1 if result["failures"] else 0

