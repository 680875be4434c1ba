"""Replay with stored latents: right latent for the right env and step, no transition across episodes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from envs.tokens import AGENT, DOOR_OPEN, EMPTY, GOAL
from hrm_agent.agent import HRMAgent
from hrm_agent.replay import GoalTokens, ReplayBuffer

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
            new_carry, _, _ = agent.online(carry, torch.from_numpy(r.obs[t]))
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


# --- hindsight goals -------------------------------------------------------------------------

FLOOR, DOOR, AGENT_ID, GOAL_ID = EMPTY, DOOR_OPEN, AGENT, GOAL


def _corridor_obs(agent: int, goal: int, cells: int = 8, door: int | None = None) -> np.ndarray:
    obs = np.full(cells, FLOOR, dtype=np.uint8)
    if door is not None:
        obs[door] = DOOR
    obs[goal] = GOAL_ID
    obs[agent] = AGENT_ID  # the agent hides whatever it stands on, as in the env
    return obs


def _corridor_buffer(paths: list[list[int]], goal: int, reached_goal: bool, door: int | None = None) -> ReplayBuffer:
    """One env; each path is an episode's agent cells; the last episode reaches the goal if ``reached_goal``."""
    steps = sum(len(p) - 1 for p in paths)
    buffer = ReplayBuffer(steps + 5, 1, seq_len=8, goal_tokens=GoalTokens(AGENT_ID, GOAL_ID, FLOOR))
    for e, path in enumerate(paths):
        for t in range(len(path) - 1):
            last = t == len(path) - 2
            done = last and reached_goal and e == len(paths) - 1
            buffer.add(_corridor_obs(path[t], goal, door=door)[None], _corridor_obs(path[t + 1], goal, door=door)[None],
                       np.array([1]), np.array([1.0 if done else -0.01]), np.array([done]), np.array([t == 0]))
    return buffer


def test_hindsight_goals_are_cells_reached_later_in_the_same_episode():
    paths = [[3, 4, 5, 6, 7], [7, 6, 5, 4, 3, 2]]  # a time-limited episode, then one that reaches the goal at 2
    buffer = _corridor_buffer(paths, goal=2, reached_goal=True)
    batch = buffer.sample(2_000, np.random.default_rng(0), her_ratio=0.5)
    seen: set[tuple[int, int]] = set()
    for i in range(2_000):
        obs, next_obs = batch.obs[i].numpy(), batch.next_obs[i].numpy()
        here, there = int(np.flatnonzero(obs == AGENT_ID)[0]), int(np.flatnonzero(next_obs == AGENT_ID)[0])
        episode = next(p for p in paths if here in p[:-1] and p[p.index(here) + 1] == there)
        goals = np.flatnonzero(obs == GOAL_ID)
        assert len(goals) == 1  # exactly one goal: the old one is gone
        goal = int(goals[0])
        reached = there == goal
        assert batch.terminated[i].item() == float(reached)
        assert batch.rewards[i].item() == pytest.approx(1.0 if reached else -0.01)
        assert (next_obs == GOAL_ID).sum() == (0 if reached else 1)
        if goal != 2:  # relabelled: a cell the agent stood on after this step, in this episode
            assert goal in episode[episode.index(here) + 1:]
            seen.add((here, goal))
    relabelled = sum(1 for i in range(2_000) if batch.obs[i, 2] != GOAL_ID)
    # half are drawn; those of the second episode whose drawn cell is its goal keep it: 0.5 * 6.72 / 9
    assert 0.33 < relabelled / 2_000 < 0.42
    assert {(3, 4), (3, 7), (7, 3), (5, 3)} <= seen  # near and far goals both come up


def test_hindsight_keeps_the_goal_of_a_step_that_reached_it():
    buffer = _corridor_buffer([[5, 4, 3, 2]], goal=2, reached_goal=True)
    batch = buffer.sample(500, np.random.default_rng(1), her_ratio=1.0)
    final = batch.obs[:, 3] == AGENT_ID  # the step from cell 3 onto the goal at 2 has no later cell
    assert final.any()
    assert (batch.rewards[final] == 1.0).all() and (batch.terminated[final] == 1.0).all()
    assert (batch.obs[final, 2] == GOAL_ID).all()
    first = batch.obs[:, 5] == AGENT_ID  # from 5: goals at 4, 3 or 2 (the last one the real goal)
    goal_at = batch.obs[first].eq(GOAL_ID).float().argmax(1)
    assert set(goal_at.tolist()) == {2, 3, 4}
    onto = goal_at == 4
    assert (batch.rewards[first][onto] == 1.0).all() and (batch.terminated[first][onto] == 1.0).all()
    assert (batch.terminated[first][~onto] == 0.0).all()


def test_hindsight_never_puts_the_goal_on_a_door_or_the_agents_cell():
    buffer = _corridor_buffer([[0, 1, 2, 1, 0, 1]], goal=6, reached_goal=False, door=1)  # back and forth through a door
    batch = buffer.sample(500, np.random.default_rng(2), her_ratio=1.0)
    goal_at = batch.obs.eq(GOAL_ID).float().argmax(1)
    agent_at = batch.obs.eq(AGENT_ID).float().argmax(1)
    assert set(goal_at.tolist()) == {0, 2, 6}  # floor the agent reached later, or the real goal: never the door
    assert (goal_at != agent_at).all()


def test_hindsight_needs_one_step_samples_and_goal_tokens():
    buffer = _corridor_buffer([[0, 1, 2]], goal=6, reached_goal=False)
    with pytest.raises(ValueError, match="n_step 1"):
        buffer.sample(4, np.random.default_rng(0), n_step=3, her_ratio=0.5)
    plain = ReplayBuffer(10, 1, seq_len=8)
    plain.add(_corridor_obs(0, 6)[None], _corridor_obs(1, 6)[None], np.array([1]), np.array([0.0]),
              np.array([False]), np.array([True]))
    with pytest.raises(ValueError, match="goal_tokens"):
        plain.sample(4, np.random.default_rng(0), her_ratio=1.0)
    with pytest.raises(ValueError, match="n_step 1"):
        HRMAgent("DynamicMaze-v0", tiny_config(her_ratio=0.5, n_step=2), env_kwargs=TINY_ENV)


def test_agent_trains_on_hindsight_goals_of_its_own_episodes():
    agent = HRMAgent("DynamicMaze-v0", tiny_config(her_ratio=0.8), env_kwargs=TINY_ENV, seed=0)
    agent.learn(200)
    batch = agent.replay.sample(512, np.random.default_rng(0), her_ratio=0.8)
    real = agent.replay.sample(512, np.random.default_rng(0))  # the same transitions, real goals
    assert torch.equal(batch.actions, real.actions)
    assert (batch.obs.eq(GOAL_ID).sum(1) == 1).all()  # one goal in every observation, relabelled or not
    moved = (batch.obs != real.obs).any(1).float().mean().item()
    assert 0.1 < moved <= 0.8  # less than 0.8: a drawn cell that is the agent's own or a door is not used
    assert batch.terminated.sum() > 2 * real.terminated.sum()  # goals reached in hindsight
