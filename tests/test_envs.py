"""Behaviour of DynamicMaze-v0 and FourRooms-v0 through the Gymnasium API."""

from __future__ import annotations

import hashlib
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from envs import BFSOracle, DynamicMazeEnv, FourRoomsEnv
from envs.oracle import bfs_distances
from envs.tokens import AGENT, GOAL, NUM_TOKENS, PASSABLE, WALL
from conftest import every_dynamics

ROOT = Path(__file__).resolve().parents[1]
ENV_IDS = ["DynamicMaze-v0", "FourRooms-v0"]
MOVES = {0: (0, -1), 1: (1, 0), 2: (0, 1), 3: (-1, 0)}


def rollout(env: gym.Env, actions: list[int], seed: int) -> list[tuple]:
    """(obs, reward, terminated, truncated, info) per step, resetting at episode ends."""
    obs, info = env.reset(seed=seed)
    out = [(obs, 0.0, False, False, info)]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        out.append((obs, reward, terminated, truncated, info))
        if terminated or truncated:
            obs, info = env.reset()
            out.append((obs, 0.0, False, False, info))
    return out


# --- registration and API conformance ---


def test_make_works_after_import_and_with_module_prefix():
    assert isinstance(gym.make("DynamicMaze-v0").unwrapped, DynamicMazeEnv)
    assert isinstance(gym.make("envs:FourRooms-v0").unwrapped, FourRoomsEnv)


def test_module_prefixed_id_imports_envs_by_itself():
    code = "import gymnasium as gym; print(type(gym.make('envs:FourRooms-v0').unwrapped).__name__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "FourRoomsEnv"


def test_registering_twice_is_harmless():
    envs.register_envs()
    envs.register_envs()
    assert gym.spec("DynamicMaze-v0").entry_point == "envs.dynamic_maze:DynamicMazeEnv"
    assert gym.spec("FourRooms-v0").entry_point == "envs.four_rooms:FourRoomsEnv"


def test_spec_has_no_time_limit_wrapper_the_env_truncates_itself():
    env = gym.make("DynamicMaze-v0", max_steps=7)
    assert env.spec.max_episode_steps is None
    assert env.unwrapped.max_steps == 7


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_check_env_passes(env_id, monkeypatch):
    # check_env also opens every declared render mode, "human" included:
    # SDL's dummy driver lets that run without a display.
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*system font.*")
        gym_check_env(gym.make(env_id, render_mode="rgb_array").unwrapped)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sb3_check_env_passes(env_id):
    with warnings.catch_warnings():
        # (H, W) token grids are neither images nor vectors: SB3 says so, fine.
        warnings.filterwarnings("ignore", message=".*unconventional shape.*")
        sb3_check_env(gym.make(env_id).unwrapped)
        sb3_check_env(gym.make(env_id))


# --- observation, actions, rewards, episode ends ---


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_observation_is_token_grid_with_border_agent_and_goal(env_id):
    env = gym.make(env_id)
    obs, info = env.reset(seed=3)
    shape = (env.unwrapped.height, env.unwrapped.width)
    assert shape == {"DynamicMaze-v0": (11, 13), "FourRooms-v0": (13, 13)}[env_id]
    assert env.observation_space == gym.spaces.Box(0, NUM_TOKENS - 1, shape, np.uint8)
    assert obs.shape == shape and obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    border = np.concatenate([obs[0], obs[-1], obs[:, 0], obs[:, -1]])
    assert (border == WALL).all()
    assert (obs == AGENT).sum() == 1 and (obs == GOAL).sum() == 1
    ay, ax = np.argwhere(obs == AGENT)[0]
    assert info["agent_pos"] == (ax, ay)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_actions_move_one_cell_and_walls_or_closed_doors_block(env_id):
    env = gym.make(env_id)
    obs, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    moved = blocked = 0
    for a in rng.integers(4, size=400).tolist():
        x, y = info["agent_pos"]
        tx, ty = x + MOVES[a][0], y + MOVES[a][1]
        # dynamics run after the move, so the previous observation decides
        free = bool(PASSABLE[obs[ty, tx]])
        obs, _, terminated, truncated, info = env.step(a)
        assert info["agent_pos"] == ((tx, ty) if free else (x, y))
        moved += free
        blocked += not free
        if terminated or truncated:
            obs, info = env.reset()
    assert moved > 50 and blocked > 50


def test_agent_direction_follows_the_last_move():
    env = gym.make("FourRooms-v0")
    env.reset(seed=0)
    # minigrid's agent_dir: 0 right, 1 down, 2 left, 3 up
    for action, direction in [(0, 3), (1, 0), (2, 1), (3, 2)]:
        env.step(action)
        assert env.unwrapped.agent_dir == direction


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_goal_gives_reward_one_and_terminates(env_id):
    env = gym.make(env_id)
    oracle = BFSOracle()
    obs, _ = env.reset(seed=1)
    rewards = []
    for _ in range(env.unwrapped.max_steps):
        obs, reward, terminated, truncated, info = env.step(oracle.predict(obs)[0])
        rewards.append(reward)
        if terminated or truncated:
            break
    assert terminated and not truncated
    # the oracle only bumps when it waits at a closed door
    assert rewards[-1] == 1.0 and all(r in (0.0, -0.01) for r in rewards[:-1])
    assert info["is_success"] is True and info["shortest_path"] == 0
    assert info["changed"] is False  # no dynamics on the goal step


def test_step_penalty_is_subtracted_on_non_goal_steps():
    env = gym.make("FourRooms-v0", step_penalty=0.01, change_prob=0.0)
    oracle = BFSOracle()
    obs, info = env.reset(seed=2)
    rewards = []
    for _ in range(info["shortest_path"]):
        obs, reward, *_ = env.step(oracle.predict(obs)[0])
        rewards.append(reward)
    n = len(rewards)
    assert rewards[:-1] == pytest.approx([-0.01] * (n - 1))
    assert rewards[-1] == 1.0


@pytest.mark.parametrize(
    "env_id, static",
    every_dynamics(0.0),
)
def test_truncated_at_max_steps(env_id, static):
    max_steps = 6
    env = gym.make(env_id, max_steps=max_steps, **static)
    # With a static grid a goal farther than max_steps cannot be reached.
    seed = next(s for s in range(100) if env.reset(seed=s)[1]["shortest_path"] > max_steps)
    env.reset(seed=seed)
    for t in range(1, max_steps + 1):
        _, _, terminated, truncated, _ = env.step(t % 4)
        assert not terminated
        assert truncated == (t == max_steps)


def test_goal_reached_on_the_last_step_is_terminated_not_truncated():
    env = gym.make("FourRooms-v0", change_prob=0.0)
    oracle = BFSOracle()
    obs, info = env.reset(seed=4)
    env = gym.make("FourRooms-v0", change_prob=0.0, max_steps=info["shortest_path"])
    obs, _ = env.reset(seed=4)
    for _ in range(env.unwrapped.max_steps):
        obs, reward, terminated, truncated, _ = env.step(oracle.predict(obs)[0])
    assert terminated and not truncated and reward == 1.0


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_info_has_documented_keys_and_types(env_id):
    env = gym.make(env_id)
    _, info = env.reset(seed=0)
    assert info["changed"] is False and info["is_success"] is False and info["path_changed"] is False
    for _ in range(20):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert set(info) >= {"is_success", "changed", "path_changed", "shortest_path", "agent_pos"}
        assert type(info["is_success"]) is bool and type(info["changed"]) is bool
        assert type(info["path_changed"]) is bool and info["changed"] >= info["path_changed"]
        assert type(info["shortest_path"]) is int and info["shortest_path"] >= -1
        assert isinstance(info["agent_pos"], tuple) and all(type(c) is int for c in info["agent_pos"])
        if terminated or truncated:
            env.reset()


# --- seeding ---


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_gives_identical_trajectory(env_id):
    actions = np.random.default_rng(7).integers(4, size=300).tolist()
    a = rollout(gym.make(env_id), actions, seed=11)
    b = rollout(gym.make(env_id), actions, seed=11)
    assert len(a) == len(b)
    for (obs_a, *rest_a), (obs_b, *rest_b) in zip(a, b):
        np.testing.assert_array_equal(obs_a, obs_b)
        assert rest_a == rest_b
    assert any(info["changed"] for *_, info in a)  # the dynamics were exercised


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_a_pickled_env_continues_the_same_trajectory(env_id):
    # the agent's checkpoints pickle the environments mid-episode
    env = gym.make(env_id, change_prob=0.3).unwrapped
    env.reset(seed=5)
    for a in [0, 1, 2, 3] * 3:
        env.step(a)
    copy = pickle.loads(pickle.dumps(env))
    actions = np.random.default_rng(5).integers(4, size=300).tolist()
    for (obs_a, *rest_a), (obs_b, *rest_b) in zip(rollout_on(env, actions), rollout_on(copy, actions)):
        np.testing.assert_array_equal(obs_a, obs_b)
        assert rest_a == rest_b


def rollout_on(env: gym.Env, actions: list[int]) -> list[tuple]:
    """Like :func:`rollout`, from the env's current state."""
    out = []
    for a in actions:
        out.append(env.step(a))
        if out[-1][2] or out[-1][3]:
            out.append((*env.reset(), None, None, None))
    return out


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_different_seeds_give_different_layouts(env_id):
    env = gym.make(env_id)
    layouts = {env.reset(seed=s)[0].tobytes() for s in range(10)}
    assert len(layouts) == 10


# --- episode limit and bump penalty ---


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_default_episodes_are_truncated_at_80_steps(env_id):
    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    lengths, t = [], 0
    for a in np.random.default_rng(0).integers(4, size=2000).tolist():
        obs, _, terminated, truncated, _ = env.step(a)
        t += 1
        assert truncated == (t == 80 and not terminated)
        if terminated or truncated:
            lengths.append((t, truncated))
            obs, _ = env.reset()
            t = 0
    assert (80, True) in lengths and all(n <= 80 for n, _ in lengths)


@pytest.mark.parametrize(
    "env_id, kwargs",
    [
        ("DynamicMaze-v0", {}),
        ("DynamicMaze-v0", {"dynamics": "toggle", "bump_penalty": 0.05, "step_penalty": 0.02}),
        ("FourRooms-v0", {}),
        ("FourRooms-v0", {"doorways": "random", "bump_penalty": 0.3, "step_penalty": 0.1}),
    ],
)
def test_bump_penalty_is_given_exactly_when_the_agent_does_not_move(env_id, kwargs):
    env = gym.make(env_id, **kwargs)
    bump, step = env.unwrapped.bump_penalty, env.unwrapped.step_penalty
    _, info = env.reset(seed=0)
    bumps = moves = 0
    for a in np.random.default_rng(1).integers(4, size=1500).tolist():
        before = info["agent_pos"]
        _, reward, terminated, truncated, info = env.step(a)
        if terminated:
            assert reward == 1.0
        else:
            moved = info["agent_pos"] != before
            assert reward == pytest.approx(-step - (0.0 if moved else bump))
            bumps += not moved
            moves += moved
        if terminated or truncated:
            _, info = env.reset()
    assert bumps > 100 and moves > 100


def test_previous_default_envs_give_the_same_episodes_as_before():
    """SHA-256 of 2,000 random-action steps (seed 0), recorded with the previous versions of the envs."""

    def digest(env) -> str:
        h = hashlib.sha256()
        obs, _ = env.reset(seed=0)
        h.update(obs.tobytes())
        for a in np.random.default_rng(0).integers(4, size=2000).tolist():
            obs, reward, terminated, truncated, info = env.step(a)
            h.update(obs.tobytes())
            h.update(repr((reward, terminated, truncated, info["changed"])).encode())
            if terminated or truncated:
                obs, _ = env.reset()
                h.update(obs.tobytes())
        return h.hexdigest()[:16]

    assert digest(DynamicMazeEnv(size=11, dynamics="toggle", max_steps=44, bump_penalty=0)) == "64c2ad89b11c5c25"
    assert digest(FourRoomsEnv(doorways="random", max_steps=52, bump_penalty=0)) == "62acb269b17a79c5"
    seven = DynamicMazeEnv(size=7, n_fixed_walls=3, n_dynamic_walls=2, dynamics="toggle", max_steps=28, bump_penalty=0)
    assert digest(seven) == "c33c841664833c8a"
    assert DynamicMazeEnv(size=11, dynamics="toggle", max_steps=None).max_steps == 44  # None: the old default


def _shortest_paths_cells(tokens: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> set[tuple[int, int]]:
    """Every cell on some shortest start-goal path, by enumerating the paths (small grids only)."""
    dist = bfs_distances(tokens, goal)
    cells, frontier = {start}, {start}
    while frontier:
        step = set()
        for x, y in frontier:
            if dist[y, x] <= 0:  # the goal: the path ends
                continue
            for dx, dy in ((0, -1), (1, 0), (0, 1), (-1, 0)):
                if 0 <= y + dy < tokens.shape[0] and 0 <= x + dx < tokens.shape[1] and dist[y + dy, x + dx] == dist[y, x] - 1:
                    step.add((x + dx, y + dy))
        cells |= step
        frontier = step
    return cells


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_path_changed_flags_changes_that_touch_a_shortest_path(env_id):
    env = gym.make(env_id, change_prob=0.3)
    base = env.unwrapped
    counts = {"changed": 0, "path_changed": 0}
    env.reset(seed=3)
    for t in range(600):
        before = base.layout
        _, _, terminated, truncated, info = env.step(int(np.random.default_rng(t).integers(4)))
        if not terminated:
            pos, goal = info["agent_pos"], base.goal_pos
            d_before = bfs_distances(before, goal)[pos[1], pos[0]]
            changed_cells = {(int(x), int(y)) for y, x in zip(*np.nonzero(before != base.layout))}
            expected = bool(info["changed"]) and bool(
                d_before != info["shortest_path"]
                or (d_before >= 0 and bool(changed_cells & _shortest_paths_cells(before, pos, goal)))
            )
            assert info["path_changed"] is expected
            counts["changed"] += info["changed"]
            counts["path_changed"] += info["path_changed"]
        if terminated or truncated:
            env.reset()
    # both kinds occur: some changes touch the path, some do not
    assert 0 < counts["path_changed"] < counts["changed"]
