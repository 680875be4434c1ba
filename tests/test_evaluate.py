"""evaluate() on the policy protocol: any object with stable-baselines3's ``predict`` plays the episodes."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from envs.oracle import BFSOracle
from hrm_agent.baselines.sb3 import EvalPolicy
from hrm_agent.evaluate import evaluate

from conftest import TINY_ENV


class Cycle:
    """A plain policy, no HRM and no env attributes: action ``t % 4`` at step ``t`` of each episode."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, bool]] = []

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        t = np.zeros(len(observation), dtype=np.int64) if state is None else np.where(episode_start, 0, state)
        self.calls.append((len(observation), deterministic))
        return t % 4, t + 1


def play(env_id: str, env_kwargs: dict, seed: int, policy) -> tuple[bool, int, float]:
    """One episode by hand: (success, length, return)."""
    env = gym.make(env_id, **env_kwargs)
    obs, _ = env.reset(seed=seed)
    state, total, steps, done = None, 0.0, 0, False
    while not done:
        actions, state = policy.predict(obs[None], state, np.array([steps == 0]))
        obs, reward, terminated, truncated, info = env.step(int(actions[0]))
        total, steps, done = total + reward, steps + 1, terminated or truncated
    return bool(info["is_success"]), steps, total


def test_a_plain_policy_plays_the_env_it_is_given_with_its_state_and_episode_starts():
    policy = Cycle()
    result = evaluate(policy, 5, seed=3, env_kwargs=TINY_ENV, env_id="DynamicMaze-v0", deterministic=False)
    assert set(policy.calls) == {(5, False)}  # one batched call per step, as asked
    for i in range(5):
        assert play("DynamicMaze-v0", TINY_ENV, 3 + i, Cycle()) == (
            result.success[i], result.length[i], pytest.approx(result.episode_return[i]))
    assert result.action_counts.sum() == result.length.sum() and result.latents is None


def test_the_env_comes_from_the_policy_when_not_given():
    oracle = EvalPolicy(BFSOracle(0), "FourRooms-v0", {"change_prob": 0.0}, "oracle")
    result = evaluate(oracle, 6, seed=5)
    same = evaluate(BFSOracle(0), 6, seed=5, env_id="FourRooms-v0", env_kwargs={"change_prob": 0.0})
    np.testing.assert_array_equal(result.length, same.length)
    assert result.success.all()  # nothing moves: the oracle always arrives, by a shortest path
    np.testing.assert_array_equal(result.path_efficiency, 1.0)


def test_an_intervention_runs_on_any_policy():
    result = evaluate(BFSOracle(0), 8, seed=1, env_id="FourRooms-v0", intervention="goal", intervention_step=1)
    applied = result.intervened
    assert applied.any() and (result.intervention_step[applied] == 1).all()
    assert result.success.all() and (result.extra_steps == 0).all()  # the oracle re-plans at once


def test_without_an_env_or_a_latent_hook_it_says_what_is_missing():
    with pytest.raises(ValueError, match="give env_id, or a policy with an env_id attribute"):
        evaluate(Cycle(), 1)
    with pytest.raises(ValueError, match="Cycle records no latents: it has no record_latents method"):
        evaluate(Cycle(), 1, env_id="FourRooms-v0", record_latents=True)
