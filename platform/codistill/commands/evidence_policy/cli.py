"""Teacher selection: uniform weights, CA-MKD, fixed weightings, the learned policy and the label
oracle, offline with a pool of frozen teachers, online in the default cohort and in a cohort with
one poor teacher. The README's "Learned teacher policy" table and docs/policy-measurements*.md.

    python jobs/evidence_policy.py --seeds 0 1 2                            # the memorizer pool
    python jobs/evidence_policy.py --seeds 0 1 2 --pool-kind specialist --settings offline
    python jobs/evidence_policy.py --seeds 0 1 2 --pretrained POLICY_FILE   # adds the pretrained rows
    python jobs/evidence_policy.py --seeds 0 1 2 --settings online-poor-peer

Two pools (``--pool-kind``): ``memorizer`` (``jobs/configs/pool_{clean,memorizer,weak}.yaml``: a
teacher trained on the true labels, one that fitted the noisy labels, one trained 3 epochs) and
``specialist`` (``jobs/configs/pool_specialist_{low,high}.yaml``: each trained on the true labels
of half of the classes only, and confidently wrong on the other half). For every seed, first the
pool is trained on that seed's data — the memorizer has to have fitted the very noisy labels the
student sees — and kept in ``--pool`` (reused when present). Then, on identical data and batches,
the ResNet-8 student of ``jobs/configs/digits_pool_offline.yaml`` (50% of digits, 40% symmetric
label noise) is distilled from the pool with each policy, and (``--settings``) the cohort of
``jobs/configs/digits_cohort.yaml`` (sequential backend, same results as Ray) trains with uniform
weights and with the learned policy. Torch uses ``--threads`` threads (default 1, which avoids
oversubscribing a shared machine).

Offline rows besides uniform and CA-MKD: fixed weightings (``policies.constant:ConstantPolicy``:
*clean teacher only* on the memorizer pool, a small grid of mixtures on the specialist pool, the
best of which is marked), and the **label oracle** (``policies.oracle:LabelOraclePolicy``), which
weights, per example, the teachers whose prediction is the example's *true* label (the job knows
it: it injected the noise; it writes the training split's true labels to
``OUT/true-labels/seed<N>.pt`` for the oracle to read by example index). The headroom of a seed
is oracle − uniform; a policy is judged by the share of it that it closes, (policy − uniform) /
(oracle − uniform), per seed.

The learned policy (``--policy``, default ``policies.learned:LearnedPolicy``) runs once per
``--learned LABEL=KEY:VALUE,...`` (default: PPO with cross-entropy, head credit with cross-entropy
and with MAE, and network credit with MAE) with ``{learn: true}`` while it learns during the run,
``{checkpoint: FILE, learn: false}`` when it starts frozen from ``--pretrained FILE``,
``{checkpoint: FILE, learn: true}`` when it starts from it and keeps learning, plus any
``--policy-param KEY=VALUE``. Its variants run only when the class can be imported; otherwise
they are skipped with a message. When they run, every variant, uniform and CA-MKD included, holds
out the same probe slice (``data.probe_fraction``, from ``--probe-source``: the noisy training
split or the clean validation split), so all of them train and are validated on the same examples.

Prints Markdown tables: the pool (validation top-1; on the training split as the student sees
it, augmented: accuracy against the noisy and the true labels, and the mean CA-MKD weight of each
teacher over all examples and over those with a flipped label); the student's top-1 at the last
and at the best epoch and the mean weight each teacher got over the second half of training
(``teacher_weights`` of ``results.json``; "n/a" where a run does not record it); the headroom and
the share of it each policy closes, per seed; the cohort's mean peer and ensemble top-1; the
median seconds per training epoch of every variant and its ratio to uniform weights, timed on the
first seed with the variants taking turns epoch by epoch.

``--settings online-poor-peer`` trains the cohort of ``--poor-peer-config`` (default
``jobs/configs/digits_cohort_poor_peer.yaml``), where one peer (``--poor-peer``, default ``poor``)
is a poor teacher for the others, with uniform weights, the learned policy at its default
parameters, and the ceiling that leaves the poor peer out as a teacher (``ConstantPolicy``, weight
0 for it, 1 for every other candidate). It is judged by the mean top-1 of the *other* peers, with
the headroom leave-out − uniform and the share of it closed, per seed. The pool is trained only
for the offline setting.

Every setting that ran is drawn in ``OUT/policy_<setting>.png``: per teacher, the mean weight it
got per epoch (over the seeds and the peers judged), and their top-1 per epoch, one line per
policy. It needs matplotlib (``pip install -e '.[evidence]'``); without it the plot is skipped
with one line, and the tables are written all the same.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from codistill.commands.evidence_policy.plots import plot
from codistill.commands.evidence_policy.pool import pool_configs
from codistill.commands.evidence_policy.runs import Evidence
from codistill.commands.evidence_policy.tables import tables
from codistill.commands.evidence_policy.variants import (
    LEARNED,
    LEARNED_VARIANTS,
    OFFLINE,
    ONLINE,
    POOL_KINDS,
    POOR_PEER,
    POOR_PEER_CONFIG,
    POOR_PEER_NAME,
    SETTINGS,
    learned_policy_available,
    parse_policy_params,
    variants,
    with_labels,
)
from codistill.config import PROBE_SOURCES
from codistill.errors import ConfigError
from codistill.evidence import add_common_arguments, fresh_output, write_summary
from codistill.validation import load_config


def validate_everything(args: argparse.Namespace, runs: dict[str, dict[str, list[str]]], common: list[str]) -> None:
    """Load every config before anything is trained, so a bad override fails first (the
    offline student without its teachers, which do not exist yet; the oracle with stand-in labels)."""
    if runs[OFFLINE]:
        pool_configs(args.pool_configs, args.seeds[0])
    with tempfile.TemporaryDirectory() as scratch:
        labels = Path(scratch) / "labels.pt"
        torch.save(torch.zeros(1, dtype=torch.long), labels)
        for overrides in runs[OFFLINE].values():
            load_config(args.student_config, args.overrides + common + with_labels(overrides, labels)
                        + ["independent=true", "teachers=[]"], mode="offline")
    for overrides in runs[ONLINE].values():
        load_config(args.cohort_config, args.overrides + common + overrides)
    if runs[POOR_PEER]:
        peers = [p.name for p in load_config(args.poor_peer_config, args.overrides, field="--poor-peer-config").peers]
        if args.poor_peer not in peers:
            raise ConfigError("--poor-peer", f"no peer '{args.poor_peer}' in {args.poor_peer_config} "
                                             f"(peers: {', '.join(peers)})")
        for overrides in runs[POOR_PEER].values():
            load_config(args.poor_peer_config, args.overrides + common + overrides, field="--poor-peer-config")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student-config", default="jobs/configs/digits_pool_offline.yaml")
    parser.add_argument("--cohort-config", default="jobs/configs/digits_cohort.yaml")
    parser.add_argument("--pool-kind", choices=sorted(POOL_KINDS), default="memorizer",
                        help="the pool: its teachers, where it is kept, its fixed weightings")
    parser.add_argument("--pool-configs", nargs="+", help="one teacher each, trained alone (default: the kind's)")
    parser.add_argument("--pool", type=Path, help="where the pool is kept and reused (default: the kind's)")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=["offline", "online"],
                        help="offline (the pool), online (--cohort-config), online-poor-peer (--poor-peer-config)")
    parser.add_argument("--poor-peer-config", default=POOR_PEER_CONFIG,
                        help="the cohort of the online-poor-peer setting")
    parser.add_argument("--poor-peer", default=POOR_PEER_NAME,
                        help="the peer of --poor-peer-config that is a poor teacher for the others")
    parser.add_argument("--learned", action="append", metavar="LABEL=KEY:VALUE,...",
                        help="a learned-policy row and its parameters (repeatable; default: "
                             + "; ".join(LEARNED_VARIANTS) + ")")
    parser.add_argument("--policy", default=LEARNED, help="the learned policy class")
    parser.add_argument("--policy-param", dest="policy_params", action="append", default=[], metavar="KEY=VALUE",
                        help="extra parameter of the learned policy (repeatable)")
    parser.add_argument("--pretrained", type=Path, help="a saved policy to start from (jobs/train_policy.py)")
    parser.add_argument("--probe-fraction", type=float, default=0.1,
                        help="data.probe_fraction of every variant when the learned policy runs (0: none)")
    parser.add_argument("--probe-source", choices=PROBE_SOURCES, default="train",
                        help="data.probe_source of every variant when the learned policy runs: train (a noisy "
                             "slice of the training split) or held_out (a clean slice of validation, no longer "
                             "counted in it)")
    parser.add_argument("--timing-epochs", type=int, default=10,
                        help="epochs per variant timed side by side, first seed (0: no timing)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 avoids oversubscribing a shared machine)")
    add_common_arguments(parser, "runs/evidence-policy")
    args = parser.parse_args(argv)
    kind = POOL_KINDS[args.pool_kind]
    args.pool_configs = args.pool_configs or kind["configs"]
    args.pool = args.pool or Path(kind["pool"])
    args.policy_params = parse_policy_params(args.policy_params)
    if args.pretrained is not None and not args.pretrained.is_file():
        raise SystemExit(f"--pretrained: no such file: {args.pretrained}")

    learned = learned_policy_available(args.policy)
    runs = variants(args, learned)
    common = [f"data.probe_fraction={args.probe_fraction}", f"data.probe_source={args.probe_source}"] \
        if learned and args.probe_fraction > 0 else []
    try:
        validate_everything(args, runs, common)
    except ConfigError as error:
        print(f"codistill: {error}", file=sys.stderr)
        return 2
    fresh_output(args.out)
    torch.set_num_threads(args.threads)

    evidence = Evidence(args, runs, common)
    pools = [evidence.run_seed(seed) for seed in args.seeds]
    if args.timing_epochs > 0:
        evidence.time_epochs(args.seeds[0], pools[0], args.timing_epochs)
    heading = ((f"; pool kept in {args.pool}" if runs[OFFLINE] else "")
               + f"; learned policy {'run' if learned else 'skipped'}"
               + "".join(f"; every variant with {override}" for override in common)
               + (f"; timing: {args.timing_epochs} epochs per variant after a warm-up, taking turns, "
                  f"seed {args.seeds[0]}, {args.threads} torch thread(s)" if args.timing_epochs > 0 else ""))
    write_summary(args.out, args.seeds, heading, tables(evidence),
                  {"pool": evidence.pool, "rows": evidence.rows, "epoch_seconds": evidence.seconds})
    plot(evidence)
    return 0
