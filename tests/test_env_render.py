"""The envs under minigrid's wrappers and renderer."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from minigrid.wrappers import FullyObsWrapper, ImgObsWrapper, RGBImgObsWrapper

from envs.tokens import AGENT, DOOR_CLOSED, DOOR_OPEN

from conftest import every_dynamics
from test_envs import ENV_IDS


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
    every_dynamics(1.0),
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


