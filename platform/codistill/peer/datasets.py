"""What each peer trains on: the run's dataset, or with ``data.partition`` its own shard of the
training split (:mod:`codistill.data.partition`), every peer evaluated on the same validation and
test splits."""

from __future__ import annotations

from torch import Tensor

from codistill.config import RunConfig
from codistill.data import build_dataset, with_probe
from codistill.data.base import PeerDataset
from codistill.data.partition import PeerShard, epoch_examples, peer_shards, shared_slice


def partitioned(config: RunConfig) -> bool:
    """Whether the peers of ``config`` each hold a shard of the training split."""
    return config.data.partition.kind != "shared"


def load_dataset(config: RunConfig, peer: int | None = None) -> PeerDataset:
    """The dataset peer ``peer`` trains on (with a partition, its shard: ``peer`` is then needed)."""
    data = config.data
    dataset = _training_split(config)
    if partitioned(config):
        if peer is None:
            raise ValueError(f"with data.partition: {data.partition.kind} each peer has its own dataset: name the peer")
        shared = shared_slice(dataset.train_labels(), data.shared_fraction, config.seed)
        shards = _shards(config, dataset, shared)
        dataset.keep_shard(shards[peer].indices, shards[peer].labels, epoch_examples(shards, data.batch_size), shared)
    if data.classes is not None:
        dataset.keep_classes(data.classes)
    if data.probe_fraction > 0:
        dataset = with_probe(dataset, data.probe_fraction, config.seed, data.probe_source)
    return dataset


def peer_datasets(config: RunConfig) -> list[PeerDataset]:
    """Every peer's dataset for peers in one process: one shared, or each peer's own shard."""
    if partitioned(config):
        return [load_dataset(config, k) for k in range(len(config.peers))]
    return [load_dataset(config)] * len(config.peers)


def load_shards(config: RunConfig) -> list[PeerShard]:
    """Every peer's shard of a partitioned run, from the training split's labels (read once)."""
    clean = _training_split(config)
    return _shards(config, clean, shared_slice(clean.train_labels(), config.data.shared_fraction, config.seed))


def shared_slice_size(config: RunConfig) -> int:
    """Examples in the slice every peer sees (``data.shared_fraction``; 0 without one)."""
    if config.data.shared_fraction == 0:
        return 0
    return shared_slice(_training_split(config).train_labels(), config.data.shared_fraction, config.seed).numel()


def _training_split(config: RunConfig) -> PeerDataset:
    """The dataset as configured; with a partition its training labels are left clean (the noise is
    applied within each shard)."""
    data = config.data
    return build_dataset(data.dataset, root=data.root, train_fraction=data.train_fraction,
                         label_noise=0.0 if partitioned(config) else data.label_noise, seed=config.seed,
                         image_size=data.image_size, test_fraction=data.test_fraction, val_fraction=data.val_fraction)


def _shards(config: RunConfig, clean: PeerDataset, shared: Tensor) -> list[PeerShard]:
    data = config.data
    return peer_shards(clean.train_labels(), clean.info.num_classes, len(config.peers), data.partition, config.seed,
                       data.label_noise, data.probe_fraction if data.probe_source == "train" else 0.0, shared)
