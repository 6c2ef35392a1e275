"""The run configuration's schema: typed, frozen dataclasses, each field declared once.

A field's type is its annotation; :func:`~codistill.config.fields.setting` holds its default, its
own range and what it means, and :mod:`codistill.config.fields` derives the YAML reader and the
range checks from these declarations. The rules that join several fields live in
:mod:`codistill.config.rules`; docs/configuration.md documents every field (a test holds it to
this file). Nothing here imports the rest of codistill above the ground floor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from codistill.checks import (
    all_of,
    at_least_one,
    distinct,
    each,
    interval,
    non_negative,
    off_or,
    one_of,
    positive,
    rate,
)
from codistill.config.exchange_names import OBJECTREF, exchange_name
from codistill.config.fields import setting

TEACHER_MODES = ("ensemble", "mean_of_others")
TEACHER_SOURCES = ("live", "replicas")
AMP_MODES = ("off", "bf16", "fp16")
PLACEMENTS = ("pack", "spread")
DEVICES = ("auto", "cpu", "cuda")
NONFINITE_ACTIONS = ("stop", "skip")
PROBE_SOURCES = ("train", "held_out")
PARTITION_KINDS = ("shared", "iid", "dirichlet", "classes")
#: Fields ``--resume RUN_DIR --set`` may change: they cannot change what the run computes.
RESUME_SAFE_FIELDS = ("runtime.progress_every_seconds", "runtime.log_every_steps")


@dataclass(frozen=True)
class PartitionConfig:
    """How the training split is divided among the peers (:mod:`codistill.data.partition`)."""

    kind: str = setting("shared", "shared: every peer trains on all of it; iid: equal, stratified, disjoint "
                                  "shards; dirichlet: each class divided in proportions drawn from Dir(alpha); "
                                  "classes: each peer's list", one_of(*PARTITION_KINDS))
    alpha: float | None = setting(None, "dirichlet: the concentration α (small: each peer holds few classes)",
                                  positive)
    classes: tuple[tuple[int, ...], ...] | None = setting(
        None, "classes: one list of classes per peer, in peer order", each(all_of(distinct, each(non_negative))),
        canonical=lambda lists: tuple(tuple(sorted(entry)) for entry in lists))


@dataclass(frozen=True)
class DataConfig:
    dataset: str = setting("digits", "a registered dataset, or package.module:Name of your own")
    root: str | None = setting(None, "where the dataset's files are (an existing directory)")
    train_fraction: float = setting(1.0, "a stratified share of the training split", interval(0, 1, low_open=True))
    label_noise: float = setting(0.0, "this share of training labels is flipped to another class", rate)
    batch_size: int = setting(64, "the training batch, the same examples for every peer", at_least_one)
    eval_batch_size: int = setting(512, "the batch size of validation and test", at_least_one)
    augment: bool = setting(True, "the dataset's training augmentation")
    prefetch_batches: int = setting(2, "batches prepared ahead of the step in a background thread (0: in the step)",
                                    non_negative)
    per_peer_augmentation: bool = setting(False, "each peer gets its own augmentation of the same examples (KDCL)")
    image_size: int | None = setting(None, "imagefolder: the side of the images", at_least_one)
    test_fraction: float = setting(0.0, "a share of the held-out split kept as a test split (data.held_out)", rate)
    val_fraction: float | None = setting(
        None, "a share of an official training split held out for validation (None: the dataset's default)",
        interval(0, 0.5, low_open=True))
    download: bool = setting(False, "fetch missing Fashion-MNIST files into data.root")
    probe_fraction: float = setting(0.0, "a share held out as a probe, never trained on (0: none)",
                                    off_or(interval(0, 0.5, low_open=True)))
    probe_source: str = setting("train", "where the probe comes from: the noisy training split or the clean "
                                         "validation split", one_of(*PROBE_SOURCES))
    shared_batches: bool = setting(True, "every peer sees the same batch order (false: replicas only, each its own)")
    classes: tuple[int, ...] | None = setting(
        None, "train only on examples of these (given) classes; a specialist teacher",
        all_of(distinct, each(non_negative)), canonical=lambda values: tuple(sorted(values)))
    partition: PartitionConfig = setting(factory=PartitionConfig, doc="how the training split is divided among "
                                                                      "the peers (default: shared by all)")
    shared_fraction: float = setting(0.0, "with a partition: a stratified share of the training split held out of "
                                          "every shard, seen by every peer without its labels (FedDF)",
                                     interval(0, 1, high_open=True))


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = setting("sgd", "a registered optimizer")
    lr: float = setting(0.05, "the base learning rate", positive)
    momentum: float = setting(0.9, "SGD's momentum", rate)
    weight_decay: float = setting(5e-4, "L2 weight decay", non_negative)
    nesterov: bool = setting(True, "SGD's Nesterov momentum")


@dataclass(frozen=True)
class LRScheduleConfig:
    name: str = setting("cosine", "the decay: a schedule kind with a learning_rate (cosine, multistep, constant)")
    milestones: tuple[int, ...] = setting((), "multistep: the epochs at which the rate is multiplied by gamma",
                                          each(non_negative))
    gamma: float = setting(0.1, "multistep: the factor at each milestone", positive)
    warmup_epochs: int = setting(0, "linear warm-up over these epochs", non_negative)


@dataclass(frozen=True)
class ResourcesConfig:
    cpus: float = setting(1.0, "CPUs of the peer's Ray bundle", positive)
    gpus: float = setting(0.0, "the peer's GPU share", non_negative)


@dataclass(frozen=True)
class SparsityConfig:
    target: float = setting(0.5, "the final sparsity s_f", rate)
    start_epoch: int = setting(0, "pruning starts", non_negative)
    end_epoch: int | None = setting(None, "pruning reaches the target (None: the last epoch)", at_least_one)
    every_steps: int = setting(10, "pruning steps apart", at_least_one)
    initial: float = setting(0.0, "the initial sparsity s_i", rate)


@dataclass(frozen=True)
class PeerConfig:
    name: str = setting(doc="the peer's name (default: <model>-<k>)",
                        derived=lambda fields, index: f"{fields['model']}-{index}")
    model: str = setting(doc="a registered model, or package.module:Factory", required="every peer needs a model")
    optimizer: OptimizerConfig = setting(factory=OptimizerConfig, doc="the peer's optimizer")
    lr_schedule: LRScheduleConfig = setting(factory=LRScheduleConfig, doc="the peer's learning-rate schedule")
    resources: ResourcesConfig = setting(factory=ResourcesConfig, doc="the peer's Ray bundle")
    sparsity: SparsityConfig | None = setting(None, "gradual magnitude pruning of the peer (None: none)")
    data_parallel: int = setting(1, "R: the peer's data-parallel workers, each training on its rows of the global "
                                    "batch (1: one process, as always)", at_least_one)


@dataclass(frozen=True)
class MethodConfig:
    name: str = setting(doc="a registered distillation method, or package.module:Name")
    weight: float = setting(1.0, "multiplies the method's terms", non_negative)
    params: dict[str, Any] = setting(factory=dict, doc="the method's own parameters (it checks them)")


@dataclass(frozen=True)
class PolicyConfig:
    name: str = setting("uniform", "a registered teacher-weighting policy, or package.module:Class")
    params: dict[str, Any] = setting(factory=dict, doc="the policy's own parameters (it checks them)")


def _policy_shorthand(value: Any) -> Any:
    """``policy: name`` stands for ``policy: {name: name}``."""
    return {"name": value} if isinstance(value, str) else value


@dataclass(frozen=True)
class DistillationConfig:
    teacher: str = setting("ensemble", "how a peer's teachers are formed", one_of(*TEACHER_MODES))
    weight: Any = setting(1.0, "λ(t): a number or a schedule spec, ≥ 0 throughout")
    gate: Any = setting(1.0, "m(t) ∈ {0, 1}: a number or a schedule spec (e.g. kind: phases)")
    methods: tuple[MethodConfig, ...] = setting((MethodConfig(name="kd", params={"temperature": 3.0}),),
                                                "the distillation methods and their weights")
    policy: PolicyConfig = setting(factory=PolicyConfig, doc="the teacher-weighting policy",
                                   shorthand=_policy_shorthand)
    teacher_source: str = setting("live", "live: the other peers' payloads every step; replicas: frozen local "
                                          "copies of them (codistillation, codistill.peer.replicas)",
                                  one_of(*TEACHER_SOURCES))
    refresh_every_steps: int = setting(50, "replicas: parameters exchanged every N steps after burn-in",
                                       at_least_one)
    refresh_at_epoch_start: bool = setting(True, "replicas: also refreshed at the start of every epoch")
    burn_in_epochs: int = setting(0, "no distillation (λ·m = 0) in the first epochs", non_negative)


@dataclass(frozen=True)
class TeacherConfig:
    """A trained, frozen teacher for offline distillation."""

    name: str = setting(doc="the teacher's name (default: its model)", derived=lambda fields, index: fields["model"])
    model: str = setting(doc="the teacher's registered model", required="every teacher needs a model and a checkpoint")
    checkpoint: str = setting(doc="its saved network, RUN_DIR/models/<peer>.pt",
                              required="every teacher needs a model and a checkpoint")


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = setting("auto", "where peers run (auto: CUDA for peers with GPUs)", one_of(*DEVICES))
    amp: str = setting("off", "autocast on CUDA peers (false: off)", one_of(*AMP_MODES),
                       shorthand=lambda value: "off" if value is False else value)
    placement: str = setting("pack", "the peers' placement group's strategy (a data-parallel peer's workers: "
                             "packed, in a group of their own)", one_of(*PLACEMENTS))
    deterministic: bool = setting(True, "torch's deterministic algorithms")
    log_every_steps: int = setting(10, "step scalars are averaged over this many steps", at_least_one)
    progress_every_seconds: float = setting(10.0, "how often the console prints progress", non_negative)
    on_nonfinite: str = setting("stop", "a peer's loss is NaN/inf: stop the run, or skip that peer's update",
                                one_of(*NONFINITE_ACTIONS))
    max_failures: int = setting(3, "lost actors/nodes recovered from the last checkpoint before giving up",
                                non_negative)
    exchange: str = setting(OBJECTREF, "how Ray peers exchange payloads (codistill.config.exchange_names)",
                            exchange_name)
    max_steps_in_flight: int = setting(16, "steps asked of the actors before the oldest is collected",
                                       at_least_one)
    sync_batchnorm: bool = setting(True, "BatchNorm statistics synchronized over a peer's data-parallel workers "
                                         "(peers[k].data_parallel > 1)")


@dataclass(frozen=True)
class RunConfig:
    name: str = setting("cohort", "names the run")
    seed: int = setting(0, "seeds the data, the batch order, augmentation, initial weights and policies")
    epochs: int = setting(30, "training length", at_least_one)
    independent: bool = setting(False, "cross-entropy only, no distillation (the baseline)")
    data: DataConfig = setting(factory=DataConfig, doc="the dataset and how it is cut")
    peers: tuple[PeerConfig, ...] = setting((), "online: at least two peers; offline: the student")
    teachers: tuple[TeacherConfig, ...] = setting((), "offline: trained, frozen teachers")
    distillation: DistillationConfig = setting(factory=DistillationConfig, doc="teachers, λ(t), m(t), methods, policy")
    runtime: RuntimeConfig = setting(factory=RuntimeConfig, doc="devices, placement, the exchange, logging, failures")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
