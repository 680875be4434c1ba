"""The layouts: DynamicMaze-v0's lattice maze, FourRooms-v0's Sutton rooms, and their previous versions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from envs import shortest_path_length
from envs.tokens import AGENT, DOOR_CLOSED, DOOR_OPEN, EMPTY, GOAL, WALL


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


