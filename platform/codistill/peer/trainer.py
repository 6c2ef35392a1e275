"""One peer of a cohort — plain PyTorch; its training step is read here, in one place.

A step is split in two so peers can exchange predictions between the halves:

1. :meth:`PeerTrainer.forward` runs the peer on the step's batch (:mod:`.batches`), keeps the
   autograd graph, and returns a detached :class:`~codistill.methods.base.TeacherView` (the
   payload other peers receive: logits, plus stage features and teacher-side extras only when a
   configured method needs them).
2. :meth:`PeerTrainer.update` receives its teachers' payloads (in the order of its
   :class:`~codistill.peer.teachers.TeacherSlots`), asks the teacher-weighting policy for weights,
   and takes one guarded optimizer step (:mod:`.optimization`) on the objective of
   :mod:`.objective`; a learning policy then gets its :class:`~codistill.policy.Feedback`
   (:mod:`.feedback`).

No gradient crosses peers: payloads are detached before they leave a peer. The same class runs
inside a Ray actor, a worker process and in one process (:mod:`codistill.cohort`).

With codistillation (``distillation.teacher_source: replicas``, :mod:`.replicas`) a step is one
call, :meth:`PeerTrainer.replica_step`: the teachers are this peer's frozen replicas of the others,
run on its own batch; the cohort refreshes them with :meth:`replica_weights` and :meth:`load_replicas`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from codistill import metrics as m
from codistill import safe_io
from codistill.config import RunConfig
from codistill.data.base import DatasetInfo, DataShape, PeerDataset, mix_seed
from codistill.methods import MethodContext
from codistill.methods.base import TeacherView
from codistill.models import ModelOutput, PeerNetwork, build_model
from codistill.peer.batches import Batch, BatchSource, RandomStream
from codistill.peer.data_parallel import WorkerSlot, synchronize_batchnorm, view_rows
from codistill.peer.datasets import load_dataset, load_shards, partitioned
from codistill.peer.feedback import Probe, dense_credit, head_credit
from codistill.peer.objective import DistillationObjective
from codistill.peer.optimization import Optimization, select_device
from codistill.peer.replicas import ReplicaTeachers, uses_replicas
from codistill.peer.teachers import TeacherSlots, normalized_weights, payload_bytes
from codistill.policy import Feedback, FeedbackRequest, PolicyContext, TeacherWeightingPolicy, learns
from codistill.pruning import GradualPruner, effective_state_dict
from codistill.registry import POLICIES


def feature_shapes(model_name: str, shape: DataShape | DatasetInfo) -> list[torch.Size]:
    """Stage feature shapes of ``model_name`` on the data's images (built aside: the random stream is untouched)."""
    with torch.random.fork_rng():
        network = build_model(model_name, shape.num_classes, shape.in_channels, shape.image_size)
    return network.feature_shapes(shape.in_channels, shape.image_size)


def method_context(config: RunConfig, num_classes: int, student_shapes: list[torch.Size],
                   teacher_shapes: list[list[torch.Size]]) -> MethodContext:
    """What a peer's methods are built from: its stage shapes and its payload teachers'."""
    return MethodContext(num_classes=num_classes, student_feature_shapes=student_shapes,
                         teacher_feature_shapes=teacher_shapes, total_epochs=config.epochs, online=not config.teachers)


@dataclass
class _Pending:
    """What ``forward`` leaves for ``update``: the live output and the batch it came from."""

    output: ModelOutput
    batch: Batch
    forward_seconds: float
    finished_at: float


class PeerTrainer:
    """Trains peer ``index`` of ``config.peers``; see the module docstring for the step protocol."""

    def __init__(self, config: RunConfig, index: int, dataset: PeerDataset | None = None,
                 device: torch.device | None = None, worker: WorkerSlot | None = None) -> None:
        self.config, self.index, self.worker = config, index, worker
        self.peer = config.peers[index]
        self.device = device or select_device(config, self.peer)
        if config.runtime.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.manual_seed(mix_seed(config.seed, index, 0x5EED))
        self.dataset = dataset or load_dataset(config, index)
        info = self.dataset.info
        self.batches = BatchSource(config, index, self.dataset, self.device, None if worker is None else worker.rows)
        self.model: PeerNetwork = build_model(self.peer.model, info.num_classes, info.in_channels,
                                              info.image_size).to(self.device)
        #: Online, the teachers are the other peers; offline, the frozen ``config.teachers``.
        self.online = not config.teachers
        self.slots = TeacherSlots.of(config, index)
        context = method_context(config, info.num_classes, self.model.feature_shapes(info.in_channels, info.image_size),
                                 [feature_shapes(name, info) for name in self.slots.models])
        self.objective = DistillationObjective(config, context).to(self.device)
        if worker is not None and config.runtime.sync_batchnorm:  # the network's and the adapters' BatchNorm
            synchronize_batchnorm(self.model, worker.group)
            synchronize_batchnorm(self.objective, worker.group)
        self.optimization = Optimization(config, self.peer, list(self.model.parameters())
                                         + list(self.objective.parameters()), self.device)
        self.optimization.worker = worker
        self.policy = self._build_policy()
        #: A data-parallel worker's learning policy sees the global batch (its inputs gathered over the workers).
        self.shared_policy = worker is not None and learns(type(self.policy))
        #: Progress of the last update (the cohort's policy synchronization looks at it).
        self.last_progress = None
        #: The policy's feedback of the last update (``None`` when no teacher was weighted).
        self.last_feedback: Feedback | None = None
        self.pruner = self._build_pruner()
        #: Codistillation: frozen copies of the other peers, in slot order (``None``: live teachers).
        self.replicas = ReplicaTeachers(self.slots.models, info, self.objective.teacher_payload, self.device,
                                        self.optimization.autocast_dtype) if uses_replicas(config) else None
        self._pending: _Pending | None = None
        self._random = RandomStream()
        if worker is not None and worker.rank > 0:  # each worker's own dropout stream: (seed, peer, worker)
            self._random.state = torch.Generator().manual_seed(mix_seed(config.seed, index, 0x5EED, worker.rank)
                                                               ).get_state()

    def _build_policy(self) -> TeacherWeightingPolicy:
        config, info = self.config, self.dataset.info
        context = PolicyContext(teacher_names=self.slots.names, num_classes=info.num_classes, device=self.device,
                                online=self.online, student_index=self.index, student_name=self.peer.name,
                                total_epochs=config.epochs, steps_per_epoch=self.batches.steps_per_epoch,
                                seed=config.seed, probe_available=config.data.probe_fraction > 0,
                                class_counts=self._candidate_class_counts())
        spec = config.distillation.policy
        with torch.random.fork_rng(devices=[]):  # a policy's initialization leaves the peer's stream alone
            return POLICIES.get(spec.name)(context, **spec.params)

    def _candidate_class_counts(self) -> tuple[tuple[int, ...], ...] | None:
        """With a partition, every candidate teacher's training examples per class (its shard's), in slot order."""
        if not partitioned(self.config):
            return None
        counts = [tuple(shard.class_counts) for shard in load_shards(self.config)]
        others = [c for k, c in enumerate(counts) if k != self.index]
        return tuple(others + ([counts[self.index]] if self.slots.includes_self else []))

    def _build_pruner(self) -> GradualPruner | None:
        sparsity = self.peer.sparsity
        if sparsity is None:
            return None
        return GradualPruner(self.model, target_sparsity=sparsity.target, start_epoch=sparsity.start_epoch,
                             end_epoch=sparsity.end_epoch if sparsity.end_epoch is not None else self.config.epochs,
                             every_steps=sparsity.every_steps, initial_sparsity=sparsity.initial)

    # -- the step ----------------------------------------------------------------------------

    def forward(self, epoch: int, step: int, payload: bool = True, on_host: bool = True,
                shared: tuple[Tensor, Tensor] | None = None) -> TeacherView | None:
        """First half of a step: run the batch (and after it the ``shared`` slice's images and
        positions, if given), keep the graph, return the detached payload (on the CPU, or on this
        peer's device without ``on_host``; ``None`` without ``payload``: a codistilling peer sends
        no predictions)."""
        started = time.perf_counter()
        self.model.train()
        batch = self.batches.batch(epoch, step)  # a data-parallel worker's: its rows
        if shared is not None:
            batch = batch.with_shared(*shared, offset=self.dataset.info.train_size)
        with self._random.active(), self.optimization.autocast():
            output = self.model(batch.images)
        view = self.objective.teacher_payload(self.model, output) if payload else None
        if view is not None:
            view = _to_device(view, torch.device("cpu") if on_host else self.device)
        finished = time.perf_counter()
        self._pending = _Pending(output, batch, finished - started, finished)
        return view

    @property
    def batch_in_progress(self) -> Batch:
        """The batch of the step between ``forward`` and ``update`` (an offline teacher's input)."""
        if self._pending is None:
            raise RuntimeError("no step in progress")
        return self._pending.batch

    def update(self, payloads: list[TeacherView]) -> dict[str, float]:
        """Second half: distil from the teachers' payloads and take one optimizer step; the step's metrics.

        With ``runtime.on_nonfinite: stop`` a NaN/inf loss, gradient or teacher prediction raises
        :class:`~codistill.errors.NonFiniteLoss` naming the peer; with ``skip`` this peer's update
        is skipped, and a teacher with NaN/inf predictions is left out of the step.
        """
        if self._pending is None:
            raise RuntimeError("update() called without a preceding forward()")
        pending, self._pending = self._pending, None
        started = time.perf_counter()
        own = pending.batch.own_rows
        share, received = pending.batch.targets[own].numel() / pending.batch.batch_size, payloads
        if self.worker is not None and self.replicas is None:  # live payloads cover the global batch: its rows
            payloads = [view_rows(view, self.worker.rows(pending.batch.batch_size)) for view in payloads]
        progress, targets, student = pending.batch.progress, pending.batch.targets, pending.output
        lr = self.optimization.set_learning_rate(progress)
        kept = self.slots.finite(payloads, self.config.runtime.on_nonfinite == "stop", self.peer.name, progress)
        if self.shared_policy:
            kept = self.worker.kept_everywhere(kept, len(payloads), self.device)
        strength = self.objective.strength(progress)
        distilling = self.objective.active and strength != 0.0 and bool(kept)
        batch = weights = request = None
        credit_due = False
        terms: dict[str, Tensor] = {}
        with self.optimization.autocast():
            ce = F.cross_entropy(student.logits[own].float(), targets[own])
            if distilling:
                self.slots.check_count(payloads)
                teachers = [_to_device(payloads[position], self.device, position) for position in kept]
                batch = self.slots.batch(teachers, student.logits.detach().float(), targets, self.index, progress,
                                         pending.batch.indices)
                if self.shared_policy:
                    batch = self.worker.global_batch(batch, pending.batch.batch_size)
                weights = policy_weights = normalized_weights(self.policy.weights(batch), len(batch.teacher_indices),
                                                              batch.targets.numel())
                if self.shared_policy:
                    weights = policy_weights[self.worker.rows(pending.batch.batch_size)]
                request = self.policy.feedback_request(progress)
                credit_due = request is not None and request.credit_scope is not None
                if credit_due:  # the loss as a function of the weights, for their credit
                    weights = weights.detach().requires_grad_(True)
                terms = self.objective.terms(student, teachers, weights, self.slots.includes_self, targets, progress)
            loss = ce + strength * (sum(terms.values()) if terms else torch.zeros((), device=self.device))

        measure = request is not None and request.probe_losses
        probe = self._probe(request) if measure or credit_due else None
        probe_batch = probe.batch(progress) if probe is not None else None
        probe_before = credit = None
        if credit_due:
            credit, probe_before = self._credit(loss, weights, student, probe, probe_batch, request.credit_scope, lr)
            weights = weights.detach()
        applied = self.optimization.backward(loss, progress, share)
        if measure and applied and probe_before is None:
            probe_before = probe.loss(self.model, probe_batch)
        if applied:
            self.optimization.step()
        if self.pruner is not None:
            self.pruner.step(progress)
        self.last_progress = progress

        metrics = {m.LOSS_TOTAL: float(loss.detach()), m.LOSS_CE: float(ce.detach()),
                   m.DISTILL_STRENGTH: strength, m.LEARNING_RATE: lr,
                   m.TRAIN_CORRECT: float((student.logits[own].detach().argmax(1) == targets[own]).sum()),
                   m.TRAIN_EXAMPLES: float(targets[own].numel()),
                   m.STEP_SECONDS: pending.forward_seconds + time.perf_counter() - started,
                   m.EXCHANGE_WAIT_SECONDS: started - pending.finished_at,
                   m.DATA_WAIT_SECONDS: pending.batch.data_wait,
                   m.SKIPPED_STEP: float(not applied), m.TEACHERS_LEFT_OUT: float(len(payloads) - len(kept))}
        if self.online and self.replicas is None:
            metrics[m.BYTES_RECEIVED] = float(sum(payload_bytes(view) for view in received))
        metrics.update({m.loss_term(name): float(value.detach()) for name, value in terms.items()})
        self.last_feedback = None
        if batch is not None and applied:
            names = [self.slots.names[position] for position in batch.teacher_indices]
            metrics.update({m.teacher_weight(name): float(weight) for name, weight in zip(names, weights.mean(0))})
            feedback = Feedback(loss_total=metrics[m.LOSS_TOTAL], loss_ce=metrics[m.LOSS_CE],
                                probe_loss_before=probe_before, credit=credit,
                                probe_loss_after=probe.loss(self.model, probe_batch) if measure else None)
            if self.shared_policy:
                feedback = self.worker.global_feedback(feedback, pending.batch.batch_size, weights.shape[1],
                                                       self.device)
                weights = policy_weights.detach()
            self.last_feedback = feedback
            if probe_before is not None:
                metrics[m.PROBE_LOSS_BEFORE] = probe_before
            if measure:
                metrics[m.PROBE_LOSS_AFTER] = self.last_feedback.probe_loss_after
            metrics.update(self.policy.feedback(batch, weights, self.last_feedback) or {})
        return metrics

    def _probe(self, request: FeedbackRequest) -> Probe:
        """The probe batches and loss a policy's request asks for."""
        return Probe(self.dataset, self.config.seed, request.probe_batch_size, self.device, self.optimization.autocast,
                     request.probe_loss)

    def _credit(self, loss: Tensor, weights: Tensor, student: ModelOutput, probe: Probe,
                probe_batch: tuple[Tensor, Tensor], scope: str, lr: float) -> tuple[Tensor, float]:
        """The dense credit ``[B, K]`` (CPU) of this step's weights with a virtual step over
        ``scope`` (head or network), and the probe loss before the update."""
        if scope == "head":
            probe_before, head_gradient = probe.head_gradient(self.model, probe_batch)
            return head_credit(loss, weights, student, self.model.classifier, head_gradient, lr).cpu(), probe_before
        parameters = list(self.model.parameters())
        probe_before, probe_gradient = probe.gradient(self.model, probe_batch, parameters)
        return dense_credit(loss, weights, parameters, probe_gradient, lr).cpu(), probe_before

    # -- codistillation ----------------------------------------------------------------------

    def replica_step(self, epoch: int, step: int) -> dict[str, float]:
        """A whole step with this peer's replicas as teachers, on its own batch (no peer is waited
        for) and, with ``data.shared_fraction``, a batch of the shared slice (the same for every peer
        at this step; cross-entropy on the own rows only, the policy sees the teachers' consensus as
        the shared rows' targets); the replicas run only when the step distils (λ·m ≠ 0). Their
        forward passes count as this peer's compute (``time/step``) and are reported alone
        (``time/replica_forward``)."""
        progress = self.batches.progress(epoch, step)
        distilling = self.objective.active and self.objective.strength(progress) != 0.0
        sharing = distilling and self.config.data.shared_fraction > 0
        size = self.config.data.batch_size
        self.forward(epoch, step, payload=False,
                     shared=self.dataset.shared_batch(self.config.seed, epoch, step, size) if sharing else None)
        pending = self._pending
        started = time.perf_counter()
        teachers = self.replicas.views(pending.batch.images) if distilling else []
        if sharing:
            pending.batch = pending.batch.with_consensus([view.logits for view in teachers])
        pending.finished_at = time.perf_counter()
        pending.forward_seconds += pending.finished_at - started
        metrics = self.update(teachers)
        metrics[m.REPLICA_FORWARD_SECONDS] = pending.finished_at - started
        metrics.update(self.replicas.step_metrics(progress.global_step))
        return metrics

    def replica_weights(self) -> bytes:
        """This peer's network as the others' replicas load it (pruning masks folded in): what a
        refresh sends, once per peer."""
        return safe_io.dumps(effective_state_dict(self.model))

    def load_replicas(self, epoch: int, step: int, *weights: bytes) -> None:
        """Refresh before step ``step`` of ``epoch``: the other peers' :meth:`replica_weights`, in
        index order (separate arguments, so Ray resolves each ObjectRef)."""
        self.replicas.load(weights, self.batches.progress(epoch, step).global_step,
                           self.slots.names[:self.slots.payload_count])

    # -- evaluation and state ----------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, split: str = "val") -> tuple[Tensor, Tensor]:
        """Logits ``[N, C]`` (float32, CPU) and labels ``[N]`` of the ``val`` (or ``test``) split."""
        self.model.eval()
        logits, labels = [], []
        for images, batch_labels in self.dataset.eval_batches(self.config.data.eval_batch_size, split):
            with self.optimization.autocast():
                logits.append(self.model(images.to(self.device)).logits.float().cpu())
            labels.append(batch_labels)
        return torch.cat(logits), torch.cat(labels)

    def sparsity(self) -> float | None:
        return None if self.pruner is None else float(self.pruner.sparsity())

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "methods": self.objective.methods.state_dict(),
                **self.optimization.state_dict(),
                "pruner": None if self.pruner is None else self.pruner.state_dict(),
                "policy": self.policy.state_dict(), "rng_cpu": self._random.state,
                "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                **({} if self.replicas is None else {"replicas": self.replicas.state_dict()})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.pruner is not None and state["pruner"] is not None:
            self.pruner.load_state_dict(state["pruner"])
        self.model.load_state_dict(state["model"])
        self.objective.methods.load_state_dict(state["methods"])
        self.optimization.load_state_dict(state)
        self.policy.load_state_dict(state["policy"])
        if self.replicas is not None:
            self.replicas.load_state_dict(state["replicas"])
        workers_rng = state.get("rng_workers")  # a data-parallel peer's: every worker's stream
        self._random.state = workers_rng[self.worker.rank] if self.worker is not None and workers_rng \
            else state["rng_cpu"]
        if state["rng_cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])

    def state_bytes(self) -> bytes:
        return safe_io.dumps(self.state_dict())

    def load_state_bytes(self, blob: bytes) -> None:
        source = f"the state of peer '{self.peer.name}'"
        self.load_state_dict(safe_io.loads(blob, map_location=self.device, source=source))

    def model_bytes(self) -> bytes:
        """The trained network alone (with its adapters), for use as an offline teacher."""
        info = self.dataset.info
        return safe_io.dumps({"model": self.peer.model, "state": effective_state_dict(self.model),
                              "methods": self.objective.methods.state_dict(), "num_classes": info.num_classes,
                              "in_channels": info.in_channels, "image_size": info.image_size})


def _to_device(view: TeacherView, device: torch.device, index: int | None = None) -> TeacherView:
    return TeacherView(logits=view.logits.to(device), features=[f.to(device) for f in view.features],
                       index=view.index if index is None else index,
                       extras={k: _value_to_device(v, device) for k, v in view.extras.items()})


def _value_to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, Tensor):
        return value.detach().to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_value_to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _value_to_device(v, device) for k, v in value.items()}
    return value
