"""``FourRooms-v0``: four rooms with one closed doorway that moves.

``doorways="sutton"`` (default): the fixed 13 x 13 layout (border included)
of Sutton, Precup & Singh (1999) as the authors' ``MiniHack-4-Rooms`` draws it
(``MiniHackDynamicMaze.get_map_definition`` in their ``rl/environment.py``),
with its 4 doorways at (x, y) = (6, 3), (9, 7), (6, 10), (2, 6)::

    #############
    #.....#.....#
    #.....#.....#
    #...........#
    #.....#.....#
    #.....#.....#
    ##.####.....#
    #.....###.###
    #.....#.....#
    #.....#.....#
    #...........#
    #.....#.....#
    #############

104 free squares: rooms of 25, 30, 25 and 20 cells, and the 4 doorways.
Agent and goal start on two distinct random free squares: room cells and,
with ``spawn_in_doorways=True`` (default), doorways too (MiniHack places
both anywhere on the floor). One doorway is closed (``DOOR_CLOSED``), the
others open (``DOOR_OPEN``); a doorway holding the goal is no door and never
closes (the authors' ``set_allowed_doors``), and closing one link of the ring
of four rooms leaves the goal reachable. Every step (after the move, unless
the goal was reached), with probability ``change_prob`` the closed door is
re-drawn uniformly among the doors, minus the one the agent stands in (the
authors' ``update_closed_doors`` with one closed door); drawing the door
already closed changes nothing, and ``info["changed"]`` is True only when the
door moved. At reset the agent's doorway, if any, is left open likewise.

``doorways="random"`` (the previous version of this env, unchanged): a
``size`` x ``size`` grid whose interior is split by one horizontal and one
vertical wall through the middle; each of the four wall segments has one
door at a random position per episode, one of them closed. Agent and goal
start on room cells (never in a doorway). With probability ``change_prob``
per step the closed door is reassigned to a uniformly random door of the
four; the door already closed, or one the agent stands in, changes nothing.

Parameters (all ``gym.make`` kwargs; the defaults are the authors' values
unless said otherwise):

=====================  ========  ==============================================
``doorways``           "sutton"  "sutton" or "random" (the previous version)
``size``               13        "random" only: odd, >= 5 ("sutton" is 13)
``change_prob``        0.05      in [0, 1] (see below)
``spawn_in_doorways``  True      "sutton" only; False: agent and goal in rooms
``max_steps``          80        positive int; None means ``4 * size``
``step_penalty``       0.0       >= 0, subtracted on every non-goal step
``bump_penalty``       0.01      >= 0, subtracted on a step that does not
                                 move the agent (MiniHack's ``penalty_step``)
``obs_mode``           "full"    "full" or "minigrid" (see :mod:`envs.base`)
``render_mode``        None      None, "rgb_array" or "human"
=====================  ========  ==============================================

``change_prob = 0.05`` is the authors' door-change probability of their
corridor maze; their ``MiniHack-4-Rooms`` class defaults it to 0 (static, no
door closed) and their config leaves a commented ``p-change-doors: 1e-16``
(one door closed, essentially never moving). ``change_prob=0`` here keeps one
door closed all episode. Their observation draws the closed door like a wall
and open doorways like floor; here they are ``DOOR_CLOSED``/``DOOR_OPEN``.

The previous default env (random doorways, 52 steps, no bump penalty) is
``doorways="random", max_steps=52, bump_penalty=0`` (``reassign_prob`` is now
``change_prob``); the same seed gives the same episodes as before.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.base import DynamicGridEnv
from envs.checks import (
    check_bool,
    check_choice,
    check_max_steps,
    check_minigrid_kwargs,
    check_penalty,
    check_prob,
    check_size,
)
from envs.tokens import DOOR_CLOSED, DOOR_OPEN, EMPTY, GOAL, WALL

DOORWAYS = ("sutton", "random")
_RENAMED = {"reassign_prob": "change_prob"}
_ALIASES = {"grid_size": "size", "p_change": "change_prob"}

SUTTON_MAP = (
    "#############",
    "#.....#.....#",
    "#.....#.....#",
    "#...........#",
    "#.....#.....#",
    "#.....#.....#",
    "##.####.....#",
    "#.....###.###",
    "#.....#.....#",
    "#.....#.....#",
    "#...........#",
    "#.....#.....#",
    "#############",
)
# (x, y) of the doorways: above, right of, below and left of the centre
SUTTON_DOORWAYS = ((6, 3), (9, 7), (6, 10), (2, 6))


class FourRoomsEnv(DynamicGridEnv):
    """Four rooms, one closed doorway that moves at random (see the module docstring)."""

    def __init__(
        self,
        doorways: str = "sutton",
        size: int | None = None,
        change_prob: float = 0.05,
        spawn_in_doorways: bool | None = None,
        max_steps: int | None = 80,
        step_penalty: float = 0.0,
        bump_penalty: float = 0.01,
        obs_mode: str = "full",
        render_mode: str | None = None,
        **minigrid_kwargs: Any,
    ) -> None:
        check_minigrid_kwargs(type(self), minigrid_kwargs, _RENAMED, _ALIASES)
        self.doorways = check_choice("doorways", doorways, DOORWAYS)
        sutton = self.doorways == "sutton"
        if sutton:
            if size is not None and size != 13:
                raise ValueError(f"size applies only with doorways='random' (the 'sutton' layout is 13 x 13), got {size!r}")
            size = 13
            self.spawn_in_doorways = check_bool(
                "spawn_in_doorways", True if spawn_in_doorways is None else spawn_in_doorways
            )
        else:
            size = check_size(13 if size is None else size)
            if spawn_in_doorways is not None:
                raise ValueError("spawn_in_doorways applies only with doorways='sutton', not doorways='random'")
            self.spawn_in_doorways = False
        self.size = size
        self.change_prob = check_prob("change_prob", change_prob)
        super().__init__(
            width=size,
            height=size,
            max_steps=check_max_steps(max_steps, size, size),
            step_penalty=check_penalty("step_penalty", step_penalty),
            bump_penalty=check_penalty("bump_penalty", bump_penalty),
            obs_mode=obs_mode,
            render_mode=render_mode,
            **minigrid_kwargs,
        )
        mid = size // 2
        if sutton:
            layout = np.array([[WALL if c == "#" else EMPTY for c in row] for row in SUTTON_MAP], dtype=np.uint8)
            ys, xs = np.nonzero(layout == EMPTY)
            self._room_cells = [p for p in zip(xs.tolist(), ys.tolist()) if p not in SUTTON_DOORWAYS]
            for x, y in SUTTON_DOORWAYS:
                layout[y, x] = DOOR_OPEN
            self._squares = self._room_cells + list(SUTTON_DOORWAYS) if self.spawn_in_doorways else self._room_cells
        else:
            layout = np.full((size, size), EMPTY, dtype=np.uint8)
            layout[[0, -1, mid], :] = WALL
            layout[:, [0, -1, mid]] = WALL
            ys, xs = np.nonzero(layout == EMPTY)
            self._room_cells = list(zip(xs.tolist(), ys.tolist()))
        self._walls = layout
        # "random": candidate door positions of each wall segment: above, right, below, left
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
        if self.doorways == "sutton":
            tokens = self._walls.copy()
            a, g = rng.choice(len(self._squares), 2, replace=False).tolist()
            agent, goal = self._squares[a], self._squares[g]
            door_positions = [d for d in SUTTON_DOORWAYS if d != goal]
            candidates = [i for i, d in enumerate(door_positions) if d != agent]
            self.closed_door = candidates[int(rng.integers(len(candidates)))]
            x, y = door_positions[self.closed_door]
            tokens[y, x] = DOOR_CLOSED
            tokens[goal[1], goal[0]] = GOAL
            return tokens, agent, goal, door_positions

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
        if rng.random() >= self.change_prob:
            return False
        if self.doorways == "sutton":
            candidates = [i for i, d in enumerate(self.door_positions) if d != self.agent_pos]
            new = candidates[int(rng.integers(len(candidates)))]
            if new == self.closed_door:
                return False
        else:
            new = int(rng.integers(4))
            if new == self.closed_door or not self._can_close(self.door_positions[new]):
                return False
        self._set_door(self.closed_door, True)
        self._set_door(new, False)
        self.closed_door = new
        return True
