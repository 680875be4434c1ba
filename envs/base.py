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
``agent_pov``; the checks are in :mod:`envs.checks`. The re-planning test's
changes to the grid are in :mod:`envs.interventions`.
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
from envs.oracle import MOVES, bfs_distances, shortest_path_cells
from envs.tokens import AGENT, DOOR_CLOSED, DOOR_OPEN, EMPTY, GOAL, NUM_TOKENS, PASSABLE, WALL

OBS_MODES = ("full", "minigrid")
RENDER_MODES = ("human", "rgb_array")

# minigrid's agent_dir (0 right, 1 down, 2 left, 3 up) for each of our actions,
# so rendering points the agent the way it last moved.
_ACTION_TO_DIR = (3, 0, 1, 2)
# tuple, not the numpy PASSABLE: indexing it with a numpy scalar is faster
_PASSABLE = tuple(bool(p) for p in PASSABLE)

DOOR_COLOR = "yellow"


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

    def set_cell(self, pos: tuple[int, int], token: int) -> None:
        """Put ``EMPTY``, ``WALL``, ``DOOR_CLOSED``, ``DOOR_OPEN`` or ``GOAL`` on cell ``pos`` = (x, y), in both
        grids. A door put here is none of the dynamic ones, a goal does not move ``goal_pos``."""
        objects = {EMPTY: lambda: None, WALL: Wall, GOAL: Goal, DOOR_CLOSED: lambda: Door(DOOR_COLOR, is_open=False),
                   DOOR_OPEN: lambda: Door(DOOR_COLOR, is_open=True)}
        check_choice("token", token, tuple(objects))
        x, y = pos
        self._tokens[y, x] = token
        obj = objects[token]()
        self.grid.set(x, y, obj)
        if obj is not None:
            obj.init_pos = obj.cur_pos = (x, y)
        self._dist = None

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
        on_path = shortest_path_cells(before, self.agent_pos, dist_before)
        return bool(np.any(on_path & (before != self._tokens)))

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
