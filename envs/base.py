"""Shared logic of the dynamic grid worlds, as a thin layer over minigrid.

:class:`DynamicGridEnv` subclasses minigrid's ``MiniGridEnv`` and replaces what
must differ: four cardinal moves instead of turn/forward, a token-grid
observation instead of the egocentric view, per-step wall/door dynamics and
the ``info`` dict. The grid is kept twice, in sync:

- a ``(H, W)`` ``uint8`` token array (see :mod:`envs.tokens`), updated in place
  at every change: observations and BFS read it, which is what makes stepping
  fast;
- minigrid's ``Grid`` of ``Wall``/``Door``/``Goal`` objects, so minigrid's
  renderer (``rgb_array``, ``human``) and wrappers work unchanged. Every
  dynamic wall or door is a minigrid ``Door``: open and closed render
  differently.

Actions: ``Discrete(4)``, 0 up (y-1), 1 right (x+1), 2 down (y+1), 3 left (x-1).
Moving into a wall or closed door leaves the agent in place.

A step: move the agent; if it reached the goal, reward 1 and terminate;
otherwise reward ``-step_penalty``, minus ``bump_penalty`` more if the agent
did not move (it walked into a wall or closed door), and apply the
dynamics (a subclass's :meth:`_apply_dynamics`), so the returned observation
shows the new grid. ``truncated`` is True at step ``max_steps`` unless the
episode terminated on that step. The defaults, ``max_steps=80``,
``step_penalty=0`` and ``bump_penalty=0.01``, are the authors' (their configs'
``max_episode_steps: 80`` and MiniHack's ``penalty_step=-0.01`` for a step in
which the agent does not move); the previous versions of these envs had
``max_steps = 4 * size`` and no bump penalty (``max_steps=None`` still means
``4 * max(width, height)``).

``info`` (from ``reset`` and ``step``):

- ``is_success`` (bool): the agent reached the goal on this step;
- ``changed`` (bool): walls/doors changed during this step (False at reset);
- ``path_changed`` (bool): the change touched the agent's shortest path: a cell
  that changed lies on a shortest path from the agent (after its move) to the
  goal on the grid before the change, or the shortest distance changed (a
  door that opens a shorter way, or one that cuts the goal off); the
  HRM-Agent authors' "environment changed" in their latent analysis (False
  when ``changed`` is);
- ``shortest_path`` (int): BFS moves from agent to goal on the current grid,
  -1 if unreachable;
- ``agent_pos`` (tuple): the agent's (x, y).

Observation modes: ``"full"`` (default) gives the token grid,
``Box(0, NUM_TOKENS - 1, (H, W), uint8)``; ``"minigrid"`` gives minigrid's
standard dict observation (egocentric ``image``, ``direction``, ``mission``),
which minigrid's wrappers (``FullyObsWrapper``, ``ImgObsWrapper``,
``RGBImgObsWrapper``, ...) expect.

Keywords: each env accepts its own documented keywords plus these of
minigrid's ``MiniGridEnv``: ``tile_size``, ``agent_view_size`` (the
``"minigrid"`` view), ``see_through_walls``, ``highlight``, ``screen_size``,
``agent_pov``; the checks are in :mod:`envs.checks`.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
from gymnasium import spaces
from minigrid.core.grid import Grid
from minigrid.core.mission import MissionSpace
from minigrid.core.world_object import Door, Goal, Wall
from minigrid.minigrid_env import MiniGridEnv

from envs.checks import check_choice, check_view_size
from envs.oracle import MOVES, bfs_distances
from envs.tokens import AGENT, DOOR_CLOSED, DOOR_OPEN, EMPTY, GOAL, NUM_TOKENS, PASSABLE, WALL

OBS_MODES = ("full", "minigrid")
RENDER_MODES = ("human", "rgb_array")
INTERVENTIONS = ("goal", "door")

# minigrid's agent_dir (0 right, 1 down, 2 left, 3 up) for each of our actions,
# so rendering points the agent the way it last moved.
_ACTION_TO_DIR = (3, 0, 1, 2)
# tuple, not the numpy PASSABLE: indexing it with a numpy scalar is faster
_PASSABLE = tuple(bool(p) for p in PASSABLE)

DOOR_COLOR = "yellow"


def static_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """DynamicMaze-v0/FourRooms-v0 keywords ``kwargs`` with the walls and doors held still: the
    probability of the env's changes set to 0 (``toggle_prob`` with the maze's ``dynamics="toggle"``,
    else ``change_prob``)."""
    return {**kwargs, ("toggle_prob" if kwargs.get("dynamics") == "toggle" else "change_prob"): 0.0}


class DynamicGridEnv(MiniGridEnv):
    """Base of DynamicMazeEnv and FourRoomsEnv (see the module docstring).

    Subclasses implement :meth:`_generate` (a new layout per episode) and
    :meth:`_apply_dynamics` (one step of wall/door changes), both drawing all
    randomness from ``self.np_random`` so that ``reset(seed=...)`` fixes the
    whole episode.

    Args:
        width: grid width including the border walls (already validated).
        height: grid height including the border walls (already validated).
        max_steps: episode length limit (validated).
        step_penalty: subtracted from the reward on every non-goal step (validated).
        bump_penalty: subtracted as well on a step that does not move the agent (validated).
        obs_mode: ``"full"`` or ``"minigrid"``.
        render_mode: None, ``"rgb_array"`` or ``"human"``.
        **minigrid_kwargs: passed to ``MiniGridEnv``; only ``envs.checks.MINIGRID_KWARGS``
            (subclasses check with ``envs.checks.check_minigrid_kwargs``).
    """

    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 10}

    def __init__(
        self,
        width: int,
        height: int,
        max_steps: int,
        step_penalty: float,
        bump_penalty: float,
        obs_mode: str,
        render_mode: str | None,
        **minigrid_kwargs: Any,
    ) -> None:
        check_choice("obs_mode", obs_mode, OBS_MODES)
        check_choice("render_mode", render_mode, (None, *RENDER_MODES))
        if "agent_view_size" in minigrid_kwargs:
            check_view_size(minigrid_kwargs["agent_view_size"])
        # The agent sees the whole grid in "full" mode, so minigrid's highlight
        # of an egocentric view cone would be misleading there.
        minigrid_kwargs.setdefault("highlight", obs_mode == "minigrid")
        super().__init__(
            mission_space=MissionSpace(mission_func=self._gen_mission),
            width=width,
            height=height,
            max_steps=max_steps,
            render_mode=render_mode,
            **minigrid_kwargs,
        )
        self.step_penalty = step_penalty
        self.bump_penalty = bump_penalty
        self.obs_mode = obs_mode
        self.action_space = spaces.Discrete(4)
        if obs_mode == "full":
            self.observation_space = spaces.Box(0, NUM_TOKENS - 1, (height, width), np.uint8)
        # else: keep minigrid's Dict(image, direction, mission) space

        self._tokens = np.zeros((height, width), dtype=np.uint8)  # grid without the agent
        self.goal_pos: tuple[int, int] = (-1, -1)
        self.door_positions: list[tuple[int, int]] = []  # (x, y) of each dynamic wall/door
        self._doors: list[Door] = []
        self._dist: np.ndarray | None = None  # BFS distances to the goal; None = stale

    @staticmethod
    def _gen_mission() -> str:
        return "reach the goal"

    # --- to implement in subclasses ---

    def _generate(self) -> tuple[np.ndarray, tuple[int, int], tuple[int, int], list[tuple[int, int]]]:
        """Draw a new episode layout.

        Returns:
            (tokens, agent_pos, goal_pos, door_positions): (H, W) uint8 tokens
            without the agent but with the goal and doors; positions are (x, y).
        """
        raise NotImplementedError

    def _apply_dynamics(self) -> bool:
        """Change walls/doors for one step (via :meth:`_set_door`); return whether any changed."""
        raise NotImplementedError

    # --- grid state ---

    def _gen_grid(self, width: int, height: int) -> None:
        tokens, agent_pos, goal_pos, door_positions = self._generate()
        self._tokens = tokens
        self.goal_pos = goal_pos
        self.agent_pos = agent_pos
        self.agent_dir = int(self.np_random.integers(4))
        self.door_positions = list(door_positions)
        self._dist = None

        # The minigrid object grid mirrors the tokens; Grid.grid is row-major
        # like tokens.ravel(), so flat indices agree.
        self.grid = Grid(width, height)
        cells = self.grid.grid
        for i in np.flatnonzero(tokens == WALL).tolist():
            cells[i] = Wall()
        for i in np.flatnonzero((tokens == DOOR_OPEN) | (tokens == DOOR_CLOSED)).tolist():
            cells[i] = Door(DOOR_COLOR, is_open=bool(tokens.flat[i] == DOOR_OPEN))
        goal = Goal()
        self.put_obj(goal, *goal_pos)
        self._doors = [self.grid.get(x, y) for x, y in self.door_positions]

    def _set_door(self, index: int, is_open: bool) -> None:
        """Open or close dynamic wall/door ``index`` in both grids."""
        x, y = self.door_positions[index]
        self._doors[index].is_open = is_open
        self._tokens[y, x] = DOOR_OPEN if is_open else DOOR_CLOSED
        self._dist = None

    def _move_doors(self, positions: list[tuple[int, int]]) -> None:
        """Put the (closed) dynamic doors on ``positions`` instead, in both grids.

        The old positions become empty floor; the ``Door`` objects are reused.
        """
        cells, width = self.grid.grid, self.width
        for x, y in self.door_positions:
            self._tokens[y, x] = EMPTY
            cells[y * width + x] = None
        for (x, y), door in zip(positions, self._doors):
            self._tokens[y, x] = DOOR_OPEN if door.is_open else DOOR_CLOSED
            cells[y * width + x] = door
        self.door_positions = list(positions)
        self._dist = None

    def _can_close(self, pos: tuple[int, int]) -> bool:
        """A wall/door may never close onto the agent or the goal."""
        return pos != self.agent_pos and pos != self.goal_pos

    @property
    def layout(self) -> np.ndarray:
        """(H, W) uint8 copy of the current token grid without the agent."""
        return self._tokens.copy()

    def distances(self) -> np.ndarray:
        """(H, W) int32 BFS distances to the goal on the current grid (-1: unreachable).

        Cached until the grid changes; the agent's moves do not invalidate it.
        """
        if self._dist is None:
            self._dist = bfs_distances(self._tokens, self.goal_pos)
        return self._dist

    # --- gymnasium API ---

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, _ = super().reset(seed=seed, options=options)
        return obs, self._info(success=False, changed=False)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        a = self._check_action(action)
        self.step_count += 1

        x, y = self.agent_pos
        dx, dy = MOVES[a]
        self.agent_dir = _ACTION_TO_DIR[a]
        moved = _PASSABLE[self._tokens[y + dy, x + dx]]
        if moved:
            self.agent_pos = (x + dx, y + dy)

        terminated = self.agent_pos == self.goal_pos
        before = self._tokens.copy()
        dist_before = self._dist
        changed = False if terminated else self._apply_dynamics()
        path_changed = changed and self._path_touched(before, dist_before)
        truncated = not terminated and self.step_count >= self.max_steps
        if terminated:
            reward = 1.0
        else:
            reward = 0.0 - self.step_penalty
            if not moved:
                reward -= self.bump_penalty

        if self.render_mode == "human":
            self.render()
        info = self._info(success=terminated, changed=changed, path_changed=path_changed)
        return self.gen_obs(), reward, terminated, truncated, info

    def _path_touched(self, before: np.ndarray, dist_before: np.ndarray | None) -> bool:
        """Whether the change from grid ``before`` to the current one touched the agent's shortest path."""
        if dist_before is None:
            dist_before = bfs_distances(before, self.goal_pos)
        x, y = self.agent_pos
        if self.distances()[y, x] != dist_before[y, x]:
            return True
        if dist_before[y, x] < 0:  # the goal was and stays cut off
            return False
        from_agent = bfs_distances(before, self.agent_pos)
        on_path = (from_agent >= 0) & (dist_before >= 0) & (from_agent + dist_before == dist_before[y, x])
        return bool(np.any(on_path & (before != self._tokens)))

    # --- interventions: the re-planning test (python -m hrm_agent.evaluate --intervention) ---

    def intervene(self, kind: str) -> bool:
        """Change the grid under the agent between two steps, so that its current plan no longer holds.

        ``"goal"``: move the goal to a random empty cell the agent can reach that lies on none of its
        shortest paths to the old goal. ``"door"``: close a door on a cell of the agent's shortest path
        whose closing makes the goal farther but still reachable: the nearest such doorway (a cell between
        two walls, like the maze's gaps and the four rooms' doorways), else the nearest such cell. The
        door stays closed: it is not one of the dynamic doors (evaluate with ``change_prob=0`` so that
        nothing else moves). Randomness comes from ``self.np_random``. Returns False, changing nothing,
        where no cell qualifies (e.g. the agent is next to the goal). The next observation is
        :meth:`gen_obs`; ``info`` of later steps describes the new grid.
        """
        check_choice("intervention", kind, INTERVENTIONS)
        return self._move_goal() if kind == "goal" else self._close_path()

    def shortest_path_cells(self) -> np.ndarray:
        """(H, W) bool: the cells on some shortest path from the agent to the goal, both included
        (all False when the goal is cut off)."""
        x, y = self.agent_pos
        dist = self.distances()
        if dist[y, x] < 0:
            return np.zeros(dist.shape, dtype=bool)
        from_agent = bfs_distances(self._tokens, self.agent_pos)
        return (from_agent >= 0) & (dist >= 0) & (from_agent + dist == dist[y, x])

    def _move_goal(self) -> bool:
        x, y = self.agent_pos
        free = (self._tokens == EMPTY) & (bfs_distances(self._tokens, self.agent_pos) >= 0)
        free &= ~self.shortest_path_cells()
        free[y, x] = False
        ys, xs = np.nonzero(free)
        if not len(xs):
            return False
        i = int(self.np_random.integers(len(xs)))
        old_x, old_y = self.goal_pos
        self._tokens[old_y, old_x] = EMPTY
        self.grid.set(old_x, old_y, None)
        self.goal_pos = (int(xs[i]), int(ys[i]))
        self._tokens[self.goal_pos[1], self.goal_pos[0]] = GOAL
        self.put_obj(Goal(), *self.goal_pos)
        self._dist = None
        return True

    def _close_path(self) -> bool:
        x, y = self.agent_pos
        before = int(self.distances()[y, x])
        if before < 2:  # no cell between the agent and the goal (or no path)
            return False
        on_path = self.shortest_path_cells() & (self._tokens == EMPTY)
        on_path[y, x] = False
        from_agent = bfs_distances(self._tokens, self.agent_pos)
        tokens = self._tokens

        def doorway(cx: int, cy: int) -> bool:
            return (not _PASSABLE[tokens[cy, cx - 1]] and not _PASSABLE[tokens[cy, cx + 1]]) or (
                not _PASSABLE[tokens[cy - 1, cx]] and not _PASSABLE[tokens[cy + 1, cx]])

        cells = sorted((not doorway(cx, cy), int(from_agent[cy, cx]), cx, cy)
                       for cy, cx in zip(*np.nonzero(on_path)))
        for _, _, cx, cy in cells:
            tokens[cy, cx] = DOOR_CLOSED
            after = int(bfs_distances(tokens, self.goal_pos)[y, x])
            if after > before:
                self.grid.set(cx, cy, Door(DOOR_COLOR, is_open=False))
                self._dist = None
                return True
            tokens[cy, cx] = EMPTY
        return False

    def gen_obs(self) -> Any:
        """The observation: (H, W) uint8 tokens in ``"full"`` mode, minigrid's dict otherwise."""
        if self.obs_mode != "full":
            return super().gen_obs()
        obs = self._tokens.copy()
        x, y = self.agent_pos
        obs[y, x] = AGENT
        return obs

    def _info(self, success: bool, changed: bool, path_changed: bool = False) -> dict[str, Any]:
        x, y = self.agent_pos
        return {
            "is_success": success,
            "changed": changed,
            "path_changed": path_changed,
            "shortest_path": int(self.distances()[y, x]),
            "agent_pos": (x, y),
        }

    @staticmethod
    def _check_action(action: Any) -> int:
        try:
            a = operator.index(action)
        except TypeError:  # not an integer: reported below like an out-of-range one
            a = -1
        if not 0 <= a < 4:
            raise ValueError(f"action must be an integer in [0, 3] (0 up, 1 right, 2 down, 3 left), got {action!r}")
        return a
