"""Uniform experience replay that also stores the carried latent (R2D2's "stored state").

Layout is ``(capacity, n_envs)`` as in stable-baselines3: row ``t`` holds the
transition every environment made at vector step ``t``, so the next step of
the same environment is row ``t + 1`` of the same column.

Latents are stored once per transition: ``z_out[t]`` is the latent the forward
pass on ``s_t`` produced. It is the ``z_{t+1}`` from which the target network
reads ``s_{t+1}`` (also on the last step of an episode, so truncated
transitions bootstrap correctly), and -- unless ``s_{t+1}`` starts a new
episode -- the ``z`` that initialised the forward pass on ``s_{t+1}``. So the
online network's starting latent for row ``t`` is ``z_out[t - 1]``, or the
fixed initial state when ``episode_start[t]``; no latent is stored twice.
Because row ``t`` needs row ``t - 1``, the oldest row of a full buffer (whose
predecessor has been overwritten) is never sampled.

With ``n_step > 1`` a sample is an n-step transition (as stable-baselines3's
``NStepReplayBuffer``): ``rewards`` holds ``sum_k gamma^k r_{t+k}`` over up to
``n`` steps, cut short where the episode ends (terminated or truncated) or the
stored data does; ``next_obs``, ``terminated`` and ``z_next`` are those of the
last step taken, and ``discounts`` is ``gamma^k`` for ``k`` steps taken.

With ``her_ratio > 0`` (hindsight experience replay, Andrychowicz et al. 2017,
the "future" strategy of stable-baselines3's ``HerReplayBuffer``) that fraction
of the sampled transitions has its goal moved: the goal token of ``s_t`` and
``s_{t+1}`` goes to a cell the agent stood on at a step from ``t + 1`` to the
end of the same episode (as far as it is stored), the old goal's cell becomes
floor, and the reward and ``terminated`` become those of that goal: 1 and
terminal when ``s_{t+1}`` reaches it, else the stored reward (a step that
reached the real goal ends its episode, so has no later cell, and keeps its
goal). A cell that is not floor in ``s_t`` (a door, the agent's own cell) is
not used; such samples keep their goal. The stored latents are not
recomputed: a carried ``z`` was produced under the episode's real goal.

Latents are kept in half precision (``float16``, or ``bfloat16`` when the model
runs in bfloat16 so they are stored exactly).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch


class ReplaySample(NamedTuple):
    """A batch of ``B`` transitions (tensors on the requested device).

    ``z_init``/``z_next`` are stacks ``(z_H, z_L)`` of what carry z keeps,
    ``(2, B, S, D)`` (``carry: full``) or ``(2, B, D)`` (``carry: token``), or None
    (reset z); rows where ``episode_start`` is True start from the initial state
    instead of ``z_init`` (``carry.start`` resets them).
    """

    obs: torch.Tensor  # (B, L) uint8 tokens of s_t
    actions: torch.Tensor  # (B,) int64
    rewards: torch.Tensor  # (B,) float32
    next_obs: torch.Tensor  # (B, L) uint8 tokens of s_{t+1} (the final obs on an episode's last step)
    terminated: torch.Tensor  # (B,) float32: 1 when s_{t+1} is terminal (no bootstrap); truncation is 0
    episode_start: torch.Tensor  # (B,) bool: s_t is the first observation of its episode
    z_init: torch.Tensor | None  # (2, B, *latent_shape) latent before the forward pass on s_t
    z_next: torch.Tensor | None  # (2, B, *latent_shape) latent produced by it, which starts s_{t+1}
    # (B,) float32 gamma^k of the k-step return in ``rewards`` (n-step sampling); None: one step, gamma
    discounts: torch.Tensor | None = None


class GoalTokens(NamedTuple):
    """Token ids hindsight relabelling reads and writes (``envs.tokens``)."""

    agent: int
    goal: int
    floor: int


class ReplayBuffer:
    """Circular buffer of ``buffer_size`` transitions over ``n_envs`` environments.

    Args:
        buffer_size: total transitions kept (``buffer_size // n_envs`` rows).
        n_envs: environments stepped together.
        seq_len: tokens per observation.
        latent_shape: shape of each of ``z_H``/``z_L`` as carried, ``(S, D)`` or ``(D,)``; None stores
            no latents (reset z).
        latent_dtype: ``torch.float16`` or ``torch.bfloat16``.
        goal_tokens: the agent's, goal's and floor's token ids, needed to sample with ``her_ratio > 0``.
    """

    def __init__(
        self,
        buffer_size: int,
        n_envs: int,
        seq_len: int,
        latent_shape: tuple[int, int] | None = None,
        latent_dtype: torch.dtype = torch.float16,
        goal_tokens: GoalTokens | None = None,
    ) -> None:
        self.goal_tokens = goal_tokens
        self.capacity = max(buffer_size // n_envs, 2)
        self.n_envs = n_envs
        shape = (self.capacity, n_envs)
        self.obs = np.zeros(shape + (seq_len,), dtype=np.uint8)
        self.next_obs = np.zeros(shape + (seq_len,), dtype=np.uint8)
        self.actions = np.zeros(shape, dtype=np.int32)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.terminated = np.zeros(shape, dtype=np.bool_)
        self.episode_start = np.zeros(shape, dtype=np.bool_)
        self.z_out = None if latent_shape is None else torch.zeros(shape + (2, *latent_shape), dtype=latent_dtype)
        self.pos = 0
        self.full = False

    def __len__(self) -> int:
        """Number of stored transitions."""
        return (self.capacity if self.full else self.pos) * self.n_envs

    @property
    def bytes_per_transition(self) -> int:
        """Memory one transition occupies (all arrays, latents included)."""
        arrays = (self.obs, self.next_obs, self.actions, self.rewards, self.terminated, self.episode_start)
        total = sum(a.nbytes for a in arrays)
        if self.z_out is not None:
            total += self.z_out.numel() * self.z_out.element_size()
        return total // (self.capacity * self.n_envs)

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        episode_start: np.ndarray,
        z_out: torch.Tensor | None = None,
    ) -> None:
        """Store one vector step: arrays with leading dim ``n_envs``; ``z_out`` is ``(2, n_envs, *latent_shape)``."""
        t = self.pos
        self.obs[t] = obs
        self.next_obs[t] = next_obs
        self.actions[t] = actions
        self.rewards[t] = rewards
        self.terminated[t] = terminated
        self.episode_start[t] = episode_start
        if self.z_out is not None:
            if z_out is None:
                raise ValueError("this buffer stores latents: pass z_out")
            self.z_out[t] = z_out.transpose(0, 1).to(self.z_out.dtype)
        self.pos = (self.pos + 1) % self.capacity
        self.full = self.full or self.pos == 0

    def sample(
        self,
        batch_size: int,
        rng: np.random.Generator,
        device: torch.device | str = "cpu",
        n_step: int = 1,
        gamma: float = 1.0,
        her_ratio: float = 0.0,
    ) -> ReplaySample:
        """Uniformly sample ``batch_size`` transitions (with replacement), ``n_step``-step returns with
        ``gamma``, a fraction ``her_ratio`` of them with a hindsight goal (one-step samples only)."""
        if self.full:
            # skip the oldest row: its predecessor (which holds its z_init) was overwritten
            rows = (self.pos + 1 + rng.integers(0, self.capacity - 1, size=batch_size)) % self.capacity
        else:
            if self.pos == 0:
                raise ValueError("cannot sample from an empty replay buffer")
            rows = rng.integers(0, self.pos, size=batch_size)
        cols = rng.integers(0, self.n_envs, size=batch_size)
        last, returns, discounts = self._n_step(rows, cols, n_step, gamma)
        obs, next_obs = self.obs[rows, cols], self.next_obs[last, cols]
        terminated = self.terminated[last, cols]
        if her_ratio > 0:
            if n_step != 1:
                raise ValueError("hindsight relabelling (her_ratio > 0) needs n_step 1")
            obs, next_obs, returns, terminated = self._hindsight(
                rows, cols, obs, next_obs, returns, terminated, rng.random(batch_size) < her_ratio, rng
            )

        def tensor(a: np.ndarray, at: np.ndarray = rows) -> torch.Tensor:
            return torch.from_numpy(a[at, cols]).to(device)

        z_init = z_next = None
        if self.z_out is not None:
            rows_t, last_t, cols_t = torch.from_numpy(rows), torch.from_numpy(last), torch.from_numpy(cols)
            z_next = self.z_out[last_t, cols_t].transpose(0, 1).to(device)
            z_init = self.z_out[(rows_t - 1) % self.capacity, cols_t].transpose(0, 1).to(device)
        return ReplaySample(
            obs=torch.from_numpy(obs).to(device),
            actions=tensor(self.actions).long(),
            rewards=torch.from_numpy(returns).to(device),
            next_obs=torch.from_numpy(next_obs).to(device),
            terminated=torch.from_numpy(terminated).float().to(device),
            episode_start=tensor(self.episode_start),
            z_init=z_init,
            z_next=z_next,
            discounts=None if discounts is None else torch.from_numpy(discounts).to(device),
        )

    def _episode_end(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The last stored row of the episode each ``(row, col)`` belongs to."""
        end = rows.copy()
        going = ~self.terminated[rows, cols]
        while going.any():
            following = (end + 1) % self.capacity
            going &= (following != self.pos) & ~self.episode_start[following, cols]
            end = np.where(going, following, end)
        return end

    def _hindsight(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        obs: np.ndarray,
        next_obs: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        relabel: np.ndarray,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Move the goal of the samples in ``relabel`` to a cell the agent reached later in the episode."""
        if self.goal_tokens is None:
            raise ValueError("hindsight relabelling needs the buffer's goal_tokens")
        agent, goal, floor = self.goal_tokens
        idx = np.flatnonzero(relabel)
        if idx.size == 0:
            return obs, next_obs, rewards, terminated
        r, c = rows[idx], cols[idx]
        span = (self._episode_end(r, c) - r) % self.capacity  # later rows of the episode: r + 1 .. r + span
        future = (r + (rng.random(idx.size) * (span + 1)).astype(np.int64)) % self.capacity
        cell = np.argmax(self.next_obs[future, c] == agent, axis=1)  # where the agent stood after that step
        now, after = obs[idx], next_obs[idx]
        k = np.arange(idx.size)
        valid = (now[k, cell] == floor) & ((after[k, cell] == floor) | (after[k, cell] == agent))
        idx, cell, now, after = idx[valid], cell[valid], now[valid], after[valid]
        k = np.arange(idx.size)
        reached = after[k, cell] == agent
        now[now == goal] = floor
        after[after == goal] = floor
        now[k, cell] = goal
        after[k, cell] = np.where(reached, agent, goal)
        obs[idx], next_obs[idx] = now, after  # all four arrays are this sample's own copies
        rewards[idx] = np.where(reached, 1.0, rewards[idx])  # a terminal step has no later cell: never here
        terminated[idx] = reached
        return obs, next_obs, rewards, terminated

    def _n_step(
        self, rows: np.ndarray, cols: np.ndarray, n_step: int, gamma: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Last row, discounted return and ``gamma^k`` of up to ``n_step`` steps from each ``(row, col)``."""
        returns = self.rewards[rows, cols].copy()
        if n_step == 1:
            return rows, returns, None
        last = rows.copy()
        discounts = np.full(rows.shape, gamma, dtype=np.float32)
        going = ~self.terminated[rows, cols]
        for _ in range(n_step - 1):
            following = (last + 1) % self.capacity
            # the next row is stored (not the write position: unwritten, or the oldest data) and continues the episode
            going &= (following != self.pos) & ~self.episode_start[following, cols]
            returns += np.where(going, discounts * self.rewards[following, cols], 0.0).astype(np.float32)
            last = np.where(going, following, last)
            discounts = np.where(going, discounts * gamma, discounts).astype(np.float32)
            going &= ~self.terminated[last, cols]
        return last, returns, discounts

    def state_dict(self) -> dict[str, Any]:
        names = ("obs", "next_obs", "actions", "rewards", "terminated", "episode_start")
        state: dict[str, Any] = {name: getattr(self, name) for name in names}
        state.update(z_out=self.z_out, pos=self.pos, full=self.full)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            current = getattr(self, name)
            if hasattr(current, "shape") and tuple(current.shape) != tuple(value.shape):
                raise ValueError(f"replay buffer field {name} has shape {tuple(value.shape)}, expected {tuple(current.shape)}")
            setattr(self, name, value)
