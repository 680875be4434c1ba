"""What acting keeps between vector steps (:class:`Rollout`: the environments, the current observations'
tokens, the kept latent, episode bookkeeping) and the replay buffer shaped for the agent's carry: built
here so that the training loop and the checkpoint module that restores them share one definition."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch

from hrm_agent import carry
from hrm_agent.replay import ReplayBuffer
from hrm_agent.tokens import Tokenizer

if TYPE_CHECKING:
    from hrm_agent.agent import HRMAgent


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
