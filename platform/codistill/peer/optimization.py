"""A peer's device, mixed precision, optimizer and learning rate, and the guarded update.

``runtime.amp`` (bf16 | fp16) applies on CUDA only (autocast; fp16 with a dynamic loss scale,
whose overflowing steps the scaler skips itself). The learning rate follows
:func:`codistill.schedules.learning_rate_factor`. Non-finite values never reach the weights
(``runtime.on_nonfinite``): with ``stop`` a NaN/inf loss or gradient raises
:class:`~codistill.errors.NonFiniteLoss` naming the peer, with ``skip`` the update is skipped.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from codistill.config import PeerConfig, RunConfig, check_devices
from codistill.errors import NonFiniteLoss
from codistill.peer.data_parallel import WorkerSlot
from codistill.progress import Progress
from codistill.registry import OPTIMIZERS
from codistill.schedules import learning_rate_factor


def select_device(config: RunConfig, peer: PeerConfig) -> torch.device:
    """CUDA when ``runtime.device`` is cuda, or auto with GPUs given to the peer (refused without CUDA)."""
    check_devices(config, torch.cuda.is_available())
    wants_cuda = config.runtime.device == "cuda" or (config.runtime.device == "auto" and peer.resources.gpus > 0)
    return torch.device("cuda" if wants_cuda else "cpu")


class Optimization:
    """Optimizer, LR schedule, autocast and loss scaling of one peer."""

    def __init__(self, config: RunConfig, peer: PeerConfig, parameters: list[nn.Parameter],
                 device: torch.device) -> None:
        self.peer, self.stop_on_nonfinite = peer, config.runtime.on_nonfinite == "stop"
        self.optimizer = OPTIMIZERS.get(peer.optimizer.name)(parameters, peer.optimizer)
        amp = config.runtime.amp if device.type == "cuda" else "off"
        self.device_type = device.type
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
        #: A data-parallel worker's place in its peer's group: gradients are summed over it.
        self.worker: WorkerSlot | None = None

    def autocast(self) -> AbstractContextManager:
        """The mixed-precision context of this peer's forward passes (a no-op without AMP)."""
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.autocast_dtype)

    def set_learning_rate(self, progress: Progress) -> float:
        lr = self.peer.optimizer.lr * learning_rate_factor(self.peer.lr_schedule, progress)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def backward(self, loss: Tensor, progress: Progress, share: float = 1.0) -> bool:
        """Gradients of ``loss`` (× ``share``, a worker's share of the global batch, the gradients
        then summed over the peer's workers); whether they may be applied (finite loss and gradients)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss if share == 1.0 else loss * share).backward()
        if self.worker is not None:
            self.worker.reduce_gradients([p for group in self.optimizer.param_groups for p in group["params"]])
        finite = bool(torch.isfinite(loss.detach()))
        if finite and not self.scaler.is_enabled():
            gradients = [p.grad for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
            finite = bool(torch.isfinite(torch.nn.utils.get_total_norm(gradients)))
        if not finite and self.stop_on_nonfinite:
            raise NonFiniteLoss(self.peer.name, progress.epoch + 1, progress.step + 1,
                                "its loss or gradient is NaN or infinite")
        return finite

    def step(self) -> None:
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
