"""One worker of a data-parallel peer (``peers[k].data_parallel``: R workers) — plain PyTorch.

Every worker of a peer draws the same global batch of B examples (the same examples and the same
augmentation: the batch is a function of the seed, epoch and step, not of the worker) and trains
on its rows ``⌊rB/R⌋ … ⌊(r+1)B/R⌋ − 1`` (:func:`worker_rows`). Its loss, a mean over its rows, is
scaled by its share of the batch (rows / B) and the gradients are summed over the peer's group
(one ``all_reduce`` per step, :meth:`WorkerSlot.reduce_gradients`), so every worker applies the
gradient of the mean loss over the global batch: the one-device update. BatchNorm layers become
:class:`GroupBatchNorm` (``runtime.sync_batchnorm``): batch statistics over the whole global batch,
their gradient flowing through a differentiable ``all_reduce`` (torch's ``SyncBatchNorm`` runs on
GPUs only).

A teacher policy that learns (:func:`~codistill.policy.learns`) sees the global batch, exactly as
on one device: :meth:`WorkerSlot.kept_everywhere` keeps the teachers finite on every worker's rows,
:meth:`WorkerSlot.global_batch` gathers every worker's student and teacher logits, targets and
example indices, and :meth:`WorkerSlot.global_feedback` every worker's losses and credit rows,
so every worker's policy takes the same inputs and stays the same.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from codistill.methods.base import TeacherView
from codistill.policy import Feedback, TeacherBatch

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def worker_rows(batch_size: int, workers: int, rank: int) -> slice:
    """The rows ``⌊rB/R⌋ … ⌊(r+1)B/R⌋ − 1`` of worker ``rank`` among ``workers``."""
    return slice(rank * batch_size // workers, (rank + 1) * batch_size // workers)


@dataclass(frozen=True)
class WorkerSlot:
    """Worker ``rank`` of ``workers`` in the peer's own process ``group``."""

    rank: int
    workers: int
    group: Any

    def rows(self, batch_size: int) -> slice:
        return worker_rows(batch_size, self.workers, self.rank)

    def reduce_gradients(self, parameters: list[nn.Parameter]) -> None:
        """Sum the gradients over the group (flattened into one tensor: one collective per step)."""
        gradients = [p.grad for p in parameters if p.grad is not None]
        if not gradients:
            return
        flat = torch.cat([g.reshape(-1) for g in gradients])
        dist.all_reduce(flat, group=self.group)
        offset = 0
        for gradient in gradients:
            gradient.copy_(flat[offset:offset + gradient.numel()].view_as(gradient))
            offset += gradient.numel()

    def gather_rows(self, tensor: Tensor, batch_size: int) -> Tensor:
        """Every worker's rows of a per-row ``tensor`` (this worker's), joined in rank order into
        the global batch's: one all-gather, padded to the most rows a worker has."""
        counts = [rows.stop - rows.start for rows in (worker_rows(batch_size, self.workers, r)
                                                      for r in range(self.workers))]
        padded = tensor.new_zeros((max(counts), *tensor.shape[1:]))
        padded[:tensor.shape[0]] = tensor
        parts = [torch.empty_like(padded) for _ in counts]
        dist.all_gather(parts, padded, group=self.group)
        return torch.cat([part[:count] for part, count in zip(parts, counts)])

    def kept_everywhere(self, kept: list[int], count: int, device: torch.device) -> list[int]:
        """The positions among ``count`` payloads that every worker ``kept`` (finite on its rows),
        so finite on the global batch: one ``all_reduce`` (min) of ``count`` flags."""
        flags = torch.zeros(count, device=device)
        flags[kept] = 1.0
        dist.all_reduce(flags, op=dist.ReduceOp.MIN, group=self.group)
        return [position for position in range(count) if flags[position] > 0]

    def global_batch(self, batch: TeacherBatch, batch_size: int) -> TeacherBatch:
        """A policy's view of this worker's rows, ``batch``, as of the global batch of ``batch_size``:
        every worker's student and teacher logits (one all-gather of ``[rows, K + 1, C]``, in
        float32) and its rows' targets and example indices (one all-gather of ``[rows, 2]``)."""
        teachers = batch.teacher_logits
        rows = torch.cat([batch.student_logits.float().unsqueeze(1), teachers.float().transpose(0, 1)], 1)
        everyone = self.gather_rows(rows, batch_size)
        labels = [batch.targets] + ([] if batch.example_indices is None else [batch.example_indices])
        labelled = self.gather_rows(torch.stack([t.to(batch.targets.device) for t in labels], 1), batch_size)
        return replace(batch, student_logits=everyone[:, 0].contiguous().to(batch.student_logits.dtype),
                       teacher_logits=everyone[:, 1:].transpose(0, 1).contiguous().to(teachers.dtype),
                       targets=labelled[:, 0].contiguous(),
                       example_indices=None if batch.example_indices is None else labelled[:, 1].cpu())

    def global_feedback(self, feedback: Feedback, batch_size: int, count: int, device: torch.device) -> Feedback:
        """This worker's ``feedback`` on its rows as the global batch's: the losses, means over the
        global batch (each worker's row mean weighted by its rows), and the credit ``[B, K]`` of
        every row (a worker's credit is that of its rows' mean loss: times its share, rows / B).
        The probe losses are every worker's (the same network on the same probe batch). One
        all-gather of ``[rows, K + 2]`` (float64)."""
        span = self.rows(batch_size)
        rows = span.stop - span.start
        credit = torch.zeros(rows, count) if feedback.credit is None else feedback.credit * (rows / batch_size)
        losses = torch.tensor([[feedback.loss_total, feedback.loss_ce]], dtype=torch.float64).expand(rows, 2)
        everyone = self.gather_rows(torch.cat([credit.double(), losses], 1).to(device), batch_size).cpu()
        return replace(feedback, loss_total=float(everyone[:, count].mean()),
                       loss_ce=float(everyone[:, count + 1].mean()),
                       credit=None if feedback.credit is None else everyone[:, :count].to(feedback.credit.dtype))


def view_rows(view: TeacherView, rows: slice) -> TeacherView:
    """A global batch's payload cut to ``rows`` (logits and stage features; extras as they are)."""
    return TeacherView(logits=view.logits[rows], features=[f[rows] for f in view.features], index=view.index,
                       extras=view.extras)


def joined_views(views: list[TeacherView]) -> TeacherView:
    """The workers' payloads, in rank order, joined into the global batch's (extras: worker 0's)."""
    first = views[0]
    return TeacherView(logits=torch.cat([v.logits for v in views]),
                       features=[torch.cat(parts) for parts in zip(*(v.features for v in views))],
                       index=first.index, extras=first.extras)


def peer_payloads(views: list[TeacherView], workers: list[int]) -> list[TeacherView]:
    """Every rank's payload, in rank order (each peer's ``workers`` in turn), as each peer's: a
    data-parallel peer's workers' rows joined into its global batch's (:func:`joined_views`)."""
    payloads, start = [], 0
    for count in workers:
        payloads.append(views[start] if count == 1 else joined_views(views[start:start + count]))
        start += count
    return payloads


class SumOverGroup(torch.autograd.Function):
    """``Σ_workers x`` with its gradient: every worker's output gradient, summed over the group."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor, group: Any) -> Tensor:
        ctx.group = group
        total = tensor.clone()
        dist.all_reduce(total, group=group)
        return total

    @staticmethod
    def backward(ctx: Any, gradient: Tensor) -> tuple[Tensor, None]:
        total = gradient.clone()
        dist.all_reduce(total, group=ctx.group)
        return total, None


class GroupBatchNorm(nn.Module):
    """BatchNorm whose training statistics are the whole group's (Ioffe & Szegedy's
    ``(x − μ_B)/√(σ²_B + ε)`` with μ_B, σ²_B over the global batch); a drop-in for ``BatchNorm{1,2}d``
    (same parameters and buffers, so a state dict moves between the two)."""

    def __init__(self, norm: nn.Module, group: Any) -> None:
        super().__init__()
        self.eps, self.momentum, self.group = norm.eps, norm.momentum, group
        self.weight, self.bias = norm.weight, norm.bias
        self.register_buffer("running_mean", norm.running_mean)
        self.register_buffer("running_var", norm.running_var)
        self.register_buffer("num_batches_tracked", norm.num_batches_tracked)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        dims = [0] + list(range(2, x.dim()))
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        local = torch.cat([x.sum(dims), (x * x).sum(dims), count])
        total = SumOverGroup.apply(local, self.group)
        channels = x.shape[1]
        n = total[-1]
        mean = total[:channels] / n
        var = total[channels:2 * channels] / n - mean * mean
        with torch.no_grad():
            self.num_batches_tracked += 1
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
            self.running_var.mul_(1 - momentum).add_(momentum * var.detach() * n / (n - 1))
        shape = [1, channels] + [1] * (x.dim() - 2)
        normalized = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.weight is not None:
            normalized = normalized * self.weight.view(shape) + self.bias.view(shape)
        return normalized


def synchronize_batchnorm(module: nn.Module, group: Any) -> nn.Module:
    """``module`` with every BatchNorm layer replaced by a :class:`GroupBatchNorm` over ``group``."""
    for name, child in module.named_children():
        if isinstance(child, BATCH_NORMS):
            setattr(module, name, GroupBatchNorm(child, group))
        else:
            synchronize_batchnorm(child, group)
    return module
