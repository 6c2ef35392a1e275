"""One peer of a cohort: model, optimizer, distillation objective and state — plain PyTorch.

A training step is split in two so peers can exchange predictions between the halves:

1. :meth:`PeerTrainer.forward` runs the peer on the step's batch, keeps the autograd graph, and
   returns a detached :class:`~codistill.methods.base.TeacherView` (the payload other peers
   receive: logits, plus stage features and teacher-side extras only when a configured method
   needs them).
2. :meth:`PeerTrainer.update` receives its teachers' payloads (the other peers in index order
   online; the frozen teachers offline, see ``jobs/offline.py``), forms its teacher, asks the teacher-weighting policy for weights and takes one
   optimizer step on::

       L_k = CE(z_k, y) + λ(t)·m(t) · Σ_methods w_method · D_method(student_k, teacher)

No gradient crosses peers: payloads are detached before they leave a peer. The same class runs
inside a Ray actor (:mod:`codistill.cohort`) and in a single process (:class:`LocalCohort`).
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codistill import metrics as m
from codistill import safe_io
from codistill.config import PeerConfig, RunConfig
from codistill.data import build_dataset
from codistill.data.base import DataShape, DatasetInfo, PeerDataset, mix_seed
from codistill.errors import NonFiniteLoss
from codistill.methods import DistillationMethod, MethodContext, build_method
from codistill.methods.base import TeacherView, weighted_term
from codistill.models import ModelOutput, PeerNetwork, build_model
from codistill.progress import Progress
from codistill.pruning import GradualPruner, effective_state_dict
from codistill.schedules import as_schedule
from codistill.teachers import (PolicyContext, TeacherBatch, TeacherWeightingPolicy, ensemble_view,
                                normalized_weights, resolve_policy, teacher_weights)


def load_dataset(config: RunConfig) -> PeerDataset:
    data = config.data
    dataset = build_dataset(data.dataset, root=data.root, train_fraction=data.train_fraction,
                            label_noise=data.label_noise, seed=config.seed, image_size=data.image_size,
                            test_fraction=data.test_fraction, val_fraction=data.val_fraction)
    if data.probe_fraction > 0:
        dataset.hold_out_probe(data.probe_fraction, config.seed)
    return dataset


def teacher_models(config: RunConfig, index: int) -> list[str]:
    """The models peer ``index`` learns from: the other peers online, the frozen ``config.teachers`` offline."""
    if config.teachers:
        return [teacher.model for teacher in config.teachers]
    return [peer.model for k, peer in enumerate(config.peers) if k != index]


def feature_shapes(model_name: str, shape: DataShape | DatasetInfo) -> list[torch.Size]:
    """Stage feature shapes of ``model_name`` on the data's images (built aside: the random stream is untouched)."""
    with torch.random.fork_rng():
        network = build_model(model_name, shape.num_classes, shape.in_channels, shape.image_size)
    return network.feature_shapes(shape.in_channels, shape.image_size)


def method_context(config: RunConfig, num_classes: int, student_shapes: list[torch.Size],
                   teacher_shapes: list[list[torch.Size]]) -> MethodContext:
    """What a peer's methods are built from: its stage shapes and its teachers' (see :func:`teacher_models`)."""
    return MethodContext(num_classes=num_classes, student_feature_shapes=student_shapes,
                         teacher_feature_shapes=teacher_shapes, total_epochs=config.epochs, online=not config.teachers)


def learning_rate_factor(peer: PeerConfig, progress: Progress) -> float:
    """LR multiplier as a pure function of progress: linear warm-up × cosine / multistep / constant."""
    schedule, epoch = peer.lr_schedule, progress.epoch_float
    warmup = min(1.0, (epoch + 1.0 / max(progress.steps_per_epoch, 1)) / schedule.warmup_epochs) \
        if schedule.warmup_epochs > 0 else 1.0
    if schedule.name == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress.fraction))
    elif schedule.name == "multistep":
        decay = schedule.gamma ** sum(1 for m in schedule.milestones if progress.epoch >= m)
    else:
        decay = 1.0
    return warmup * decay


def build_optimizer(peer: PeerConfig, parameters: list[nn.Parameter]) -> torch.optim.Optimizer:
    o = peer.optimizer
    if o.name == "sgd":
        return torch.optim.SGD(parameters, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                               nesterov=o.nesterov and o.momentum > 0)
    optimizer = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return optimizer(parameters, lr=o.lr, weight_decay=o.weight_decay)


def select_device(config: RunConfig, peer: PeerConfig) -> torch.device:
    wants_cuda = config.runtime.device == "cuda" or (config.runtime.device == "auto" and peer.resources.gpus > 0)
    if wants_cuda and not torch.cuda.is_available():
        if config.runtime.device == "cuda":
            raise RuntimeError(f"peer '{peer.name}': runtime.device is cuda but no GPU is visible")
        return torch.device("cpu")
    return torch.device("cuda" if wants_cuda else "cpu")


@dataclass
class _Pending:
    """What ``forward`` leaves for ``update``: the live output and the batch it came from."""

    output: ModelOutput
    images: Tensor
    targets: Tensor
    progress: Progress
    forward_seconds: float
    finished_at: float


class PeerTrainer:
    """Trains peer ``index`` of ``config.peers``; see the module docstring for the step protocol."""

    def __init__(self, config: RunConfig, index: int, dataset: PeerDataset | None = None,
                 device: torch.device | None = None) -> None:
        self.config, self.index = config, index
        self.peer = config.peers[index]
        self.device = device or select_device(config, self.peer)
        if config.runtime.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.manual_seed(mix_seed(config.seed, index, 0x5EED))
        self.dataset = dataset or load_dataset(config)
        info = self.dataset.info
        self.model: PeerNetwork = build_model(self.peer.model, info.num_classes, info.in_channels,
                                              info.image_size).to(self.device)
        #: Online, the teachers are the other peers; offline, the frozen ``config.teachers``.
        self.online = not config.teachers
        self.teacher_models = teacher_models(config, index)
        self.methods = nn.ModuleList(self._build_methods()).to(self.device)
        self.optimizer = build_optimizer(self.peer, list(self.model.parameters()) + list(self.methods.parameters()))
        self.weight_schedule = as_schedule(config.distillation.weight, "distillation.weight")
        self.gate_schedule = as_schedule(config.distillation.gate, "distillation.gate")
        #: Names of the candidate teachers the policy weights, in its order.
        self.teacher_names = self._candidate_names()
        self.policy = self._build_policy()
        #: Progress of the last update (the cohort's policy synchronization looks at it).
        self.last_progress: Progress | None = None
        self.pruner = self._build_pruner()
        amp = config.runtime.amp if self.device.type == "cuda" else "off"
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
        self._pending: _Pending | None = None
        # Each peer owns its random stream (dropout etc.), so peers sharing one process
        # (SequentialCohort) draw exactly what they would draw alone in their own actor.
        self._rng = torch.get_rng_state()

    # -- construction ------------------------------------------------------------------------

    def _build_methods(self) -> list[DistillationMethod]:
        if self.config.independent:
            return []
        info = self.dataset.info
        context = method_context(self.config, info.num_classes,
                                 self.model.feature_shapes(info.in_channels, info.image_size),
                                 [feature_shapes(name, info) for name in self.teacher_models])
        return [build_method(m.name, context, m.params) for m in self.config.distillation.methods]

    def _candidate_names(self) -> list[str]:
        """Online: the other peers (and the student itself last, in ensemble mode); offline: the teachers."""
        include_self = self.online and self.config.distillation.teacher == "ensemble"
        return self.payload_names + ([self.peer.name] if include_self else [])

    def _build_policy(self) -> TeacherWeightingPolicy:
        config, info = self.config, self.dataset.info
        context = PolicyContext(teacher_names=tuple(self.teacher_names), num_classes=info.num_classes, device=self.device,
                                online=self.online, student_index=self.index, student_name=self.peer.name,
                                total_epochs=config.epochs,
                                steps_per_epoch=self.dataset.steps_per_epoch(config.data.batch_size),
                                seed=config.seed, probe_available=config.data.probe_fraction > 0)
        spec = config.distillation.policy
        with torch.random.fork_rng(devices=[]):  # a policy's initialization leaves the peer's stream alone
            return resolve_policy(spec.name)(context, **spec.params)

    def _build_pruner(self) -> GradualPruner | None:
        sparsity = self.peer.sparsity
        if sparsity is None:
            return None
        return GradualPruner(self.model, target_sparsity=sparsity.target, start_epoch=sparsity.start_epoch,
                             end_epoch=sparsity.end_epoch if sparsity.end_epoch is not None else self.config.epochs,
                             every_steps=sparsity.every_steps, initial_sparsity=sparsity.initial)

    @property
    def needs_teacher_features(self) -> bool:
        return any(m.uses_teacher_features for m in self.methods)

    # -- the step ----------------------------------------------------------------------------

    def progress(self, epoch: int, step: int) -> Progress:
        return Progress(epoch=epoch, step=step, steps_per_epoch=self.dataset.steps_per_epoch(self.config.data.batch_size),
                        total_epochs=self.config.epochs)

    def batch(self, epoch: int, step: int) -> tuple[Tensor, Tensor]:
        data = self.config.data
        indices = self.dataset.batch_indices(self.config.seed, epoch, data.batch_size)[step]
        stream = self.index + 1 if data.per_peer_augmentation else 0
        generator = self.dataset.augmentation_generator(self.config.seed, epoch, step, stream)
        images, labels = self.dataset.train_batch(indices, generator, augment=data.augment)
        return images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)

    def forward(self, epoch: int, step: int) -> TeacherView:
        """First half of a step: run the batch, keep the graph, return the detached payload."""
        started = time.perf_counter()
        self.model.train()
        images, targets = self.batch(epoch, step)
        with self._own_rng(), self._autocast():
            output = self.model(images)
        payload = TeacherView(logits=output.logits.detach().float().cpu())
        if self.needs_teacher_features:
            payload.features = [f.detach().float().cpu() for f in output.features]
        for method in self.methods:
            for key, value in type(method).teacher_extras(self.model, output).items():
                payload.extras[key] = _to_cpu(value)
        finished = time.perf_counter()
        self._pending = _Pending(output, images, targets, self.progress(epoch, step), finished - started, finished)
        return payload

    @property
    def current_images(self) -> Tensor:
        """The batch of the step in progress (between ``forward`` and ``update``)."""
        if self._pending is None:
            raise RuntimeError("no step in progress")
        return self._pending.images

    @property
    def current_targets(self) -> Tensor:
        """The labels of the step in progress (between ``forward`` and ``update``)."""
        if self._pending is None:
            raise RuntimeError("no step in progress")
        return self._pending.targets

    def update(self, payloads: list[TeacherView]) -> dict[str, float]:
        """Second half: distil from the other peers' payloads and take one optimizer step.

        Non-finite values never reach the weights (``runtime.on_nonfinite``): with ``stop`` a
        NaN/inf loss or gradient, or a teacher's NaN/inf predictions, raise
        :class:`~codistill.errors.NonFiniteLoss` naming the peer that diverged; with ``skip`` this
        peer's update is skipped, and a teacher with NaN/inf predictions is left out of the step.
        """
        if self._pending is None:
            raise RuntimeError("update() called without a preceding forward()")
        pending, self._pending = self._pending, None
        started = time.perf_counter()
        exchange_wait = started - pending.finished_at
        progress, targets, student = pending.progress, pending.targets, pending.output
        lr = self.peer.optimizer.lr * learning_rate_factor(self.peer, progress)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        kept = self._finite_teachers(payloads, progress)

        with self._autocast():
            ce = F.cross_entropy(student.logits.float(), targets)
            strength = self.weight_schedule(progress) * self.gate_schedule(progress)
            terms, batch, weights = self._distillation_terms(student, payloads, kept, targets, progress, strength)
            distill = sum(terms.values()) if terms else torch.zeros((), device=self.device)
            loss = ce + strength * distill

        probe = self._probe_batch(progress) if batch is not None and self.policy.probe_batch_size > 0 else None
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        skipped = not self._finite_step(loss, progress)
        probe_before = self._probe_loss(*probe) if probe is not None and not skipped else None
        if not skipped:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        if self.pruner is not None:
            self.pruner.step(progress)
        self.last_progress = progress

        metrics = {m.LOSS_TOTAL: float(loss.detach()), m.LOSS_CE: float(ce.detach()),
                   m.DISTILL_STRENGTH: strength, m.LEARNING_RATE: lr,
                   m.TRAIN_CORRECT: float((student.logits.detach().argmax(1) == targets).sum()),
                   m.TRAIN_EXAMPLES: float(targets.numel()),
                   m.STEP_SECONDS: pending.forward_seconds + time.perf_counter() - started,
                   m.EXCHANGE_WAIT_SECONDS: exchange_wait,
                   m.SKIPPED_STEP: float(skipped), m.TEACHERS_LEFT_OUT: float(len(payloads) - len(kept))}
        metrics.update({m.loss_term(name): float(value.detach()) for name, value in terms.items()})
        if batch is not None and not skipped:
            names = [self._candidate_name(index) for index in batch.teacher_indices]
            metrics.update({m.teacher_weight(name): float(weight) for name, weight in zip(names, weights.mean(0))})
            if probe is not None:
                metrics[m.PROBE_LOSS_BEFORE], metrics[m.PROBE_LOSS_AFTER] = probe_before, self._probe_loss(*probe)
            metrics.update(self.policy.feedback(batch, weights, metrics) or {})
        return metrics

    def _candidate_name(self, index: int) -> str:
        """The name of candidate teacher ``index`` of a :class:`TeacherBatch` (a peer online, a teacher offline)."""
        return self.config.peers[index].name if self.online else self.config.teachers[index].name

    @property
    def payload_names(self) -> list[str]:
        """Names of the teachers whose payloads :meth:`update` receives, in order."""
        if self.online:
            return [p.name for i, p in enumerate(self.config.peers) if i != self.index]
        return [t.name for t in self.config.teachers]

    def _finite_teachers(self, payloads: list[TeacherView], progress: Progress) -> list[int]:
        """Positions of the payloads whose predictions are finite (``stop``: raise on the first other)."""
        kept = []
        for position, view in enumerate(payloads):
            if all(bool(torch.isfinite(t).all()) for t in [view.logits, *view.features]):
                kept.append(position)
            elif self.config.runtime.on_nonfinite == "stop":
                raise NonFiniteLoss(self.payload_names[position], progress.epoch + 1, progress.step + 1,
                                    f"its predictions sent to peer '{self.peer.name}' are NaN or infinite")
        return kept

    def _finite_step(self, loss: Tensor, progress: Progress) -> bool:
        """Whether the loss and (without fp16 loss scaling, which skips those steps itself) the
        gradient norm are finite; under ``stop`` a non-finite one raises instead."""
        finite = bool(torch.isfinite(loss.detach()))
        if finite and not self.scaler.is_enabled():
            gradients = [p.grad for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
            finite = bool(torch.isfinite(torch.nn.utils.get_total_norm(gradients)))
        if not finite and self.config.runtime.on_nonfinite == "stop":
            raise NonFiniteLoss(self.peer.name, progress.epoch + 1, progress.step + 1,
                                "its loss or gradient is NaN or infinite")
        return finite

    def _probe_batch(self, progress: Progress) -> tuple[Tensor, Tensor]:
        images, labels = self.dataset.probe_batch(self.config.seed, progress.epoch, progress.step,
                                                  self.policy.probe_batch_size)
        return images.to(self.device), labels.to(self.device)

    @torch.no_grad()
    def _probe_loss(self, images: Tensor, labels: Tensor) -> float:
        """The student's cross-entropy on probe examples, in eval mode (no RNG, no BN statistics touched)."""
        was_training = self.model.training
        self.model.eval()
        with self._autocast():
            logits = self.model(images).logits.float()
        self.model.train(was_training)
        return float(F.cross_entropy(logits, labels))

    def _distillation_terms(self, student: ModelOutput, payloads: list[TeacherView], kept: list[int],
                            targets: Tensor, progress: Progress, strength: float):
        """Named, weighted method terms from the teachers at positions ``kept`` (empty when
        independent, switched off by λ·m = 0, or when no teacher is left)."""
        if not self.methods or strength == 0.0 or not kept:
            return {}, None, None
        if len(payloads) != len(self.teacher_models):
            raise ValueError(f"expected {len(self.teacher_models)} teacher payloads, got {len(payloads)}")
        teachers = [_to_device(payloads[position], self.device, position) for position in kept]
        ensemble = self.config.distillation.teacher == "ensemble"
        # The online ensemble includes the student's own (detached) prediction, as in ONE / Gao et al.
        include_self = ensemble and self.online
        other_peers = [i for i in range(len(self.config.peers)) if i != self.index]
        candidates = ([other_peers[position] for position in kept] if self.online else list(kept)) \
            + ([self.index] if include_self else [])
        candidate_logits = [view.logits for view in teachers]
        if include_self:
            candidate_logits.append(student.logits.detach().float())
        batch = TeacherBatch(student_index=self.index, student_logits=student.logits.detach().float(),
                             teacher_logits=torch.stack(candidate_logits), teacher_indices=candidates,
                             targets=targets, progress=progress)
        weights = normalized_weights(self.policy.weights(batch), len(candidates), targets.numel())
        # Methods applied teacher by teacher take each teacher's per-example weight, renormalized
        # over the teachers (the student's own ensemble slot, if any, left out).
        per_teacher = teacher_weights(weights, len(teachers))

        terms: dict[str, Tensor] = {}
        for position, (method, spec) in enumerate(zip(self.methods, self.config.distillation.methods)):
            prefix = spec.name if [m.name for m in self.config.distillation.methods].count(spec.name) == 1 \
                else f"{spec.name}{position}"
            if not method.uses_teacher:
                parts = [(None, method(student, None, targets, progress))]
            elif ensemble and not method.uses_teacher_features:
                views = teachers + ([TeacherView(logits=student.logits.detach().float())] if include_self else [])
                parts = [(None, method(student, ensemble_view(views, weights), targets, progress))]
            else:
                parts = [(per_teacher[:, k], method(student, view, targets, progress)) for k, view in enumerate(teachers)]
            method.end_step()
            for weight, result in parts:
                for name, value in result.items():
                    key = f"{prefix}/{name}"
                    terms[key] = terms.get(key, 0.0) + spec.weight * weighted_term(value, weight, targets.numel(), key)
        return terms, batch, weights

    @contextmanager
    def _own_rng(self) -> Iterator[None]:
        outer = torch.get_rng_state()
        torch.set_rng_state(self._rng)
        try:
            yield
        finally:
            self._rng = torch.get_rng_state()
            torch.set_rng_state(outer)

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    # -- evaluation and state ----------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, split: str = "val") -> tuple[Tensor, Tensor]:
        """Logits ``[N, C]`` (float32, CPU) and labels ``[N]`` of the ``val`` (or ``test``) split."""
        self.model.eval()
        logits, labels = [], []
        for images, batch_labels in self.dataset.eval_batches(self.config.data.eval_batch_size, split):
            with self._autocast():
                logits.append(self.model(images.to(self.device)).logits.float().cpu())
            labels.append(batch_labels)
        return torch.cat(logits), torch.cat(labels)

    def sparsity(self) -> float | None:
        return None if self.pruner is None else float(self.pruner.sparsity())

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "methods": self.methods.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                "pruner": None if self.pruner is None else self.pruner.state_dict(),
                "policy": self.policy.state_dict(), "rng_cpu": self._rng,
                "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.pruner is not None and state["pruner"] is not None:
            self.pruner.load_state_dict(state["pruner"])
        self.model.load_state_dict(state["model"])
        self.methods.load_state_dict(state["methods"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.policy.load_state_dict(state["policy"])
        self._rng = state["rng_cpu"]
        if state["rng_cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])

    def state_bytes(self) -> bytes:
        return safe_io.dumps(self.state_dict())

    def load_state_bytes(self, blob: bytes) -> None:
        self.load_state_dict(safe_io.loads(blob, map_location=self.device, source=f"the state of peer '{self.peer.name}'"))

    def model_bytes(self) -> bytes:
        """The trained network alone (with its adapters), for use as an offline teacher."""
        return safe_io.dumps({"model": self.peer.model, "state": effective_state_dict(self.model),
                              "methods": self.methods.state_dict(), "num_classes": self.dataset.info.num_classes,
                              "in_channels": self.dataset.info.in_channels, "image_size": self.dataset.info.image_size})


def _to_device(view: TeacherView, device: torch.device, index: int) -> TeacherView:
    return TeacherView(logits=view.logits.to(device), features=[f.to(device) for f in view.features], index=index,
                       extras={k: _to_device_value(v, device) for k, v in view.extras.items()})


def _to_cpu(value: Any) -> Any:
    return _to_device_value(value, torch.device("cpu"), detach=True)


def _to_device_value(value: Any, device: torch.device, detach: bool = False) -> Any:
    if isinstance(value, Tensor):
        return (value.detach() if detach else value).to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device_value(v, device, detach) for v in value)
    if isinstance(value, dict):
        return {k: _to_device_value(v, device, detach) for k, v in value.items()}
    return value
