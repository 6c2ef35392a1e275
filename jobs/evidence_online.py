"""Independent vs online training of one cohort over several seeds: the README's table.

    python jobs/evidence_online.py --config jobs/configs/digits_cohort.yaml --seeds 0 1 2

Every variant trains the config's cohort with the Ray backend, changing only the distillation:
CE alone (the baseline), deep mutual learning, the ensemble teacher at a constant weight, with
ONE's ramp, with the ramp and the discontinuous, progressively tightened gate of Gao et al.
(the config as written), and that plus CA-MKD's confidence-aware teacher weights. Prints mean ±
std over seeds of the mean peer top-1 and the ensemble top-1 (mean softmax), at the last epoch
and at each run's best epoch, and each peer's last-epoch top-1. Raw runs stay in ``--out``.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import _bootstrap  # noqa: F401
from codistill.evidence import add_common_arguments, fresh_output, mean_std, run_dir_for, selected, table, write_summary

from codistill.cohort import RayCohort, start_ray
from codistill.config import load_config
from codistill.runner import prepare_run_dir, run_cohort

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="jobs/configs/digits_cohort.yaml")
    add_common_arguments(parser, "runs/evidence-online")
    args = parser.parse_args(argv)
    fresh_output(args.out)

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
                for p in results["peers"]:
                    per_peer.setdefault(name, {}).setdefault(p["name"], []).append(p["last_val_accuracy"])
    finally:
        if started:
            import ray

            ray.shutdown()

    baseline = statistics.mean(rows[BASELINE]["peer_last"]) if BASELINE in rows else None
    summary = table(
        ["training", "mean peer top-1, last", "mean peer top-1, best", "ensemble top-1, last",
         "ensemble top-1, best", "Δ mean peer, last"],
        [[name, mean_std(r["peer_last"]), mean_std(r["peer_best"]), mean_std(r["ens_last"]), mean_std(r["ens_best"]),
          "" if baseline is None else f"{100 * (statistics.mean(r['peer_last']) - baseline):+.2f}"]
         for name, r in rows.items()])
    names = list(next(iter(per_peer.values())))
    peers = table(["training"] + [f"{n}, last" for n in names],
                  [[mode] + [mean_std(values[n]) for n in names] for mode, values in per_peer.items()])
    write_summary(args.out, args.seeds, "", f"{summary}\n\n{peers}", {"rows": rows, "per_peer": per_peer})
    return 0


if __name__ == "__main__":
    sys.exit(main())
