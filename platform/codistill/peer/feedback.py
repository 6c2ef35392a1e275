"""The probe: how a learning teacher policy sees the effect of its weights.

What is measured is what the policy's :class:`~codistill.policy.FeedbackRequest` of the step asks
for. With ``probe_losses`` it gets the student's loss on a batch of the
probe split (``data.probe_fraction`` of the training split, never trained on, or with
``data.probe_source: held_out`` of the clean validation split) just before and just after each
update, in eval mode (no RNG drawn, no BatchNorm statistics touched), inside the
:class:`~codistill.policy.Feedback` of that step. The loss is the request's ``probe_loss``
(:func:`probe_loss`): cross-entropy, or the mean absolute error ``1 − p_y``, which symmetric label
noise cannot bias (Ghosh, Kumar & Sastry, AAAI 2017).

With a ``credit_scope``, the policy gets the **dense credit** of every
weight: the exact first-order effect of ``w[b, k]`` on the probe loss after a virtual plain-SGD
step, the one-step lookahead of Learning to Reweight (Ren et al., ICML 2018) and Meta-Weight-Net
(Shu et al., NeurIPS 2019), here per example and teacher. The step moves either every parameter
(``credit_scope: network``, :func:`dense_credit`: one probe backward and one double-backward
through the network) or only the classifier head (``credit_scope: head``, :func:`head_credit`: one
probe forward; the double-backward stays in the loss, through the logits). The head restriction
is the last-layer approximation of fast meta-reweighting (Xu et al., "FaMUS", CVPR 2021; Zhang &
Pfister, "Learning Fast Sample Re-weighting without Reward Data", ICCV 2021), exact for the head.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, jvp

from codistill.data.base import PeerDataset
from codistill.models import ModelOutput, PeerNetwork
from codistill.policy import PROBE_LOSSES
from codistill.progress import Progress


def probe_loss(logits: Tensor, labels: Tensor, kind: str) -> Tensor:
    """``ce``: ``mean_b −log p_b(y_b)``; ``mae``: ``mean_b (1 − p_b(y_b))`` (half the L1 distance
    between the softmax and the one-hot label; symmetric, so noise-tolerant under symmetric label
    noise, Ghosh et al. 2017)."""
    if kind == "ce":
        return F.cross_entropy(logits, labels)
    if kind == "mae":
        return 1.0 - logits.softmax(-1).gather(1, labels.view(-1, 1)).mean()
    raise ValueError(f"unknown probe loss {kind!r} (known: {', '.join(PROBE_LOSSES)})")


class Probe:
    """Probe batches of ``dataset`` and the student's ``kind`` loss on them (:func:`probe_loss`)."""

    def __init__(self, dataset: PeerDataset, seed: int, batch_size: int, device: torch.device,
                 autocast: Callable[[], AbstractContextManager], kind: str = "ce") -> None:
        self.dataset, self.seed, self.batch_size = dataset, seed, batch_size
        self.device, self.autocast, self.kind = device, autocast, kind

    def batch(self, progress: Progress) -> tuple[Tensor, Tensor]:
        """The probe batch of this step (a pure function of seed, epoch and step)."""
        images, labels = self.dataset.probe_batch(self.seed, progress.epoch, progress.step, self.batch_size)
        return images.to(self.device), labels.to(self.device)

    def _output(self, model: PeerNetwork, images: Tensor) -> ModelOutput:
        was_training = model.training
        model.eval()
        try:
            with self.autocast():
                return model(images)
        finally:
            model.train(was_training)

    def _loss(self, model: PeerNetwork, batch: tuple[Tensor, Tensor]) -> Tensor:
        images, labels = batch
        return probe_loss(self._output(model, images).logits.float(), labels, self.kind)

    @torch.no_grad()
    def loss(self, model: PeerNetwork, batch: tuple[Tensor, Tensor]) -> float:
        """The model's probe loss on ``batch``, in eval mode (its training mode restored)."""
        return float(self._loss(model, batch))

    def gradient(self, model: PeerNetwork, batch: tuple[Tensor, Tensor],
                 parameters: list[nn.Parameter]) -> tuple[float, list[Tensor]]:
        """The probe loss on ``batch`` (eval mode, as :meth:`loss`) and its gradient ``∇θ L_probe``
        with respect to ``parameters`` (zeros for those it does not depend on)."""
        with torch.enable_grad():
            loss = self._loss(model, batch)
            gradients = torch.autograd.grad(loss, parameters, allow_unused=True)
        return float(loss.detach()), [torch.zeros_like(p) if g is None else g for g, p in zip(gradients, parameters)]

    def head_gradient(self, model: PeerNetwork, batch: tuple[Tensor, Tensor]) -> tuple[float, dict[str, Tensor]]:
        """The probe loss on ``batch`` (eval mode, as :meth:`loss`) and its gradient with respect to
        the classifier head's parameters only (by name): one forward pass, no backward through the
        network."""
        images, labels = batch
        parameters = dict(model.classifier.named_parameters())
        with torch.no_grad():
            embedding = self._output(model, images).embedding.to(next(iter(parameters.values())).dtype)
        with torch.enable_grad():  # the head's own parameters: autograd.grad leaves their .grad alone
            loss = probe_loss(model.classifier(embedding).float(), labels, self.kind)
            gradients = torch.autograd.grad(loss, list(parameters.values()))
        return float(loss.detach()), dict(zip(parameters, gradients))


def dense_credit(train_loss: Tensor, weights: Tensor, parameters: list[nn.Parameter], probe_gradient: list[Tensor],
                 lr: float) -> Tensor:
    """``c[b, k] = ∂/∂w[b, k] L_probe(θ − η ∇θ L_train(θ; w))``, which is
    ``−η ⟨∇θ L_probe, ∂∇θ L_train / ∂w[b, k]⟩`` to first order in η (Ren et al., ICML 2018), for
    all ``(b, k)`` at once by one double-backward: ``−η ∂/∂w ⟨g_probe, ∇θ L_train(θ; w)⟩`` with
    ``g_probe = ∇θ L_probe`` held fixed.

    ``train_loss`` must have been built from ``weights`` (a leaf that requires grad) and
    ``parameters``; its graph is kept, so the real backward can follow. Returns ``[B, K]``
    (zeros where the loss does not depend on a weight)."""
    gradients = torch.autograd.grad(train_loss, parameters, create_graph=True, retain_graph=True, allow_unused=True)
    inner = sum((g * p).sum() for g, p in zip(gradients, probe_gradient) if g is not None and g.requires_grad)
    if not isinstance(inner, Tensor) or not inner.requires_grad:
        return torch.zeros_like(weights).detach()
    return _slope(inner, weights, lr)


def head_credit(train_loss: Tensor, weights: Tensor, student: ModelOutput, head: nn.Module,
                probe_gradient: dict[str, Tensor], lr: float) -> Tensor:
    """:func:`dense_credit` for a virtual step of the classifier head alone: ``c[b, k] =
    −η ⟨∇_head L_probe, ∂∇_head L_train / ∂w[b, k]⟩``. With ``z = head(h)`` and the embeddings
    ``h`` fixed by a head step, ``∇_head L_train = J_headᵀ ∂L_train/∂z``, so ``c = −η ∂/∂w ⟨δz,
    ∂L_train/∂z⟩`` with ``δz = J_head ∇_head L_probe`` the change of the batch's logits along the
    probe gradient (a Jacobian-vector product of the head alone): the double-backward stays in the
    loss. Exact for the head; terms that do not read the logits get no credit.

    ``student`` is the output ``train_loss`` was built from (its logits and embedding); the graph
    is kept, so the real backward can follow. Returns ``[B, K]``."""
    embedding = student.embedding.detach().to(next(iter(probe_gradient.values())).dtype)
    logit_change = head_change(head, embedding, probe_gradient)
    (logit_gradient,) = torch.autograd.grad(train_loss, student.logits, create_graph=True, retain_graph=True)
    if not logit_gradient.requires_grad:
        return torch.zeros_like(weights).detach()
    return _slope((logit_gradient * logit_change.to(logit_gradient.dtype)).sum(), weights, lr)


def head_change(head: nn.Module, embedding: Tensor, direction: dict[str, Tensor]) -> Tensor:
    """``J_head(h) v``: the change of ``head(h)`` per unit step of its parameters along ``direction``
    (by name). A plain ``Linear`` head is linear in its parameters, so this is the head applied with
    ``direction`` as its weight and bias; any other head takes a Jacobian-vector product."""
    if isinstance(head, nn.Linear) and "weight" in direction:
        return F.linear(embedding, direction["weight"], direction.get("bias"))
    names = list(direction)
    parameters = dict(head.named_parameters())
    return jvp(lambda *values: functional_call(head, dict(zip(names, values)), (embedding,)),
               tuple(parameters[name].detach() for name in names), tuple(direction[name] for name in names))[1]


def _slope(inner: Tensor, weights: Tensor, lr: float) -> Tensor:
    """``−η ∂inner/∂w`` (zeros where ``inner`` does not depend on a weight)."""
    (slope,) = torch.autograd.grad(inner, weights, retain_graph=True, allow_unused=True)
    return torch.zeros_like(weights).detach() if slope is None else -lr * slope.detach()
