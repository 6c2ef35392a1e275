"""Feeding the devices: images per second delivered from a folder of JPEGs by a peer's batches
prepared in the step, by the same batches prefetched in a background thread, and by torchvision's
ImageFolder with a DataLoader of 2 worker processes, side by side on this machine:

    python jobs/benchmark_feeding.py                       # 384 JPEGs of 375×500, crops to 224, B = 64
    python jobs/benchmark_feeding.py --step-seconds 0.3    # each step holds 0.3 s off the CPU (a GPU step)

What is measured: :mod:`codistill.benchmarks.feeding`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from codistill.arguments import ArgumentParser, number, reported, whole_number
from codistill.benchmarks.feeding import delivery_rates, write_jpeg_tree
from codistill.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=whole_number(1), default=384,
                        help="training JPEGs written into a temporary folder")
    parser.add_argument("--width", type=whole_number(1), default=500)
    parser.add_argument("--height", type=whole_number(1), default=375)
    parser.add_argument("--image-size", type=whole_number(1), default=224, help="the side of the crops")
    parser.add_argument("--batch-size", type=whole_number(1), default=64)
    parser.add_argument("--prefetch", type=whole_number(1), default=2,
                        help="data.prefetch_batches of the prefetching variant")
    parser.add_argument("--loader-workers", type=whole_number(0), default=2, help="the DataLoader's worker processes")
    parser.add_argument("--rounds", type=whole_number(1), default=5, help="timed rounds, the variants interleaved")
    parser.add_argument("--step-seconds", type=number(0.0), default=0.0,
                        help="each step sleeps this long after its batch (a step computed off the CPU)")
    parser.add_argument("--out", type=Path, help="write the measurements as JSON here")
    try:
        args = parser.parse_args(argv)
    except ConfigError as error:
        return reported(error)
    with tempfile.TemporaryDirectory(prefix="codistill-feeding-") as directory:
        root = Path(directory)
        write_jpeg_tree(root, args.images, args.width, args.height)
        result = delivery_rates(root, image_size=args.image_size, batch_size=args.batch_size, prefetch=args.prefetch,
                                loader_workers=args.loader_workers, rounds=args.rounds, step_seconds=args.step_seconds)
    print(f"{os.cpu_count()} cores; {args.images} JPEGs of {args.height}x{args.width}, crops to {args.image_size}, "
          f"B = {args.batch_size}, steps of {args.step_seconds} s; images/s of one epoch per variant, "
          f"{args.rounds} interleaved rounds")
    median = result["median"]
    for name, rates in result["images_per_second"].items():
        print(f"  {name:>10}: median {median['images_per_second'][name]:.0f}/s   "
              f"rounds {' '.join(f'{rate:.0f}' for rate in rates)}   "
              f"wait per step {1e3 * median['wait_seconds'][name]:.0f} ms   "
              f"CPU {1e3 * median['cpu_seconds_per_image'][name]:.1f} ms per image")
    print("  medians of the per-round ratios:")
    for name, ratio in result["median_rate_ratios"].items():
        print(f"    images/s {name}: {ratio:.2f}   CPU per image {name}: {result['median_cpu_ratios'][name]:.2f}")
    if args.out:
        args.out.write_text(json.dumps({"cores": os.cpu_count(), "arguments": vars(args) | {"out": str(args.out)},
                                        **result}, indent=2))
    return 0
