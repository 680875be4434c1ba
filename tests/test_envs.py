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
from minigrid.wrappers import FullyObsWrapper, ImgObsWrapper, RGBImgObsWrapper
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from envs import BFSOracle, DynamicMazeEnv, FourRoomsEnv, shortest_path_length
from envs.oracle import bfs_distances
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
    [
        ("DynamicMaze-v0", {"change_prob": 0.0}),
        ("DynamicMaze-v0", {"dynamics": "toggle", "toggle_prob": 0.0}),
        ("FourRooms-v0", {"change_prob": 0.0}),
        ("FourRooms-v0", {"doorways": "random", "change_prob": 0.0}),
    ],
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


# --- bad input ---


@pytest.mark.parametrize(
    "env_id, kwargs, expected",
    [
        ("DynamicMaze-v0", {"size": 10}, "size must be an odd integer >= 5"),
        ("DynamicMaze-v0", {"size": 3}, "size must be an odd integer >= 5"),
        ("DynamicMaze-v0", {"size": 11.0}, "size must be an odd integer >= 5"),
        ("DynamicMaze-v0", {"width": 12}, "width must be an odd integer >= 5"),
        ("DynamicMaze-v0", {"height": 3}, "height must be an odd integer >= 5"),
        ("DynamicMaze-v0", {"size": 11, "width": 11}, "give either size (a square maze) or width/height"),
        ("FourRooms-v0", {"doorways": "random", "size": 12}, "size must be an odd integer >= 5"),
        ("FourRooms-v0", {"doorways": "random", "size": 1}, "size must be an odd integer >= 5"),
        ("FourRooms-v0", {"size": 11}, "size applies only with doorways='random'"),
        ("FourRooms-v0", {"doorways": "grid"}, "doorways must be one of ('sutton', 'random')"),
        ("DynamicMaze-v0", {"dynamics": "flip"}, "dynamics must be one of ('redraw', 'toggle')"),
        ("DynamicMaze-v0", {"change_prob": 1.5}, "change_prob must be a probability in [0, 1]"),
        ("DynamicMaze-v0", {"dynamics": "toggle", "toggle_prob": 1.5}, "toggle_prob must be a probability in [0, 1]"),
        ("DynamicMaze-v0", {"dynamics": "toggle", "toggle_prob": -0.1}, "toggle_prob must be a probability in [0, 1]"),
        ("DynamicMaze-v0", {"toggle_prob": 0.1}, "toggle_prob applies only with dynamics='toggle'"),
        ("DynamicMaze-v0", {"dynamics": "toggle", "change_prob": 0.1}, "change_prob applies only with dynamics='redraw'"),
        ("DynamicMaze-v0", {"dynamics": "toggle", "spawn_on_gaps": False}, "spawn_on_gaps applies only with"),
        ("DynamicMaze-v0", {"spawn_on_gaps": 1}, "spawn_on_gaps must be True or False"),
        ("FourRooms-v0", {"change_prob": 2}, "change_prob must be a probability in [0, 1]"),
        ("FourRooms-v0", {"change_prob": float("nan")}, "change_prob must be a probability in [0, 1]"),
        ("FourRooms-v0", {"doorways": "random", "spawn_in_doorways": True}, "spawn_in_doorways applies only with"),
        # 13 x 11: 30 cells, 49 gaps; start and goal may take 2 gaps; no door on the goal or the agent
        ("DynamicMaze-v0", {"n_fixed_walls": 19}, "n_fixed_walls must be an integer in [0, 18]"),
        ("DynamicMaze-v0", {"n_fixed_walls": 21, "spawn_on_gaps": False}, "n_fixed_walls must be an integer in [0, 20]"),
        ("DynamicMaze-v0", {"n_fixed_walls": -1}, "n_fixed_walls must be an integer in [0, 18]"),
        ("DynamicMaze-v0", {"n_dynamic_walls": 38}, "n_dynamic_walls must be an integer in [0, 37]"),
        ("DynamicMaze-v0", {"n_dynamic_walls": 39, "spawn_on_gaps": False}, "n_dynamic_walls must be an integer in [0, 38]"),
        # the previous 11 x 11 maze: 25 cells, 40 gaps
        ("DynamicMaze-v0", {"size": 11, "dynamics": "toggle", "n_fixed_walls": 17}, "n_fixed_walls must be an integer in [0, 16]"),
        ("DynamicMaze-v0", {"size": 11, "dynamics": "toggle", "n_dynamic_walls": 31}, "n_dynamic_walls must be an integer in [0, 30]"),
        ("DynamicMaze-v0", {"size": 5, "dynamics": "toggle"}, "n_fixed_walls must be an integer in [0, 1]"),
        ("DynamicMaze-v0", {"max_steps": -5}, "max_steps must be a positive integer"),
        ("FourRooms-v0", {"max_steps": 0}, "max_steps must be a positive integer"),
        ("FourRooms-v0", {"max_steps": 2.5}, "max_steps must be a positive integer"),
        ("FourRooms-v0", {"step_penalty": -1.0}, "step_penalty must be a finite number >= 0"),
        ("DynamicMaze-v0", {"bump_penalty": float("inf")}, "bump_penalty must be a finite number >= 0"),
        ("FourRooms-v0", {"bump_penalty": -0.01}, "bump_penalty must be a finite number >= 0"),
        ("DynamicMaze-v0", {"obs_mode": "pixels"}, "obs_mode must be one of ('full', 'minigrid')"),
        ("FourRooms-v0", {"render_mode": "ascii"}, "render_mode must be one of"),
        ("FourRooms-v0", {"agent_view_size": 4}, "agent_view_size must be an odd integer >= 3"),
    ],
)
def test_bad_kwargs_raise_value_error_naming_parameter_and_range(env_id, kwargs, expected):
    with pytest.raises(ValueError) as excinfo, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gym.make's own note on an unknown render_mode
        gym.make(env_id, **kwargs)
    assert expected in str(excinfo.value)


@pytest.mark.parametrize(
    "env_id, keyword, hint",
    [
        ("DynamicMaze-v0", "p_toggle", " (did you mean toggle_prob?)"),
        ("DynamicMaze-v0", "grid_size", " (did you mean size?)"),
        ("DynamicMaze-v0", "colour", ""),
        ("FourRooms-v0", "reassign_prob", " (renamed change_prob)"),
        ("FourRooms-v0", "max_step", " (did you mean max_steps?)"),
    ],
)
def test_unknown_keyword_gets_one_line_naming_it_and_the_accepted_ones(env_id, keyword, hint):
    with pytest.raises(ValueError) as excinfo:
        gym.make(env_id, **{keyword: 2})
    message = str(excinfo.value)
    cls = gym.spec(env_id).entry_point.split(":")[1]
    assert message.startswith(f"{cls} got an unknown keyword {keyword!r}{hint}; accepted: ")
    assert "\n" not in message and "environment creator" not in message
    accepted = message.split("; accepted: ")[1].split(", ")
    assert accepted == envs.checks.accepted_keywords(type(gym.make(env_id).unwrapped))
    assert {"max_steps", "bump_penalty", "step_penalty", "change_prob", "tile_size", "agent_view_size"} <= set(accepted)
    assert "grid_size" not in accepted and "mission_space" not in accepted


@pytest.mark.parametrize("kwargs", [{"tile_size": 8}, {"agent_view_size": 5, "see_through_walls": True},
                                    {"highlight": False, "screen_size": 200, "agent_pov": False}])
def test_minigrid_keywords_still_pass_through(kwargs):
    env = gym.make("FourRooms-v0", obs_mode="minigrid", **kwargs).unwrapped
    for key, value in kwargs.items():
        assert getattr(env, key) == value


def test_training_cli_check_reports_an_unknown_keyword_as_a_usage_error():
    from hrm_agent.runs import UsageError, check_env

    with pytest.raises(UsageError) as excinfo:
        check_env("DynamicMaze-v0", {"p_toggle": 2})
    message = str(excinfo.value)
    assert message.startswith("DynamicMaze-v0: DynamicMazeEnv got an unknown keyword 'p_toggle'")
    assert "\n" not in message and "toggle_prob" in message


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
    width, height = base.unwrapped.width, base.unwrapped.height
    obs, _ = base.reset(seed=0)
    assert set(obs) == {"image", "direction", "mission"} and base.observation_space.contains(obs)

    egocentric = ImgObsWrapper(gym.make(env_id, obs_mode="minigrid"))
    obs, _ = egocentric.reset(seed=0)
    assert obs.shape == (7, 7, 3)

    full = ImgObsWrapper(FullyObsWrapper(gym.make(env_id, obs_mode="minigrid")))
    obs, _ = full.reset(seed=0)
    assert obs.shape == (width, height, 3)
    # minigrid's encoding is indexed [x, y]; its object ids: 4 door, 8 goal, 10 agent
    layout = full.unwrapped.layout
    doors = full.unwrapped.door_positions
    assert doors
    for x, y in doors:
        assert obs[x, y, 0] == 4
        assert obs[x, y, 2] == (0 if layout[y, x] == DOOR_OPEN else 1)
    gx, gy = full.unwrapped.goal_pos
    assert obs[gx, gy, 0] == 8

    rgb = RGBImgObsWrapper(gym.make(env_id, obs_mode="minigrid"), tile_size=8)
    obs, _ = rgb.reset(seed=0)
    assert obs["image"].shape == (height * 8, width * 8, 3)

    for env in (egocentric, full, rgb):
        for a in range(4):
            obs, *_ = env.step(a)
            assert env.observation_space.contains(obs)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_rgb_array_render_has_one_tile_per_cell(env_id):
    env = gym.make(env_id, render_mode="rgb_array", tile_size=8)
    env.reset(seed=0)
    frame = env.render()
    width, height = env.unwrapped.width, env.unwrapped.height
    assert frame.shape == (height * 8, width * 8, 3) and frame.dtype == np.uint8


@pytest.mark.parametrize(
    "env_id, kwargs",
    [
        ("DynamicMaze-v0", {"change_prob": 1.0}),
        ("DynamicMaze-v0", {"dynamics": "toggle", "toggle_prob": 1.0}),
        ("FourRooms-v0", {"change_prob": 1.0}),
        ("FourRooms-v0", {"doorways": "random", "change_prob": 1.0}),
    ],
)
def test_render_shows_where_doors_are_and_whether_they_are_open(env_id, kwargs):
    tile = 8
    env = gym.make(env_id, render_mode="rgb_array", tile_size=tile, **kwargs)
    obs, _ = env.reset(seed=0)
    frame = env.render()
    compared = 0
    for _ in range(10):
        new_obs, *_ = env.step(0)
        new_frame = env.render()
        # cells that became, or stopped being, a door, or where a door opened or closed
        flipped = np.argwhere(
            (obs != new_obs) & (obs != AGENT) & (new_obs != AGENT)
            & (np.isin(obs, [DOOR_OPEN, DOOR_CLOSED]) | np.isin(new_obs, [DOOR_OPEN, DOOR_CLOSED]))
        )
        for y, x in flipped:
            before = frame[y * tile : (y + 1) * tile, x * tile : (x + 1) * tile]
            after = new_frame[y * tile : (y + 1) * tile, x * tile : (x + 1) * tile]
            assert not np.array_equal(before, after)
            compared += 1
        obs, frame = new_obs, new_frame
    assert compared > 0


# --- layouts ---


def gap_mask(height: int, width: int) -> np.ndarray:
    gaps = np.zeros((height, width), dtype=bool)
    gaps[1:-1:2, 2:-1:2] = True
    gaps[2:-1:2, 1:-1:2] = True
    return gaps


def test_maze_default_is_the_authors_13_by_11_lattice_with_30_cells_and_49_gaps():
    env = gym.make("DynamicMaze-v0")
    maze = env.unwrapped
    assert (maze.width, maze.height, maze.n_cells, maze.n_gaps) == (13, 11, 30, 49)
    assert (maze.n_fixed_walls, maze.n_dynamic_walls, maze.dynamics) == (10, 5, "redraw")
    assert (maze.change_prob, maze.max_steps, maze.step_penalty, maze.bump_penalty) == (0.05, 80, 0.0, 0.01)
    gaps = gap_mask(11, 13)
    assert gaps.sum() == 49
    on_gaps = 0
    for seed in range(20):
        obs, _ = env.reset(seed=seed)
        layout = maze.layout
        assert (layout[::2, ::2] == WALL).all()  # pillars and border corners
        assert (layout[gaps] == WALL).sum() == 10
        assert (layout[gaps] == DOOR_CLOSED).sum() == 5 and (layout == DOOR_OPEN).sum() == 0
        assert sorted(maze.door_positions) == sorted((int(x), int(y)) for y, x in np.argwhere(layout == DOOR_CLOSED))
        assert np.isin(layout[1::2, 1::2], [EMPTY, GOAL]).all()  # cells are never walled
        ay, ax = np.argwhere(obs == AGENT)[0]
        gy, gx = np.argwhere(obs == GOAL)[0]
        assert (ax, ay) != (gx, gy)
        on_gaps += bool(gaps[ay, ax]) + bool(gaps[gy, gx])
    assert on_gaps > 0  # the authors' start and goal may lie on gaps


def test_maze_start_and_goal_stay_on_cells_without_spawn_on_gaps():
    env = gym.make("DynamicMaze-v0", spawn_on_gaps=False)
    for seed in range(30):
        obs, _ = env.reset(seed=seed)
        for token in (AGENT, GOAL):
            y, x = np.argwhere(obs == token)[0]
            assert x % 2 == y % 2 == 1


def test_maze_fixed_walls_always_leave_a_path_from_start_to_goal():
    env = gym.make("DynamicMaze-v0")
    cut_off = 0
    for seed in range(500):
        obs, info = env.reset(seed=seed)
        layout = env.unwrapped.layout
        assert (layout[gap_mask(11, 13)] == WALL).sum() == 10
        ay, ax = np.argwhere(obs == AGENT)[0]
        assert shortest_path_length(np.where(obs == DOOR_CLOSED, EMPTY, obs)) > 0
        # the doors are not path-checked (as with the authors): they may cut the goal off at reset
        cut_off += info["shortest_path"] == -1
    assert 0 < cut_off < 100


def test_maze_with_the_most_fixed_walls_allowed_still_places_them_all():
    for kwargs, n in [({}, 18), ({"spawn_on_gaps": False}, 20)]:
        env = gym.make("DynamicMaze-v0", n_fixed_walls=n, n_dynamic_walls=0, **kwargs)
        for seed in range(20):
            obs, info = env.reset(seed=seed)
            assert (env.unwrapped.layout[gap_mask(11, 13)] == WALL).sum() == n
            assert info["shortest_path"] > 0


def test_maze_rectangles_and_the_size_shortcut():
    env = gym.make("DynamicMaze-v0", width=9, height=5, n_fixed_walls=1, n_dynamic_walls=2)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (5, 9) and (env.unwrapped.n_cells, env.unwrapped.n_gaps) == (8, 10)
    env = gym.make("DynamicMaze-v0", size=7, n_fixed_walls=2)
    assert env.reset(seed=0)[0].shape == (7, 7)


def test_maze_toggle_keeps_the_previous_lattice_fixed_and_dynamic_walls():
    env = gym.make("DynamicMaze-v0", size=11, dynamics="toggle")
    assert env.unwrapped.toggle_prob == 0.1
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        layout = env.unwrapped.layout
        assert (layout[::2, ::2] == WALL).all()  # pillars and border corners
        gaps = gap_mask(11, 11)
        assert (layout[gaps] == WALL).sum() == 10
        assert np.isin(layout[gaps], [DOOR_OPEN, DOOR_CLOSED]).sum() == 5
        assert np.isin(layout[1::2, 1::2], [EMPTY, GOAL]).all()  # cells stay free
        ay, ax = np.argwhere(obs == AGENT)[0]
        gy, gx = np.argwhere(obs == GOAL)[0]
        assert ax % 2 == ay % 2 == gx % 2 == gy % 2 == 1


SUTTON = [
    "#############",
    "#.....#.....#",
    "#.....#.....#",
    "#.....D.....#",
    "#.....#.....#",
    "#.....#.....#",
    "##D####.....#",
    "#.....###D###",
    "#.....#.....#",
    "#.....#.....#",
    "#.....D.....#",
    "#.....#.....#",
    "#############",
]


def test_four_rooms_default_is_suttons_layout_with_its_four_doorways():
    env = gym.make("FourRooms-v0")
    rooms = env.unwrapped
    assert (rooms.doorways, rooms.change_prob, rooms.max_steps, rooms.bump_penalty) == ("sutton", 0.05, 80, 0.01)
    walls = np.array([[c == "#" for c in row] for row in SUTTON])
    doorways = {(x, y) for y, row in enumerate(SUTTON) for x, c in enumerate(row) if c == "D"}
    assert doorways == {(6, 3), (9, 7), (6, 10), (2, 6)}
    assert (~walls).sum() == 104  # Sutton, Precup & Singh's 104 states
    starts = set()
    for seed in range(40):
        obs, _ = env.reset(seed=seed)
        layout = rooms.layout
        assert ((layout == WALL) == walls).all()  # the walls never move
        assert set(rooms.door_positions) <= doorways
        assert (layout == DOOR_CLOSED).sum() == 1
        closed = tuple(int(v) for v in np.argwhere(layout == DOOR_CLOSED)[0][::-1])
        assert closed in doorways
        gy, gx = np.argwhere(obs == GOAL)[0]
        assert (layout == DOOR_OPEN).sum() == 3 - ((int(gx), int(gy)) in doorways)
        starts.add(rooms.agent_pos)
    assert len(starts) > 30


def test_four_rooms_start_and_goal_in_rooms_without_spawn_in_doorways():
    env = gym.make("FourRooms-v0", spawn_in_doorways=False)
    for seed in range(40):
        env.reset(seed=seed)
        rooms = env.unwrapped
        assert len(rooms.door_positions) == 4
        assert rooms.agent_pos not in rooms.door_positions and rooms.goal_pos not in rooms.door_positions


def test_four_rooms_random_doorways_keep_the_previous_layout():
    env = gym.make("FourRooms-v0", doorways="random")
    assert env.unwrapped.size == 13
    env.reset(seed=0)
    layout = env.unwrapped.layout
    mid = 6
    segments = [layout[1:mid, mid], layout[mid, mid + 1 : -1], layout[mid + 1 : -1, mid], layout[mid, 1:mid]]
    for segment in segments:
        assert np.isin(segment, [DOOR_OPEN, DOOR_CLOSED]).sum() == 1
        assert (segment == WALL).sum() == len(segment) - 1
    assert (layout == DOOR_CLOSED).sum() == 1 and (layout == DOOR_OPEN).sum() == 3
    assert layout[mid, mid] == WALL


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
