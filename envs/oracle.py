"""Breadth-first search on token grids, and the BFS oracle policy built on it.

This module holds the package's one BFS: the environments use
:func:`bfs_distances` for ``info["shortest_path"]`` and the oracle uses it to
plan. Grids are ``(H, W)`` token arrays (see :mod:`envs.tokens`); positions are
``(x, y)`` tuples, arrays are indexed ``[y, x]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.tokens import AGENT, DOOR_CLOSED, DOOR_OPEN, GOAL, PASSABLE

# action -> (dx, dy): 0 up, 1 right, 2 down, 3 left
MOVES: tuple[tuple[int, int], ...] = ((0, -1), (1, 0), (0, 1), (-1, 0))


def bfs_distances(tokens: np.ndarray, goal: tuple[int, int]) -> np.ndarray:
    """Number of moves from every cell to ``goal`` through passable cells.

    Args:
        tokens: (H, W) token ids; EMPTY, DOOR_OPEN, AGENT and GOAL are passable.
        goal: (x, y) of the target cell (treated as reachable from itself).

    Returns:
        (H, W) int32 distances, -1 where the goal cannot be reached.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be a 2-D (H, W) array, got shape {tokens.shape}")
    h, w = tokens.shape
    gx, gy = int(goal[0]), int(goal[1])
    if not (0 <= gx < w and 0 <= gy < h):
        raise ValueError(f"goal {goal} lies outside the {w}x{h} grid")
    # A one-cell impassable frame makes every neighbour index valid, so the
    # inner loop needs no bounds checks. Plain lists: per-element numpy
    # indexing would be ~10x slower on grids this small.
    stride = w + 2
    padded = np.zeros((h + 2, stride), dtype=bool)
    padded[1:-1, 1:-1] = PASSABLE[tokens]
    passable = padded.ravel().tolist()
    dist = [-1] * len(passable)
    start = (gy + 1) * stride + gx + 1
    dist[start] = 0
    frontier = [start]
    d = 0
    while frontier:
        d += 1
        nxt = []
        for i in frontier:
            for j in (i - stride, i + 1, i + stride, i - 1):
                if passable[j] and dist[j] < 0:
                    dist[j] = d
                    nxt.append(j)
        frontier = nxt
    return np.array(dist, dtype=np.int32).reshape(h + 2, stride)[1:-1, 1:-1]


def shortest_path_cells(tokens: np.ndarray, start: tuple[int, int], to_goal: np.ndarray) -> np.ndarray:
    """(H, W) bool: the cells on some shortest path from ``start`` to the goal, both ends included.

    ``to_goal`` is ``bfs_distances(tokens, goal)``; all False where the goal cannot be reached.
    """
    x, y = start
    from_start = bfs_distances(tokens, start)
    return (from_start >= 0) & (to_goal >= 0) & (from_start + to_goal == to_goal[y, x]) & (to_goal[y, x] >= 0)


def find_token(tokens: np.ndarray, token: int) -> tuple[int, int] | None:
    """(x, y) of the single cell holding ``token``, or None if there is none."""
    flat = np.flatnonzero(np.asarray(tokens) == token)
    if len(flat) == 0:
        return None
    if len(flat) > 1:
        raise ValueError(f"expected at most one cell with token {token}, found {len(flat)}")
    y, x = divmod(int(flat[0]), tokens.shape[1])
    return x, y


def shortest_path_length(tokens: np.ndarray) -> int:
    """BFS number of moves from the agent to the goal in a full observation.

    Args:
        tokens: (H, W) observation with exactly one AGENT cell.

    Returns:
        The distance, 0 if no GOAL is visible (the agent stands on it), -1 if
        the goal is unreachable on this grid.
    """
    agent = find_token(tokens, AGENT)
    if agent is None:
        raise ValueError("observation has no AGENT token")
    goal = find_token(tokens, GOAL)
    if goal is None:
        return 0
    return int(bfs_distances(tokens, goal)[agent[1], agent[0]])


class BFSOracle:
    """Policy that steps along a shortest path on the current grid.

    It replans from the observation alone at every step, so it reacts to walls
    and doors changing but never anticipates them. When the goal is cut off it
    heads for the goal as if closed doors were open (walking up to a closed
    door and waiting for it), and failing that makes any move not into a wall.

    The interface follows stable-baselines3, so ``evaluate_policy`` accepts it.

    Args:
        seed: seed of the tie-breaking RNG used when ``deterministic=False``.
    """

    def __init__(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """Choose actions for one or a batch of full observations.

        Args:
            observation: (H, W) or (B, H, W) token ids (``obs_mode="full"``).
            state: passed through unchanged (the oracle is stateless).
            episode_start: ignored.
            deterministic: break ties between equally good moves by lowest
                action id; otherwise uniformly at random.

        Returns:
            (actions, state): actions is an int64 array of shape () or (B,).
        """
        obs = np.asarray(observation)
        if obs.dtype == object or obs.ndim not in (2, 3):
            raise ValueError(
                "BFSOracle needs obs_mode='full' observations of shape (H, W) or (B, H, W), "
                f"got {type(observation).__name__} with shape {getattr(obs, 'shape', None)}"
            )
        if obs.ndim == 2:
            return np.array(self._act(obs, deterministic), dtype=np.int64), state
        return np.array([self._act(o, deterministic) for o in obs], dtype=np.int64), state

    def _act(self, tokens: np.ndarray, deterministic: bool) -> int:
        agent = find_token(tokens, AGENT)
        if agent is None:
            raise ValueError("observation has no AGENT token")
        goal = find_token(tokens, GOAL)
        if goal is None:  # the agent covers the goal: the episode is over
            return 0
        x, y = agent
        dist = bfs_distances(tokens, goal)
        if dist[y, x] < 0:
            # Plan through closed doors: they may open while the agent waits.
            dist = bfs_distances(np.where(tokens == DOOR_CLOSED, DOOR_OPEN, tokens), goal)
        d = dist[y, x]
        h, w = tokens.shape

        def cell(a: int) -> tuple[int, int]:
            return x + MOVES[a][0], y + MOVES[a][1]

        inside = [a for a in range(4) if 0 <= cell(a)[0] < w and 0 <= cell(a)[1] < h]
        if d > 0:
            best = [a for a in inside if dist[cell(a)[1], cell(a)[0]] == d - 1]
        else:
            best = [a for a in inside if PASSABLE[tokens[cell(a)[1], cell(a)[0]]]]
        if not best:
            return 0
        if deterministic or len(best) == 1:
            return best[0]
        return int(best[self._rng.integers(len(best))])
