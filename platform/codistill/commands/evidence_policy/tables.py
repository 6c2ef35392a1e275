"""The Markdown tables of the teacher-selection evidence."""

from __future__ import annotations

import statistics
from typing import Any

from codistill.commands.evidence_policy.runs import Evidence
from codistill.commands.evidence_policy.variants import (
    OFFLINE,
    ONLINE,
    ORACLE_ROW,
    POOL_KINDS,
    POOR_PEER,
    UNIFORM,
    left_out_row,
)
from codistill.evidence import mean_std, table
from codistill.validation import load_config


def share(gain: float, headroom: float) -> str:
    """``gain / headroom`` in percent; "n/a" without headroom."""
    return f"{100 * gain / headroom:.0f}%" if headroom > 0 else "n/a"


def weight_mean_std(values: list[float] | None) -> str:
    """``mean ± sample std`` of teacher weights in [0, 1]; "n/a" when none were recorded."""
    if not values:
        return "n/a"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"


def weight_cell(row: dict[str, Any], peer: str, teacher: str) -> str:
    return weight_mean_std(row.get("weights", {}).get(peer, {}).get(teacher))


def headroom_table(title: str, seeds: list[int], gains: dict[str, list[float]], ceilings: dict[str, list[float]],
                   labels: dict[str, str]) -> str:
    """Per seed, each ceiling's headroom over uniform (``gains`` of the ceiling rows, points of last
    top-1) and the share of the first one each row of ``labels`` (row → label) closes, (row −
    uniform) / (ceiling − uniform); then the same from the means, of every ceiling."""
    first = next(iter(ceilings.values()))
    lines = [[f"headroom: {label} − uniform (points)"] + [f"{100 * h:+.2f}" for h in headroom] + [""] * len(ceilings)
             for label, headroom in ceilings.items()]
    lines += [[label] + [share(gain, ceiling) for gain, ceiling in zip(gains[name], first)]
              + [share(statistics.mean(gains[name]), statistics.mean(h)) for h in ceilings.values()]
              for name, label in labels.items()]
    return table([title] + [f"seed {s}" for s in seeds] + [f"of {label} − uniform, means" for label in ceilings],
                 lines)


def gains_over_uniform(rows: dict[str, dict[str, Any]], key: str) -> dict[str, list[float]]:
    """Per row, per seed: its ``key`` (a last top-1) minus uniform's."""
    uniform = rows[UNIFORM][key]
    return {name: [value - u for value, u in zip(row[key], uniform)] for name, row in rows.items()}


def best_constant(evidence: Evidence) -> str | None:
    """The fixed weighting (uniform included) with the best mean last top-1."""
    names = [UNIFORM, *POOL_KINDS[evidence.args.pool_kind]["constants"]]
    rows = {name: evidence.rows[OFFLINE][name] for name in names if name in evidence.rows[OFFLINE]}
    return max(rows, key=lambda name: statistics.mean(rows[name]["peer_last"])) if rows else None


def offline_headroom_table(evidence: Evidence) -> str:
    """The share of the oracle's headroom each offline policy closes; also of the best
    constant's headroom (the best fixed weighting can beat the oracle)."""
    rows = evidence.rows[OFFLINE]
    gains = gains_over_uniform(rows, "peer_last")
    best = best_constant(evidence)
    ceilings = {"oracle": gains[ORACLE_ROW],
                "best constant": gains[best] if best else [0.0 for _ in evidence.args.seeds]}
    labels = {name: f"{name} (best constant)" if name == best else name for name in rows if name != UNIFORM}
    return headroom_table("share of the headroom closed", evidence.args.seeds, gains, ceilings, labels)


def online_tables(evidence: Evidence, setting: str) -> list[str]:
    """The cohort's top-1 per policy and each peer's mean weight per candidate; for the poor-peer
    cohort the other peers' top-1 first, and the share of the leave-out headroom closed."""
    rows, poor = evidence.rows[setting], setting == POOR_PEER
    others = ["other peers' mean top-1, last", "other peers' mean top-1, best"] if poor else []
    sections = [table([f"{setting}: policy", *others, "mean peer top-1, last", "mean peer top-1, best",
                       "ensemble top-1, last", "ensemble top-1, best"],
                      [[name] + ([mean_std(r["learners_last"]), mean_std(r["learners_best"])] if poor else [])
                       + [mean_std(r["peer_last"]), mean_std(r["peer_best"]), mean_std(r["ens_last"]),
                          mean_std(r["ens_best"])] for name, r in rows.items()])]
    peers = [p.name for p in load_config(evidence.cohort_configs[setting], evidence.args.overrides).peers]
    sections.append(table([f"{setting}: policy", "peer"] + [f"weight {t}, 2nd half" for t in peers],
                          [[name, peer] + [weight_cell(r, peer, t) for t in peers]
                           for name, r in rows.items() for peer in peers]))
    ceiling = left_out_row(evidence.args.poor_peer)
    if poor and UNIFORM in rows and ceiling in rows:
        gains = gains_over_uniform(rows, "learners_last")
        sections.append(headroom_table("other peers: share of the headroom closed", evidence.args.seeds, gains,
                                       {f"{evidence.args.poor_peer} left out": gains[ceiling]},
                                       {name: name for name in rows if name != UNIFORM}))
    return sections


def tables(evidence: Evidence) -> str:
    sections = []
    if evidence.pool:
        sections.append(table(["teacher", "val top-1, last", "train top-1 vs noisy labels",
                               "train top-1 vs true labels", "CA-MKD weight, all training examples",
                               "CA-MKD weight, flipped labels"],
                              [[name, mean_std(v["val"]), mean_std(v["train_noisy"]), mean_std(v["train_true"]),
                                weight_mean_std(v.get("camkd_all")), weight_mean_std(v.get("camkd_flipped"))]
                               for name, v in evidence.pool.items()]))
    if evidence.rows[OFFLINE]:
        names = list(evidence.pool)
        student = evidence.learners(OFFLINE)[0]
        sections.append(table(["offline: policy", "student top-1, last", "student top-1, best"]
                              + [f"weight {t}, 2nd half" for t in names] + ["weight on right teachers, end"],
                              [[name, mean_std(r["peer_last"]), mean_std(r["peer_best"])]
                               + [weight_cell(r, student, t) for t in names]
                               + [weight_mean_std(r.get("right_weight"))]
                               for name, r in evidence.rows[OFFLINE].items()]))
        if ORACLE_ROW in evidence.rows[OFFLINE] and UNIFORM in evidence.rows[OFFLINE]:
            sections.append(offline_headroom_table(evidence))
    for setting in (ONLINE, POOR_PEER):
        if evidence.rows[setting]:
            sections += online_tables(evidence, setting)
    timing = []
    for setting, measured in evidence.seconds.items():
        reference = statistics.median(measured[UNIFORM]) if UNIFORM in measured else None
        for name, seconds in measured.items():
            median = statistics.median(seconds)
            timing.append([setting, name, f"{median:.3f}", f"{median / reference:.2f}×" if reference else "n/a"])
    if timing:
        sections.append(table(["setting", "policy", "s / training epoch (median)", "× uniform"], timing))
    return "\n\n".join(sections)
