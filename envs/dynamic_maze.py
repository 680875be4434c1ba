"""``DynamicMaze-v0``: a lattice maze with fixed walls and dynamic closed doors.

Layout (``width`` x ``height``, both odd, border included): cells at odd
``(x, y)``, permanent pillar walls at even-even coordinates, and between two
adjacent cells a *gap* (one coordinate odd, the other even). The default
13 x 11 grid is the authors' ``MiniHack-Corridor-Maze-4-Way-Dynamic``
(``MiniHackRandomCorridorsFourWay`` in their ``rl/environment.py``): 6 x 5
cells, 49 gaps, 11 x 13 = 143 observation tokens.

``dynamics="redraw"`` (default; the authors' generation and dynamics). Each
episode:

- agent and goal go on two distinct random free squares: the cells and, with
  ``spawn_on_gaps=True`` (default), the gaps too (the authors let MiniHack
  place both anywhere on the floor, and their gaps are floor);
- ``n_fixed_walls`` gaps become permanent walls (``WALL``), one after another
  on random gaps other than the agent's and the goal's, each kept only if a
  path from the agent to the goal remains (the authors'
  ``select_closed_doors_with_path_check``; the other cells need not stay
  reachable);
- ``n_dynamic_walls`` closed doors (``DOOR_CLOSED``) go on distinct random
  gaps among the rest (not path-checked), never on the agent's or the goal's
  gap. As with the authors, nothing makes the goal reachable at reset: the
  doors may cut it off (``info["shortest_path"] == -1``, in about 8 % of
  episodes) until they move. With all doors open it is always reachable.

Every step (after the move, unless the goal was reached), with probability
``change_prob`` ALL dynamic doors are re-drawn together onto distinct random
gaps: any gap that is neither a fixed wall, nor the goal's, nor the one the
agent stands in (the authors' ``update_closed_doors``: not path-checked, may
repeat old positions, may take the start's gap once the agent has left it).
``info["changed"]`` is True when the set of door positions actually changed.
There are always exactly ``n_dynamic_walls`` closed doors and no open ones; a
gap without a wall or door is empty floor.

``dynamics="toggle"`` (the previous version of this env, unchanged). Each
episode: ``n_fixed_walls`` fixed walls drawn uniformly among the placements
that leave all cells connected (rejection sampling; near the limit, walls
added in random order, skipping any that would disconnect);
``n_dynamic_walls`` dynamic walls on other gaps, each open (``DOOR_OPEN``) or
closed with probability 1/2; agent and goal on two distinct random cells; if
the goal is cut off, random closed dynamic walls are opened until it is
reachable. Every step each dynamic wall toggles independently with
probability ``toggle_prob``; a toggle that would close a wall onto the agent
is skipped.

Parameters (all ``gym.make`` kwargs; the defaults are the authors' values
unless said otherwise):

===================  ========  ================================================
``width``            13        odd, >= 5; ``(width-1)/2`` cells per row
``height``           11        odd, >= 5; ``(height-1)/2`` cells per column
``size``             None      shortcut for ``width = height = size`` (not
                               with ``width``/``height``)
``n_fixed_walls``    10        in [0, gaps - cells + 1]; with
                               ``spawn_on_gaps`` in [0, gaps - cells - 1]
``n_dynamic_walls``  5         in [0, gaps - n_fixed_walls - 2] ("redraw"
                               with ``spawn_on_gaps``; - 1 without),
                               [0, gaps - n_fixed_walls] ("toggle")
``dynamics``         "redraw"  "redraw" or "toggle" (the previous version)
``change_prob``      0.05      "redraw" only; in [0, 1]
``toggle_prob``      0.1       "toggle" only (this package's choice); in [0, 1]
``spawn_on_gaps``    True      "redraw" only; False: agent and goal on cells
``max_steps``        80        positive int; None means
                               ``4 * max(width, height)``
``step_penalty``     0.0       >= 0, subtracted on every non-goal step
``bump_penalty``     0.01      >= 0, subtracted on a step that does not move
                               the agent (MiniHack's ``penalty_step``)
``obs_mode``         "full"    "full" or "minigrid" (see :mod:`envs.base`)
``render_mode``      None      None, "rgb_array" or "human"
===================  ========  ================================================

``change_prob``, ``toggle_prob`` and ``spawn_on_gaps`` are rejected with the
other dynamics. The previous default env (11 x 11, toggling walls, 44 steps,
no bump penalty) is ``size=11, dynamics="toggle", max_steps=44,
bump_penalty=0``; its 7 x 7 variant ``size=7, n_fixed_walls=3,
n_dynamic_walls=2, dynamics="toggle", max_steps=28, bump_penalty=0``. The
same seed gives the same episodes as before with these keywords.

The observation shows fixed walls as ``WALL`` and the dynamic doors as
``DOOR_CLOSED``, as the authors' character grid tells them apart (``|`` and
``#``); empty gaps are floor there and here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.base import DynamicGridEnv
from envs.checks import (
    check_bool,
    check_choice,
    check_int,
    check_max_steps,
    check_minigrid_kwargs,
    check_penalty,
    check_prob,
    check_size,
)
from envs.oracle import MOVES, bfs_distances
from envs.tokens import DOOR_CLOSED, DOOR_OPEN, EMPTY, GOAL, WALL

DYNAMICS = ("redraw", "toggle")
# Whole-placement rejection attempts before switching to sequential placement ("toggle").
_MAX_REJECTIONS = 50
_ALIASES = {"grid_size": "size", "p_change": "change_prob", "p_toggle": "toggle_prob", "reassign_prob": "change_prob"}


class DynamicMazeEnv(DynamicGridEnv):
    """Lattice maze with fixed walls and dynamic doors (see the module docstring)."""

    def __init__(
        self,
        width: int | None = None,
        height: int | None = None,
        size: int | None = None,
        n_fixed_walls: int = 10,
        n_dynamic_walls: int = 5,
        dynamics: str = "redraw",
        change_prob: float | None = None,
        toggle_prob: float | None = None,
        spawn_on_gaps: bool | None = None,
        max_steps: int | None = 80,
        step_penalty: float = 0.0,
        bump_penalty: float = 0.01,
        obs_mode: str = "full",
        render_mode: str | None = None,
        **minigrid_kwargs: Any,
    ) -> None:
        check_minigrid_kwargs(type(self), minigrid_kwargs, aliases=_ALIASES)
        if size is not None:
            if width is not None or height is not None:
                raise ValueError("give either size (a square maze) or width/height, not both")
            width = height = check_size(size)
        width = check_size(13 if width is None else width, name="width")
        height = check_size(11 if height is None else height, name="height")
        self.dynamics = check_choice("dynamics", dynamics, DYNAMICS)
        redraw = self.dynamics == "redraw"
        for name, value, mode in (
            ("change_prob", change_prob, "redraw"),
            ("toggle_prob", toggle_prob, "toggle"),
            ("spawn_on_gaps", spawn_on_gaps, "redraw"),
        ):
            if value is not None and dynamics != mode:
                raise ValueError(f"{name} applies only with dynamics={mode!r}, not dynamics={dynamics!r}")
        self.change_prob = check_prob("change_prob", 0.05 if change_prob is None else change_prob)
        self.toggle_prob = check_prob("toggle_prob", 0.1 if toggle_prob is None else toggle_prob)
        self.spawn_on_gaps = redraw and check_bool("spawn_on_gaps", True if spawn_on_gaps is None else spawn_on_gaps)

        nx, ny = (width - 1) // 2, (height - 1) // 2
        # cells at (2i+1, 2j+1); a gap joins two cells one lattice step apart
        cells = [(2 * i + 1, 2 * j + 1) for j in range(ny) for i in range(nx)]
        gaps = [(2 * i + 2, 2 * j + 1) for j in range(ny) for i in range(nx - 1)]
        gaps += [(2 * i + 1, 2 * j + 2) for j in range(ny - 1) for i in range(nx)]
        # Limits that placement always meets. A path-checked placement that
        # stops early leaves only a simple agent-goal path open: at most
        # cells - 1 gaps between cells, plus the agent's and goal's own gaps.
        max_fixed = len(gaps) - (len(cells) - 1) - (2 if self.spawn_on_gaps else 0)
        self.n_fixed_walls = check_int("n_fixed_walls", n_fixed_walls, 0, max(max_fixed, 0))
        # "redraw" keeps the agent's gap free, and with spawn_on_gaps the goal's too.
        reserved = (2 if self.spawn_on_gaps else 1) if redraw else 0
        self.n_dynamic_walls = check_int(
            "n_dynamic_walls", n_dynamic_walls, 0, max(len(gaps) - self.n_fixed_walls - reserved, 0)
        )
        super().__init__(
            width=width,
            height=height,
            max_steps=check_max_steps(max_steps, width, height),
            step_penalty=check_penalty("step_penalty", step_penalty),
            bump_penalty=check_penalty("bump_penalty", bump_penalty),
            obs_mode=obs_mode,
            render_mode=render_mode,
            **minigrid_kwargs,
        )
        self._cells = cells
        self._cell_xy = np.array(cells).T  # (2, n_cells): x row, y row
        self._gaps = gaps
        self._gap_xy = np.array(gaps).T  # (2, n_gaps)
        self._squares = cells + gaps if self.spawn_on_gaps else cells  # where agent and goal may start
        lattice = np.full((height, width), EMPTY, dtype=np.uint8)
        lattice[::2, ::2] = WALL  # pillars, including the border's corners
        lattice[[0, -1], :] = WALL
        lattice[:, [0, -1]] = WALL
        self._lattice = lattice
        self._door_gaps: list[tuple[int, int]] = []  # "redraw": gaps the doors may be drawn on this episode
        self._door_gap_index: dict[tuple[int, int], int] = {}

    @property
    def n_cells(self) -> int:
        return len(self._cells)

    @property
    def n_gaps(self) -> int:
        return len(self._gaps)

    # --- layout ---

    def _generate(self) -> tuple[np.ndarray, tuple[int, int], tuple[int, int], list[tuple[int, int]]]:
        if self.dynamics == "toggle":
            return self._generate_toggle()
        return self._generate_redraw()

    @staticmethod
    def _path(tokens: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> set[tuple[int, int]] | None:
        """The squares of one shortest path from ``start`` to ``goal``, or None if there is none."""
        dist = bfs_distances(tokens, goal)
        x, y = start
        d = int(dist[y, x])
        if d < 0:
            return None
        path = {(x, y)}
        while d > 0:
            for dx, dy in MOVES:
                if dist[y + dy, x + dx] == d - 1:
                    x, y, d = x + dx, y + dy, d - 1
                    break
            path.add((x, y))
        return path

    def _generate_redraw(self) -> tuple[np.ndarray, tuple[int, int], tuple[int, int], list[tuple[int, int]]]:
        rng = self.np_random
        tokens = self._lattice.copy()
        a, g = rng.choice(len(self._squares), 2, replace=False).tolist()
        agent, goal = self._squares[a], self._squares[g]
        candidates = [p for p in self._gaps if p != agent and p != goal]

        # Fixed walls: gaps in random order, each kept if the agent can still
        # reach the goal. This has the distribution of the authors' draws
        # (uniform among the still-allowed gaps, with retries): a gap refused
        # once stays refused, as walls are only ever added. (Their cap of 10
        # draws per wall never bound in 20,000 simulated episodes.) A wall off
        # the current shortest path cannot cut the goal off, so only walls on
        # it need a new BFS.
        path = self._path(tokens, agent, goal)
        fixed: set[tuple[int, int]] = set()
        for i in rng.permutation(len(candidates)).tolist():
            if len(fixed) == self.n_fixed_walls:
                break
            x, y = candidates[i]
            tokens[y, x] = WALL
            if (x, y) in path:
                new_path = self._path(tokens, agent, goal)
                if new_path is None:
                    tokens[y, x] = EMPTY
                    continue
                path = new_path
            fixed.add((x, y))
        if len(fixed) < self.n_fixed_walls:  # excluded by the limit checked in __init__
            raise RuntimeError(f"placed only {len(fixed)} of {self.n_fixed_walls} fixed walls")

        # the doors' gaps this episode: all but the fixed walls and the goal's
        # (the agent's is skipped at each draw)
        self._door_gaps = [p for p in self._gaps if p not in fixed and p != goal]
        self._door_gap_index = {p: i for i, p in enumerate(self._door_gaps)}
        door_positions = self._draw_doors(agent)
        for x, y in door_positions:
            tokens[y, x] = DOOR_CLOSED
        tokens[goal[1], goal[0]] = GOAL
        return tokens, agent, goal, door_positions

    def _draw_doors(self, agent: tuple[int, int]) -> list[tuple[int, int]]:
        """``n_dynamic_walls`` distinct random gaps of this episode's door gaps, not the agent's."""
        gaps = self._door_gaps
        skip = self._door_gap_index.get(agent)
        if skip is None:
            picks = self.np_random.choice(len(gaps), self.n_dynamic_walls, replace=False)
        else:
            picks = self.np_random.choice(len(gaps) - 1, self.n_dynamic_walls, replace=False)
            picks[picks >= skip] += 1
        return [gaps[i] for i in picks.tolist()]

    def _connected(self, tokens: np.ndarray, walls: np.ndarray) -> bool:
        """Whether every cell is reachable when the gaps ``walls`` are walled."""
        t = tokens.copy()
        t[self._gap_xy[1, walls], self._gap_xy[0, walls]] = WALL
        dist = bfs_distances(t, self._cells[0])
        return bool((dist[self._cell_xy[1], self._cell_xy[0]] >= 0).all())

    def _sample_fixed_walls(self, tokens: np.ndarray) -> np.ndarray:
        rng = self.np_random
        n_gaps = len(self._gaps)
        for _ in range(_MAX_REJECTIONS):
            walls = rng.choice(n_gaps, self.n_fixed_walls, replace=False)
            if self._connected(tokens, walls):
                return walls
        # Near the limit almost every placement disconnects; add walls one at a
        # time instead, keeping only those that leave the maze connected.
        # Always succeeds: until only a spanning tree is left, some open gap
        # lies on a cycle.
        chosen: list[int] = []
        for g in rng.permutation(n_gaps).tolist():
            if len(chosen) == self.n_fixed_walls:
                break
            if self._connected(tokens, np.array(chosen + [g])):
                chosen.append(g)
        return np.array(chosen, dtype=np.int64)

    def _generate_toggle(self) -> tuple[np.ndarray, tuple[int, int], tuple[int, int], list[tuple[int, int]]]:
        rng = self.np_random
        tokens = self._lattice.copy()
        gx, gy = self._gap_xy

        fixed = self._sample_fixed_walls(tokens)
        tokens[gy[fixed], gx[fixed]] = WALL
        free = np.setdiff1d(np.arange(len(self._gaps)), fixed)
        dynamic = rng.choice(free, self.n_dynamic_walls, replace=False)
        is_open = rng.random(self.n_dynamic_walls) < 0.5
        tokens[gy[dynamic], gx[dynamic]] = np.where(is_open, DOOR_OPEN, DOOR_CLOSED)
        door_positions = [self._gaps[g] for g in dynamic.tolist()]

        a, g = rng.choice(len(self._cells), 2, replace=False).tolist()
        agent, goal = self._cells[a], self._cells[g]
        tokens[goal[1], goal[0]] = GOAL

        # Goal reachable at reset: open random closed walls until it is (ends,
        # since with all dynamic walls open the maze is connected).
        while bfs_distances(tokens, goal)[agent[1], agent[0]] < 0:
            closed = [p for p in door_positions if tokens[p[1], p[0]] == DOOR_CLOSED]
            x, y = closed[int(rng.integers(len(closed)))]
            tokens[y, x] = DOOR_OPEN
        return tokens, agent, goal, door_positions

    # --- dynamics ---

    def _apply_dynamics(self) -> bool:
        if self.dynamics == "toggle":
            return self._toggle()
        # One draw per step, so the random stream does not depend on the agent.
        if self.np_random.random() >= self.change_prob or not self.door_positions:
            return False
        new = self._draw_doors(self.agent_pos)
        if set(new) == set(self.door_positions):
            return False
        self._move_doors(new)
        return True

    def _toggle(self) -> bool:
        # One draw per wall per step, even for skipped toggles, so the random
        # stream does not depend on where the agent is.
        toggles = self.np_random.random(len(self._doors)) < self.toggle_prob
        if not toggles.any():
            return False
        changed = False
        for i in np.flatnonzero(toggles).tolist():
            is_open = self._doors[i].is_open
            if is_open and not self._can_close(self.door_positions[i]):
                continue
            self._set_door(i, not is_open)
            changed = True
        return changed
