"""The typed record of one epoch, read by attribute by the runner, Ray Tune's trainable, replays,
sweeps and the evidence jobs (and saved as plain JSON in checkpoints and ``results.json``)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from codistill import metrics as m


@dataclass
class PeerEpoch:
    """One peer's epoch: validation top-1 after it, and what its steps reported."""

    name: str
    val_accuracy: float
    train_accuracy: float
    train_loss: float  # example-weighted mean over the steps that were applied (NaN if none)
    exchange_wait_seconds: float
    skipped_steps: int
    teachers_left_out: int
    teacher_weights: dict[str, float]  # mean weight per teacher over the steps that weighted it
    weighted_steps: int  # steps whose teachers a policy weighted
    bytes_received: float = 0.0  # from the other peers: live payloads, or replica weights at refreshes
    replica_forward_seconds: float = 0.0  # codistillation: the replicas' forward passes
    replica_memory_bytes: float = 0.0  # codistillation: parameters and buffers of the peer's replicas

    def scalars(self) -> dict[str, float]:
        """This epoch's TensorBoard scalars of the peer."""
        scalars = {m.VAL_ACCURACY: self.val_accuracy, m.TRAIN_ACCURACY: self.train_accuracy,
                   m.TRAIN_LOSS_EPOCH: self.train_loss, m.EXCHANGE_WAIT_EPOCH: self.exchange_wait_seconds,
                   m.SKIPPED_STEPS_EPOCH: self.skipped_steps, m.TEACHERS_LEFT_OUT_EPOCH: self.teachers_left_out,
                   m.EXCHANGE_BYTES_EPOCH: self.bytes_received}
        if self.replica_memory_bytes:
            scalars[m.REPLICA_FORWARD_EPOCH] = self.replica_forward_seconds
        return scalars


@dataclass
class EpochRecord:
    """The cohort's epoch (``epoch`` counts from 1)."""

    epoch: int
    peers: list[PeerEpoch]
    ensemble_val: float
    agreement: float
    train_seconds: float
    distill_strength: float  # mean λ(t)·m(t) over the epoch's steps
    curriculum: dict[str, Any] = field(default_factory=dict)  # the curriculum fields in force

    @property
    def mean_peer_val(self) -> float:
        return sum(p.val_accuracy for p in self.peers) / len(self.peers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "EpochRecord":
        """Read back :meth:`to_dict` after JSON (where NaN became ``None``)."""
        peer_fields = {f.name for f in fields(PeerEpoch)}
        peers = [PeerEpoch(**{key: math.nan if value is None and key == "train_loss" else value
                              for key, value in p.items() if key in peer_fields}) for p in raw["peers"]]
        return cls(**{**{k: v for k, v in raw.items() if k != "peers"}, "peers": peers})


def epoch_record(epoch: int, names: list[str], step_metrics: list[list[dict[str, float]]],
                 evaluation: dict[str, Any], train_seconds: float, curriculum: dict[str, Any]) -> EpochRecord:
    """Aggregate an epoch's step metrics (``[step][peer]``) and its evaluation into a record."""
    peers = []
    for k, name in enumerate(names):
        rows = [step[k] for step in step_metrics]
        examples = sum(r[m.TRAIN_EXAMPLES] for r in rows)
        stepped = [r for r in rows if not r[m.SKIPPED_STEP]]  # skipped steps' losses are NaN/inf
        stepped_examples = sum(r[m.TRAIN_EXAMPLES] for r in stepped)
        weights, weighted = _teacher_weights(rows)
        peers.append(PeerEpoch(
            name=name, val_accuracy=evaluation["peers"][k],
            train_accuracy=sum(r[m.TRAIN_CORRECT] for r in rows) / max(examples, 1.0),
            train_loss=sum(r[m.LOSS_TOTAL] * r[m.TRAIN_EXAMPLES] for r in stepped) / stepped_examples
            if stepped else math.nan,
            exchange_wait_seconds=sum(r[m.EXCHANGE_WAIT_SECONDS] for r in rows),
            skipped_steps=int(sum(r[m.SKIPPED_STEP] for r in rows)),
            teachers_left_out=int(sum(r[m.TEACHERS_LEFT_OUT] for r in rows)),
            teacher_weights=weights, weighted_steps=weighted,
            bytes_received=sum(r.get(m.BYTES_RECEIVED, 0.0) for r in rows),
            replica_forward_seconds=sum(r.get(m.REPLICA_FORWARD_SECONDS, 0.0) for r in rows),
            replica_memory_bytes=max((r.get(m.REPLICA_MEMORY_BYTES, 0.0) for r in rows), default=0.0)))
    strengths = [step[0][m.DISTILL_STRENGTH] for step in step_metrics]
    return EpochRecord(epoch=epoch + 1, peers=peers, ensemble_val=evaluation["ensemble"],
                       agreement=evaluation["agreement"], train_seconds=train_seconds,
                       distill_strength=sum(strengths) / max(len(strengths), 1), curriculum=curriculum)


def _teacher_weights(rows: list[dict[str, float]]) -> tuple[dict[str, float], int]:
    """Mean weight each teacher received over the steps where the policy weighted it (a teacher
    left out for non-finite predictions is absent from those steps), and how many steps weighted any."""
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        for key, value in row.items():
            if key.startswith(m.TEACHER_WEIGHT_PREFIX):
                sums[key[len(m.TEACHER_WEIGHT_PREFIX):]] += value
                counts[key[len(m.TEACHER_WEIGHT_PREFIX):]] += 1
    weighted = sum(1 for row in rows if any(key.startswith(m.TEACHER_WEIGHT_PREFIX) for key in row))
    return {name: sums[name] / counts[name] for name in sums}, weighted


def second_half_weights(history: list[EpochRecord], peer: int, epochs: int) -> dict[str, float]:
    """Mean weight per teacher over the steps of the second half of training (epochs > epochs / 2)."""
    records = [h.peers[peer] for h in history if h.epoch > epochs // 2 and h.peers[peer].weighted_steps]
    steps = sum(r.weighted_steps for r in records)
    names = list(records[0].teacher_weights) if records else []
    return {name: sum(r.teacher_weights[name] * r.weighted_steps for r in records) / steps for name in names}


def summary_line(record: EpochRecord, epochs: int, show_weights: bool) -> str:
    """The console line of an epoch; teacher weights only where a policy chooses them (``show_weights``)."""
    peers = "  ".join(f"{p.name} {100 * p.val_accuracy:.2f}" for p in record.peers)
    weights = "; ".join(f"{p.name}: " + " ".join(f"{name} {w:.2f}" for name, w in p.teacher_weights.items())
                        for p in record.peers if p.teacher_weights) if show_weights else ""
    return (f"epoch {record.epoch}/{epochs}  val top-1: {peers}  ensemble {100 * record.ensemble_val:.2f}  "
            f"agreement {100 * record.agreement:.1f}%  ({record.train_seconds:.1f}s)"
            + (f"  teacher weights [{weights}]" if weights else ""))
