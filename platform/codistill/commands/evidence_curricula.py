"""Searched and evolved curricula vs simple ones, chosen on validation, reported on a test split.

    python jobs/evidence_curricula.py --seeds 1 2 3
    python jobs/evidence_curricula.py --config jobs/configs/fashion_cohort.yaml \
        --space jobs/configs/fashion_cohort_space.yaml --asha-samples 8 --pbt-samples 4 --pbt-interval 2 \
        --set data.train_fraction=0.02 --set data.val_fraction=0.0167 --set epochs=10 \
        --seeds 1 2 3 --out runs/evidence-curricula-fashion

On the config's cohort (digits: 50% of the training data, 40% label noise) with
``data.test_fraction=0.5`` (half of the held-out digits become a test split no trial sees) — or,
for a dataset with an official test split (Fashion-MNIST as above: 1,180 training images, 1,000
validation images carved from the training split, 10 epochs; the official 10,000 test images),
that split:

1. an ASHA sweep (``--asha-samples`` trials, seed 0) over ``jobs/configs/digits_cohort_space.yaml``
   selects the curriculum with the best last-epoch mean peer validation top-1;
2. a synchronous, monotone PBT sweep (``--pbt-samples`` trials, seed 0) evolves one; its best
   trial's piecewise curriculum is exported as a plain config (``best.yaml``);
3. the config as written, a constant λ = 1 (no gate), the ASHA winner and the PBT replay are each
   trained from scratch with fresh seeds (``--seeds``, not the tuning seed) as plain runs of
   ``jobs/online.py`` (sequential backend, one torch thread, ``--jobs`` runs at a time) and
   evaluated on the test split.

``--reuse-sweeps`` keeps the sweeps already in ``--out`` (e.g. after an interrupted replay stage).

Prints mean ± std over seeds of the mean peer and the ensemble top-1 on the test split, the
sweeps' wall time and concurrency, and the winning curricula. Raw runs stay in ``--out``.
The library: :mod:`codistill.tuning.curricula`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import yaml

from codistill.data import split_description
from codistill.evidence import add_common_arguments, fresh_output, mean_std, table, write_summary
from codistill.tuning import curricula as c
from codistill.tuning.layout import BEST_FILE
from codistill.validation import load_config

#: Where ``sweep.py`` and ``online.py`` are, run as their own processes (the checkout's ``jobs/``).
JOBS = Path(__file__).resolve().parents[3] / "jobs"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="jobs/configs/digits_cohort.yaml")
    parser.add_argument("--space", default="jobs/configs/digits_cohort_space.yaml")
    parser.add_argument("--asha-samples", type=int, default=16)
    parser.add_argument("--pbt-samples", type=int, default=4)
    parser.add_argument("--pbt-interval", type=int, default=5)
    parser.add_argument("--backend", choices=("ray", "sequential"), default="sequential", help="of the sweeps' trials")
    add_common_arguments(parser, "runs/evidence-curricula")
    parser.set_defaults(seeds=[1, 2, 3])
    parser.add_argument("--jobs", type=int, default=3, help="plain runs at a time")
    parser.add_argument("--reuse-sweeps", action="store_true", help="keep the sweeps already in --out")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, jobs_dir: Path = JOBS) -> int:
    args = parse_args(argv)
    overrides = c.held_out_test_split(load_config(args.config, args.overrides)) + args.overrides
    common = ["--config", args.config, "--space", args.space, "--backend", args.backend]
    sweeps = {"asha": common + ["--num-samples", str(args.asha_samples), "--grace-epochs", "2", "--cpus", "6"],
              "pbt": common + ["--num-samples", str(args.pbt_samples),
                               "--perturbation-interval", str(args.pbt_interval),
                               "--cpus", str(3 * args.pbt_samples)]}
    if args.reuse_sweeps:
        done = {name: (args.out / c.SWEEPS_DIR / name, c.sweep_summary(args.out / c.SWEEPS_DIR / name))
                for name in sweeps}
        shutil.rmtree(args.out / c.REPLAYS_DIR, ignore_errors=True)
    else:
        fresh_output(args.out)
        done = {name: c.run_sweep_process(jobs_dir, args.out, name, arguments, overrides)
                for name, arguments in sweeps.items()}
    (asha_dir, asha), (pbt_dir, pbt) = done["asha"], done["pbt"]
    variants = c.curricula(args.config, asha_dir, pbt_dir)
    try:
        seconds = c.train_plain_runs(jobs_dir, args.out, variants, args.seeds, overrides, args.jobs)
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"plain runs: {seconds:.0f} s", flush=True)
    rows = c.collect(args.out, list(variants), args.seeds)

    body = table(["curriculum", "mean peer top-1, test", "ensemble top-1, test", "mean peer top-1, val (last)"],
                 [[name, mean_std(r["peer_test"]), mean_std(r["ens_test"]), mean_std(r["peer_val"])]
                  for name, r in rows.items()])
    sweep_table = table(["sweep", "trials", "wall time", "most trials at once", "backend"],
                        [[name, str(s["trials"]), f"{s['wall_seconds']:.0f} s", str(s["most_concurrent"]), args.backend]
                         for name, s in (("ASHA", asha), ("PBT (monotone, synchronous)", pbt))])
    winners = "\n".join(
        f"{name}: " + yaml.safe_dump(yaml.safe_load((d / BEST_FILE).read_text())["distillation"],
                                     default_flow_style=True, width=200).strip()
        for name, d in (("ASHA", asha_dir), ("PBT", pbt_dir)))
    write_summary(args.out, args.seeds, "; the sweeps select on validation and never see the test split",
                  f"{body}\n\n{sweep_table}\n\n{winners}", {"rows": rows, "asha": asha, "pbt": pbt},
                  measure=split_description(load_config(args.config, overrides).data))
    return 0

