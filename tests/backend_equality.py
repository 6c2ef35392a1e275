"""The Ray cohort against the single-process one, for the tests that hold them bit-identical."""

from __future__ import annotations

import torch

from codistill.cohort.sequential import SequentialCohort
from codistill.config import RunConfig


def assert_ray_trains_exactly_as_sequential(config: RunConfig, epochs: int = 2) -> None:
    """``config`` on :class:`RayCohort` and on :class:`SequentialCohort`, ``epochs`` epochs: the
    same steps, the same metric names, every value but the times equal, and the same validation
    labels and logits."""
    from codistill.cohort.ray_cohort import RayCohort

    local, remote = SequentialCohort(config), RayCohort(config)
    try:
        for epoch in range(epochs):
            expected, got = local.train_epoch(epoch), remote.train_epoch(epoch)
            assert len(got) == len(expected) == remote.steps_per_epoch()
            for step_expected, step_got in zip(expected, got):
                for peer_expected, peer_got in zip(step_expected, step_got):
                    assert set(peer_got) == set(peer_expected)
                    for key, value in peer_expected.items():
                        if not key.startswith("time/"):
                            assert peer_got[key] == value, key
        (local_logits, labels), (remote_logits, remote_labels) = local.evaluate(), remote.evaluate()
        assert torch.equal(labels, remote_labels)
        assert all(torch.equal(a, b) for a, b in zip(local_logits, remote_logits))
    finally:
        remote.shutdown()
