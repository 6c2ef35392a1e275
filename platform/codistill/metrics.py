"""Names of the metrics that cross modules: a peer's step (``PeerTrainer.update``) reports them,
the runner aggregates them per epoch, monitoring writes them to TensorBoard and a learned
teacher policy may read them as feedback. One name, one constant, used everywhere.

Per-step metrics are plain ``dict[str, float]`` (cheap to send from a Ray actor); every
distillation term adds ``loss/<method>/<term>`` next to the fixed keys below.
"""

from __future__ import annotations

LOSS_PREFIX = "loss/"
LOSS_TOTAL = "loss/total"  # CE + λ·m·Σ distillation terms
LOSS_CE = "loss/ce"  # cross-entropy on the (possibly noisy) training label
DISTILL_STRENGTH = "distill/strength"  # λ(t)·m(t) at this step
LEARNING_RATE = "lr"
TRAIN_CORRECT = "train/correct"  # examples of the batch the peer classified right (before the step)
TRAIN_EXAMPLES = "train/examples"  # examples in the batch
STEP_SECONDS = "time/step"  # forward + update compute time of the peer
EXCHANGE_WAIT_SECONDS = "time/exchange_wait"  # time between the peer's forward and its update
DATA_WAIT_SECONDS = "time/data_wait"  # time the step waited for its batch (part of time/step)
SKIPPED_STEP = "nonfinite/skipped"  # 1 when the peer's loss or gradient was NaN/inf and its update was skipped
TEACHERS_LEFT_OUT = "nonfinite/teachers_left_out"  # teachers whose predictions were NaN/inf, left out of the step
BYTES_RECEIVED = "exchange/bytes_received"  # bytes from the other peers: live payloads, or replica weights at a refresh

# Codistillation (distillation.teacher_source: replicas).
REPLICA_STALENESS = "replicas/staleness"  # steps since the replicas were refreshed (0: refreshed before this step)
REPLICA_FORWARD_SECONDS = "time/replica_forward"  # the K − 1 replicas' forward passes of this step
REPLICA_MEMORY_BYTES = "replicas/memory_bytes"  # parameters and buffers of the peer's replicas

# Teacher-weighting policies (every policy reports the weights; learning ones the rest).
TEACHER_WEIGHT_PREFIX = "policy/weight/"  # + teacher name: batch-mean weight that teacher received
PROBE_LOSS_BEFORE = "policy/probe_loss_before"  # student's loss on the probe batch before the update
PROBE_LOSS_AFTER = "policy/probe_loss_after"  # ... and after it
POLICY_REWARD = "policy/reward"  # the learned policy's reward for this step
POLICY_ENTROPY = "policy/entropy"  # entropy of the policy's action distribution, per action dimension
POLICY_ADVANTAGE = "policy/advantage"  # mean advantage of this peer's transitions in the last update
#: per teacher, |batch mean| / standard error of its dense credit; the mean over teachers
POLICY_CREDIT_SNR = "policy/credit_snr"
LEARNER_LOSS = "policy/learner_loss"  # the learner's surrogate loss in its last update
LEARNER_UPDATES = "policy/learner_updates"  # learner updates so far

# Per-epoch scalars written by the runner.
VAL_ACCURACY = "val/accuracy"
TRAIN_ACCURACY = "train/accuracy"
TRAIN_LOSS_EPOCH = "train/loss_epoch"
EXCHANGE_WAIT_EPOCH = "time/exchange_wait_epoch"
EXCHANGE_BYTES_EPOCH = "exchange/bytes_epoch"  # bytes received in the epoch (per peer; the cohort's total)
REPLICA_FORWARD_EPOCH = "time/replica_forward_epoch"
TRAIN_ACCURACY_STEP = "train/accuracy_step"
ENSEMBLE_ACCURACY = "val/ensemble_accuracy"
AGREEMENT = "val/agreement"
EPOCH_SECONDS = "time/epoch_seconds"
SKIPPED_STEPS_EPOCH = "nonfinite/skipped_steps_epoch"  # updates skipped in the epoch (runtime.on_nonfinite: skip)
TEACHERS_LEFT_OUT_EPOCH = "nonfinite/teachers_left_out_epoch"
RECOVERIES = "faults/recoveries"  # lost peers recovered from the last checkpoint so far (cohort run)
CLASS_COUNTS = "data/class_counts"  # text: a peer's training examples per class (data.partition)

# Reported to Ray Tune after every epoch of a trial (codistill.tuning); selectable with --metric.
MEAN_PEER_VAL = "mean_peer_val_accuracy"  # mean over peers of their validation top-1
ENSEMBLE_VAL = "ensemble_val_accuracy"
EPOCH_DISTILL_STRENGTH = "distill_strength"  # mean λ(t)·m(t) over the epoch's steps


def peer_val(name: str) -> str:
    """Tune metric of one peer's validation top-1."""
    return f"{name}_val_accuracy"


def loss_term(name: str) -> str:
    """The key of one named distillation term, e.g. ``loss/kd/kd``."""
    return f"{LOSS_PREFIX}{name}"


def teacher_weight(teacher: str) -> str:
    """The key of the mean weight one teacher received at a step, e.g. ``policy/weight/cnn``."""
    return f"{TEACHER_WEIGHT_PREFIX}{teacher}"
