"""One peer: its step (:mod:`.trainer`), batches and random stream (:mod:`.batches`), teachers
(:mod:`.teachers`), objective (:mod:`.objective`), optimizer and AMP (:mod:`.optimization`) and
the policy's probe (:mod:`.feedback`)."""

from codistill.peer.trainer import PeerTrainer, feature_shapes, load_dataset, method_context

__all__ = ["PeerTrainer", "feature_shapes", "load_dataset", "method_context"]
