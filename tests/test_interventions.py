"""The re-planning test's changes to the grid (envs.interventions): the goal moved off every shortest
path, a door closed on one, and the wrapper that applies them after the K-th step of an episode."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from envs import interventions
from envs.interventions import Intervention, intervene, static_kwargs
from envs.oracle import bfs_distances
from envs.tokens import DOOR_CLOSED, DOOR_OPEN, EMPTY, GOAL, WALL

from test_envs import ENV_IDS, _shortest_paths_cells


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_shortest_path_cells_are_every_cell_on_some_shortest_path(env_id):
    env = gym.make(env_id)
    for seed in range(10):
        env.reset(seed=seed)
        base = env.unwrapped
        cells = {(int(x), int(y)) for y, x in zip(*np.nonzero(interventions.path_cells(base)))}
        assert cells == _shortest_paths_cells(base.layout, base.agent_pos, base.goal_pos)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_moving_the_goal_puts_it_off_every_shortest_path_on_a_reachable_empty_cell(env_id):
    env = gym.make(env_id, change_prob=0.0)
    for seed in range(20):
        obs, info = env.reset(seed=seed)
        base = env.unwrapped
        old_goal, on_path = base.goal_pos, _shortest_paths_cells(base.layout, base.agent_pos, base.goal_pos)
        assert intervene(base, "goal")
        new = env.unwrapped.gen_obs()
        x, y = base.goal_pos
        assert base.goal_pos != old_goal and base.goal_pos not in on_path and obs[y, x] == EMPTY
        assert (new == GOAL).sum() == 1 and new[y, x] == GOAL and new[old_goal[1], old_goal[0]] == EMPTY
        assert np.array_equal(new != obs, np.isin(np.arange(new.size), [y * new.shape[1] + x,
                              old_goal[1] * new.shape[1] + old_goal[0]]).reshape(new.shape))
        # the episode goes on to the new goal
        _, _, _, _, info = env.step(0)
        assert info["shortest_path"] == bfs_distances(base.layout, base.goal_pos)[info["agent_pos"][1],
                                                                                   info["agent_pos"][0]] >= 0
        assert base.grid.get(x, y).type == "goal" and base.grid.get(*old_goal) is None


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_closing_a_door_on_the_path_makes_the_goal_farther_but_reachable(env_id):
    env = gym.make(env_id, change_prob=0.0)
    applied = 0
    for seed in range(40):
        obs, info = env.reset(seed=seed)
        base = env.unwrapped
        on_path = _shortest_paths_cells(base.layout, base.agent_pos, base.goal_pos)
        if not intervene(base, "door"):
            continue
        applied += 1
        new = base.gen_obs()
        (y, x), = zip(*np.nonzero(new != obs))
        assert new[y, x] == DOOR_CLOSED and (x, y) in on_path and (x, y) not in (base.agent_pos, base.goal_pos)
        assert base.grid.get(x, y).type == "door" and not base.grid.get(x, y).is_open
        after = base.distances()[base.agent_pos[1], base.agent_pos[0]]
        assert after > info["shortest_path"] > 0
        for _ in range(5):  # the door stays closed
            obs, *_ = env.step(int(np.random.default_rng(seed).integers(4)))
            assert obs[y, x] == DOOR_CLOSED
    assert applied >= 10


def test_an_intervention_that_cannot_apply_changes_nothing():
    env = gym.make("FourRooms-v0", change_prob=0.0)
    for seed in range(50):  # agent and goal in one room: no doorway on the path, a room cell rarely cuts it
        env.reset(seed=seed)
        base = env.unwrapped
        before, goal = base.layout, base.goal_pos
        if not intervene(base, "door"):
            assert np.array_equal(base.layout, before) and base.goal_pos == goal
            break
    else:
        pytest.fail("every episode had a door to close")
    with pytest.raises(ValueError, match="intervention"):
        intervene(base, "wall")


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("kind", ["goal", "door"])
def test_the_wrapper_intervenes_after_step_k_exactly_as_intervene_does(env_id, kind):
    K, applied = 2, 0
    wrapped = Intervention(gym.make(env_id, change_prob=0.0), kind, step=K)
    plain = gym.make(env_id, change_prob=0.0)
    for seed in range(30):
        for env in (wrapped, plain):
            env.reset(seed=seed)
        for t in range(1, K + 3):
            action = t % 4
            obs, reward, terminated, truncated, info = wrapped.step(action)
            ref_obs, ref_reward, ref_terminated, ref_truncated, ref_info = plain.step(action)
            assert (reward, terminated, truncated) == (ref_reward, ref_terminated, ref_truncated)
            if t == K and not (terminated or truncated) and intervene(plain.unwrapped, kind):
                applied += 1
                ref_obs = plain.unwrapped.gen_obs()
                x, y = info["agent_pos"]
                assert info["intervened"] and info["changed"] and info["path_changed"]
                assert info["shortest_path"] == plain.unwrapped.distances()[y, x]
            else:
                assert "intervened" not in info and info == ref_info
            np.testing.assert_array_equal(obs, ref_obs)
            if terminated or truncated:
                break
    assert applied >= 5


def test_the_wrapper_counts_steps_from_each_reset():
    env = Intervention(gym.make("DynamicMaze-v0", **static_kwargs({})), "goal", step=1)
    for seed in range(2):
        env.reset(seed=seed)
        goal = env.unwrapped.goal_pos
        *_, info = env.step(0)
        assert info["intervened"] and env.unwrapped.goal_pos != goal
        *_, info = env.step(0)
        assert "intervened" not in info and not info["changed"]


def test_the_wrapper_refuses_an_unknown_intervention_or_a_step_before_the_first():
    with pytest.raises(ValueError, match="intervention must be one of"):
        Intervention(gym.make("FourRooms-v0"), "wall")
    with pytest.raises(ValueError, match="intervention_step must be at least 1"):
        Intervention(gym.make("FourRooms-v0"), "door", step=0)


def test_static_kwargs_stops_the_changes_of_either_dynamics():
    assert static_kwargs({"size": 7}) == {"size": 7, "change_prob": 0.0}
    assert static_kwargs({"dynamics": "toggle"}) == {"dynamics": "toggle", "toggle_prob": 0.0}
    for kwargs in ({}, {"dynamics": "toggle"}):
        env = gym.make("DynamicMaze-v0", **static_kwargs(kwargs))
        env.reset(seed=0)
        assert not any(env.step(t % 4)[4]["changed"] for t in range(40))


@pytest.mark.parametrize("token, kind", [(WALL, "wall"), (DOOR_CLOSED, "door"), (DOOR_OPEN, "door"), (GOAL, "goal")])
def test_set_cell_changes_both_grids_and_the_distances(token, kind):
    env = gym.make("FourRooms-v0").unwrapped
    env.reset(seed=0)
    x, y = next((int(x), int(y)) for y, x in zip(*np.nonzero(env.layout == EMPTY)) if (x, y) != env.agent_pos)
    env.distances()  # cached
    env.set_cell((x, y), token)
    assert env.layout[y, x] == token and env.grid.get(x, y).type == kind
    if kind == "door":
        assert env.grid.get(x, y).is_open == (token == DOOR_OPEN)
    np.testing.assert_array_equal(env.distances(), bfs_distances(env.layout, env.goal_pos))
    env.set_cell((x, y), EMPTY)
    assert env.layout[y, x] == EMPTY and env.grid.get(x, y) is None
    with pytest.raises(ValueError, match="token must be one of"):
        env.set_cell((x, y), 99)
