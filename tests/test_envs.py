"""Behaviour of DynamicMaze-v0 and FourRooms-v0 through the Gymnasium API."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from minigrid.wrappers import FullyObsWrapper, ImgObsWrapper, RGBImgObsWrapper
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from envs import BFSOracle, DynamicMazeEnv, FourRoomsEnv
from envs.tokens import AGENT, DOOR_CLOSED, DOOR_OPEN, EMPTY, GOAL, NUM_TOKENS, PASSABLE, WALL

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
    size = env.unwrapped.size
    assert env.observation_space == gym.spaces.Box(0, NUM_TOKENS - 1, (size, size), np.uint8)
    assert obs.shape == (size, size) and obs.dtype == np.uint8
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
    assert rewards[-1] == 1.0 and all(r == 0.0 for r in rewards[:-1])
    assert info["is_success"] is True and info["shortest_path"] == 0
    assert info["changed"] is False  # no dynamics on the goal step


def test_step_penalty_is_subtracted_on_non_goal_steps():
    env = gym.make("FourRooms-v0", step_penalty=0.01, reassign_prob=0.0)
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
    "env_id, static", [("DynamicMaze-v0", {"toggle_prob": 0.0}), ("FourRooms-v0", {"reassign_prob": 0.0})]
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
    env = gym.make("FourRooms-v0", reassign_prob=0.0)
    oracle = BFSOracle()
    obs, info = env.reset(seed=4)
    env = gym.make("FourRooms-v0", reassign_prob=0.0, max_steps=info["shortest_path"])
    obs, _ = env.reset(seed=4)
    for _ in range(env.unwrapped.max_steps):
        obs, reward, terminated, truncated, _ = env.step(oracle.predict(obs)[0])
    assert terminated and not truncated and reward == 1.0


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_info_has_documented_keys_and_types(env_id):
    env = gym.make(env_id)
    _, info = env.reset(seed=0)
    assert info["changed"] is False and info["is_success"] is False
    for _ in range(20):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert set(info) >= {"is_success", "changed", "shortest_path", "agent_pos"}
        assert type(info["is_success"]) is bool and type(info["changed"]) is bool
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
def test_different_seeds_give_different_layouts(env_id):
    env = gym.make(env_id)
    layouts = {env.reset(seed=s)[0].tobytes() for s in range(10)}
    assert len(layouts) == 10


# --- bad input ---


@pytest.mark.parametrize(
    "env_id, kwargs, expected",
    [
        ("DynamicMaze-v0", {"size": 10}, "size must be an odd integer >= 5"),
        ("DynamicMaze-v0", {"size": 3}, "size must be an odd integer >= 5"),
        ("DynamicMaze-v0", {"size": 11.0}, "size must be an odd integer >= 5"),
        ("FourRooms-v0", {"size": 12}, "size must be an odd integer >= 5"),
        ("FourRooms-v0", {"size": 1}, "size must be an odd integer >= 5"),
        ("DynamicMaze-v0", {"toggle_prob": 1.5}, "toggle_prob must be a probability in [0, 1]"),
        ("DynamicMaze-v0", {"toggle_prob": -0.1}, "toggle_prob must be a probability in [0, 1]"),
        ("FourRooms-v0", {"reassign_prob": 2}, "reassign_prob must be a probability in [0, 1]"),
        ("FourRooms-v0", {"reassign_prob": float("nan")}, "reassign_prob must be a probability in [0, 1]"),
        ("DynamicMaze-v0", {"n_fixed_walls": 17}, "n_fixed_walls must be an integer in [0, 16]"),
        ("DynamicMaze-v0", {"n_fixed_walls": -1}, "n_fixed_walls must be an integer in [0, 16]"),
        ("DynamicMaze-v0", {"n_dynamic_walls": 31}, "n_dynamic_walls must be an integer in [0, 30]"),
        ("DynamicMaze-v0", {"size": 5}, "n_fixed_walls must be an integer in [0, 1]"),
        ("DynamicMaze-v0", {"max_steps": -5}, "max_steps must be a positive integer"),
        ("FourRooms-v0", {"max_steps": 0}, "max_steps must be a positive integer"),
        ("FourRooms-v0", {"max_steps": 2.5}, "max_steps must be a positive integer"),
        ("FourRooms-v0", {"step_penalty": -1.0}, "step_penalty must be a finite number >= 0"),
        ("DynamicMaze-v0", {"obs_mode": "pixels"}, "obs_mode must be one of ('full', 'minigrid')"),
        ("FourRooms-v0", {"render_mode": "ascii"}, "render_mode must be one of"),
    ],
)
def test_bad_kwargs_raise_value_error_naming_parameter_and_range(env_id, kwargs, expected):
    with pytest.raises(ValueError) as excinfo, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gym.make's own note on an unknown render_mode
        gym.make(env_id, **kwargs)
    assert expected in str(excinfo.value)


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("action", [4, -1, 1.0, "up", None, np.array([1, 2])])
def test_bad_action_raises_clear_value_error(env_id, action):
    env = gym.make(env_id, disable_env_checker=True)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must be an integer in \[0, 3\]"):
        env.step(action)


@pytest.mark.parametrize("action", [np.int64(2), np.uint8(2), np.array(2), True])
def test_numpy_integer_actions_are_accepted(action):
    env = gym.make("FourRooms-v0")
    env.reset(seed=0)
    env.step(action)


# --- minigrid wrappers and rendering ---


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_minigrid_wrappers_work_in_minigrid_obs_mode(env_id):
    base = gym.make(env_id, obs_mode="minigrid")
    size = base.unwrapped.size
    obs, _ = base.reset(seed=0)
    assert set(obs) == {"image", "direction", "mission"} and base.observation_space.contains(obs)

    egocentric = ImgObsWrapper(gym.make(env_id, obs_mode="minigrid"))
    obs, _ = egocentric.reset(seed=0)
    assert obs.shape == (7, 7, 3)

    full = ImgObsWrapper(FullyObsWrapper(gym.make(env_id, obs_mode="minigrid")))
    obs, _ = full.reset(seed=0)
    assert obs.shape == (size, size, 3)
    # minigrid's encoding is indexed [x, y]; its object ids: 4 door, 8 goal, 10 agent
    layout = full.unwrapped.layout
    doors = full.unwrapped.door_positions
    for x, y in doors:
        assert obs[x, y, 0] == 4
        assert obs[x, y, 2] == (0 if layout[y, x] == DOOR_OPEN else 1)
    gx, gy = full.unwrapped.goal_pos
    assert obs[gx, gy, 0] == 8

    rgb = RGBImgObsWrapper(gym.make(env_id, obs_mode="minigrid"), tile_size=8)
    obs, _ = rgb.reset(seed=0)
    assert obs["image"].shape == (size * 8, size * 8, 3)

    for env in (egocentric, full, rgb):
        for a in range(4):
            obs, *_ = env.step(a)
            assert env.observation_space.contains(obs)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_rgb_array_render_has_one_tile_per_cell(env_id):
    env = gym.make(env_id, render_mode="rgb_array", tile_size=8)
    env.reset(seed=0)
    frame = env.render()
    size = env.unwrapped.size
    assert frame.shape == (size * 8, size * 8, 3) and frame.dtype == np.uint8


@pytest.mark.parametrize(
    "env_id, kwargs", [("DynamicMaze-v0", {"toggle_prob": 1.0}), ("FourRooms-v0", {"reassign_prob": 1.0})]
)
def test_render_shows_whether_a_dynamic_wall_is_open_or_closed(env_id, kwargs):
    tile = 8
    env = gym.make(env_id, render_mode="rgb_array", tile_size=tile, **kwargs)
    obs, _ = env.reset(seed=0)
    frame = env.render()
    compared = 0
    for _ in range(10):
        new_obs, *_ = env.step(0)
        new_frame = env.render()
        flipped = np.argwhere(
            ((obs == DOOR_OPEN) & (new_obs == DOOR_CLOSED)) | ((obs == DOOR_CLOSED) & (new_obs == DOOR_OPEN))
        )
        for y, x in flipped:
            before = frame[y * tile : (y + 1) * tile, x * tile : (x + 1) * tile]
            after = new_frame[y * tile : (y + 1) * tile, x * tile : (x + 1) * tile]
            assert not np.array_equal(before, after)
            compared += 1
        obs, frame = new_obs, new_frame
    assert compared > 0


# --- layouts ---


def test_maze_layout_has_lattice_fixed_and_dynamic_walls():
    env = gym.make("DynamicMaze-v0", size=11, n_fixed_walls=10, n_dynamic_walls=5)
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        layout = env.unwrapped.layout
        assert (layout[::2, ::2] == WALL).all()  # pillars and border corners
        gaps = np.zeros_like(layout, dtype=bool)
        gaps[1:-1:2, 2:-1:2] = True
        gaps[2:-1:2, 1:-1:2] = True
        assert (layout[gaps] == WALL).sum() == 10
        assert np.isin(layout[gaps], [DOOR_OPEN, DOOR_CLOSED]).sum() == 5
        assert np.isin(layout[1::2, 1::2], [EMPTY, GOAL]).all()  # cells stay free
        ay, ax = np.argwhere(obs == AGENT)[0]
        gy, gx = np.argwhere(obs == GOAL)[0]
        assert ax % 2 == ay % 2 == gx % 2 == gy % 2 == 1


def test_four_rooms_layout_has_middle_walls_and_one_door_per_segment():
    env = gym.make("FourRooms-v0", size=13)
    env.reset(seed=0)
    layout = env.unwrapped.layout
    mid = 6
    segments = [layout[1:mid, mid], layout[mid, mid + 1 : -1], layout[mid + 1 : -1, mid], layout[mid, 1:mid]]
    for segment in segments:
        assert np.isin(segment, [DOOR_OPEN, DOOR_CLOSED]).sum() == 1
        assert (segment == WALL).sum() == len(segment) - 1
    assert (layout == DOOR_CLOSED).sum() == 1 and (layout == DOOR_OPEN).sum() == 3
    assert layout[mid, mid] == WALL
