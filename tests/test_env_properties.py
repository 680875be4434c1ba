"""Property tests over seeds and parameters, and the statistics of the dynamics."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from minigrid.core.constants import OBJECT_TO_IDX

from envs import DynamicMazeEnv, FourRoomsEnv
from envs.tokens import AGENT, DOOR_CLOSED, DOOR_OPEN, EMPTY, GOAL, WALL

SETTINGS = settings(max_examples=40, deadline=None)
seeds = st.integers(0, 2**31 - 1)
actions = st.lists(st.integers(0, 3), min_size=1, max_size=60)


@st.composite
def maze_kwargs(draw) -> dict:
    size = draw(st.sampled_from([5, 7, 9, 11, 13]))
    side = (size - 1) // 2
    n_gaps = 2 * side * (side - 1)
    n_fixed = draw(st.integers(0, n_gaps - side * side + 1))  # up to "only a spanning tree left"
    return {
        "size": size,
        "n_fixed_walls": n_fixed,
        "n_dynamic_walls": draw(st.integers(0, n_gaps - n_fixed)),
        "toggle_prob": draw(st.floats(0.0, 1.0)),
    }


@st.composite
def four_rooms_kwargs(draw) -> dict:
    return {"size": draw(st.sampled_from([5, 7, 9, 13, 15])), "reassign_prob": draw(st.floats(0.0, 1.0))}


def make(kind: str, kwargs: dict):
    return DynamicMazeEnv(**kwargs) if kind == "maze" else FourRoomsEnv(**kwargs)


env_cases = st.one_of(
    st.tuples(st.just("maze"), maze_kwargs()),
    st.tuples(st.just("rooms"), four_rooms_kwargs()),
)


def reference_bfs(grid: np.ndarray, start: tuple[int, int]) -> dict[tuple[int, int], int]:
    """Moves from ``start`` (x, y) to every reachable cell, by a plain BFS (independent of envs.oracle)."""
    seen = {start: 0}
    queue = deque([start])
    while queue:
        x, y = queue.popleft()
        for nx, ny in ((x, y - 1), (x + 1, y), (x, y + 1), (x - 1, y)):
            if grid[ny, nx] in (EMPTY, DOOR_OPEN, AGENT, GOAL) and (nx, ny) not in seen:
                seen[(nx, ny)] = seen[(x, y)] + 1
                queue.append((nx, ny))
    return seen


def reference_distance(obs: np.ndarray) -> int:
    """Moves from AGENT to GOAL in an observation (-1: unreachable)."""
    (ay, ax), (gy, gx) = np.argwhere(obs == AGENT)[0], np.argwhere(obs == GOAL)[0]
    return reference_bfs(obs, (int(ax), int(ay))).get((int(gx), int(gy)), -1)


def tokens_from_minigrid(env) -> np.ndarray:
    """The token grid rebuilt from minigrid's object grid (no agent), independently of the env's tokens."""
    encoded = env.grid.encode().transpose(1, 0, 2)  # minigrid encodes [x, y]
    kind, state = encoded[..., 0], encoded[..., 2]
    tokens = np.full(kind.shape, EMPTY, dtype=np.uint8)
    tokens[kind == OBJECT_TO_IDX["wall"]] = WALL
    tokens[(kind == OBJECT_TO_IDX["door"]) & (state == 0)] = DOOR_OPEN
    tokens[(kind == OBJECT_TO_IDX["door"]) & (state == 1)] = DOOR_CLOSED
    tokens[kind == OBJECT_TO_IDX["goal"]] = GOAL
    return tokens


# --- properties ---


@SETTINGS
@given(case=env_cases, seed=seeds)
def test_goal_reachable_at_reset(case, seed):
    env = make(*case)
    obs, info = env.reset(seed=seed)
    assert info["shortest_path"] > 0
    assert reference_distance(obs) == info["shortest_path"]


@SETTINGS
@given(kwargs=maze_kwargs(), seed=seeds)
def test_maze_is_connected_when_all_dynamic_walls_open(kwargs, seed):
    env = DynamicMazeEnv(**kwargs)
    env.reset(seed=seed)
    layout = env.layout
    layout[layout == DOOR_CLOSED] = DOOR_OPEN
    reachable = reference_bfs(layout, env.goal_pos)
    cells = [(x, y) for y in range(1, env.size, 2) for x in range(1, env.size, 2)]
    assert all(c in reachable for c in cells), [c for c in cells if c not in reachable]


@pytest.mark.parametrize("seed", range(5))
def test_maze_with_the_most_fixed_walls_allowed_leaves_a_spanning_tree(seed):
    # 40 gaps, 25 cells: 16 fixed walls leave exactly the 24 open gaps of a tree
    env = DynamicMazeEnv(size=11, n_fixed_walls=16, n_dynamic_walls=0)
    env.reset(seed=seed)
    layout = env.layout
    assert (layout[1:-1:2, 2:-1:2] == WALL).sum() + (layout[2:-1:2, 1:-1:2] == WALL).sum() == 16
    reachable = reference_bfs(layout, env.goal_pos)
    assert all((x, y) in reachable for y in range(1, 11, 2) for x in range(1, 11, 2))


@SETTINGS
@given(case=env_cases, seed=seeds, steps=actions)
def test_observations_stay_inside_observation_space_and_match_minigrid_grid(case, seed, steps):
    env = make(*case)
    obs, info = env.reset(seed=seed)
    for a in steps:
        assert env.observation_space.contains(obs)
        expected = tokens_from_minigrid(env)
        x, y = info["agent_pos"]
        expected[y, x] = AGENT
        np.testing.assert_array_equal(obs, expected)
        obs, _, terminated, truncated, info = env.step(a)
        if terminated or truncated:
            break


@SETTINGS
@given(case=env_cases, seed=seeds, steps=actions)
def test_changed_is_true_exactly_when_the_grid_changed(case, seed, steps):
    env = make(*case)
    env.reset(seed=seed)
    for a in steps:
        before = env.grid.encode()
        _, _, terminated, truncated, info = env.step(a)
        assert info["changed"] == (not np.array_equal(before, env.grid.encode()))
        if terminated or truncated:
            break


@SETTINGS
@given(case=env_cases, seed=seeds, steps=actions)
def test_walls_never_close_onto_agent_or_goal(case, seed, steps):
    env = make(*case)
    env.reset(seed=seed)
    for a in steps:
        _, _, terminated, truncated, info = env.step(a)
        under_agent = env.grid.get(*info["agent_pos"])
        assert under_agent is None or under_agent.can_overlap()
        assert env.grid.get(*env.goal_pos).type == "goal"
        if terminated or truncated:
            break


@SETTINGS
@given(kwargs=four_rooms_kwargs(), seed=seeds, steps=actions)
def test_four_rooms_has_exactly_one_closed_door_at_every_step(kwargs, seed, steps):
    env = FourRoomsEnv(**kwargs)
    obs, _ = env.reset(seed=seed)
    for a in steps:
        assert (obs == DOOR_CLOSED).sum() == 1
        assert (env.layout == DOOR_OPEN).sum() == 3
        obs, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            break


@SETTINGS
@given(case=env_cases, seed=seeds, steps=actions)
def test_shortest_path_info_matches_a_fresh_bfs_at_every_step(case, seed, steps):
    env = make(*case)
    env.reset(seed=seed)
    for a in steps:
        obs, _, terminated, truncated, info = env.step(a)
        if terminated or truncated:
            break
        assert info["shortest_path"] == reference_distance(obs)


# --- frequencies ---
# Each eligible (wall, step) pair is an independent Bernoulli trial, so the
# number of changes has mean sum(p_i) and variance sum(p_i (1 - p_i)); we accept
# a deviation of 5 standard deviations (normal approximation to the binomial /
# Poisson-binomial; a false alarm has probability ~6e-7, and every run here is
# seeded, so the outcome is fixed).


def within_five_sigma(observed: int, probs: list[float]) -> bool:
    mean = sum(probs)
    sd = math.sqrt(sum(p * (1 - p) for p in probs))
    return abs(observed - mean) <= 5 * sd


@pytest.mark.parametrize("toggle_prob", [0.05, 0.1, 0.5])
def test_dynamic_wall_toggle_frequency_matches_toggle_prob(toggle_prob):
    env = DynamicMazeEnv(toggle_prob=toggle_prob, max_steps=10_000)
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=0)
    toggles, trials = 0, []
    for a in rng.integers(4, size=4000).tolist():
        before = [obs[y, x] in (DOOR_OPEN, AGENT) for x, y in env.door_positions]
        obs, _, terminated, truncated, info = env.step(a)
        if terminated or truncated:
            obs, info = env.reset()
            continue
        after = [obs[y, x] in (DOOR_OPEN, AGENT) for x, y in env.door_positions]
        for pos, was_open, is_open in zip(env.door_positions, before, after):
            # a wall the agent stands in cannot close: not a trial
            if pos == info["agent_pos"]:
                assert is_open
                continue
            trials.append(toggle_prob)
            toggles += was_open != is_open
    assert len(trials) > 15_000
    assert within_five_sigma(toggles, trials), (toggles, sum(trials))


@pytest.mark.parametrize("reassign_prob", [0.05, 0.3])
def test_closed_door_reassign_frequency_matches_reassign_prob(reassign_prob):
    env = FourRoomsEnv(reassign_prob=reassign_prob, max_steps=10_000)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    moves, probs = 0, []
    for a in rng.integers(4, size=20_000).tolist():
        closed_before = env.layout == DOOR_CLOSED
        _, _, terminated, truncated, info = env.step(a)
        if terminated or truncated:
            env.reset()
            continue
        moves += not np.array_equal(closed_before, env.layout == DOOR_CLOSED)
        # The closed door moves when the uniform draw picks one of the 3 other
        # doors, minus the one the agent stands in, if any.
        targets = 3 - (info["agent_pos"] in env.door_positions)
        probs.append(reassign_prob * targets / 4)
    assert within_five_sigma(moves, probs), (moves, sum(probs))


# --- tiny grids with certain dynamics: the agent stands in doorways often ---


@pytest.mark.parametrize(
    "env",
    [
        pytest.param(DynamicMazeEnv(size=5, n_fixed_walls=0, n_dynamic_walls=4, toggle_prob=1.0), id="maze"),
        pytest.param(FourRoomsEnv(size=5, reassign_prob=1.0), id="rooms"),
    ],
)
def test_door_under_the_agent_stays_open_even_when_dynamics_fire_every_step(env):
    env.reset(seed=0)
    in_doorway = 0
    for a in np.random.default_rng(0).integers(4, size=500).tolist():
        _, _, terminated, truncated, info = env.step(a)
        if info["agent_pos"] in env.door_positions:
            in_doorway += 1
            assert env.grid.get(*info["agent_pos"]).is_open
        if terminated or truncated:
            env.reset()
    assert in_doorway > 50


def test_skipped_toggle_under_the_agent_does_not_count_as_a_change():
    env = DynamicMazeEnv(size=5, n_fixed_walls=0, n_dynamic_walls=1, toggle_prob=1.0)
    env.reset(seed=0)
    on_wall = 0
    for a in np.random.default_rng(1).integers(4, size=500).tolist():
        _, _, terminated, truncated, info = env.step(a)
        if terminated:
            env.reset()
            continue
        on_wall += info["agent_pos"] == env.door_positions[0]
        assert info["changed"] == (info["agent_pos"] != env.door_positions[0])
        if truncated:
            env.reset()
    assert on_wall > 20
