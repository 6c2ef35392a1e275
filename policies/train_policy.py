"""Train the learned teacher-selection policy in ``TeacherSelectionEnv`` and save it.

    python jobs/train_policy.py --episodes 20 --out runs/teacher-policy.pt
    python jobs/train_policy.py --config jobs/configs/FILE.yaml --episodes 40 --out runs/policy.pt

Without ``--config`` the environment's default episode (digits, a pool of three MLP teachers it
trains itself) is used; with one, an offline config (one student, ``teachers``,
``data.probe_fraction`` > 0). Each episode trains a fresh student (seed ``--seed`` + episode) for
``--episode-steps`` steps; the policy samples its weights, gets the probe reward and its PPO
learner updates it every ``--update-every`` steps. The saved file (``torch.load(weights_only=True)``)
is what ``distillation.policy.params.checkpoint`` takes in a cohort or offline run.

:func:`train` is the loop; :func:`main` the command line of ``jobs/train_policy.py``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from codistill.config import load_config
from codistill.errors import ConfigError
from codistill.policy import PolicyContext
from policies.environment import TeacherSelectionEnv
from policies.learned import LearnedPolicy


@dataclass(frozen=True)
class Episode:
    """One finished episode: its return, the probe loss after its last step, each teacher's mean weight."""

    index: int
    total_reward: float
    final_probe_loss: float
    mean_weights: dict[str, float]


def learned_policy(env: TeacherSelectionEnv, *, seed: int, update_every: int, lr: float,
                   init_std: float) -> LearnedPolicy:
    """A fresh learning policy for ``env``'s teachers (an offline student with a probe)."""
    context = PolicyContext(teacher_names=tuple(env.teacher_names), num_classes=0, device=torch.device("cpu"),
                            online=False, student_index=0, student_name="student", total_epochs=env.config.epochs,
                            steps_per_epoch=env.episode_steps, seed=seed, probe_available=True)
    return LearnedPolicy(context, update_every=update_every, lr=lr, init_std=init_std, estimator="ppo", probe_loss="ce")


def train(env: TeacherSelectionEnv, policy: LearnedPolicy, *, episodes: int, seed: int) -> Iterator[Episode]:
    """Run ``episodes`` episodes (seeds ``seed``, ``seed + 1``, …), updating ``policy`` with its PPO
    learner every ``policy.update_every`` steps; yields each episode once it ends."""
    learner = policy.make_learner()
    steps = 0
    for index in range(episodes):
        features, _ = env.reset(seed=seed + index)
        total, weights_sum, done = 0.0, torch.zeros(len(env.teacher_names)), False
        while not done:
            weights = policy.act(torch.from_numpy(features))
            logits = weights.clamp_min(1e-30).log()
            features, reward, terminated, truncated, info = env.step((logits - logits.mean(-1, keepdim=True)).numpy())
            policy.record(reward)
            total += reward
            weights_sum += weights.mean(0)
            steps += 1
            done = terminated or truncated
            if steps % policy.update_every == 0:
                policy.load_parameters(learner.learn([policy.collect_transitions()]))
        mean = weights_sum / env.episode_steps
        yield Episode(index, total, info["probe_loss_after"], dict(zip(env.teacher_names, mean.tolist())))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="an offline config for the episodes (default: the environment's own)")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--episode-steps", type=int, default=60)
    parser.add_argument("--update-every", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--init-std", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="where to save the policy (.pt)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Train and save a policy; the exit status (2: a bad argument or config, one line)."""
    args = parse_args(argv)
    bad = [f"--{name.replace('_', '-')} must be ≥ 1" for name in ("episodes", "episode_steps", "update_every")
           if getattr(args, name) < 1]
    bad += [f"--{name.replace('_', '-')} must be > 0" for name in ("lr", "init_std") if getattr(args, name) <= 0]
    if bad:
        print(f"codistill: {bad[0]}", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config, mode="offline") if args.config else None
    except ConfigError as error:
        print(f"codistill: {error}", file=sys.stderr)
        return 2
    env = TeacherSelectionEnv(config, episode_steps=args.episode_steps)
    policy = learned_policy(env, seed=args.seed, update_every=args.update_every, lr=args.lr, init_std=args.init_std)
    try:
        for episode in train(env, policy, episodes=args.episodes, seed=args.seed):
            weights = ", ".join(f"{name} {w:.2f}" for name, w in episode.mean_weights.items())
            print(f"episode {episode.index + 1}/{args.episodes}  return {episode.total_reward:+.4f}  "
                  f"final probe loss {episode.final_probe_loss:.3f}  mean weights: {weights}", flush=True)
    finally:
        env.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    policy.save(args.out)
    print(f"saved the policy to {args.out}  (use: distillation.policy.params.checkpoint: {args.out})")
    return 0
