"""The variants of the teacher-selection evidence: per setting, each policy's row name and the
config overrides that select it (fixed weightings, CA-MKD, the learned policy, the label oracle)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from codistill.config import apply_override
from codistill.evidence import selected
from codistill.registry import POLICIES

POOL_CONFIGS = ["jobs/configs/pool_clean.yaml", "jobs/configs/pool_memorizer.yaml", "jobs/configs/pool_weak.yaml"]
SPECIALIST_CONFIGS = ["jobs/configs/pool_specialist_low.yaml", "jobs/configs/pool_specialist_high.yaml"]
CA_MKD = "policies.confidence:ConfidenceAwarePolicy"
CONSTANT = "policies.constant:ConstantPolicy"
ORACLE = "policies.oracle:LabelOraclePolicy"
LEARNED = "policies.learned:LearnedPolicy"
UNIFORM = "uniform"
ORACLE_ROW = "label oracle (ceiling)"
POOR_PEER_CONFIG, POOR_PEER_NAME = "jobs/configs/digits_cohort_poor_peer.yaml", "poor"
LABELS = "<true labels of the seed>"  # stands for OUT/true-labels/seed<N>.pt in the oracle's overrides
#: Per pool kind: its teachers' configs, where it is kept, and its fixed weightings (row → weights).
POOL_KINDS: dict[str, dict[str, Any]] = {
    "memorizer": {"configs": POOL_CONFIGS, "pool": "runs/policy-pool",
                  "constants": {"clean teacher only": {"clean": 1.0}}},
    "specialist": {"configs": SPECIALIST_CONFIGS, "pool": "runs/policy-pool-specialist",
                   "constants": {f"constant low {a:.2f} / high {1 - a:.2f}": {"low": a, "high": 1.0 - a}
                                 for a in (1.0, 0.75, 0.25, 0.0)}},
}
LEARNED_VARIANTS = ["ppo, ce=estimator:ppo,probe_loss:ce,update_epochs:4,probe_batch_size:128",
                    "credit, ce=estimator:credit,probe_loss:ce",
                    "credit, mae=estimator:credit,probe_loss:mae",
                    "credit, mae, network=estimator:credit,probe_loss:mae,credit_scope:network,update_epochs:4,"
                    "probe_batch_size:128"]
OFFLINE, ONLINE, POOR_PEER = "offline", "online cohort", "online cohort, poor peer"
#: ``--settings`` name → the setting's key in the tables (its runs go to ``OUT/<name>/``, its plot to
#: ``OUT/policy_<name>.png``, dashes as underscores).
SETTINGS = {"offline": OFFLINE, "online": ONLINE, "online-poor-peer": POOR_PEER}
SETTING_NAMES = {key: name for name, key in SETTINGS.items()}
LEARNED_DEFAULTS = "learned, default params"


def policy_override(name: str, params: dict[str, Any] | None = None) -> str:
    """``distillation.policy={name: ..., params: {...}}`` (JSON, which is YAML)."""
    return "distillation.policy=" + json.dumps({"name": name, "params": params or {}})


def learned_policy_available(policy: str) -> bool:
    """Whether ``policy`` can be imported; says why not when it cannot."""
    try:
        POLICIES.get(policy)
    except (ImportError, AttributeError, KeyError) as error:
        print(f"learned-policy variants SKIPPED: cannot load '{policy}' ({error})", flush=True)
        return False
    return True


def parse_learned(spec: str) -> tuple[str, dict[str, Any]]:
    """``LABEL=KEY:VALUE,KEY:VALUE`` → the row's label and the policy's parameters (YAML values)."""
    label, _, pairs = spec.partition("=")
    params = {}
    for pair in filter(None, pairs.split(",")):
        key, _, value = pair.partition(":")
        params[key.strip()] = yaml.safe_load(value)
    return label.strip(), params


def parse_policy_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        apply_override(params, pair)
    return params


def variants(args: argparse.Namespace, learned: bool) -> dict[str, dict[str, list[str]]]:
    """Per setting (offline, online cohort): policy variant name → config overrides."""
    offline = {UNIFORM: [policy_override(UNIFORM)], "CA-MKD": [policy_override(CA_MKD)]}
    offline.update({name: [policy_override(CONSTANT, {"weights": weights})]
                    for name, weights in POOL_KINDS[args.pool_kind]["constants"].items()})
    online = {UNIFORM: [policy_override(UNIFORM)]}
    extra = dict(args.policy_params)
    poor_peer = {UNIFORM: [policy_override(UNIFORM)]}
    if learned:
        poor_peer[LEARNED_DEFAULTS] = [policy_override(args.policy, {**extra, "learn": True})]
        for label, params in map(parse_learned, args.learned or LEARNED_VARIANTS):
            during = [policy_override(args.policy, {**params, **extra, "learn": True})]
            offline[f"learned, {label}"] = during
            online[f"learned, {label}"] = during
        if args.pretrained is not None:
            start = {**extra, "checkpoint": str(args.pretrained)}
            offline["learned, pretrained, frozen"] = [policy_override(args.policy, {**start, "learn": False})]
            offline["learned, pretrained, still learning"] = [policy_override(args.policy, {**start, "learn": True})]
        else:
            print("pretrained-policy variants SKIPPED: pass --pretrained FILE (a policy saved by "
                  "jobs/train_policy.py)", flush=True)
    offline[ORACLE_ROW] = [policy_override(ORACLE, {"labels": LABELS})]
    poor_peer[left_out_row(args.poor_peer)] = [policy_override(CONSTANT, {"weights": {args.poor_peer: 0.0},
                                                                          "default": 1.0})]
    every = {OFFLINE: offline, ONLINE: online, POOR_PEER: poor_peer}
    return {key: selected(every[key], args.only) if name in args.settings else {} for name, key in SETTINGS.items()}


def left_out_row(poor_peer: str) -> str:
    """The poor-peer cohort's ceiling: a fixed weighting that gives ``poor_peer`` weight 0."""
    return f"{poor_peer} left out as a teacher (ceiling)"


def with_labels(overrides: list[str], labels: Path) -> list[str]:
    """``overrides`` with the oracle's stand-in for the true labels replaced by ``labels``."""
    return [override.replace(LABELS, str(labels)) for override in overrides]
