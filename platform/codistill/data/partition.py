"""Dividing a training split among the peers of a cohort (``data.partition``).

Codistillation (Anil et al., ICLR 2018, "Large scale distributed neural network training through
online distillation") trains each model on its own partition of the data and distils from stale
copies of the others; federated distillation (FedMD, Li & Wang 2019; FedDF, Lin et al., NeurIPS
2020) trains peers whose data differ in their classes (non-IID). :func:`partition_indices` maps the
clean labels y of the (reduced) training split, the number of peers K, the partition and the run's
seed to K disjoint sets of indices that cover the split. Every class c's n_c examples are shuffled
(seeded), then divided:

- ``iid``: dealt round robin to the K peers, continuing from class to class: every shard holds
  ⌊N/K⌋ or ⌈N/K⌉ examples and every class's count differs by at most one between shards;
- ``dirichlet`` with ``alpha``: proportions p_c ~ Dir_K(α·1) are drawn for every class and its
  examples cut at round(n_c · (p_c1 + … + p_cj)), j = 1 … K. Small α gives each peer few classes,
  α → ∞ gives iid shards. Dirichlet label splits are those of Hsu, Qi & Brown 2019 ("Measuring the
  effects of non-identical data distribution for federated visual classification"), in the
  per-class form of Yurochkin et al. (ICML 2019) and FedDF;
- ``classes``: dealt round robin among the peers whose list names c (all of c to one peer when one
  list names it).

With ``data.shared_fraction`` a stratified slice of the split (:func:`shared_slice`) is taken
out first, before the rest is divided: every peer sees it, without its labels (the public,
unlabeled data of FedDF).

Label noise (``data.label_noise``, symmetric, :mod:`.noise`) is then applied within each shard,
seeded per peer, and a training-split probe (``data.probe_fraction``) is a stratified slice of the
shard: :func:`peer_shards` computes both from the labels alone, as each peer's dataset applies
them, so the front door knows every peer's training examples without building a peer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from codistill.config import PartitionConfig
from codistill.data.base import PROBE_SEED, mix_seed
from codistill.data.noise import probe_split, stratified_subset, symmetric_noise

PARTITION_SEED = 0x5A47D  # mixed into the run's seed for the division of the training split
SHARD_NOISE_SEED = 0x5A6E5  # mixed with the run's seed and the peer's index for the noise of its shard
SHARED_SLICE_SEED = 0x5A5EC  # mixed into the run's seed for the shared slice (data.shared_fraction)


def shared_slice(labels: Tensor, fraction: float, seed: int) -> Tensor:
    """The sorted indices of the slice every peer sees (``data.shared_fraction``): a stratified
    ``fraction`` of ``labels`` (the clean training labels), seeded; empty when ``fraction`` is 0."""
    if fraction == 0:
        return torch.empty(0, dtype=torch.long)
    return stratified_subset(labels, fraction, mix_seed(seed, SHARED_SLICE_SEED))


def partition_indices(labels: Tensor, num_peers: int, partition: PartitionConfig, seed: int) -> list[Tensor]:
    """The sorted training indices of each of the ``num_peers`` shards: disjoint, covering ``labels``
    (the clean labels of the training split), a pure function of ``(labels, partition, seed)``."""
    if partition.kind == "shared":
        raise ValueError("a shared training split is not divided among the peers")
    generator = torch.Generator().manual_seed(mix_seed(seed, PARTITION_SEED))
    proportions = np.random.default_rng(mix_seed(seed, PARTITION_SEED))
    owner = torch.empty(labels.numel(), dtype=torch.long)
    dealt = 0
    for label in labels.unique(sorted=True).tolist():
        members = (labels == label).nonzero().flatten()
        members = members[torch.randperm(members.numel(), generator=generator)]
        turns = torch.arange(dealt, dealt + members.numel())
        if partition.kind == "iid":
            owner[members] = turns % num_peers
        elif partition.kind == "classes":
            holders = torch.tensor([k for k, classes in enumerate(partition.classes) if label in classes])
            owner[members] = holders[turns % holders.numel()]
        else:
            share = proportions.dirichlet(np.full(num_peers, partition.alpha))
            bounds = np.round(np.cumsum(share) * members.numel()).astype(np.int64)
            counts = torch.from_numpy(np.diff(bounds, prepend=0))
            counts[-1] += members.numel() - int(counts.sum())
            owner[members] = torch.repeat_interleave(torch.arange(num_peers), counts)
        dealt += members.numel()
    return [(owner == k).nonzero().flatten() for k in range(num_peers)]


@dataclass(frozen=True)
class PeerShard:
    """One peer's part of the training split."""

    indices: Tensor  # sorted indices into the (reduced) training split
    labels: Tensor  # their labels as the peer is given them (noised within the shard)
    class_counts: list[int]  # training examples of each true class, once the probe is carved

    @property
    def train_examples(self) -> int:
        return sum(self.class_counts)


def peer_shards(clean_labels: Tensor, num_classes: int, num_peers: int, partition: PartitionConfig, seed: int,
                label_noise: float, probe_fraction: float, shared: Tensor | None = None) -> list[PeerShard]:
    """Every peer's shard: :func:`partition_indices` of the split less the ``shared`` slice (indices,
    :func:`shared_slice`), then ``label_noise`` within each shard (seeded by the peer), then the
    training examples left once a stratified ``probe_fraction`` of the shard is carved as its probe
    (0: the probe, if any, is not carved from the training split)."""
    rest = torch.arange(clean_labels.numel())
    if shared is not None and shared.numel() > 0:
        rest = rest[torch.ones(clean_labels.numel(), dtype=torch.bool).index_fill_(0, shared, False)]
    shards = []
    for k, positions in enumerate(partition_indices(clean_labels[rest], num_peers, partition, seed)):
        indices = rest[positions]
        clean = clean_labels[indices]
        given = symmetric_noise(clean, label_noise, num_classes, mix_seed(seed, k, SHARD_NOISE_SEED))
        kept = torch.ones(indices.numel(), dtype=torch.bool)
        if probe_fraction > 0 and indices.numel() > 0:
            kept = probe_split(given, probe_fraction, mix_seed(seed, PROBE_SEED))[1]
        shards.append(PeerShard(indices, given, torch.bincount(clean[kept], minlength=num_classes).tolist()))
    return shards


def epoch_examples(shards: list[PeerShard], batch_size: int) -> int:
    """Examples every peer draws per epoch: the mean of the shards' training examples, cut down to
    whole batches (the peers step together, so the cohort trains on about as many examples per
    epoch as the whole split holds, and no peer's last batch is a remnant)."""
    mean = sum(shard.train_examples for shard in shards) // len(shards)
    return batch_size * max(1, mean // batch_size)
