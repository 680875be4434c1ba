"""Observation -> tokens: the first stage of the agent's data path.

The HRM reads a flat sequence of integer tokens. Our environments observe a
``(H, W) uint8`` grid of token ids (see ``envs.tokens``); the tokenizer checks
the observation space once, optionally drops the outer ring of cells (the
constant border walls, which carry no information and cost attention), and
flattens row by row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from envs.oracle import MOVES
from envs.tokens import AGENT, EMPTY, GOAL, PASSABLE
from hrm_agent.replay import GoalTokens


class Tokenizer:
    """Turns grid observations into HRM token sequences.

    Args:
        observation_space: a 2-D integer ``Box`` ``(H, W)`` with finite bounds ``low >= 0``.
        crop_border: drop row/column 0 and the last row/column.

    Attributes:
        token_grid: ``(rows, cols)`` of the tokens, ``(H-2, W-2)`` when cropping else ``(H, W)``.
        seq_len: tokens per observation, ``rows * cols``.
        vocab_size: ``max(high) + 1``.
    """

    def __init__(self, observation_space: spaces.Space, crop_border: bool = True) -> None:
        if not (
            isinstance(observation_space, spaces.Box)
            and len(observation_space.shape) == 2
            and np.issubdtype(observation_space.dtype, np.integer)
            and np.all(observation_space.low >= 0)
        ):
            got = observation_space if isinstance(observation_space, spaces.Box) else (
                f"a {type(observation_space).__name__} space")  # a Dict's repr runs over lines and addresses
            raise ValueError(
                "the HRM agent needs a 2-D integer token-grid observation (Box of shape (H, W), e.g. "
                f"DynamicMaze-v0/FourRooms-v0 with obs_mode='full'); got {got}"
            )
        height, width = observation_space.shape
        if crop_border and (height < 3 or width < 3):
            raise ValueError(f"crop_border needs a grid of at least 3 x 3, got {height} x {width}")
        self.crop_border = crop_border
        self.grid_shape = (height, width)
        self.token_grid = (height - 2, width - 2) if crop_border else (height, width)
        self.seq_len = self.token_grid[0] * self.token_grid[1]
        self.vocab_size = int(np.max(observation_space.high)) + 1

    @property
    def goal_tokens(self) -> GoalTokens:
        """The agent's, goal's and floor's ids, for hindsight goals in the replay buffer."""
        return GoalTokens(agent=AGENT, goal=GOAL, floor=EMPTY)

    def model_fields(self) -> dict[str, Any]:
        """The ``HRMConfig`` fields that come from the observation: sequence length, vocabulary, the
        token grid, the agent's and goal's token ids (rope2d's anchor, the goal embedding),
        each action's (row, column) step (the neighbors read-out) and the tokens a move cannot enter."""
        return {
            "seq_len": self.seq_len,
            "vocab_size": self.vocab_size,
            "grid_shape": self.token_grid,
            "rope_anchor_token": AGENT,
            "goal_token": GOAL,
            "action_offsets": tuple((dy, dx) for dx, dy in MOVES),
            "blocking_tokens": tuple(int(t) for t in np.flatnonzero(~PASSABLE)),
        }

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """obs: ``(B, H, W)`` or ``(H, W)`` integer grid -> ``(B, seq_len)`` uint8 tokens."""
        obs = np.asarray(obs)
        if obs.shape[-2:] != self.grid_shape:
            raise ValueError(f"observation of shape {obs.shape} does not match the grid shape {self.grid_shape}")
        if obs.ndim == 2:
            obs = obs[None]
        if self.crop_border:
            obs = obs[:, 1:-1, 1:-1]
        return np.ascontiguousarray(obs.reshape(obs.shape[0], -1), dtype=np.uint8)
