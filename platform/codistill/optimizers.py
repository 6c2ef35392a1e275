"""Optimizers by name (``peers[*].optimizer.name``): SGD with (Nesterov) momentum, Adam, AdamW.

Each is built from a peer's :class:`~codistill.config.OptimizerConfig` and the parameters to train
(the network's and its methods' adapters'); user code may register its own as ``module:factory``
taking the same two arguments.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn

from codistill.registry import OPTIMIZERS

if TYPE_CHECKING:
    from codistill.config import OptimizerConfig


@OPTIMIZERS.register("sgd")
def sgd(parameters: Iterable[nn.Parameter], config: "OptimizerConfig") -> torch.optim.Optimizer:
    return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                           nesterov=config.nesterov and config.momentum > 0)


@OPTIMIZERS.register("adam")
def adam(parameters: Iterable[nn.Parameter], config: "OptimizerConfig") -> torch.optim.Optimizer:
    return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)


@OPTIMIZERS.register("adamw")
def adamw(parameters: Iterable[nn.Parameter], config: "OptimizerConfig") -> torch.optim.Optimizer:
    return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
