"""Accuracy vs staleness: live distillation against codistillation's replicas refreshed every N steps.

    python jobs/evidence_replicas.py --config jobs/configs/digits_cohort.yaml --seeds 0 1 2 --refresh 1 10 50 200

Every variant trains the config's cohort on the sequential backend, one torch thread (Ray gives the same
numbers, tested), changing only where the teachers predict: ``live`` (the other peers' payloads,
every step) or replicas refreshed every N steps with no extra refresh at epoch starts (so N is
the interval; ``--epoch-start`` adds them back), burn-in as the config says. Prints mean ± std
over seeds of the mean peer top-1 and the ensemble top-1 (mean softmax), last epoch and best
epoch, the difference to live, the mean staleness of the teachers the steps distilled from, the
bytes a peer received per step and the seconds per epoch. Raw runs stay in ``--out``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys

import _bootstrap  # noqa: F401
from codistill.evidence import add_common_arguments, fresh_output, mean_std, run_dir_for, selected, table, write_summary

from codistill.config import RunConfig, load_config
from codistill.local import SequentialCohort
from codistill.monitoring import ConsoleProgress
from codistill.peer.replicas import RefreshSchedule
from codistill.runner import prepare_run_dir, run_cohort

LIVE = "live (every step)"


def variants(refresh: list[int], epoch_start: bool) -> dict[str, list[str]]:
    replicas = {f"replicas, N = {n}": ["distillation.teacher_source=replicas", f"distillation.refresh_every_steps={n}",
                                       f"distillation.refresh_at_epoch_start={str(epoch_start).lower()}"]
                for n in refresh}
    return {LIVE: ["distillation.teacher_source=live"], **replicas}


def mean_staleness(config: RunConfig, steps_per_epoch: int) -> float:
    """Mean steps since the refresh over the steps after burn-in (0 for live teachers)."""
    if config.distillation.teacher_source == "live":
        return 0.0
    schedule, since, current = RefreshSchedule.of(config, steps_per_epoch), [], 0
    for epoch in range(config.distillation.burn_in_epochs, config.epochs):
        for step in range(steps_per_epoch):
            current = 0 if schedule.due(epoch, step) else current + 1
            since.append(current)
    return statistics.mean(since)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="jobs/configs/digits_cohort.yaml")
    parser.add_argument("--refresh", type=int, nargs="+", default=[1, 10, 50, 200], help="refresh intervals N")
    parser.add_argument("--epoch-start", action="store_true", help="also refresh at every epoch start")
    add_common_arguments(parser, "runs/evidence-replicas")
    args = parser.parse_args(argv)
    fresh_output(args.out)

    rows: dict[str, dict[str, list[float]]] = {}
    for name, overrides in selected(variants(args.refresh, args.epoch_start), args.only).items():
        for seed in args.seeds:
            config = load_config(args.config, args.overrides + overrides + [f"seed={seed}"])
            run_dir = run_dir_for(args.out, name, seed)
            prepare_run_dir(run_dir, config)
            cohorts: list[SequentialCohort] = []
            make = lambda c: cohorts.append(SequentialCohort(c, threads=1)) or cohorts[-1]  # noqa: E731
            results = run_cohort(config, run_dir, make, progress=ConsoleProgress(config.epochs, 1e9, io.StringIO()))
            steps = cohorts[0].steps_per_epoch() * config.epochs
            row = rows.setdefault(name, {k: [] for k in ("peer_last", "peer_best", "ens_last", "ens_best", "staleness",
                                                         "bytes_per_step", "seconds_per_epoch")})
            row["peer_last"].append(statistics.mean(p["last_val_accuracy"] for p in results["peers"]))
            row["peer_best"].append(statistics.mean(p["best_val_accuracy"] for p in results["peers"]))
            row["ens_last"].append(results["ensemble"]["last_val_accuracy"])
            row["ens_best"].append(results["ensemble"]["best_val_accuracy"])
            row["staleness"].append(mean_staleness(config, cohorts[0].steps_per_epoch()))
            row["bytes_per_step"].append(statistics.mean(p["bytes_received"] for p in results["peers"]) / steps)
            row["seconds_per_epoch"].append(results["train_seconds"] / config.epochs)
            print(f"{name}, seed {seed}: mean peer {100 * row['peer_last'][-1]:.2f}, "
                  f"ensemble {100 * row['ens_last'][-1]:.2f}", flush=True)

    live = statistics.mean(rows[LIVE]["peer_last"]) if LIVE in rows else None
    summary = table(
        ["teachers", "mean staleness (steps)", "mean peer top-1, last", "ensemble top-1, last", "mean peer top-1, best",
         "ensemble top-1, best", "Δ mean peer vs live, last", "KiB received/peer/step", "s/epoch"],
        [[name, f"{statistics.mean(r['staleness']):.1f}", mean_std(r["peer_last"]), mean_std(r["ens_last"]),
          mean_std(r["peer_best"]), mean_std(r["ens_best"]),
          "" if live is None else f"{100 * (statistics.mean(r['peer_last']) - live):+.2f}",
          f"{statistics.mean(r['bytes_per_step']) / 1024:.1f}", f"{statistics.mean(r['seconds_per_epoch']):.2f}"]
         for name, r in rows.items()])
    refresh = "also at epoch starts" if args.epoch_start else "none at epoch starts"
    write_summary(args.out, args.seeds, f"; sequential backend; replicas refreshed every N steps, {refresh}",
                  summary, {"config": args.config, "overrides": args.overrides, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
