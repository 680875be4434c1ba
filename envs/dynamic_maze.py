"""``DynamicMaze-v0``: a lattice maze whose dynamic walls open and close.

Layout (``size`` odd, border included): cells at odd ``(x, y)``, permanent
pillar walls at even-even coordinates, and between two adjacent cells a *gap*
(one coordinate odd, the other even). Each episode:

- ``n_fixed_walls`` gaps become permanent walls (``WALL``), drawn uniformly
  among the placements that leave the cells connected (rejection sampling;
  when nearly every allowed gap is walled and rejection keeps failing, walls
  are instead added in random order, skipping any that would disconnect);
- ``n_dynamic_walls`` of the remaining gaps become dynamic walls, each open
  (``DOOR_OPEN``) or closed (``DOOR_CLOSED``) with probability 1/2, so with all
  of them open the maze is connected;
- agent and goal go on two distinct random cells; if the goal is cut off,
  random closed dynamic walls are opened until it is reachable.

Every step (unless the goal was reached) each dynamic wall toggles
independently with probability ``toggle_prob``; a toggle that would close a
wall onto the agent is skipped.

Parameters (all ``gym.make`` kwargs; defaults are this package's choice, the
paper's values are unknown):

==================  =======  ==================================================
``size``            11       odd, >= 5; ``(size-1)/2`` cells per side
``n_fixed_walls``   10       in [0, gaps - cells + 1] (a spanning tree must remain)
``n_dynamic_walls`` 5        in [0, gaps - n_fixed_walls]
``toggle_prob``     0.1      in [0, 1]
``max_steps``       None     positive int; None means ``4 * size``
``step_penalty``    0.0      >= 0, subtracted on every non-goal step
``obs_mode``        "full"   "full" or "minigrid" (see :mod:`envs.base`)
``render_mode``     None     None, "rgb_array" or "human"
==================  =======  ==================================================

With ``size = 11`` there are 25 cells and 40 gaps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.base import DynamicGridEnv, check_int, check_max_steps, check_prob, check_size, check_step_penalty
from envs.oracle import bfs_distances
from envs.tokens import DOOR_CLOSED, DOOR_OPEN, EMPTY, GOAL, WALL

# Whole-placement rejection attempts before switching to sequential placement.
_MAX_REJECTIONS = 50


class DynamicMazeEnv(DynamicGridEnv):
    """Lattice maze with fixed and randomly toggling dynamic walls (see module docstring)."""

    def __init__(
        self,
        size: int = 11,
        n_fixed_walls: int = 10,
        n_dynamic_walls: int = 5,
        toggle_prob: float = 0.1,
        max_steps: int | None = None,
        step_penalty: float = 0.0,
        obs_mode: str = "full",
        render_mode: str | None = None,
        **minigrid_kwargs: Any,
    ) -> None:
        size = check_size(size)
        side = (size - 1) // 2
        # cells at (2i+1, 2j+1); a gap joins two cells one lattice step apart
        cells = [(2 * i + 1, 2 * j + 1) for j in range(side) for i in range(side)]
        gaps = [(2 * i + 2, 2 * j + 1) for j in range(side) for i in range(side - 1)]
        gaps += [(2 * i + 1, 2 * j + 2) for j in range(side - 1) for i in range(side)]
        max_fixed = len(gaps) - (len(cells) - 1)
        self.n_fixed_walls = check_int("n_fixed_walls", n_fixed_walls, 0, max_fixed)
        self.n_dynamic_walls = check_int("n_dynamic_walls", n_dynamic_walls, 0, len(gaps) - self.n_fixed_walls)
        self.toggle_prob = check_prob("toggle_prob", toggle_prob)
        super().__init__(
            size=size,
            max_steps=check_max_steps(max_steps, size),
            step_penalty=check_step_penalty(step_penalty),
            obs_mode=obs_mode,
            render_mode=render_mode,
            **minigrid_kwargs,
        )
        self._cells = cells
        self._cell_xy = np.array(cells).T  # (2, n_cells): x row, y row
        self._gaps = gaps
        self._gap_xy = np.array(gaps).T  # (2, n_gaps)
        lattice = np.full((size, size), EMPTY, dtype=np.uint8)
        lattice[::2, ::2] = WALL  # pillars, including the border's corners
        lattice[[0, -1], :] = WALL
        lattice[:, [0, -1]] = WALL
        self._lattice = lattice

    # --- layout ---

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

    def _generate(self) -> tuple[np.ndarray, tuple[int, int], tuple[int, int], list[tuple[int, int]]]:
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
