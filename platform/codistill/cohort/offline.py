"""``local``: offline distillation, one student taught by trained, frozen networks (plain PyTorch).

Teachers are networks saved by any codistill run (``RUN_DIR/models/<peer>.pt``, e.g. the peers
of an online cohort; format in :mod:`codistill.saved_network`). Each step they run in eval mode on
exactly the student's batch, and their detached outputs — logits, stage features, and the
teacher-side extras the configured methods ask for — reach the student in the same form online
peers exchange, so every method works unchanged in both places. :class:`OfflineCohort` trains the
student with the in-process step driver, its teachers being :class:`FrozenTeachers`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from codistill.cohort.backends import BACKENDS
from codistill.cohort.handles import HeldPeer, torch_threads
from codistill.cohort.in_process import InProcessCohort
from codistill.config import RunConfig, TeacherConfig
from codistill.methods.base import TeacherView
from codistill.models import PeerNetwork, build_model
from codistill.peer import PeerTrainer
from codistill.saved_network import read_saved_network


def load_network(path: str | Path, device: torch.device | str = "cpu") -> PeerNetwork:
    """A network saved by :meth:`PeerTrainer.model_bytes`, in eval mode with frozen weights."""
    saved = read_saved_network(path, device)
    network = build_model(saved["model"], saved["num_classes"], saved["in_channels"], saved["image_size"])
    network.load_state_dict(saved["state"])
    network.to(device).eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return network


class FrozenTeachers:
    """``teachers`` loaded onto ``student``'s device, producing the payloads its methods need."""

    def __init__(self, teachers: tuple[TeacherConfig, ...], student: PeerTrainer) -> None:
        self.student = student
        self.networks = [load_network(t.checkpoint, student.device) for t in teachers]
        classes = student.dataset.info.num_classes
        for network, spec in zip(self.networks, teachers):
            if network.classifier.out_features != classes:
                raise ValueError(f"teacher '{spec.name}' predicts {network.classifier.out_features} classes, "
                                 f"the dataset has {classes}")

    @torch.no_grad()
    def views(self, images: Tensor) -> list[TeacherView]:
        """Every teacher's payload on ``images`` (the student's batch)."""
        views = []
        for network in self.networks:
            with self.student.optimization.autocast():
                output = network(images)
            views.append(self.student.objective.teacher_payload(network, output))
        return views


@BACKENDS.register("local")
class OfflineCohort(InProcessCohort):
    """A one-student "cohort" whose teachers are frozen networks (``config.teachers``)."""

    def __init__(self, config: RunConfig) -> None:
        handle = HeldPeer.build(config, 0)
        self.frozen = FrozenTeachers(config.teachers, handle.trainer)
        super().__init__(config, [handle], self._frozen_views)

    def _frozen_views(self, index: int, payloads: list) -> list[TeacherView]:
        """The frozen teachers on the student's batch in progress (with the student's threads)."""
        with torch_threads(self.handles[0].threads):
            return self.frozen.views(self.student.batch_in_progress.images)

    @property
    def student(self) -> PeerTrainer:
        return self.peers[0]
