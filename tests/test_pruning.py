import pytest
import torch

from codistill.models import build_model
from codistill.progress import Progress
from codistill.pruning import GradualPruner, cubic_sparsity, effective_state_dict


def test_cubic_schedule_matches_zhu_and_gupta():
    assert cubic_sparsity(0, 10, 110, 0.0, 0.9) == 0.0
    assert cubic_sparsity(10, 10, 110, 0.0, 0.9) == pytest.approx(0.0)
    assert cubic_sparsity(60, 10, 110, 0.0, 0.9) == pytest.approx(0.9 - 0.9 * 0.5 ** 3)
    assert cubic_sparsity(110, 10, 110, 0.0, 0.9) == pytest.approx(0.9)
    assert cubic_sparsity(500, 10, 110, 0.0, 0.9) == pytest.approx(0.9)


def train_pruned(target, epochs=4, steps=5):
    torch.manual_seed(0)
    model = build_model("resnet8", 10, 1, 8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    pruner = GradualPruner(model, target_sparsity=target, start_epoch=0, end_epoch=2, every_steps=2)
    reached = {}
    for epoch in range(epochs):
        for step in range(steps):
            x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
            loss = torch.nn.functional.cross_entropy(model(x).logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            progress = Progress(epoch, step, steps, epochs)
            pruner.step(progress)
            reached[progress.global_step + 1] = pruner.sparsity()
    return model, pruner, reached


@pytest.mark.parametrize("target", [0.5, 0.9])
def test_pruning_reaches_the_schedule_and_pruned_weights_stay_zero(target):
    model, pruner, reached = train_pruned(target)
    for step in (4, 6, 10):  # re-pruning steps (every 2) inside [0, 10)
        assert reached[step] == pytest.approx(cubic_sparsity(step, 0, 10, 0.0, target), abs=0.01)
    assert pruner.sparsity() == pytest.approx(target, abs=0.01)
    # After the schedule ended, 10 more steps with momentum and weight decay: still pruned.
    masks = [layer.weight_mask.clone() for layer in pruner.layers]
    for layer, mask in zip(pruner.layers, masks):
        assert torch.all(layer.weight[mask == 0] == 0)
    assert not any(isinstance(m, torch.nn.Linear) and hasattr(m, "weight_mask") for m in model.classifier.modules())


def test_masks_survive_a_checkpoint_into_a_fresh_model():
    model, pruner, _ = train_pruned(0.5)
    fresh = build_model("resnet8", 10, 1, 8)
    fresh_pruner = GradualPruner(fresh, 0.5, 0, 2)
    fresh.load_state_dict(model.state_dict())
    assert fresh_pruner.sparsity() == pytest.approx(pruner.sparsity())
    x = torch.randn(2, 1, 8, 8)
    model.eval(), fresh.eval()
    assert torch.equal(model(x).logits, fresh(x).logits)
    plain = build_model("resnet8", 10, 1, 8).eval()
    plain.load_state_dict(effective_state_dict(model))
    assert torch.allclose(plain(x).logits, model(x).logits)
