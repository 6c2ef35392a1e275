"""Searched and evolved curricula vs simple ones, chosen on validation, reported on a test split.

    python jobs/evidence_curricula.py --seeds 1 2 3
    python jobs/evidence_curricula.py --config jobs/configs/fashion_cohort.yaml \
        --space jobs/configs/fashion_cohort_space.yaml --asha-samples 8 --pbt-samples 4 --pbt-interval 2 \
        --set data.train_fraction=0.02 --set data.val_fraction=0.0167 --set epochs=10 \
        --seeds 1 2 3 --out runs/evidence-curricula-fashion

On the config's cohort (digits: 50% of the training data, 40% label noise) with
``data.test_fraction=0.5`` (half of the held-out digits become a test split no trial sees) — or,
for a dataset with an official test split (Fashion-MNIST: 1,180 training images, 1,000 validation
images carved from the training split, 10 epochs; the official 10,000 test images), that split:

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
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

import _bootstrap  # noqa: F401
from _evidence import add_common_arguments, fresh_output, mean_std, run_dir_for, split_measure, table, write_summary

from codistill.config import load_config
from codistill.data import has_test_split

ROOT = Path(__file__).resolve().parent.parent
CARVED_TEST_SPLIT = "data.test_fraction=0.5"  # for a config without a test split
CONSTANT = ["distillation.weight=1.0", "distillation.gate=1.0"]


def run_sweep(args: argparse.Namespace, scheduler: str, samples: int, extra: list[str]) -> tuple[Path, dict]:
    """One sweep in its own process (its own private Ray); returns its directory and summary."""
    storage = args.out / "sweeps"
    command = [sys.executable, str(ROOT / "jobs" / "sweep.py"), "--config", args.config, "--space", args.space,
               "--scheduler", scheduler, "--num-samples", str(samples), "--storage", str(storage), "--name", scheduler,
               "--backend", args.backend, "--set", "seed=0", *extra]
    for override in args.split + args.overrides:
        command += ["--set", override]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)
    directory = storage / scheduler
    return directory, json.loads((directory / "summary.json").read_text())


def replay(args: argparse.Namespace, name: str, arguments: list[str], seed: int) -> subprocess.Popen:
    """One plain run of ``jobs/online.py`` in its own process, on one thread."""
    sets = [*args.split, f"seed={seed}", *args.overrides]
    command = [sys.executable, str(ROOT / "jobs" / "online.py"), *arguments, *[x for o in sets for x in ("--set", o)],
               "--backend", "sequential", "--run-dir", str(run_dir_for(args.out / "replays", name, seed))]
    log = (args.out / "replays" / f"{run_dir_for(Path(''), name, seed)}.log").open("w")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_accuracies(run_dir: Path) -> tuple[float, float, float]:
    results = json.loads((run_dir / "results.json").read_text())
    peers = results["peers"]
    return (statistics.mean(p["test_accuracy"] for p in peers), results["ensemble"]["test_accuracy"],
            statistics.mean(p["last_val_accuracy"] for p in peers))


def main(argv: list[str] | None = None) -> int:
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
    args = parser.parse_args(argv)
    args.split = [] if has_test_split(load_config(args.config, args.overrides).data) else [CARVED_TEST_SPLIT]
    sweeps = {"asha": (args.asha_samples, ["--grace-epochs", "2", "--cpus", "6"]),
              "pbt": (args.pbt_samples, ["--perturbation-interval", str(args.pbt_interval),
                                         "--cpus", str(3 * args.pbt_samples)])}
    if args.reuse_sweeps:
        done = {name: (args.out / "sweeps" / name, json.loads((args.out / "sweeps" / name / "summary.json").read_text()))
                for name in sweeps}
        shutil.rmtree(args.out / "replays", ignore_errors=True)
    else:
        fresh_output(args.out)
        done = {name: run_sweep(args, name, samples, extra) for name, (samples, extra) in sweeps.items()}
    (asha_dir, asha), (pbt_dir, pbt) = done["asha"], done["pbt"]
    (args.out / "replays").mkdir()
    variants = {"the config (ramp λ(t) + progressive gate m(t))": ["--config", args.config],
                "constant λ = 1, no gate": ["--config", args.config] + [x for o in CONSTANT for x in ("--set", o)],
                "best ASHA curriculum": ["--config", str(asha_dir / "best.yaml")],
                "PBT-evolved monotone curriculum (replayed)": ["--config", str(pbt_dir / "best.yaml")]}
    pending = [(name, arguments, seed) for name, arguments in variants.items() for seed in args.seeds]
    running: list[tuple[str, int, subprocess.Popen]] = []
    started = time.perf_counter()
    while pending or running:
        while pending and len(running) < args.jobs:
            name, arguments, seed = pending.pop(0)
            running.append((name, seed, replay(args, name, arguments, seed)))
        time.sleep(1)
        for entry in [e for e in running if e[2].poll() is not None]:
            running.remove(entry)
            if entry[2].returncode != 0:
                raise SystemExit(f"{entry[0]} seed {entry[1]} failed; see {args.out / 'replays'}")
    print(f"plain runs: {time.perf_counter() - started:.0f} s", flush=True)
    rows: dict[str, dict[str, list[float]]] = {}
    for name in variants:
        for seed in args.seeds:
            peer, ensemble, val = test_accuracies(run_dir_for(args.out / "replays", name, seed))
            row = rows.setdefault(name, {"peer_test": [], "ens_test": [], "peer_val": []})
            row["peer_test"].append(peer)
            row["ens_test"].append(ensemble)
            row["peer_val"].append(val)

    body = table(["curriculum", "mean peer top-1, test", "ensemble top-1, test", "mean peer top-1, val (last)"],
                 [[name, mean_std(r["peer_test"]), mean_std(r["ens_test"]), mean_std(r["peer_val"])]
                  for name, r in rows.items()])
    sweep_table = table(["sweep", "trials", "wall time", "most trials at once", "backend"],
                   [[name, str(s["trials"]), f"{s['wall_seconds']:.0f} s", str(s["most_concurrent"]), args.backend]
                    for name, s in (("ASHA", asha), ("PBT (monotone, synchronous)", pbt))])
    winners = "\n".join(f"{name}: {yaml.safe_dump(yaml.safe_load((d / 'best.yaml').read_text())['distillation'], default_flow_style=True, width=200).strip()}"
                        for name, d in (("ASHA", asha_dir), ("PBT", pbt_dir)))
    write_summary(args.out, args.seeds, "; the sweeps select on validation and never see the test split",
                  f"{body}\n\n{sweep_table}\n\n{winners}", {"rows": rows, "asha": asha, "pbt": pbt},
                  measure=split_measure(load_config(args.config, args.split + args.overrides)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
