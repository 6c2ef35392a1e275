"""Pretraining the learned policy: the environment's credit, the seeded pool distribution, and a
short pretraining run whose frozen policy must have learned to leave a random teacher out."""

import numpy as np
import pytest
import torch

from policies.environment import TeacherSelectionEnv, action_of, features_of
from policies.learned import LearnedPolicy
from policies.pool_distribution import Pool, PoolDistribution
from policies.train_policy import learned_policy, train


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def pools(tmp_path_factory):
    """A one-world library (20% label noise, seven MLP teachers; seconds) and MLP students only."""
    torch.set_num_threads(1)
    return PoolDistribution(tmp_path_factory.mktemp("library"), noise_rates=(0.2,), data_seeds=1, students=("mlp",))


def test_the_environment_gives_the_dense_credit_of_the_agents_weights(pools):
    from gymnasium.utils.env_checker import check_env

    env = TeacherSelectionEnv(pools=pools, pool_size=3, episode_steps=3)
    check_env(env, skip_render_check=True)
    features, info = env.reset(seed=0)
    assert features_of(features, 3).shape == (64, 3, 9) and isinstance(info["pool"], Pool)
    for _ in range(3):
        _, _, terminated, _, info = env.step(env.action_space.sample())
        credit = info["credit"]
        assert credit.shape == (64, 3) and credit.dtype == np.float32 and np.isfinite(credit).all()
        assert np.abs(credit).max() > 0  # each weight does move the probe loss
    assert terminated


def test_the_same_seed_draws_the_same_pools(pools):
    def drawn(seed):
        env = TeacherSelectionEnv(pools=pools, pool_size=2, episode_steps=1)
        return [env.reset(seed=seed + episode)[1]["pool"] for episode in range(6)]

    first = drawn(0)
    assert drawn(0) == first
    assert drawn(100) != first
    assert len({pool.teachers for pool in first}) > 1  # the pools do change from episode to episode
    library = sorted(path.stat().st_mtime_ns for path in pools.library.directory.iterdir())
    again = PoolDistribution(pools.library.directory, noise_rates=(0.2,), data_seeds=1, students=("mlp",))
    assert sorted(path.stat().st_mtime_ns for path in again.library.directory.iterdir()) == library  # reused


def test_a_short_pretraining_leaves_a_random_teacher_out_once_frozen(pools, tmp_path):
    """Six credit-learning episodes over the distribution; then, frozen, on a pool of the clean and
    the random teacher, the random one's mean weight must be below 0.15 (uniform gives it 0.5)."""
    envs = [TeacherSelectionEnv(pools=pools, pool_size=size, episode_steps=30) for size in (2, 3)]
    policy = learned_policy(seed=0, estimator="credit", probe_loss="mae", update_every=1, update_epochs=4, lr=1e-2,
                            init_std=1.0)
    for _ in train(envs, policy, episodes=6, seed=0):
        pass
    policy.save(tmp_path / "policy.pt")

    world = pools.worlds[0]
    config = pools.config(Pool(world, ("random", "clean"), "mlp", 2.0, 0.05, 0.9, 5e-4))
    env = TeacherSelectionEnv(config, episode_steps=20)
    frozen = LearnedPolicy(policy.context, checkpoint=str(tmp_path / "policy.pt"), learn=False)
    features, _ = env.reset(seed=1)
    random_weights = []
    for _ in range(20):
        weights = frozen.act(features_of(features, 2))
        random_weights.append(float(weights[:, 0].mean()))
        features, *_ = env.step(action_of(weights))
    print(f"frozen weight of the random teacher: {np.mean(random_weights):.3f}")
    assert np.mean(random_weights) < 0.15, random_weights
