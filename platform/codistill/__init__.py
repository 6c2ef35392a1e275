"""codistill: collaborative online distillation of heterogeneous peer networks, scaled with Ray.

Layers, lowest first (``tests/test_layers.py`` checks that no import runs upward):

- ``errors``, ``checks``, ``registry``, ``progress``, ``metrics``, ``safe_io``: the ground floor;
  ``private_apis``: every private Ray/torch API used, fenced and tested; ``evidence``: helpers of
  the evidence scripts
- ``schedules``, ``saved_network``: λ(t), gates, learning rates; the saved-network format
- ``config/``     schema, loading (YAML, ``--set``) and validation (components check their own parameters)
- ``data/``, ``models/``, ``methods/``, ``policy``, ``optimizers``, ``pruning``: components, one file each
- ``peer/``       one peer's step, teachers, objective, optimizer/AMP and probe (plain PyTorch)
- ``cohort/`` (its Ray-free part: one step driver, one fan-out, peer handles, in-process cohorts,
  exchanges described, payload tensors all-gathered on their device), ``records``, ``checkpoint``,
  ``monitoring``: cohorts and their records
- ``runner``: the epoch loop
- ``cohort/`` (``ray_*``, ``workers``, ``process_cohort``, ``sample_payloads``), ``tuning/``,
  ``benchmarks/``: Ray at the edge (actors, placement; the same without Ray; Tune sweeps; timings)
- ``preflight``, ``cli``, ``commands/``: the front door (``commands/``: the command lines ``jobs/`` runs)
"""

__version__ = "0.1.0"
