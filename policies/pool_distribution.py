"""A distribution of teacher pools for pretraining a teacher-selection policy that transfers.

A policy pretrained on one pool learns that pool (:mod:`policies.environment`'s default ends at
uniform weights). Here every episode of :class:`policies.environment.TeacherSelectionEnv` draws a
new problem, in the spirit of domain randomization (Tobin et al. 2017): a policy that does well
on all of them has to read the teachers from their features, not from their identity.

**Worlds.** A world is a training split of digits (50% of it, stratified, chosen by the world's
data seed) with symmetric label noise at one rate (``noise_rates``, default 0.1–0.4: at rate 0 a
memorizer is simply the best teacher). Its data seed also fixes the student's initialization and
batch order in that world.

**The teacher library** (:class:`TeacherLibrary`): per world, one MLP teacher of each
:data:`RECIPES` role, trained once at construction on that world's examples and cached on disk
(the file name holds a digest of everything its training depends on, so a changed recipe
retrains and an unchanged one is read back):

- ``clean``: 10 epochs on the true labels;
- ``noisy``: 10 epochs on the noisy labels (an ordinary model of noisy data);
- ``memorizer``: 60 epochs on the noisy labels, no augmentation or weight decay, constant lr 0.1:
  it fits every noisy label (like ``jobs/configs/pool_memorizer.yaml``);
- ``weak``: 1 epoch on the noisy labels;
- ``specialist_a``, ``specialist_b``: 10 epochs on the true labels of one half of the classes only
  (``data.classes``; the halves are a random split per world): confidently wrong on the other half;
- ``random``: untrained, its classifier scaled by 30: confident and random.

**An episode** (:meth:`PoolDistribution.sample`) draws a world, ``pool_size`` distinct teachers
of its library in a random order, the student (``mlp`` or ``cnn``), the KD temperature
(``temperatures``, default 1–4) and the student's SGD (learning rate, momentum 0 or 0.9, weight
decay 0 or 5·10⁻⁴), all from the generator it is given: the same seed gives the same pools. The
episodes train without augmentation, so that the memorizer, which fitted the noisy labels of the
unshifted images, agrees with every noisy label on the images the student sees (a memorizer seen
through random shifts fits only a quarter of them: a poor teacher, not a memorizer).

The evaluation pool of ``jobs/evidence_policy.py`` (``jobs/configs/digits_pool_offline.yaml``:
a ResNet-8 student, a ResNet-8×4 clean teacher, an MLP memorizer, a ResNet-8 weak teacher, on
data seeds 0–2) is never drawn: students are MLPs or CNNs, teachers MLPs, and the data seeds
start at :data:`FIRST_DATA_SEED`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codistill.cohort.offline import OfflineCohort
from codistill.config import RunConfig
from codistill.validation import parse_config

FIRST_DATA_SEED = 1000  # worlds use data seeds 1000, 1001, …: never the evaluation's 0–2
LIBRARY_DATA = {"dataset": "digits", "train_fraction": 0.5, "batch_size": 64}
NUM_CLASSES = 10
RANDOM_TEACHER_SCALE = 30.0  # an untrained classifier scaled up: confident, random predictions


@dataclass(frozen=True)
class TeacherRecipe:
    """How a library teacher is trained on its world's examples (``epochs`` 0: untrained, made confident)."""

    role: str
    epochs: int
    noisy_labels: bool = True
    class_half: int | None = None  # train on one half of the classes only (0 or 1)
    memorize: bool = False  # no augmentation or weight decay, constant lr 0.1: fit every label


RECIPES = (TeacherRecipe("clean", 10, noisy_labels=False), TeacherRecipe("noisy", 10),
           TeacherRecipe("memorizer", 60, memorize=True), TeacherRecipe("weak", 1),
           TeacherRecipe("specialist_a", 10, noisy_labels=False, class_half=0),
           TeacherRecipe("specialist_b", 10, noisy_labels=False, class_half=1), TeacherRecipe("random", 0))


@dataclass(frozen=True)
class World:
    """A training split (data seed) with symmetric label noise at ``label_noise``."""

    seed: int
    label_noise: float

    @property
    def class_halves(self) -> tuple[list[int], list[int]]:
        """The two halves of the classes the specialists of this world know (a seeded split)."""
        order = np.random.default_rng(self.seed).permutation(NUM_CLASSES).tolist()
        half = NUM_CLASSES // 2
        return sorted(order[:half]), sorted(order[half:])

    def data(self, label_noise: float | None = None) -> dict[str, Any]:
        return {**LIBRARY_DATA, "label_noise": self.label_noise if label_noise is None else label_noise}


def teacher_config(world: World, recipe: TeacherRecipe) -> RunConfig:
    """The run that trains ``recipe``'s teacher in ``world``."""
    data = world.data(None if recipe.noisy_labels else 0.0)
    optimizer: dict[str, Any] = {"name": "sgd", "lr": 0.05}
    schedule = {"name": "cosine"}
    if recipe.memorize:
        data["augment"] = False
        optimizer, schedule = {"name": "sgd", "lr": 0.1, "weight_decay": 0.0}, {"name": "constant"}
    if recipe.class_half is not None:
        data["classes"] = world.class_halves[recipe.class_half]
    peer = {"name": recipe.role, "model": "mlp", "optimizer": optimizer, "lr_schedule": schedule}
    return parse_config({"name": recipe.role, "seed": world.seed, "epochs": max(recipe.epochs, 1), "independent": True,
                         "data": data, "peers": [peer]}, mode="offline")


def train_teacher(config: RunConfig, epochs: int, path: Path) -> None:
    """Train ``config``'s single network for ``epochs`` epochs and save it to ``path``; with
    ``epochs`` 0 it stays untrained and its classifier is scaled by :data:`RANDOM_TEACHER_SCALE`
    (confidently random with respect to the labels)."""
    cohort = OfflineCohort(config)
    for epoch in range(epochs):
        cohort.train_epoch(epoch)
    if epochs == 0:
        with torch.no_grad():
            cohort.student.model.classifier.weight.mul_(RANDOM_TEACHER_SCALE)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_bytes(cohort.model_bytes()[0])
    partial.replace(path)


def recipe_digest(config: RunConfig, epochs: int) -> str:
    """A short digest of everything a teacher's training depends on (its file name in the cache)."""
    text = json.dumps({"config": config.to_dict(), "epochs": epochs}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class TeacherLibrary:
    """Every :data:`RECIPES` teacher of every world, trained once into ``directory`` (reused when there)."""

    directory: Path
    worlds: Sequence[World]
    recipes: Sequence[TeacherRecipe] = RECIPES
    paths: dict[tuple[World, str], Path] = field(init=False)

    def __post_init__(self) -> None:
        self.paths = {}
        for world in self.worlds:
            for recipe in self.recipes:
                config = teacher_config(world, recipe)
                path = Path(self.directory) / f"{recipe.role}-{recipe_digest(config, recipe.epochs)}.pt"
                if not path.is_file():
                    train_teacher(config, recipe.epochs, path)
                self.paths[world, recipe.role] = path


@dataclass(frozen=True)
class Pool:
    """One episode's problem: a world, its teachers (role names, in order) and the student's settings."""

    world: World
    teachers: tuple[str, ...]
    student_model: str
    temperature: float
    lr: float
    momentum: float
    weight_decay: float

    def describe(self) -> str:
        return (f"noise {self.world.label_noise:.2f} (data seed {self.world.seed}), "
                f"teachers {', '.join(self.teachers)}; "
                f"{self.student_model} student, T={self.temperature:g}, SGD lr {self.lr:g} momentum {self.momentum:g} "
                f"weight decay {self.weight_decay:g}")


class PoolDistribution:
    """Draws a :class:`Pool` per episode from a :class:`TeacherLibrary` and makes its offline config
    (see the module docstring). Builds (or reads back) the library at construction."""

    def __init__(self, library_dir: str | Path, *, noise_rates: Sequence[float] = (0.1, 0.2, 0.3, 0.4),
                 data_seeds: int = 2, temperatures: Sequence[float] = (1.0, 2.0, 3.0, 4.0),
                 students: Sequence[str] = ("mlp", "cnn"), learning_rates: Sequence[float] = (0.02, 0.05, 0.1),
                 momenta: Sequence[float] = (0.0, 0.9), weight_decays: Sequence[float] = (0.0, 5e-4),
                 probe_fraction: float = 0.1) -> None:
        worlds = [World(FIRST_DATA_SEED + index, float(noise)) for index in range(data_seeds) for noise in noise_rates]
        self.library = TeacherLibrary(Path(library_dir), worlds)
        self.worlds, self.roles = worlds, tuple(recipe.role for recipe in self.library.recipes)
        self.temperatures, self.students = tuple(temperatures), tuple(students)
        self.learning_rates, self.momenta = tuple(learning_rates), tuple(momenta)
        self.weight_decays = tuple(weight_decays)
        self.probe_fraction = probe_fraction
        self.batch_size = LIBRARY_DATA["batch_size"]

    @property
    def max_pool_size(self) -> int:
        return len(self.roles)

    def sample(self, rng: np.random.Generator, pool_size: int) -> Pool:
        """A pool of ``pool_size`` teachers and its student's settings, drawn with ``rng``."""
        if not 1 <= pool_size <= self.max_pool_size:
            raise ValueError(f"pool_size must lie in [1, {self.max_pool_size}], got {pool_size}")
        pick = lambda values: values[int(rng.integers(len(values)))]  # noqa: E731
        world = pick(self.worlds)
        teachers = tuple(self.roles[i] for i in rng.permutation(len(self.roles))[:pool_size])
        return Pool(world, teachers, pick(self.students), float(pick(self.temperatures)),
                    float(pick(self.learning_rates)), float(pick(self.momenta)), float(pick(self.weight_decays)))

    def config(self, pool: Pool) -> RunConfig:
        """The offline config of ``pool``'s episode (one epoch; the environment sets the episode's length)."""
        teachers = [{"name": role, "model": "mlp", "checkpoint": str(self.library.paths[pool.world, role])}
                    for role in pool.teachers]
        student = {"name": "student", "model": pool.student_model,
                   "optimizer": {"name": "sgd", "lr": pool.lr, "momentum": pool.momentum,
                                 "weight_decay": pool.weight_decay, "nesterov": pool.momentum > 0}}
        kd = {"name": "kd", "params": {"temperature": pool.temperature}}
        return parse_config({"name": "pool-episode", "seed": pool.world.seed, "epochs": 1,
                             "data": {**pool.world.data(), "probe_fraction": self.probe_fraction, "augment": False},
                             "peers": [student], "teachers": teachers,
                             "distillation": {"weight": 1.0, "methods": [kd]}}, mode="offline")
