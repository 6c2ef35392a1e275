"""Codistillation's teachers: frozen local replicas of the other peers (Anil et al., ICLR 2018,
"Large scale distributed neural network training through online distillation", Algorithm 1).

With ``distillation.teacher_source: replicas`` peer k keeps a copy θ̃_j of every other peer j's
network and distils, on its own batch x, from the replicas' predictions instead of j's live ones::

    L_k = CE(z_k, y) + λ(t)·m(t) · Σ_methods w_method · D_method(student_k, {f_j(x; θ̃_j)}_{j≠k})

θ̃_j ← θ_j at the steps :class:`RefreshSchedule` names: the only time peers exchange anything
(parameters, not predictions), a barrier; between refreshes no peer waits for another.

**Forward mode.** A replica runs in eval mode (BatchNorm with its running statistics, no dropout)
under ``torch.no_grad``. With ``refresh_every_steps: 1`` the replica of peer j at step s holds
exactly the weights (and BatchNorm statistics) j starts step s with, so its prediction is j's
*eval-mode* prediction on x with those weights; j's live payload is its *train-mode* one (batch
statistics), so the two differ by BatchNorm's mode alone. Stage features and method extras
(e.g. InDistill's filter norms) are computed from the replica exactly as j's own payload would be.
On a GPU with ``runtime.amp`` bf16/fp16 the replicas are kept in that dtype (half the memory).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain

import torch
from torch import Tensor

from codistill import metrics as m
from codistill import safe_io
from codistill.config import RunConfig
from codistill.data.base import DatasetInfo
from codistill.methods.base import TeacherView
from codistill.models import ModelOutput, PeerNetwork, build_model

PayloadOf = Callable[[PeerNetwork, ModelOutput], TeacherView]


def uses_replicas(config: RunConfig) -> bool:
    """Whether the peers of ``config`` learn from replicas (codistillation) rather than live payloads."""
    return config.distillation.teacher_source == "replicas" and not config.independent


@dataclass(frozen=True)
class RefreshSchedule:
    """Before which steps the replicas are refreshed: none during the ``burn_in_epochs``, then every
    ``every`` steps counted from burn-in's end (its first step included) and, with
    ``at_epoch_start``, at every epoch's first step. A pure function of the position, so every
    backend refreshes at the same steps."""

    every: int
    at_epoch_start: bool
    burn_in_epochs: int
    steps_per_epoch: int

    @classmethod
    def of(cls, config: RunConfig, steps_per_epoch: int) -> "RefreshSchedule":
        dist = config.distillation
        return cls(dist.refresh_every_steps, dist.refresh_at_epoch_start, dist.burn_in_epochs, steps_per_epoch)

    def due(self, epoch: int, step: int) -> bool:
        if epoch < self.burn_in_epochs:
            return False
        since_burn_in = (epoch - self.burn_in_epochs) * self.steps_per_epoch + step
        return since_burn_in % self.every == 0 or (self.at_epoch_start and step == 0)

    def steps(self, epoch: int) -> list[int]:
        """The refresh steps of ``epoch``."""
        return [step for step in range(self.steps_per_epoch) if self.due(epoch, step)]


class ReplicaTeachers:
    """Peer-local frozen copies of the networks ``models`` (the other peers', in index order).

    Built aside from the peer's random stream; their weights are undefined until the first
    :meth:`load` (a refresh), which comes before the first step that distils.
    """

    def __init__(self, models: Sequence[str], info: DatasetInfo, payload: PayloadOf, device: torch.device,
                 dtype: torch.dtype | None = None) -> None:
        with torch.random.fork_rng(devices=[]):
            self.networks = [build_model(name, info.num_classes, info.in_channels, info.image_size) for name in models]
        for network in self.networks:
            network.to(device) if dtype is None else network.to(device=device, dtype=dtype)
            network.eval().requires_grad_(False)
        self.payload, self.device, self.dtype = payload, device, dtype
        self.refreshed_at: int | None = None  # global step before which the replicas were last refreshed
        self._received = 0  # bytes loaded since the last step reported them

    def load(self, blobs: Sequence[bytes], global_step: int, names: Sequence[str]) -> None:
        """Refresh before ``global_step``: each teacher's weights, as ``PeerTrainer.replica_weights`` sent them."""
        for network, blob, name in zip(self.networks, blobs, names, strict=True):
            state = safe_io.loads(blob, map_location=self.device, source=f"the weights of peer '{name}'")
            network.load_state_dict(state)
        self.refreshed_at = global_step
        self._received += sum(len(blob) for blob in blobs)

    @torch.no_grad()
    def views(self, images: Tensor) -> list[TeacherView]:
        """Every replica's payload on ``images`` (the student's own batch), on the student's device."""
        inputs = images if self.dtype is None else images.to(self.dtype)
        return [self.payload(network, network(inputs)) for network in self.networks]

    def memory_bytes(self) -> int:
        """Parameters and buffers of all replicas."""
        return sum(t.numel() * t.element_size() for network in self.networks
                   for t in chain(network.parameters(), network.buffers()))

    def step_metrics(self, global_step: int) -> dict[str, float]:
        """Staleness (steps since the refresh; once refreshed), bytes received by a refresh just
        before this step, and the replicas' memory."""
        metrics = {m.BYTES_RECEIVED: float(self._received), m.REPLICA_MEMORY_BYTES: float(self.memory_bytes())}
        if self.refreshed_at is not None:
            metrics[m.REPLICA_STALENESS] = float(global_step - self.refreshed_at)
        self._received = 0
        return metrics

    def state_dict(self) -> dict:
        return {"networks": [network.state_dict() for network in self.networks], "refreshed_at": self.refreshed_at}

    def load_state_dict(self, state: dict) -> None:
        for network, weights in zip(self.networks, state["networks"], strict=True):
            network.load_state_dict(weights)
        self.refreshed_at = state["refreshed_at"]

