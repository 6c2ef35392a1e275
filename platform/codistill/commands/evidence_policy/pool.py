"""The teacher pool of the offline setting: trained per seed and kept (reused when present), and
what it looks like from the student's training split."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import yaml

from codistill.checkpoint import load_latest_checkpoint
from codistill.cohort.offline import OfflineCohort, load_network
from codistill.config import RunConfig
from codistill.data.base import PeerDataset
from codistill.peer import load_dataset, partitioned, peer_datasets
from codistill.peer.teachers import normalized_weights
from codistill.progress import Progress
from codistill.runner import CONFIG_FILE, RESULTS_FILE, prepare_run_dir, run_cohort
from codistill.validation import load_config, parse_config

#: Seeded augmentations of every training example over which the pool's statistics are taken.
AUGMENTED_VIEWS = 8


def pool_run_dir(pool_dir: Path, seed: int, name: str) -> Path:
    return pool_dir / f"seed{seed}" / name


def pool_configs(paths: list[str], seed: int) -> list[RunConfig]:
    return [load_config(path, ["independent=true", f"seed={seed}"], mode="offline") for path in paths]


def train_pool(pool_dir: Path, configs: list[RunConfig]) -> list[dict[str, str]]:
    """Train each pool teacher alone (or reuse a finished run of the same config); the
    ``teachers`` entries of a student config that point at them."""
    teachers = []
    for config in configs:
        name = config.peers[0].name
        run_dir = pool_run_dir(pool_dir, config.seed, name)
        saved = run_dir / CONFIG_FILE
        # read back through the parser, so that a field added since (at its default) is no difference
        if saved.exists() and parse_config(yaml.safe_load(saved.read_text()), mode="offline") != config:
            raise SystemExit(f"{run_dir} holds a teacher trained with another config: remove it or pass another --pool")
        if not (run_dir / RESULTS_FILE).exists():
            resume = (run_dir / "checkpoints").is_dir()
            if not resume:
                prepare_run_dir(run_dir, config)
            run_cohort(config, run_dir, OfflineCohort, resume=resume)
        teachers.append({"name": name, "model": config.peers[0].model,
                         "checkpoint": str(run_dir / "models" / f"{name}.pt")})
    return teachers


def true_labels(dataset: PeerDataset) -> torch.Tensor:
    """The true labels of a peer's training examples as its batches index them: its shard's, then
    the shared slice's (``data.shared_fraction``), if any."""
    shared = dataset.shared_labels()
    return torch.cat([dataset.clean_train_labels, *([] if shared is None else [shared])])


def write_true_labels(config: RunConfig, path: Path) -> Path:
    """The true labels of ``config``'s training split (as the batches index it; with ``data.partition``
    one tensor per peer's shard, followed by the shared slice's, whose rows a batch indexes after
    the shard's), saved for the oracle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if partitioned(config):
        torch.save([true_labels(dataset) for dataset in peer_datasets(config)], path)
    else:
        torch.save(load_dataset(config).clean_train_labels.clone(), path)
    return path


def teacher_views(cohort: OfflineCohort, images: torch.Tensor) -> list:
    """The frozen teachers' payloads on ``images``, each at its slot."""
    return [dataclasses.replace(view, index=position) for position, view in enumerate(cohort.frozen.views(images))]


@torch.no_grad()
def pool_statistics(camkd: OfflineCohort, student: Path | None) -> dict[str, dict[str, float]]:
    """Per teacher, on the training split of the CA-MKD student cohort ``camkd`` as the student sees
    it (``AUGMENTED_VIEWS`` seeded augmentations of every example when the student trains with
    augmentation): top-1 against the noisy and the true labels and, with that run's final network
    ``student``, the mean weight its CA-MKD policy gives each teacher over all examples and over
    those whose label was flipped."""
    trainer = camkd.student
    dataset, config = trainer.dataset, trainer.config
    everything = torch.arange(dataset.info.train_size)
    repeats = AUGMENTED_VIEWS if config.data.augment else 1
    batches = [dataset.train_batch(everything, torch.Generator().manual_seed(view), augment=config.data.augment)
               for view in range(repeats)]
    images, noisy = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    clean = dataset.clean_train_labels.repeat(repeats)
    views = teacher_views(camkd, images)
    predicted = torch.stack([view.logits.float() for view in views]).argmax(-1)  # [K, N]
    flipped = noisy != clean
    names = [t.name for t in config.teachers]
    stats = {name: {"train_noisy": float((predicted[k] == noisy).float().mean()),
                    "train_true": float((predicted[k] == clean).float().mean())}
             for k, name in enumerate(names)}
    if student is not None:
        steps = dataset.steps_per_epoch(config.data.batch_size)
        batch = trainer.slots.batch(views, load_network(student)(images).logits.float(), noisy, 0,
                                    Progress(epoch=config.epochs, step=0, steps_per_epoch=steps,
                                             total_epochs=config.epochs))
        weights = trainer.policy.weights(batch)  # [N, K]
        for k, name in enumerate(names):
            stats[name].update(camkd_all=float(weights[:, k].mean()), camkd_flipped=float(weights[flipped, k].mean()))
    return stats


@torch.no_grad()
def right_teacher_weight(config: RunConfig, run_dir: Path) -> float:
    """Over the training split (no augmentation), with the run's final student and policy: the mean
    weight the policy puts on the teachers that predict an example's *true* label, over the
    examples that one of them does (on the specialist pool: the weight on the right specialist)."""
    cohort = OfflineCohort(config)
    cohort.load_state_bytes(load_latest_checkpoint(run_dir, 1)[1])
    trainer, dataset = cohort.student, cohort.student.dataset
    everything = torch.arange(dataset.info.train_size)
    images, noisy = dataset.train_batch(everything, torch.Generator().manual_seed(0), augment=False)
    trainer.model.eval()
    views = teacher_views(cohort, images)
    logits = torch.stack([view.logits.float() for view in views])  # [K, N, C]
    right = (logits.argmax(-1) == dataset.clean_train_labels.unsqueeze(0)).float().t()  # [N, K]
    batch = trainer.slots.batch(views, trainer.model(images).logits.float(), noisy, 0,
                                trainer.batches.progress(config.epochs - 1, trainer.batches.steps_per_epoch - 1),
                                everything)
    weights = normalized_weights(trainer.policy.weights(batch), len(views), everything.numel())
    some = right.sum(1) > 0
    return float((weights * right).sum(1)[some].mean())
