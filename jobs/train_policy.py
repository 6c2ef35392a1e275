"""Train the learned teacher-selection policy in ``TeacherSelectionEnv`` and save it.

    python jobs/train_policy.py --episodes 20 --out runs/teacher-policy.pt
    python jobs/train_policy.py --config jobs/configs/FILE.yaml --episodes 40 --out runs/policy.pt

Without ``--config`` the environment's default episode (digits, a pool of three MLP teachers it
trains itself) is used; with one, an offline config (one student, ``teachers``,
``data.probe_fraction`` > 0). Each episode trains a fresh student (seed ``--seed`` + episode) for
``--episode-steps`` steps; the policy samples its weights, gets the probe reward and its PPO
learner updates it every ``--update-every`` steps. The saved file (``torch.load(weights_only=True)``)
is what ``distillation.policy.params.checkpoint`` takes in a cohort or offline run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _bootstrap  # noqa: F401  (puts platform/ on sys.path when codistill is not installed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="an offline config for the episodes (default: the environment's own)")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--episode-steps", type=int, default=60)
    parser.add_argument("--update-every", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--init-std", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="where to save the policy (.pt)")
    args = parser.parse_args(argv)

    import torch

    from codistill.config import load_config
    from codistill.errors import ConfigError
    from codistill.policy import PolicyContext
    from policies.environment import TeacherSelectionEnv
    from policies.learned import LearnedPolicy

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
    context = PolicyContext(teacher_names=tuple(env.teacher_names), num_classes=0, device=torch.device("cpu"),
                            online=False, student_index=0, student_name="student", total_epochs=env.config.epochs,
                            steps_per_epoch=args.episode_steps, seed=args.seed, probe_available=True)
    policy = LearnedPolicy(context, update_every=args.update_every, lr=args.lr, init_std=args.init_std)
    learner = policy.make_learner()
    steps = 0
    try:
        for episode in range(args.episodes):
            features, _ = env.reset(seed=args.seed + episode)
            episode_return, weights_sum, done = 0.0, torch.zeros(len(env.teacher_names)), False
            while not done:
                weights = policy.act(torch.from_numpy(features))
                logits = weights.clamp_min(1e-30).log()
                features, reward, terminated, truncated, info = env.step((logits - logits.mean(-1, keepdim=True)).numpy())
                policy.record(reward)
                episode_return += reward
                weights_sum += weights.mean(0)
                steps += 1
                done = terminated or truncated
                if steps % args.update_every == 0:
                    policy.load_parameters(learner.learn([policy.collect_transitions()]))
            mean = ", ".join(f"{name} {w:.2f}" for name, w in zip(env.teacher_names, weights_sum / args.episode_steps))
            print(f"episode {episode + 1}/{args.episodes}  return {episode_return:+.4f}  "
                  f"final probe loss {info['probe_loss_after']:.3f}  mean weights: {mean}", flush=True)
    finally:
        env.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    policy.save(args.out)
    print(f"saved the policy to {args.out}  (use: distillation.policy.params.checkpoint: {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
