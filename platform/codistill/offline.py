"""The teachers of offline distillation: trained, frozen networks (plain PyTorch).

Teachers are networks saved by any codistill run (``RUN_DIR/models/<peer>.pt``, e.g. the peers
of an online cohort; format in :mod:`codistill.saved_network`). Each step they run in eval mode on
exactly the student's batch, and their detached outputs — logits, stage features, and the
teacher-side extras the configured methods ask for — reach the student in the same form online
peers exchange, so every method works unchanged in both places. The loop that trains the student
is :class:`codistill.local.OfflineCohort`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from codistill.config import TeacherConfig
from codistill.methods.base import TeacherView
from codistill.models import PeerNetwork, build_model
from codistill.saved_network import read_saved_network

if TYPE_CHECKING:
    from codistill.peer import PeerTrainer


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

    def __init__(self, teachers: tuple[TeacherConfig, ...], student: "PeerTrainer") -> None:
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
