"""The cohort layer: how a set of peers is trained in lock-step, on every backend.

- ``base``: the :class:`~codistill.cohort.base.Cohort` interface the runner drives and its one
  fan-out (evaluation, states, models asked of every peer); ``handles``: what a peer handle answers
  (:class:`~codistill.cohort.base.PeerHandle`) and the one way a process holds a trainer
  (:class:`~codistill.cohort.handles.HeldPeer`); ``steps``: the one step driver;
- ``in_process``, ``sequential``, ``offline``: cohorts in this process; ``backends``: ``--backend``;
- ``exchanges`` (described without Ray or a peer), ``replica_exchange``, ``window``: how Ray peers
  exchange and how many steps are in flight; ``tensor_group``: payload tensors all-gathered on
  their device with ``torch.distributed``;
- Ray at the edge: ``ray_runtime``, ``ray_actors``, ``ray_cohort``; without Ray: ``workers``,
  ``process_cohort``, ``sample_payloads`` (the group's exactness check).

Importing the package imports none of them.
"""
