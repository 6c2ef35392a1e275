"""Accuracy vs staleness: live distillation against codistillation's replicas refreshed every N steps.

    python jobs/evidence_replicas.py --config jobs/configs/digits_cohort.yaml --seeds 0 1 2 --refresh 1 10 50 200
    python jobs/evidence_replicas.py --config jobs/configs/fashion_cohort.yaml --seeds 0 1 2 --refresh 1 10 50 200 \
        --set epochs=3 --set data.val_fraction=0.0167 --out runs/evidence-replicas-fashion

Every variant trains the config's cohort on the sequential backend, one torch thread (Ray gives the same
numbers, tested), changing only where the teachers predict: ``live`` (the other peers' payloads,
every step) or replicas refreshed every N steps with no extra refresh at epoch starts (so N is
the interval; ``--epoch-start`` adds them back), burn-in as the config says. Prints mean ± std
over seeds of the mean peer top-1 and the ensemble top-1 (mean softmax), last epoch and best
epoch, the difference to live, the mean staleness over the steps after the burn-in, the
bytes a peer received per step and the seconds per epoch; on data with a test split (Fashion-MNIST:
the official one) also the final networks' test top-1. Raw runs stay in ``--out``.

Fashion-MNIST, as above: the MLP + CNN + ResNet-8 cohort of ``fashion_cohort.yaml`` on its 2,950
training images (a stratified 5% of the 59,000 left after 1,000 validation images), 3 epochs of
47 steps; test: the official 10,000.
"""

from __future__ import annotations

import argparse
import io
import statistics

from codistill.cohort.sequential import SequentialCohort
from codistill.config import RunConfig
from codistill.data import split_description
from codistill.evidence import add_common_arguments, fresh_output, mean_std, run_dir_for, selected, table, write_summary
from codistill.monitoring import ConsoleProgress
from codistill.peer.replicas import RefreshSchedule
from codistill.runner import prepare_run_dir, run_cohort
from codistill.validation import load_config

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


def record(row: dict[str, list[float]], results: dict, config: RunConfig, steps_per_epoch: int) -> None:
    """One run's numbers into its variant's ``row`` (test top-1 only where the data have a test split)."""
    peers, ensemble = results["peers"], results["ensemble"]
    for key, field in (("last", "last_val_accuracy"), ("best", "best_val_accuracy"), ("test", "test_accuracy")):
        if field in ensemble:
            row.setdefault(f"peer_{key}", []).append(statistics.mean(p[field] for p in peers))
            row.setdefault(f"ens_{key}", []).append(ensemble[field])
    row.setdefault("staleness", []).append(mean_staleness(config, steps_per_epoch))
    bytes_per_step = statistics.mean(p["bytes_received"] for p in peers) / (steps_per_epoch * config.epochs)
    row.setdefault("bytes_per_step", []).append(bytes_per_step)
    row.setdefault("seconds_per_epoch", []).append(results["train_seconds"] / config.epochs)


def summary_table(rows: dict[str, dict[str, list[float]]]) -> str:
    """Accuracy (validation last and best; test where there is one), staleness, traffic and time per variant."""
    tested = all("peer_test" in r for r in rows.values())
    splits = ["last", "best"] + (["test"] if tested else [])
    named = {"last": "val last", "best": "val best", "test": "test"}
    compared = splits[-1] if tested else "last"
    live = statistics.mean(rows[LIVE][f"peer_{compared}"]) if LIVE in rows else None
    header = (["teachers", "mean staleness (steps)"]
              + [f"{who} top-1, {named[split]}" for split in splits for who in ("mean peer", "ensemble")]
              + [f"Δ mean peer vs live, {named[compared]}", "KiB received/peer/step", "s/epoch"])
    return table(header, [
        [name, f"{statistics.mean(r['staleness']):.1f}"]
        + [mean_std(r[f"{who}_{split}"]) for split in splits for who in ("peer", "ens")]
        + ["" if live is None else f"{100 * (statistics.mean(r[f'peer_{compared}']) - live):+.2f}",
           f"{statistics.mean(r['bytes_per_step']) / 1024:.1f}", f"{statistics.mean(r['seconds_per_epoch']):.2f}"]
        for name, r in rows.items()])


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
            make = lambda c, cohorts=cohorts: cohorts.append(SequentialCohort(c)) or cohorts[-1]  # noqa: E731
            results = run_cohort(config, run_dir, make, progress=ConsoleProgress(config.epochs, 1e9, io.StringIO()))
            record(rows.setdefault(name, {}), results, config, cohorts[0].steps_per_epoch())
            print(f"{name}, seed {seed}: mean peer {100 * rows[name]['peer_last'][-1]:.2f}, "
                  f"ensemble {100 * rows[name]['ens_last'][-1]:.2f} (val, last epoch)", flush=True)

    refresh = "also at epoch starts" if args.epoch_start else "none at epoch starts"
    config = load_config(args.config, args.overrides)
    write_summary(args.out, args.seeds, f"; sequential backend; replicas refreshed every N steps, {refresh}",
                  summary_table(rows), {"config": args.config, "overrides": args.overrides, "rows": rows},
                  measure=split_description(config.data))
    return 0

