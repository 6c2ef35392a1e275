"""Independent vs online training of one cohort over several seeds: the README's table.

    python jobs/evidence_online.py --config jobs/configs/digits_cohort.yaml --seeds 0 1 2

For each seed it trains the cohort twice with the Ray backend — ``--independent`` (CE only) and
with the config's distillation — and prints mean ± std over seeds of the mean peer top-1 and the
ensemble top-1, at the last epoch and at each run's best epoch. Raw results stay in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import _bootstrap  # noqa: F401

from codistill.cohort import RayCohort, start_ray
from codistill.config import load_config
from codistill.runner import prepare_run_dir, run_cohort


def summarize(values: list[float]) -> str:
    mean = 100 * statistics.mean(values)
    spread = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {spread:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="jobs/configs/digits_cohort.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", type=Path, default=Path("runs/evidence-online"))
    args = parser.parse_args(argv)

    rows: dict[str, dict[str, list[float]]] = {}
    per_peer: dict[str, dict[str, list[float]]] = {}
    started = False
    for seed in args.seeds:
        for mode in ("independent", "online"):
            overrides = args.overrides + [f"seed={seed}", f"independent={'true' if mode == 'independent' else 'false'}"]
            config = load_config(args.config, overrides)
            started = start_ray(config) or started
            run_dir = args.out / f"{mode}-seed{seed}"
            prepare_run_dir(run_dir, config)
            results = run_cohort(config, run_dir, RayCohort)
            row = rows.setdefault(mode, {"peer_last": [], "peer_best": [], "ens_last": [], "ens_best": []})
            row["peer_last"].append(statistics.mean(p["last_val_accuracy"] for p in results["peers"]))
            row["peer_best"].append(statistics.mean(p["best_val_accuracy"] for p in results["peers"]))
            row["ens_last"].append(results["ensemble"]["last_val_accuracy"])
            row["ens_best"].append(results["ensemble"]["best_val_accuracy"])
            for p in results["peers"]:
                per_peer.setdefault(mode, {}).setdefault(p["name"], []).append(p["last_val_accuracy"])

    lines = ["| training | mean peer top-1, last | mean peer top-1, best | ensemble top-1, last | ensemble top-1, best |",
             "|---|---|---|---|---|"]
    for mode, row in rows.items():
        lines.append(f"| {mode} | {summarize(row['peer_last'])} | {summarize(row['peer_best'])} | "
                     f"{summarize(row['ens_last'])} | {summarize(row['ens_best'])} |")
    names = list(next(iter(per_peer.values())))
    lines += ["", "| training | " + " | ".join(f"{n} top-1, last" for n in names) + " |",
              "|---|" + "---|" * len(names)]
    for mode, peers in per_peer.items():
        lines.append(f"| {mode} | " + " | ".join(summarize(peers[n]) for n in names) + " |")
    table = "\n".join(lines)
    print(f"\n{len(args.seeds)} seeds ({', '.join(map(str, args.seeds))}), mean ± std, validation top-1 (%)\n{table}")
    (args.out / "summary.json").write_text(json.dumps({"rows": rows, "per_peer": per_peer}, indent=2))
    (args.out / "summary.md").write_text(table + "\n")
    if started:
        import ray

        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
