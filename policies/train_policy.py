"""Pretrain the learned teacher-selection policy in ``TeacherSelectionEnv`` and save it.

    python jobs/train_policy.py --episodes 100 --out runs/pretrained-policy.pt      # the pool distribution
    python jobs/train_policy.py --config jobs/configs/FILE.yaml --episodes 40 --out runs/policy.pt

By default every episode draws its pool from :class:`policies.pool_distribution.PoolDistribution`
(digits worlds with label noise ``--noise-rates``, a library of clean, noisy, memorizing, weak,
specialist and random MLP teachers trained once into ``--library`` and reused, pools of
``--pool-sizes`` teachers, KD temperatures ``--temperatures``, the student's SGD drawn per
episode); the episodes cycle through the pool sizes. With ``--config``, every episode uses that
offline config's pool (one student, ``teachers``, ``data.probe_fraction`` > 0).

Each episode trains a fresh student for ``--episode-steps`` steps, the pool drawn with seed
``--seed`` + episode. The estimator (``--estimator``) is the learned policy's: ``credit`` (the
default) acts with the mean and feeds :class:`policies.credit.CreditLearner` the observation and
the step's dense credit; ``ppo`` samples its weights and learns from the probe reward (both from
the step's ``info``, through :meth:`LearnedPolicy.record`). The learner updates the policy every
``--update-every`` steps (default 4, at ``--lr`` 3·10⁻³: slower than in a run, so that the policy
averages over the pools instead of following the last one). The saved file (``torch.load(weights_only=True)``) is what
``distillation.policy.params.checkpoint`` takes in a cohort or offline run.

:func:`train` is the loop; :func:`main` the command line of ``jobs/train_policy.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from codistill.errors import ConfigError
from codistill.policy import PROBE_LOSSES, PolicyContext
from codistill.validation import load_config
from policies.environment import TeacherSelectionEnv, action_of, features_of, feedback_of
from policies.learned import ESTIMATORS, LearnedPolicy
from policies.pool_distribution import RECIPES, PoolDistribution


@dataclass(frozen=True)
class Episode:
    """One finished episode: its pool, return, the probe loss after its last step, each teacher's mean weight."""

    index: int
    pool: str
    total_reward: float
    final_probe_loss: float
    mean_weights: dict[str, float]


def learned_policy(*, seed: int, estimator: str, probe_loss: str, update_every: int, update_epochs: int, lr: float,
                   init_std: float) -> LearnedPolicy:
    """A fresh learning policy (offline, with a probe); it scores any number of teachers."""
    context = PolicyContext(teacher_names=(), num_classes=0, device=torch.device("cpu"), online=False,
                            student_index=0, student_name="student", total_epochs=1, steps_per_epoch=1, seed=seed,
                            probe_available=True)
    return LearnedPolicy(context, update_every=update_every, update_epochs=update_epochs, lr=lr, init_std=init_std,
                         estimator=estimator, probe_loss=probe_loss)


def train(envs: Sequence[TeacherSelectionEnv], policy: LearnedPolicy, *, episodes: int, seed: int) -> Iterator[Episode]:
    """Run ``episodes`` episodes (seeds ``seed``, ``seed + 1``, …, cycling through ``envs``), updating
    ``policy`` with its learner every ``policy.update_every`` steps; yields each episode once it ends."""
    learner = policy.make_learner()
    steps = 0
    for index in range(episodes):
        env = envs[index % len(envs)]
        features, reset_info = env.reset(seed=seed + index)
        pool = reset_info["pool"].describe() if "pool" in reset_info else "the config's pool"
        total, weights_sum, done = 0.0, torch.zeros(len(env.teacher_names)), False
        while not done:
            weights = policy.act(features_of(features, len(env.teacher_names)))
            features, reward, terminated, truncated, info = env.step(action_of(weights))
            policy.record(weights, feedback_of(info))
            total += reward
            weights_sum += weights.mean(0)
            steps += 1
            done = terminated or truncated
            if steps % policy.update_every == 0:
                policy.load_parameters(learner.learn([policy.collect_transitions()]))
        mean = weights_sum / env.episode_steps
        yield Episode(index, pool, total, info["probe_loss_after"], dict(zip(env.teacher_names, mean.tolist())))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="one offline config for every episode (default: the pool distribution)")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--episode-steps", type=int, default=100)
    parser.add_argument("--estimator", choices=ESTIMATORS, default="credit")
    parser.add_argument("--probe-loss", choices=PROBE_LOSSES, default="mae")
    parser.add_argument("--update-every", type=int, default=4)
    parser.add_argument("--update-epochs", type=int, default=4, help="learner epochs per update")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--init-std", type=float, default=1.0, help="PPO's initial exploration σ")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--library", type=Path, default=Path("runs/teacher-library"),
                        help="where the distribution's teachers are trained once and reused")
    parser.add_argument("--pool-sizes", type=int, nargs="+", default=[2, 3, 4], help="teachers per pool")
    parser.add_argument("--noise-rates", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4],
                        help="symmetric label noise of the worlds")
    parser.add_argument("--data-seeds", type=int, default=2, help="training splits per noise rate")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 2.0, 3.0, 4.0],
                        help="KD temperatures drawn per episode")
    parser.add_argument("--students", nargs="+", choices=["mlp", "cnn"], default=["mlp", "cnn"])
    parser.add_argument("--out", type=Path, required=True, help="where to save the policy (.pt)")
    return parser.parse_args(argv)


def argument_errors(args: argparse.Namespace) -> list[str]:
    """What is wrong with the arguments, each naming its flag (empty: nothing)."""
    counts = ("episodes", "episode_steps", "update_every", "update_epochs", "data_seeds")
    bad = [f"--{name.replace('_', '-')} must be ≥ 1" for name in counts if getattr(args, name) < 1]
    bad += [f"--{name.replace('_', '-')} must be > 0" for name in ("lr", "init_std") if getattr(args, name) <= 0]
    if not all(2 <= size <= len(RECIPES) for size in args.pool_sizes):
        bad.append(f"--pool-sizes must lie in [2, {len(RECIPES)}] (the library's teachers per world)")
    if not all(0.0 <= rate < 0.9 for rate in args.noise_rates):
        bad.append("--noise-rates must lie in [0, 0.9)")
    if not all(0.0 < value < 100.0 for value in args.temperatures):
        bad.append("--temperatures must lie in (0, 100)")
    return bad


def main(argv: list[str] | None = None) -> int:
    """Train and save a policy; the exit status (2: a bad argument or config, one line)."""
    args = parse_args(argv)
    bad = argument_errors(args)
    if bad:
        print(f"codistill: {bad[0]}", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config, mode="offline") if args.config else None
    except ConfigError as error:
        print(f"codistill: {error}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    if config is None:
        pools = PoolDistribution(args.library, noise_rates=args.noise_rates, data_seeds=args.data_seeds,
                                 temperatures=args.temperatures, students=args.students)
        print(f"teacher library: {len(pools.worlds)} worlds × {pools.max_pool_size} teachers in {args.library} "
              f"({time.perf_counter() - started:.0f}s)", flush=True)
        envs = [TeacherSelectionEnv(episode_steps=args.episode_steps, probe_loss=args.probe_loss, pools=pools,
                                    pool_size=size) for size in args.pool_sizes]
    else:
        envs = [TeacherSelectionEnv(config, episode_steps=args.episode_steps, probe_loss=args.probe_loss)]
    policy = learned_policy(seed=args.seed, estimator=args.estimator, probe_loss=args.probe_loss,
                            update_every=args.update_every, update_epochs=args.update_epochs, lr=args.lr,
                            init_std=args.init_std)
    try:
        for episode in train(envs, policy, episodes=args.episodes, seed=args.seed):
            weights = ", ".join(f"{name} {w:.2f}" for name, w in episode.mean_weights.items())
            print(f"episode {episode.index + 1}/{args.episodes}  ({time.perf_counter() - started:.0f}s)  "
                  f"return {episode.total_reward:+.4f}  final probe loss {episode.final_probe_loss:.3f}  "
                  f"mean weights: {weights}  [{episode.pool}]", flush=True)
    finally:
        for env in envs:
            env.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    policy.save(args.out)
    print(f"saved the policy to {args.out} in {time.perf_counter() - started:.0f}s  "
          f"(use: distillation.policy.params.checkpoint: {args.out})")
    return 0
