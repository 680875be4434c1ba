"""``FourRooms-v0``: Sutton's four rooms with one closed door that moves.

Layout (``size`` odd, border included): the ``(size-2) x (size-2)`` interior is
split by one horizontal and one vertical wall through the middle into four
rooms. Each of the four wall segments (above, right of, below and left of the
centre) has one door at a random position per episode. Exactly one door is
closed (``DOOR_CLOSED``) at all times, the others open (``DOOR_OPEN``); four
rooms in a ring minus one link stay connected, so the goal is always reachable.
Agent and goal start on two distinct random room cells (never in a doorway).

Every step (unless the goal was reached), with probability ``reassign_prob``
the closed door is reassigned to a uniformly random door of the four. Drawing
the door already closed changes nothing, and a draw that would close a door
onto the agent standing in it is skipped; ``info["changed"]`` is True only
when a door actually moved.

Parameters (all ``gym.make`` kwargs; defaults are this package's choice, the
paper's values are unknown):

=================  =======  ===================================================
``size``           13       odd, >= 5 (13: Sutton's classic 11 x 11 interior)
``reassign_prob``  0.05     in [0, 1]
``max_steps``      None     positive int; None means ``4 * size``
``step_penalty``   0.0      >= 0, subtracted on every non-goal step
``obs_mode``       "full"   "full" or "minigrid" (see :mod:`envs.base`)
``render_mode``    None     None, "rgb_array" or "human"
=================  =======  ===================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.base import DynamicGridEnv, check_max_steps, check_prob, check_size, check_step_penalty
from envs.tokens import DOOR_CLOSED, DOOR_OPEN, EMPTY, GOAL, WALL


class FourRoomsEnv(DynamicGridEnv):
    """Four rooms, four doors, one of them closed and occasionally moved (see module docstring)."""

    def __init__(
        self,
        size: int = 13,
        reassign_prob: float = 0.05,
        max_steps: int | None = None,
        step_penalty: float = 0.0,
        obs_mode: str = "full",
        render_mode: str | None = None,
        **minigrid_kwargs: Any,
    ) -> None:
        size = check_size(size)
        self.reassign_prob = check_prob("reassign_prob", reassign_prob)
        super().__init__(
            size=size,
            max_steps=check_max_steps(max_steps, size),
            step_penalty=check_step_penalty(step_penalty),
            obs_mode=obs_mode,
            render_mode=render_mode,
            **minigrid_kwargs,
        )
        mid = size // 2
        layout = np.full((size, size), EMPTY, dtype=np.uint8)
        layout[[0, -1, mid], :] = WALL
        layout[:, [0, -1, mid]] = WALL
        self._walls = layout
        ys, xs = np.nonzero(layout == EMPTY)
        self._room_cells = list(zip(xs.tolist(), ys.tolist()))
        # candidate door positions of each wall segment: above, right, below, left
        inner_low, inner_high = range(1, mid), range(mid + 1, size - 1)
        self._segments = [
            [(mid, y) for y in inner_low],
            [(x, mid) for x in inner_high],
            [(mid, y) for y in inner_high],
            [(x, mid) for x in inner_low],
        ]
        self.closed_door = 0  # index into door_positions

    def _generate(self) -> tuple[np.ndarray, tuple[int, int], tuple[int, int], list[tuple[int, int]]]:
        rng = self.np_random
        tokens = self._walls.copy()
        door_positions = [seg[int(rng.integers(len(seg)))] for seg in self._segments]
        self.closed_door = int(rng.integers(4))
        for i, (x, y) in enumerate(door_positions):
            tokens[y, x] = DOOR_CLOSED if i == self.closed_door else DOOR_OPEN
        a, g = rng.choice(len(self._room_cells), 2, replace=False).tolist()
        agent, goal = self._room_cells[a], self._room_cells[g]
        tokens[goal[1], goal[0]] = GOAL
        return tokens, agent, goal, door_positions

    def _apply_dynamics(self) -> bool:
        rng = self.np_random
        if rng.random() >= self.reassign_prob:
            return False
        new = int(rng.integers(4))
        if new == self.closed_door or not self._can_close(self.door_positions[new]):
            return False
        self._set_door(self.closed_door, True)
        self._set_door(new, False)
        self.closed_door = new
        return True
