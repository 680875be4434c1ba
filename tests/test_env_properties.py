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


def maze_limits(width: int, height: int, redraw: bool, spawn_on_gaps: bool) -> tuple[int, int, int]:
    """(gaps, most fixed walls, dynamic walls reserved) as DynamicMazeEnv documents them."""
    nx, ny = (width - 1) // 2, (height - 1) // 2
    n_gaps, n_cells = (nx - 1) * ny + nx * (ny - 1), nx * ny
    max_fixed = max(n_gaps - n_cells + 1 - (2 if spawn_on_gaps else 0), 0)
    reserved = (2 if spawn_on_gaps else 1) if redraw else 0
    return n_gaps, max_fixed, reserved


@st.composite
def maze_kwargs(draw) -> dict:
    width = draw(st.sampled_from([5, 7, 9, 11, 13]))
    height = draw(st.sampled_from([5, 7, 9, 11, 13]))
    dynamics = draw(st.sampled_from(["redraw", "toggle"]))
    kwargs = {"width": width, "height": height, "dynamics": dynamics}
    spawn_on_gaps = False
    if dynamics == "redraw":
        spawn_on_gaps = draw(st.booleans())
        kwargs |= {"change_prob": draw(st.floats(0.0, 1.0)), "spawn_on_gaps": spawn_on_gaps}
    else:
        kwargs["toggle_prob"] = draw(st.floats(0.0, 1.0))
    n_gaps, max_fixed, reserved = maze_limits(width, height, dynamics == "redraw", spawn_on_gaps)
    n_fixed = draw(st.integers(0, max_fixed))  # up to "only a simple path / spanning tree left"
    kwargs["n_fixed_walls"] = n_fixed
    kwargs["n_dynamic_walls"] = draw(st.integers(0, max(n_gaps - n_fixed - reserved, 0)))
    return kwargs


@st.composite
def four_rooms_kwargs(draw) -> dict:
    if draw(st.booleans()):
        return {"spawn_in_doorways": draw(st.booleans()), "change_prob": draw(st.floats(0.0, 1.0))}
    return {
        "doorways": "random",
        "size": draw(st.sampled_from([5, 7, 9, 13, 15])),
        "change_prob": draw(st.floats(0.0, 1.0)),
    }


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
    assert reference_distance(obs) == info["shortest_path"]
    if case[0] == "maze" and env.dynamics == "redraw":
        # as with the authors, only the fixed walls are path-checked: the
        # doors may cut the goal off until they move
        assert reference_distance(np.where(obs == DOOR_CLOSED, EMPTY, obs)) > 0
    else:
        assert info["shortest_path"] > 0


@SETTINGS
@given(kwargs=maze_kwargs(), seed=seeds)
def test_maze_connectivity_when_all_dynamic_walls_open(kwargs, seed):
    env = DynamicMazeEnv(**kwargs)
    env.reset(seed=seed)
    layout = env.layout
    layout[layout == DOOR_CLOSED] = DOOR_OPEN
    reachable = reference_bfs(layout, env.goal_pos)
    cells = [(x, y) for y in range(1, env.height, 2) for x in range(1, env.width, 2)]
    if env.dynamics == "toggle":
        assert all(c in reachable for c in cells), [c for c in cells if c not in reachable]
    else:
        assert env.agent_pos in reachable
    # fixed walls and doors only ever lie on gaps, never on the agent's or goal's square
    gaps = env.layout.copy()
    gaps[::2, ::2] = EMPTY  # pillars
    gaps[1::2, 1::2] = EMPTY  # cells
    n_walls = (gaps[1:-1, 1:-1] == WALL).sum()
    assert n_walls == env.n_fixed_walls
    assert np.isin(gaps[1:-1, 1:-1], [DOOR_OPEN, DOOR_CLOSED]).sum() == env.n_dynamic_walls


@pytest.mark.parametrize("seed", range(5))
def test_maze_with_the_most_fixed_walls_allowed_leaves_a_spanning_tree(seed):
    # 40 gaps, 25 cells: 16 fixed walls leave exactly the 24 open gaps of a tree
    env = DynamicMazeEnv(size=11, n_fixed_walls=16, n_dynamic_walls=0, dynamics="toggle")
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
        assert (env.layout == DOOR_OPEN).sum() == len(env.door_positions) - 1
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


@pytest.mark.parametrize("change_prob", [0.05, 0.3])
def test_maze_redraw_frequency_matches_change_prob_and_all_doors_move_together(change_prob):
    env = DynamicMazeEnv(change_prob=change_prob, max_steps=10_000)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    changes, trials, moved = 0, 0, []
    for a in rng.integers(4, size=8000).tolist():
        before = set(env.door_positions)
        _, _, terminated, truncated, info = env.step(a)
        if terminated or truncated:
            env.reset()
            continue
        after = set(env.door_positions)
        assert len(after) == env.n_dynamic_walls == (env.layout == DOOR_CLOSED).sum()
        assert info["changed"] == (after != before)
        # a redraw repeating the same 5 of >= 37 gaps (p < 3e-6) is not a change
        trials += 1
        changes += info["changed"]
        if info["changed"]:
            moved.append(len(after - before))
    assert within_five_sigma(changes, [change_prob] * trials), (changes, change_prob * trials)
    # All 5 doors are re-drawn at once: on average 5 * (1 - 5/m) of them land
    # on new gaps (m >= 37 candidates), about 4.3; one door moving at a time
    # would give 1.
    assert len(moved) > 200 and 4.0 < np.mean(moved) < 4.8, np.mean(moved)


def test_maze_redraw_puts_doors_on_every_free_gap_and_never_on_fixed_walls():
    env = DynamicMazeEnv(change_prob=1.0, max_steps=10_000)
    obs, info = env.reset(seed=3)
    start, fixed = info["agent_pos"], env.layout == WALL
    seen = set()
    moves = ((0, -1), (1, 0), (0, 1), (-1, 0))
    for a in np.random.default_rng(3).integers(4, size=400).tolist():
        x, y = info["agent_pos"]
        if (x + moves[a][0], y + moves[a][1]) == env.goal_pos:
            a = (a + 2) % 4  # keep the episode going
        obs, _, terminated, truncated, info = env.step(a)
        assert not (terminated or truncated)
        assert ((env.layout == WALL) == fixed).all()
        assert info["agent_pos"] not in env.door_positions
        seen |= set(env.door_positions)
    x, y = np.meshgrid(np.arange(env.width), np.arange(env.height))
    gaps = ((x + y) % 2 == 1) & (x > 0) & (y > 0) & (x < env.width - 1) & (y < env.height - 1)
    free = {(int(gx), int(gy)) for gy, gx in np.argwhere(gaps & ~fixed)} - {env.goal_pos}
    assert seen == free


def _sutton_move_prob(env, info, change_prob):
    # The door is re-drawn among the k doors (the goal's doorway is none)
    # but the agent's: it moves unless it draws itself.
    k = sum(d != info["agent_pos"] for d in env.door_positions)
    return change_prob * (k - 1) / k


def _random_doorways_move_prob(env, info, change_prob):
    # The closed door moves when the uniform draw picks one of the 3 other
    # doors, minus the one the agent stands in, if any.
    return change_prob * (3 - (info["agent_pos"] in env.door_positions)) / 4


@pytest.mark.parametrize("change_prob", [0.05, 0.3])
@pytest.mark.parametrize(
    "doorways, move_prob", [("sutton", _sutton_move_prob), ("random", _random_doorways_move_prob)]
)
def test_four_rooms_door_moves_at_the_rate_change_prob_implies(doorways, move_prob, change_prob):
    env = FourRoomsEnv(doorways=doorways, change_prob=change_prob, max_steps=10_000)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    moves, probs = 0, []
    for a in rng.integers(4, size=20_000).tolist():
        closed_before = env.layout == DOOR_CLOSED
        _, _, terminated, truncated, info = env.step(a)
        if terminated or truncated:
            env.reset()
            continue
        moved = not np.array_equal(closed_before, env.layout == DOOR_CLOSED)
        moves += moved
        assert info["changed"] == moved
        probs.append(move_prob(env, info, change_prob))
    assert within_five_sigma(moves, probs), (moves, sum(probs))


@pytest.mark.parametrize("toggle_prob", [0.05, 0.1, 0.5])
def test_dynamic_wall_toggle_frequency_matches_toggle_prob(toggle_prob):
    env = DynamicMazeEnv(size=11, dynamics="toggle", toggle_prob=toggle_prob, max_steps=10_000)
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


# --- tiny grids with certain dynamics: the agent stands in doorways often ---


@pytest.mark.parametrize(
    "env",
    [
        pytest.param(
            DynamicMazeEnv(size=5, n_fixed_walls=0, n_dynamic_walls=4, dynamics="toggle", toggle_prob=1.0), id="maze"
        ),
        pytest.param(FourRoomsEnv(doorways="random", size=5, change_prob=1.0), id="rooms-random"),
        pytest.param(FourRoomsEnv(change_prob=1.0, max_steps=2000), id="rooms-sutton"),
    ],
)
def test_door_under_the_agent_stays_open_even_when_dynamics_fire_every_step(env):
    env.reset(seed=0)
    in_doorway = 0
    for a in np.random.default_rng(0).integers(4, size=3000).tolist():
        _, _, terminated, truncated, info = env.step(a)
        if info["agent_pos"] in env.door_positions:
            in_doorway += 1
            assert env.grid.get(*info["agent_pos"]).is_open
        if terminated or truncated:
            env.reset()
    assert in_doorway > 50


def test_maze_redraw_never_puts_a_door_onto_the_agent():
    # 2 x 2 cells and 4 gaps, agent and goal on gaps half the time: the one
    # door is re-drawn every step onto a gap the agent is not in
    env = DynamicMazeEnv(size=5, n_fixed_walls=0, n_dynamic_walls=1, change_prob=1.0, max_steps=2000)
    _, info = env.reset(seed=0)
    on_gap = 0
    for a in np.random.default_rng(0).integers(4, size=3000).tolist():
        _, _, terminated, truncated, info = env.step(a)
        if terminated or truncated:
            _, info = env.reset()
        x, y = info["agent_pos"]
        on_gap += (x + y) % 2 == 1
        assert info["agent_pos"] not in env.door_positions and env.grid.get(x, y) is None
        assert (env.layout == DOOR_CLOSED).sum() == 1
    assert on_gap > 300


def test_skipped_toggle_under_the_agent_does_not_count_as_a_change():
    env = DynamicMazeEnv(size=5, n_fixed_walls=0, n_dynamic_walls=1, dynamics="toggle", toggle_prob=1.0)
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
