"""The envs' answers to bad keywords and actions (envs.checks): one line naming the parameter and its range."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest

import envs

from test_envs import ENV_IDS


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


