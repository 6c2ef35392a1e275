"""codistill: collaborative online distillation of heterogeneous peer networks, scaled with Ray.

Layout (one concern per module; Ray only in :mod:`codistill.cohort`, ``tuning/`` and, lazily, ``private_apis``):

- ``models/``    peer architectures, one contract: :class:`codistill.models.base.PeerNetwork`
- ``data/``      datasets and the shared per-step batch order
- ``methods/``   distillation methods, one file each, registered by name
- ``schedules``  pure functions of training progress (weights, temperatures, on/off phases)
- ``teachers``   teacher formation and the teacher-weighting policy interface
- ``peer``       one peer's training step, evaluation and state (plain PyTorch)
- ``cohort``     Ray actors, placement and the logit exchange
- ``collective`` peers exchanging payloads with a torch.distributed all-gather (no Ray)
- ``runner``     the epoch loop: evaluation, checkpoints, monitoring, results
- ``tuning/``    Ray Tune sweeps, population-based curricula and their replay
- ``commands/``  the command lines ``jobs/`` runs (``cli``: the front door they share)
- ``evidence``   helpers of the evidence scripts (variants over seeds, mean ± std tables)
- ``private_apis`` every private Ray/torch API used, fenced and tested
"""

__version__ = "0.1.0"
