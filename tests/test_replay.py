"""Replay with stored latents: right latent for the right env and step, no transition across episodes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrm_agent.agent import HRMAgent
from hrm_agent.replay import ReplayBuffer

from conftest import TINY_ENV, tiny_config

S, D = 3, 2


def _z(step: int, env: int) -> torch.Tensor:
    """A latent that encodes (step, env): z_H filled with step, z_L with env."""
    return torch.stack([torch.full((S, D), float(step)), torch.full((S, D), float(env))])


def _add_step(buffer: ReplayBuffer, step: int, n_envs: int, episode_start: np.ndarray) -> None:
    z = torch.stack([_z(step, e) for e in range(n_envs)], dim=1)  # (2, n_envs, S, D)
    obs = np.full((n_envs, 4), step % 256, dtype=np.uint8)
    buffer.add(obs, obs + 1, np.arange(n_envs), np.zeros(n_envs), np.zeros(n_envs, bool), episode_start, z)


def test_stored_latents_come_back_for_the_right_env_and_step():
    n_envs = 3
    buffer = ReplayBuffer(30, n_envs, seq_len=4, latent_shape=(S, D))
    for step in range(7):
        _add_step(buffer, step, n_envs, np.full(n_envs, step in (0, 4)))
    batch = buffer.sample(200, np.random.default_rng(0))
    steps = batch.obs[:, 0].long()
    envs = batch.actions
    # z_next is what the forward pass on s_t produced; z_init what the previous one produced
    assert torch.equal(batch.z_next[0, :, 0, 0].long(), steps)
    assert torch.equal(batch.z_next[1, :, 0, 0].long(), envs)
    assert torch.equal(batch.z_init[0, :, 0, 0].long()[~batch.episode_start], steps[~batch.episode_start] - 1)
    assert torch.equal(batch.z_init[1, :, 0, 0].long()[~batch.episode_start], envs[~batch.episode_start])
    assert set(steps[batch.episode_start].tolist()) == {0, 4}


def test_full_buffer_never_samples_the_row_whose_predecessor_was_overwritten():
    buffer = ReplayBuffer(8, 2, seq_len=4, latent_shape=(S, D))  # 4 rows
    for step in range(10):  # rows now hold steps 8, 9, 6, 7; row 2 (step 6) is the oldest
        _add_step(buffer, step, 2, np.zeros(2, bool))
    batch = buffer.sample(500, np.random.default_rng(1))
    steps = batch.obs[:, 0].long()
    assert set(steps.tolist()) == {7, 8, 9}
    assert torch.equal(batch.z_init[0, :, 0, 0].long(), steps - 1)


def test_reported_memory_per_transition_matches_the_arrays():
    seq_len, S_, D_ = 81, 82, 64
    buffer = ReplayBuffer(1_000, 4, seq_len=seq_len, latent_shape=(S_, D_), latent_dtype=torch.float16)
    # obs + next_obs (uint8), action int32, reward float32, terminated + episode_start bool, one fp16 latent pair
    assert buffer.bytes_per_transition == 2 * seq_len + 4 + 4 + 1 + 1 + 2 * S_ * D_ * 2
    no_latents = ReplayBuffer(1_000, 4, seq_len=seq_len)
    assert no_latents.bytes_per_transition == 2 * seq_len + 10
    assert no_latents.z_out is None


def test_no_transition_spans_an_autoreset_with_several_envs():
    env_kwargs = {**TINY_ENV, "max_steps": 6}  # many truncations and some successes
    agent = HRMAgent("DynamicMaze-v0", tiny_config(n_envs=3, learning_starts=10_000), env_kwargs=env_kwargs)
    agent.learn(300)
    r = agent.replay
    rows = r.pos  # not full
    done_seen = terminated_seen = 0
    for t in range(rows - 1):
        for e in range(3):
            next_is_start = r.episode_start[t + 1, e]
            if next_is_start:
                done_seen += 1
                terminated_seen += r.terminated[t, e]
                # the stored next obs is the episode's final obs, not the reset obs of the next row
                assert not np.array_equal(r.next_obs[t, e], r.obs[t + 1, e]) or r.terminated[t, e] == 0
            else:
                assert np.array_equal(r.next_obs[t, e], r.obs[t + 1, e])
                assert not r.terminated[t, e]
    assert done_seen > 20 and terminated_seen > 0
    # episodes are at most max_steps long: an episode start at least every 6 rows in every column
    starts = np.flatnonzero(r.episode_start[:rows, 0])
    assert np.all(np.diff(starts) <= 6)


@pytest.mark.parametrize("mode", ["full", "token"])
def test_latent_of_next_row_is_the_one_the_previous_forward_pass_left(mode):
    config = tiny_config(n_envs=2, learning_starts=10_000, carry=mode)
    agent = HRMAgent("DynamicMaze-v0", config, env_kwargs=TINY_ENV)
    agent.learn(100)
    r = agent.replay
    # replay the forward passes: row t starts from z_out[t-1] (or the initial state at an episode start)
    for t in range(1, r.pos):
        carry = agent.online.carry_from_state(r.z_out[t - 1].transpose(0, 1).float())
        carry = agent.online.reset_carry(torch.from_numpy(r.episode_start[t]), carry)
        with torch.no_grad():
            new_carry, _ = agent.online(carry, torch.from_numpy(r.obs[t]))
        stored = agent.online.carry_state(new_carry, mode).transpose(0, 1).half()
        torch.testing.assert_close(stored, r.z_out[t], atol=2e-2, rtol=2e-2)


def test_token_carry_stores_one_vector_per_level():
    D = tiny_config()["model"]["hidden_size"]
    sizes = {}
    for mode in ("full", "token"):
        agent = HRMAgent("DynamicMaze-v0", tiny_config(carry=mode), env_kwargs=TINY_ENV)
        agent.learn(20)
        sizes[mode] = agent.replay.bytes_per_transition
        S = agent.model_config.total_seq_len
        assert agent.replay.z_out.shape[2:] == ((2, D) if mode == "token" else (2, S, D))
    # float16 latents: 2 levels x D (token) against 2 levels x S x D (full)
    assert sizes["full"] - sizes["token"] == 2 * 2 * (S - 1) * D


def _n_step_buffer(capacity_rows: int, steps: int, terminated_at: set[int], started_at: set[int]) -> ReplayBuffer:
    """One env; step t has reward t + 1, obs t, next_obs t + 100 and latent t."""
    buffer = ReplayBuffer(capacity_rows, 1, seq_len=1, latent_shape=(S, D))
    for t in range(steps):
        buffer.add(
            np.array([[t]], np.uint8), np.array([[t + 100]], np.uint8), np.zeros(1), np.array([t + 1.0]),
            np.array([t in terminated_at]), np.array([t in started_at]), _z(t, 0)[:, None],
        )
    return buffer


def _expected_n_step(t: int, n: int, gamma: float, ends: set[int], newest: int) -> tuple[float, float, int]:
    """Return, gamma^k and last step of the n-step transition from t (an episode ends after each step in ends)."""
    ret, discount, last = 0.0, 1.0, t
    for k in range(n):
        last = t + k
        ret += discount * (last + 1)
        discount *= gamma
        if last in ends or last == newest:
            break
    return ret, discount, last


@pytest.mark.parametrize("n", [1, 3])
def test_n_step_samples_sum_discounted_rewards_and_stop_at_episode_ends(n: int):
    gamma = 0.5
    terminated, truncated = {4}, {8}  # episodes: 0-4 (terminated), 5-8 (time limit), 9-11 (still running)
    buffer = _n_step_buffer(20, 12, terminated, {0, 5, 9})
    batch = buffer.sample(400, np.random.default_rng(0), n_step=n, gamma=gamma)
    ends = terminated | truncated
    for i, t in enumerate(batch.obs[:, 0].tolist()):
        ret, discount, last = _expected_n_step(t, n, gamma, ends, newest=11)
        assert batch.rewards[i].item() == pytest.approx(ret)
        assert batch.next_obs[i, 0].item() == last + 100  # bootstraps from s_{last+1} ...
        assert batch.z_next[0, i, 0, 0].item() == last  # ... starting from the latent step `last` produced
        assert batch.terminated[i].item() == float(last in terminated)
        if n == 1:
            assert batch.discounts is None
        else:
            assert batch.discounts[i].item() == pytest.approx(discount)
    assert set(batch.obs[:, 0].tolist()) == set(range(12))


def test_n_step_never_runs_into_the_oldest_row_of_a_full_buffer():
    buffer = _n_step_buffer(5, 8, set(), {0})  # rows hold steps 5, 6, 7, 3, 4; the write position is row 3
    batch = buffer.sample(300, np.random.default_rng(2), n_step=4, gamma=1.0)
    last = batch.next_obs[:, 0].long() - 100
    assert set(batch.obs[:, 0].tolist()) == {4, 5, 6, 7}
    assert (last == 7).all()  # every sample runs to the newest step, never on into the overwritten row
    assert torch.equal(batch.rewards, torch.tensor([sum(s + 1 for s in range(t, 8)) for t in batch.obs[:, 0].tolist()],
                                                   dtype=torch.float32))
