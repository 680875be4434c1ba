"""The environments' side of acting: vector envs, observation -> tokens, and what acting keeps.

- :class:`Tokenizer`: the HRM reads a flat sequence of integer tokens. Our environments observe a
  ``(H, W) uint8`` grid of token ids (see ``envs.tokens``); the tokenizer checks the observation
  space once, optionally drops the outer ring of cells (the constant border walls, which carry no
  information and cost attention), and flattens row by row. Each observation is tokenised once,
  as it leaves the environments (:meth:`Rollout.step`).
- :class:`Rollout`: what acting keeps between vector steps (the environments, the current
  observations' tokens, the kept latent, episode bookkeeping), and :func:`make_replay`, the replay
  buffer shaped for the agent's carry: built here so that the training loop and the checkpoint
  module that restores them share one definition.
"""


from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from envs.oracle import MOVES
from envs.tokens import AGENT, EMPTY, GOAL, PASSABLE
from hrm_agent import carry
from hrm_agent.replay import GoalTokens, ReplayBuffer

if TYPE_CHECKING:
    from hrm_agent.agent import HRMAgent


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


def make_vec_env(env_id: str, env_kwargs: dict[str, Any], n_envs: int) -> gym.vector.SyncVectorEnv:
    """``n_envs`` copies of ``env_id``; on an episode's end the final observation is in ``info["final_obs"]``
    and the returned observation already starts the next episode (same-step autoreset)."""
    return gym.vector.SyncVectorEnv(
        [partial(gym.make, env_id, **env_kwargs) for _ in range(n_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )


@dataclass
class Rollout:
    """What acting carries from one vector step to the next (a checkpoint keeps it)."""

    envs: gym.vector.SyncVectorEnv
    tokens: np.ndarray  # (n_envs, L) uint8 tokens of the current observations
    z: torch.Tensor | None  # what the last forward pass kept (carry.keep); None: start from the initial state
    episode_start: np.ndarray  # (n_envs,) bool: the current observation starts its episode
    episode_return: np.ndarray  # (n_envs,) float64
    episode_length: np.ndarray  # (n_envs,) int64
    ep_info: deque = field(default_factory=lambda: deque(maxlen=100))  # (return, length, success) of the last 100

    @classmethod
    def start(cls, env_id: str, env_kwargs: dict[str, Any], n_envs: int, seed: int, tokenizer: Tokenizer) -> "Rollout":
        envs = make_vec_env(env_id, env_kwargs, n_envs)
        obs, _ = envs.reset(seed=seed)
        return cls(envs, tokenizer(obs), None, np.ones(n_envs, dtype=bool), np.zeros(n_envs),
                   np.zeros(n_envs, dtype=np.int64))

    def step(self, actions: np.ndarray, tokenizer: Tokenizer) -> tuple[np.ndarray, ...]:
        """Step the envs: ``(next_tokens, stored_next_tokens, rewards, terminated, done, ended_successes)``.

        ``stored_next_tokens`` hold each episode's final observation where it ended (same-step autoreset:
        ``next_tokens`` already start the next episode there); each observation is tokenised once.
        """
        next_obs, rewards, terminated, truncated, infos = self.envs.step(actions)
        done = terminated | truncated
        next_tokens = tokenizer(next_obs)
        stored = next_tokens.copy()
        ended = np.flatnonzero(done)
        if ended.size:
            stored[ended] = tokenizer(np.stack([infos["final_obs"][i] for i in ended]))
        success = infos["final_info"].get("is_success", np.zeros(len(done), bool)) if ended.size else None
        self.episode_return += rewards
        self.episode_length += 1
        for i in ended:
            self.ep_info.append((float(self.episode_return[i]), int(self.episode_length[i]), bool(success[i])))
            self.episode_return[i] = 0.0
            self.episode_length[i] = 0
        return next_tokens, stored, rewards, terminated, done


def make_replay(agent: "HRMAgent") -> ReplayBuffer:
    """An empty replay buffer for the agent's config: tokens, and the latent carry z keeps (``carry.py``)."""
    c = agent.config
    return ReplayBuffer(c.buffer_size, c.n_envs, agent.tokenizer.seq_len,
                        carry.latent_shape(c.carry_z, c.carry, agent.model_config),
                        carry.latent_dtype(agent.model_config), goal_tokens=agent.tokenizer.goal_tokens)
