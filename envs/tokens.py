"""Token ids of the ``obs_mode="full"`` observation.

A full observation is a ``(height, width)`` ``uint8`` array indexed ``obs[y, x]``
(border walls included) whose entries are these ids:

====  ===============  ==========================================================
 id   name             meaning
====  ===============  ==========================================================
 0    ``EMPTY``        free floor
 1    ``WALL``         wall that never changes (border, pillar, fixed wall,
                       the walls between the four rooms)
 2    ``DOOR_OPEN``    dynamic wall / door that is open (passable)
 3    ``DOOR_CLOSED``  dynamic wall / door that is closed (blocks like a wall)
 4    ``AGENT``        the agent; overwrites whatever is under it
 5    ``GOAL``         the goal
====  ===============  ==========================================================

Dynamic walls of DynamicMaze are door-like objects, so the agent can tell which
walls may change; only permanent walls are ``WALL``.
"""

from __future__ import annotations

import numpy as np

EMPTY = 0
WALL = 1
DOOR_OPEN = 2
DOOR_CLOSED = 3
AGENT = 4
GOAL = 5
NUM_TOKENS = 6

TOKEN_NAMES: tuple[str, ...] = ("empty", "wall", "door_open", "door_closed", "agent", "goal")

# PASSABLE[token] is True where the agent may stand (indexable by a token array).
PASSABLE = np.array([True, False, True, False, True, True], dtype=bool)

_CHARS = " #_+AG"


def tokens_to_str(tokens: np.ndarray) -> str:
    """Text picture of a token grid, one character per cell (``" #_+AG"``).

    Args:
        tokens: (H, W) integer token ids.
    """
    return "\n".join("".join(_CHARS[int(t)] for t in row) for row in np.asarray(tokens))
