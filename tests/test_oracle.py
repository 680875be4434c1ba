"""The BFS helpers and the BFS oracle policy."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

import envs  # noqa: F401  (registers the ids)
from envs import BFSOracle, bfs_distances, shortest_path_length
from envs.tokens import AGENT, DOOR_CLOSED, DOOR_OPEN, EMPTY, GOAL, WALL

E, W, O, C, A, G = EMPTY, WALL, DOOR_OPEN, DOOR_CLOSED, AGENT, GOAL

# A corridor: the goal at the right end, an open door on the way, a dead end
# behind a closed door below.
CORRIDOR = np.array(
    [
        [W, W, W, W, W, W, W],
        [W, A, E, O, E, G, W],
        [W, W, C, W, W, W, W],
        [W, W, E, W, W, W, W],
        [W, W, W, W, W, W, W],
    ],
    dtype=np.uint8,
)


def test_bfs_distances_count_moves_through_open_doors_only():
    dist = bfs_distances(CORRIDOR, goal=(5, 1))
    np.testing.assert_array_equal(dist[1, 1:6], [4, 3, 2, 1, 0])
    assert dist[2, 2] == -1 and dist[3, 2] == -1  # behind the closed door
    assert (dist[CORRIDOR == WALL] == -1).all()
    assert dist.dtype == np.int32 and dist.shape == CORRIDOR.shape


def test_bfs_distances_without_border_stay_in_bounds():
    open_field = np.zeros((3, 4), dtype=np.uint8)
    dist = bfs_distances(open_field, goal=(0, 0))
    np.testing.assert_array_equal(dist, [[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5]])


def test_bfs_distances_reject_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        bfs_distances(np.zeros((2, 3, 3), dtype=np.uint8), (0, 0))
    with pytest.raises(ValueError, match="outside"):
        bfs_distances(CORRIDOR, (7, 1))


def test_shortest_path_length_reads_agent_and_goal_from_the_grid():
    assert shortest_path_length(CORRIDOR) == 4
    cut = CORRIDOR.copy()
    cut[1, 3] = DOOR_CLOSED
    assert shortest_path_length(cut) == -1
    on_goal = CORRIDOR.copy()
    on_goal[1, 1], on_goal[1, 5] = EMPTY, AGENT
    assert shortest_path_length(on_goal) == 0


def test_oracle_moves_along_a_shortest_path():
    assert BFSOracle().predict(CORRIDOR)[0] == 1  # right
    grid = CORRIDOR.copy()
    grid[1, 1], grid[3, 2] = EMPTY, AGENT
    grid[2, 2] = DOOR_OPEN
    assert BFSOracle().predict(grid)[0] == 0  # up, out of the dead end


def test_oracle_heads_for_a_closed_door_when_the_goal_is_cut_off():
    grid = CORRIDOR.copy()
    grid[1, 3] = DOOR_CLOSED
    grid[1, 1], grid[1, 2] = EMPTY, AGENT
    assert BFSOracle().predict(grid)[0] == 1  # wait at the door, not back left


def test_oracle_makes_a_move_not_into_a_wall_when_no_route_exists():
    grid = np.array([[W, W, W, W], [W, A, E, W], [W, W, W, W], [W, G, W, W]], dtype=np.uint8)
    assert BFSOracle().predict(grid)[0] == 1


@pytest.mark.parametrize("env_id", ["DynamicMaze-v0", "FourRooms-v0"])
def test_oracle_step_always_decreases_distance_when_goal_reachable(env_id):
    env = gym.make(env_id)
    oracle = BFSOracle()
    obs, info = env.reset(seed=0)
    for _ in range(300):
        action = int(oracle.predict(obs)[0])
        before = info["shortest_path"]
        obs, _, terminated, truncated, info = env.step(action)
        if before > 0:
            # the move itself shortens the path by one; dynamics may then change it
            x, y = info["agent_pos"]
            assert env.unwrapped.distances()[y, x] == before - 1 or info["changed"]
        if terminated or truncated:
            obs, info = env.reset()


def test_oracle_batch_equals_single_predictions():
    env = gym.make("DynamicMaze-v0")
    batch = np.stack([env.reset(seed=s)[0] for s in range(8)])
    oracle = BFSOracle()
    actions, state = oracle.predict(batch, state="kept")
    assert actions.shape == (8,) and actions.dtype == np.int64 and state == "kept"
    single = [int(oracle.predict(o)[0]) for o in batch]
    assert actions.tolist() == single
    assert oracle.predict(batch[0])[0].shape == ()


def test_oracle_random_tie_breaking_only_picks_shortest_moves():
    grid = np.zeros((5, 5), dtype=np.uint8)
    grid[0, 0], grid[4, 4] = AGENT, GOAL
    oracle = BFSOracle(seed=0)
    picks = {int(oracle.predict(grid, deterministic=False)[0]) for _ in range(50)}
    assert picks == {1, 2}  # right and down are both on a shortest path


def test_oracle_rejects_minigrid_dict_observations():
    env = gym.make("FourRooms-v0", obs_mode="minigrid")
    obs, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match="obs_mode='full'"):
        BFSOracle().predict(obs)


@pytest.mark.parametrize("env_id", ["DynamicMaze-v0", "FourRooms-v0"])
def test_oracle_reaches_the_goal_in_at_least_99_percent_of_episodes(env_id):
    env = gym.make(env_id)
    oracle = BFSOracle()
    episodes, successes = 200, 0
    for seed in range(episodes):
        obs, _ = env.reset(seed=seed)
        terminated = truncated = False
        while not (terminated or truncated):
            obs, _, terminated, truncated, info = env.step(oracle.predict(obs)[0])
        successes += info["is_success"]
    assert successes / episodes >= 0.99


def test_sb3_evaluate_policy_accepts_the_oracle():
    env = Monitor(gym.make("FourRooms-v0"))
    env.reset(seed=0)
    mean_reward, _ = evaluate_policy(BFSOracle(), env, n_eval_episodes=10)
    assert mean_reward >= 0.9
