"""Independent vs online training of one cohort over several seeds: the README's table.

    python jobs/evidence_online.py --config jobs/configs/digits_cohort.yaml --seeds 0 1 2
    python jobs/evidence_online.py --config jobs/configs/fashion_cohort.yaml --seeds 0 1 2 \
        --set data.train_fraction=0.02 --set data.val_fraction=0.0167 --set epochs=10 \
        --out runs/evidence-online-fashion
    python jobs/evidence_online.py --config jobs/configs/fashion_cohort.yaml --epoch-seconds \
        --out runs/epoch-seconds-fashion

Every variant trains the config's cohort with the Ray backend, changing only the distillation:
CE alone (the baseline), deep mutual learning, the ensemble teacher at a constant weight, with
ONE's ramp, with the ramp and the discontinuous, progressively tightened gate of Gao et al.
(the config as written), and that plus CA-MKD's confidence-aware teacher weights. Prints mean ±
std over seeds of the mean peer top-1 and the ensemble top-1 (mean softmax) on validation, at
the last epoch and at each run's best epoch, and — for a dataset with a test split (Fashion-MNIST,
CIFAR: the official one) — of the final networks on the test split; then each peer's top-1 (test
where there is one, else last-epoch validation). Raw runs stay in ``--out``.

Fashion-MNIST, as above: the MLP + CNN + ResNet-8 cohort of ``fashion_cohort.yaml`` on 1,180
training images (a stratified 2% of the 59,000 left after 1,000 validation images), 10 epochs;
test: the official 10,000. 18 runs (6 variants × seeds 0–2); their time: docs/datasets.md.

``--epoch-seconds`` measures instead, so users can size their runs: seconds per training epoch
(median of ``--timed-epochs`` after a warm-up epoch) and per evaluation pass of each peer alone
(this process, on the CPUs its config gives it, no distillation) and of the cohort (Ray actors,
the config's exchange).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from codistill.benchmarks.cohort import epoch_seconds
from codistill.cohort.base import Cohort
from codistill.cohort.handles import threads_for
from codistill.cohort.offline import OfflineCohort
from codistill.cohort.ray_cohort import RayCohort
from codistill.cohort.ray_runtime import start_ray
from codistill.config import RunConfig
from codistill.data import has_test_split, split_description
from codistill.evidence import add_common_arguments, fresh_output, mean_std, run_dir_for, selected, table, write_summary
from codistill.runner import prepare_run_dir, run_cohort
from codistill.validation import load_config

BASELINE = "independent (CE only)"
CONSTANT = ["distillation.weight=1.0", "distillation.gate=1.0"]
VARIANTS: dict[str, list[str]] = {
    BASELINE: ["independent=true"],
    "DML: each other peer, λ = 1": ["distillation.teacher=mean_of_others", *CONSTANT],
    "ensemble teacher, λ = 1": CONSTANT,
    "ensemble, ONE ramp λ(t)": ["distillation.gate=1.0"],
    "ensemble, ramp + progressive on/off gate m(t) (Gao et al.; the config)": [],
    "the config + CA-MKD teacher weights": ["distillation.policy=policies.confidence:ConfidenceAwarePolicy"],
}


def timed(cohort: Cohort, epochs: int, splits: list[str]) -> dict[str, float]:
    """Median seconds of a training epoch (after a warm-up one) and seconds of each evaluation pass."""
    try:
        seconds = {"train": statistics.median(epoch_seconds(cohort.train_epoch, epochs))}
        for split in splits:
            started = time.perf_counter()
            cohort.evaluate(split)
            seconds[split] = time.perf_counter() - started
    finally:
        cohort.shutdown()
    return seconds


def measure_epoch_seconds(config: RunConfig, epochs: int, out: Path) -> None:
    """The ``--epoch-seconds`` table: each peer alone, then the cohort; kept in ``out``."""
    splits = ["val", "test"] if has_test_split(config.data) else ["val"]
    rows = {}
    for peer in config.peers:
        torch.set_num_threads(threads_for(peer))
        alone = OfflineCohort(replace(config, peers=(peer,), independent=True))
        info, steps = alone.student.dataset.info, alone.steps_per_epoch()
        rows[f"{peer.name} ({peer.model}) alone"] = timed(alone, epochs, splits)
    started = start_ray(config)
    try:
        rows[f"the cohort (Ray, {config.runtime.exchange} exchange)"] = timed(RayCohort(config), epochs, splits)
    finally:
        if started:
            import ray

            ray.shutdown()
    body = table(["run", "training epoch (s)"] + [f"{split} pass (s)" for split in splits],
                 [[name] + [f"{seconds[key]:.2f}" for key in ["train", *splits]] for name, seconds in rows.items()])
    text = (f"{config.name}: {info.train_size} training images per epoch in {steps} steps, {info.val_size} "
            f"validation images; median of {epochs} epochs after a warm-up. An epoch of a run takes about a training "
            f"epoch plus a validation pass; the test pass runs once, after the last epoch.\n\n{body}\n")
    print("\n" + text)
    (out / "epoch_seconds.md").write_text(text)
    (out / "epoch_seconds.json").write_text(json.dumps(rows, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="jobs/configs/digits_cohort.yaml")
    parser.add_argument("--epoch-seconds", action="store_true",
                        help="instead of the table: seconds per epoch of each peer alone and of the cohort")
    parser.add_argument("--timed-epochs", type=int, default=2,
                        help="with --epoch-seconds: epochs timed after a warm-up")
    add_common_arguments(parser, "runs/evidence-online")
    args = parser.parse_args(argv)
    fresh_output(args.out)
    if args.epoch_seconds:
        measure_epoch_seconds(load_config(args.config, args.overrides), args.timed_epochs, args.out)
        return 0

    rows: dict[str, dict[str, list[float]]] = {}
    per_peer: dict[str, dict[str, list[float]]] = {}
    started = False
    try:
        for name, overrides in selected(VARIANTS, args.only).items():
            for seed in args.seeds:
                config = load_config(args.config, args.overrides + overrides + [f"seed={seed}"])
                started = start_ray(config) or started
                run_dir = run_dir_for(args.out, name, seed)
                prepare_run_dir(run_dir, config)
                results = run_cohort(config, run_dir, RayCohort)
                row = rows.setdefault(name, {"peer_last": [], "peer_best": [], "ens_last": [], "ens_best": []})
                row["peer_last"].append(statistics.mean(p["last_val_accuracy"] for p in results["peers"]))
                row["peer_best"].append(statistics.mean(p["best_val_accuracy"] for p in results["peers"]))
                row["ens_last"].append(results["ensemble"]["last_val_accuracy"])
                row["ens_best"].append(results["ensemble"]["best_val_accuracy"])
                if "test_accuracy" in results["ensemble"]:
                    row.setdefault("peer_test", []).append(
                        statistics.mean(p["test_accuracy"] for p in results["peers"]))
                    row.setdefault("ens_test", []).append(results["ensemble"]["test_accuracy"])
                for p in results["peers"]:
                    per_peer.setdefault(name, {}).setdefault(p["name"], []).append(
                        p.get("test_accuracy", p["last_val_accuracy"]))
    finally:
        if started:
            import ray

            ray.shutdown()

    tested = all("peer_test" in r for r in rows.values())
    compared = "peer_test" if tested else "peer_last"
    baseline = statistics.mean(rows[BASELINE][compared]) if BASELINE in rows else None
    summary = table(
        ["training", "mean peer top-1, val last", "mean peer top-1, val best", "ensemble top-1, val last",
         "ensemble top-1, val best"] + (["mean peer top-1, test", "ensemble top-1, test"] if tested else [])
        + [f"Δ mean peer, {'test' if tested else 'val last'}"],
        [[name, mean_std(r["peer_last"]), mean_std(r["peer_best"]), mean_std(r["ens_last"]), mean_std(r["ens_best"])]
         + ([mean_std(r["peer_test"]), mean_std(r["ens_test"])] if tested else [])
         + ["" if baseline is None else f"{100 * (statistics.mean(r[compared]) - baseline):+.2f}"]
         for name, r in rows.items()])
    names = list(next(iter(per_peer.values())))
    peers = table(["training"] + [f"{n}, {'test' if tested else 'val last'}" for n in names],
                  [[mode] + [mean_std(values[n]) for n in names] for mode, values in per_peer.items()])
    config = load_config(args.config, args.overrides)
    write_summary(args.out, args.seeds, "", f"{summary}\n\n{peers}", {"rows": rows, "per_peer": per_peer},
                  measure=split_description(config.data))
    return 0

