"""One peer: its step (:mod:`.trainer`), batches and random stream (:mod:`.batches`), teachers
(:mod:`.teachers`), objective (:mod:`.objective`), optimizer and AMP (:mod:`.optimization`) and
the policy's probe (:mod:`.feedback`); its dataset or shard (:mod:`.datasets`)."""

from codistill.peer.datasets import load_dataset, load_shards, partitioned, peer_datasets, shared_slice_size
from codistill.peer.trainer import PeerTrainer, feature_shapes, method_context

__all__ = ["PeerTrainer", "feature_shapes", "load_dataset", "load_shards", "method_context", "partitioned",
           "peer_datasets", "shared_slice_size"]
