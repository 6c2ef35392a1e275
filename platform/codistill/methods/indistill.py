"""InDistill (Sarridis et al., arXiv 2205.10003; official code gsarridis/InDistill).

The teacher's stage-k output filters are pruned by L1-norm structured filter pruning down to
the student's stage-k width (the official code: ``prune.ln_structured(n=1, dim=0)``), and the
pruned layer takes the teacher's *unpruned* stage k−1 output as input. Removing filters only
removes output channels, so the pruned teacher feature is exactly the teacher's stage-k feature
restricted to the ``C_s`` channels whose filters have the largest L1 norm — computed on the
teacher's side (:meth:`InDistill.teacher_extras`) and applied here, with no adapter::

    L_k = MSE(flatten(F_s^k), flatten(prune_{C_s}(F_t^k)))

(the teacher map is average-pooled to the student's H×W if they differ; a map facing a vector,
as with the MLP, is globally average-pooled first). A curriculum goes from
shallow to deep as the official schedule: stage 1 for epochs 0–2, stage 2 for 3–6, stage 3 for
7–11 (``curriculum_epochs=(3, 7, 12)``), then the logits (T²-scaled KD at ``temperature``).
Networks with more stages than boundaries distil only the first ones during the curriculum.
Offline, a teacher stage narrower than the student's is an error; between online peers (where a
wide peer also learns from narrow ones) such a teacher simply teaches no feature at that stage.
The "filter" of a stage is the last conv (or linear) layer whose output width equals the
stage's channel count; when a stage has none (e.g. DenseNet's concatenations) the channels are
ranked by their mean absolute activation on the batch instead.

Both terms are per example (each example's MSE, or its KD), so per-example teacher weights apply.
Differs from the reference: the official code builds the pruned teacher layer with fresh
BatchNorm layers trained alongside, and distils the embedding by PKT after the curriculum; here
the teacher's own (pruned) channels are the target, with no new layers, and the phase after the
curriculum is KD on the logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from codistill.checks import epoch_boundaries
from codistill.errors import ConfigError
from codistill.methods.adapters import as_vector
from codistill.methods.base import DistillationMethod, MethodContext, TeacherView, teacher_logits
from codistill.methods.logits import softened_kl
from codistill.models.base import ModelOutput, PeerNetwork
from codistill.progress import Progress
from codistill.registry import METHODS
from codistill.schedules import as_schedule


def active_stage(epoch: int, boundaries: Sequence[int], num_stages: int) -> int | None:
    """Stage distilled at ``epoch`` (0-based), or ``None`` once the curriculum reached the logits."""
    for stage, boundary in enumerate(boundaries):
        if epoch < boundary:
            return stage if stage < num_stages else None
    return None


def filter_norms(stage: nn.Module, channels: int) -> Tensor | None:
    """L1 norm of each output filter of the last layer producing ``channels`` outputs."""
    producing = [m for m in stage.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.shape[0] == channels]
    if not producing:
        return None
    return producing[-1].weight.detach().abs().flatten(1).sum(1)


def channel_importance(teacher: PeerNetwork, output: ModelOutput) -> list[Tensor]:
    """Per stage, the ranking score of every output channel (filter L1 norm, or activation)."""
    scores = []
    for stage, feature in zip(teacher.stages, output.features):
        norms = filter_norms(stage, feature.shape[1])
        if norms is None:
            norms = feature.detach().abs().transpose(0, 1).flatten(1).mean(1)
        scores.append(norms.float())
    return scores


def prune_channels(feature: Tensor, scores: Tensor, keep: int) -> Tensor:
    """The ``keep`` highest-scoring channels of ``feature``, in their original order."""
    kept = scores.topk(keep).indices.sort().values
    return feature.index_select(1, kept)


@METHODS.register_named
class InDistill(DistillationMethod):
    name = "indistill"
    uses_teacher_features = True
    positive_schedules = ("temperature",)

    @classmethod
    def check_params(cls, params: dict[str, Any], field: str, total_epochs: int) -> None:
        super().check_params(params, field, total_epochs)
        complaint = epoch_boundaries(params.get("curriculum_epochs", []))
        if complaint:
            raise ConfigError(f"{field}.curriculum_epochs", complaint)

    def __init__(self, context: MethodContext, curriculum_epochs: Sequence[int] = (3, 7, 12),
                 temperature: Any = 4.0) -> None:
        super().__init__(context)
        self.boundaries = tuple(int(b) for b in curriculum_epochs)
        self.temperature = as_schedule(temperature, f"{self.name}.temperature")
        student = context.student_feature_shapes
        for index, shapes in enumerate(context.teacher_feature_shapes):
            for stage in range(min(len(self.boundaries), len(student), len(shapes))):
                if shapes[stage][0] < student[stage][0] and not context.online:
                    raise ValueError(f"InDistill: teacher {index} stage {stage + 1} has {shapes[stage][0]} channels, "
                                     f"fewer than the student's {student[stage][0]}; pruning cannot widen it "
                                     "(use a wider teacher or a feature method with adapters)")

    @classmethod
    def teacher_extras(cls, teacher: PeerNetwork, output: ModelOutput) -> dict[str, Any]:
        return {"channel_importance": channel_importance(teacher, output)}

    def forward(self, student: ModelOutput, teacher: TeacherView | None, targets: Tensor,
                progress: Progress) -> dict[str, Tensor]:
        stage = active_stage(progress.epoch, self.boundaries, min(len(student.features), len(teacher.features)))
        if stage is None:
            return {"logits": softened_kl(teacher_logits(teacher), student.logits, self.temperature(progress))}
        feature = student.features[stage]
        if teacher.features[stage].shape[1] < feature.shape[1]:
            return {}  # online only (checked at construction): a narrower peer teaches no feature here
        pruned = prune_channels(teacher.features[stage].detach(), teacher.extras["channel_importance"][stage],
                                feature.shape[1])
        if pruned.dim() != feature.dim():  # a map against a vector (MLP): compare pooled vectors
            feature, pruned = as_vector(feature), as_vector(pruned)
        elif pruned.dim() == 4 and pruned.shape[2:] != feature.shape[2:]:
            pruned = F.adaptive_avg_pool2d(pruned, feature.shape[2:])
        return {f"stage{stage + 1}": (feature.flatten(1) - pruned.flatten(1)).pow(2).mean(1)}
