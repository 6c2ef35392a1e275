"""The run configuration's schema: typed, frozen dataclasses with their defaults.

Nothing here imports the rest of codistill: :mod:`codistill.config.loading` reads YAML into these
objects and :mod:`codistill.config.validation` checks them (see docs/configuration.md for every field).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

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
    """How the training split is divided among the peers (see codistill.data.partition): ``shared``
    (every peer trains on all of it), ``iid`` (equal, stratified, disjoint shards), ``dirichlet``
    (each class divided in proportions drawn from Dir(alpha·1)) or ``classes`` (each peer's list)."""

    kind: str = "shared"
    alpha: float | None = None  # dirichlet: the concentration α > 0 (small: each peer holds few classes)
    classes: tuple[tuple[int, ...], ...] | None = None  # classes: one list per peer, in peer order


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "digits"
    root: str | None = None
    train_fraction: float = 1.0
    label_noise: float = 0.0
    batch_size: int = 64
    eval_batch_size: int = 512
    augment: bool = True
    per_peer_augmentation: bool = False
    image_size: int | None = None
    test_fraction: float = 0.0  # share of the held-out split kept as a test split (see data.held_out)
    #: Share of an official training split held out for validation (None: the dataset's default,
    #: 5,000 images for Fashion-MNIST and CIFAR; see data.splits). Only for datasets with an official test split.
    val_fraction: float | None = None
    download: bool = False  # fetch missing Fashion-MNIST files into data.root (torchvision's downloader)
    #: Share of the (reduced, noisy) training split held out as a probe, never trained on (0: none).
    probe_fraction: float = 0.0
    #: Where the probe comes from: ``train`` (the share above of the noisy training split) or
    #: ``held_out`` (that share of the clean validation split, which then no longer counts it).
    probe_source: str = "train"
    #: Every peer sees the same batch order; ``false`` (replicas only): each peer draws its own.
    shared_batches: bool = True
    #: Train only on the examples whose (given) label is one of these classes (None: all); the
    #: network still predicts every class, and validation keeps every class. A specialist teacher.
    classes: tuple[int, ...] | None = None
    #: How the training split is divided among the peers (default: shared by all).
    partition: PartitionConfig = field(default_factory=PartitionConfig)


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True


@dataclass(frozen=True)
class LRScheduleConfig:
    name: str = "cosine"  # cosine | multistep | constant
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: int = 0


@dataclass(frozen=True)
class ResourcesConfig:
    cpus: float = 1.0
    gpus: float = 0.0


@dataclass(frozen=True)
class SparsityConfig:
    target: float = 0.5
    start_epoch: int = 0
    end_epoch: int | None = None
    every_steps: int = 10
    initial: float = 0.0


@dataclass(frozen=True)
class PeerConfig:
    name: str
    model: str
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    lr_schedule: LRScheduleConfig = field(default_factory=LRScheduleConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    sparsity: SparsityConfig | None = None


@dataclass(frozen=True)
class MethodConfig:
    name: str
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyConfig:
    name: str = "uniform"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DistillationConfig:
    teacher: str = "ensemble"
    weight: Any = 1.0  # λ(t): number or schedule spec
    gate: Any = 1.0  # m(t) ∈ {0, 1}: number or schedule spec (e.g. kind: phases)
    methods: tuple[MethodConfig, ...] = (MethodConfig(name="kd", params={"temperature": 3.0}),)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    #: Where a peer's teachers predict: ``live`` (the other peers' payloads, every step) or
    #: ``replicas`` (frozen local copies of the other peers, codistillation; codistill.peer.replicas).
    teacher_source: str = "live"
    refresh_every_steps: int = 50  # replicas: parameters exchanged every N steps (counted from burn-in's end)
    refresh_at_epoch_start: bool = True  # replicas: also refresh at the start of every epoch
    burn_in_epochs: int = 0  # no distillation (λ·m = 0) in the first epochs


@dataclass(frozen=True)
class TeacherConfig:
    """A trained, frozen teacher for offline distillation."""

    name: str
    model: str
    checkpoint: str


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = "auto"
    amp: str = "off"
    placement: str = "pack"
    deterministic: bool = True
    log_every_steps: int = 10
    progress_every_seconds: float = 10.0
    on_nonfinite: str = "stop"  # a peer's loss is NaN/inf: stop the run, or skip that peer's update
    max_failures: int = 3  # lost actors/nodes recovered from the last checkpoint before giving up
    #: How Ray peers exchange payloads: through the object store, or actor-driven steps with a
    #: collective (see codistill.cohort).
    exchange: str = "objectref"
    #: Steps the driver asks the actors for before collecting the oldest (bounds tasks in flight).
    max_steps_in_flight: int = 16


@dataclass(frozen=True)
class RunConfig:
    name: str = "cohort"
    seed: int = 0
    epochs: int = 30
    independent: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    peers: tuple[PeerConfig, ...] = ()
    teachers: tuple[TeacherConfig, ...] = ()
    distillation: DistillationConfig = field(default_factory=DistillationConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
