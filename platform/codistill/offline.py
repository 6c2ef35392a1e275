"""Offline distillation: one student learns from trained, frozen teachers (plain PyTorch).

Teachers are networks saved by any codistill run (``RUN_DIR/models/<peer>.pt``, e.g. the peers
of an online cohort). Each step the teachers run in eval mode on exactly the student's batch,
and their detached outputs — logits, stage features, and the teacher-side extras the configured
methods ask for — reach :meth:`PeerTrainer.update` in the same form online peers exchange, so
every method works unchanged in both places. With ``independent`` the student trains alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from codistill import safe_io
from codistill.config import RunConfig, TeacherConfig
from codistill.data.base import DataShape
from codistill.errors import ConfigError
from codistill.methods.base import TeacherView
from codistill.models import PeerNetwork, build_model
from codistill.peer import PeerTrainer
from codistill.cohort_base import Cohort, StepCallback
from codistill.teachers import learn_in_process, learner_state_bytes, load_learner_state_bytes, sync_due


#: What :meth:`PeerTrainer.model_bytes` saves besides the weights: the model's name and input shape.
NETWORK_FIELDS = {"model": str, "state": dict, "num_classes": int, "in_channels": int, "image_size": int}


def read_saved_network(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The contents of a saved network, loaded with ``weights_only=True``.

    Raises :class:`~codistill.safe_io.UnsafeFileError` for a file that needs arbitrary unpickling
    and :class:`~codistill.safe_io.UnreadableFileError` for anything else that is not a saved network.
    """
    saved = safe_io.load(path, map_location=device)
    if not isinstance(saved, dict):
        raise safe_io.UnreadableFileError(f"{path} holds a {type(saved).__name__}, not a network saved by codistill")
    for key, kind in NETWORK_FIELDS.items():
        if not isinstance(saved.get(key), kind):
            raise safe_io.UnreadableFileError(f"{path} is not a network saved by codistill (no '{key}' of type "
                                              f"{kind.__name__}; expected RUN_DIR/models/<peer>.pt)")
    return saved


def check_teacher_file(teacher: TeacherConfig, field: str, shape: DataShape | None = None) -> None:
    """Raise :class:`ConfigError` naming ``field`` unless the teacher's file is a safe saved network
    of the configured model, for the data's classes and channels (checked before anything is written)."""
    try:
        saved = read_saved_network(teacher.checkpoint)
    except safe_io.UnreadableFileError as error:
        raise ConfigError(field, str(error)) from None
    if saved["model"] != teacher.model:
        raise ConfigError(field, f"{teacher.checkpoint} holds a '{saved['model']}' network, the config says "
                                 f"'{teacher.model}'")
    if shape is not None and (saved["num_classes"], saved["in_channels"]) != (shape.num_classes, shape.in_channels):
        raise ConfigError(field, f"{teacher.checkpoint} holds a network for {saved['num_classes']} classes of "
                                 f"{saved['in_channels']}-channel images; the data have {shape.num_classes} classes of "
                                 f"{shape.in_channels}-channel images")


def load_network(path: str | Path, device: torch.device | str = "cpu") -> PeerNetwork:
    """A network saved by :meth:`PeerTrainer.model_bytes`, in eval mode with frozen weights."""
    saved = read_saved_network(path, device)
    network = build_model(saved["model"], saved["num_classes"], saved["in_channels"], saved["image_size"])
    network.load_state_dict(saved["state"])
    network.to(device).eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return network


class OfflineCohort(Cohort):
    """A one-student "cohort" whose teachers are frozen networks."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.student = PeerTrainer(config, 0)
        self.teachers = [load_network(t.checkpoint, self.student.device) for t in config.teachers]
        classes = self.student.dataset.info.num_classes
        for teacher, spec in zip(self.teachers, config.teachers):
            if teacher.classifier.out_features != classes:
                raise ValueError(f"teacher '{spec.name}' predicts {teacher.classifier.out_features} classes, "
                                 f"the dataset has {classes}")
        self.learner = self.student.policy.make_learner()

    def steps_per_epoch(self) -> int:
        return self.student.dataset.steps_per_epoch(self.config.data.batch_size)

    @torch.no_grad()
    def teacher_views(self, images: Tensor) -> list[TeacherView]:
        views = []
        for teacher in self.teachers:
            with self.student._autocast():
                output = teacher(images)
            view = TeacherView(logits=output.logits.float())
            if self.student.needs_teacher_features:
                view.features = [f.float() for f in output.features]
            for method in self.student.methods:
                view.extras.update(type(method).teacher_extras(teacher, output))
            views.append(view)
        return views

    def train_epoch(self, epoch: int, on_step: StepCallback | None = None) -> list[list[dict[str, float]]]:
        total = self.steps_per_epoch()
        metrics = []
        for step in range(total):
            self.student.forward(epoch, step)
            metrics.append([self.student.update(self.teacher_views(self.student.current_images))])
            if self.learner is not None and sync_due(self.student.policy, self.student.last_progress):
                learn_in_process(self.learner, [self.student.policy], metrics[-1])
            if on_step is not None:
                on_step(step + 1, total)
        return metrics

    def evaluate(self, split: str = "val") -> tuple[list[Tensor], Tensor]:
        logits, labels = self.student.evaluate(split)
        return [logits], labels

    def sparsity(self) -> list[float | None]:
        return [self.student.sparsity()]

    def state_bytes(self) -> list[bytes]:
        return [self.student.state_bytes()]

    def load_state_bytes(self, blobs: list[bytes]) -> None:
        self.student.load_state_bytes(blobs[0])

    def learner_state_bytes(self) -> bytes | None:
        return learner_state_bytes(self.learner)

    def load_learner_state_bytes(self, blob: bytes) -> None:
        load_learner_state_bytes(self.learner, blob)

    def model_bytes(self) -> list[bytes]:
        return [self.student.model_bytes()]
