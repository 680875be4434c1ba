"""Hyperparameters of the stable-baselines3 baselines: one pydantic model per algorithm.

The tuned defaults live in ``hrm_agent/hyperparams.yaml`` beside the HRM
agent's, under ``baselines:`` with one section per algorithm (``dqn``, ``ppo``,
``recurrent-ppo``), each holding a ``default`` entry and one entry per env id.
They resolve as the HRM agent's do: defaults <- ``--config FILE.yaml`` <-
``--set key=value`` (``policy.features_dim=64`` reaches into the policy).

Fields keep stable-baselines3's names and units (``train_freq`` in vector
steps, every other ``*_freq``/``*_interval``/``*_starts``/``buffer_size`` and
``n_steps * n_envs`` in environment steps), so a value can be compared with the
HRM agent's :class:`hrm_agent.hyperparams.AgentConfig` or rl-baselines3-zoo's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hrm_agent.hyperparams import (
    ConfigError,
    env_defaults,
    format_validation_error,
    hyperparams_table,
    merge_layers,
    override_layers,
)

NESTED = ("policy",)  # merged field by field across layers


class PolicyConfig(BaseModel):
    """The network: a features extractor for the token grid, then SB3's MLP head(s) of ``net_arch``."""

    model_config = ConfigDict(extra="forbid")

    extractor: Literal["conv", "mlp"] = "conv"
    """``conv``: one-hot tokens -> 3x3 convolutions (padding 1) of ``channels`` -> linear to
    ``features_dim``; ``mlp``: flattened one-hot tokens -> linear to ``features_dim``."""
    channels: list[int] = Field(default_factory=lambda: [16, 16])
    features_dim: int = Field(64, ge=1)
    crop_border: bool = True
    """Drop the grid's constant outer ring of walls, as the HRM agent does."""
    view: Literal["grid", "agent"] = "grid"
    """``grid``: the grid as observed, each cell at its absolute position; ``agent``: the same grid
    shifted so that the agent sits at the centre of a ``(2H-1, 2W-1)`` window padded with walls (an
    egocentric view of the whole grid, not rotated), so that the cells beside the agent and the goal's
    offset from it are at fixed places for the convolutions: the 2-D position help the HRM agent gets
    from ``pos_encodings: rope2d``, ``goal_embedding`` and ``readout: neighbors``."""
    net_arch: list[int] = Field(default_factory=lambda: [64])
    """Hidden layers after the extractor (DQN: the Q head; PPO: policy and value heads each)."""

    @model_validator(mode="after")
    def _check(self) -> "PolicyConfig":
        if self.extractor == "conv" and not self.channels:
            raise ValueError("channels must list at least one layer for the conv extractor")
        if any(c < 1 for c in self.channels) or any(n < 1 for n in self.net_arch):
            raise ValueError("channels and net_arch sizes must be positive")
        return self


class BaselineConfig(BaseModel):
    """Fields every baseline has: budget, vectorised acting, optimisation, evaluation, checkpoints."""

    model_config = ConfigDict(extra="forbid")

    total_steps: int = Field(60_000, ge=1)
    """Default training budget in env steps (``--total-steps`` overrides)."""
    n_envs: int = Field(8, ge=1)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    learning_rate: float = Field(3e-4, gt=0)
    gamma: float = Field(0.99, gt=0, le=1)
    max_grad_norm: float = Field(0.5, gt=0)
    eval_freq: int = Field(5_000, ge=0)
    """Greedy evaluation every this many env steps, and at the end (0: never)."""
    eval_episodes: int = Field(50, ge=1)
    checkpoint_freq: int = Field(10_000, ge=0)
    """Write ``checkpoints/last.zip`` every this many env steps (0: only at the end)."""

    def algo_kwargs(self) -> dict[str, Any]:
        """Constructor keywords of the SB3 algorithm (everything but the run-level and policy fields)."""
        run_level = {"total_steps", "n_envs", "policy", "eval_freq", "eval_episodes", "checkpoint_freq"}
        return self.model_dump(exclude=run_level | self.policy_fields())

    @classmethod
    def policy_fields(cls) -> set[str]:
        """Top-level fields that go to ``policy_kwargs`` rather than the algorithm."""
        return set()


class DQNConfig(BaselineConfig):
    """stable-baselines3 ``DQN`` (Huber loss, no double Q); the defaults mirror the HRM agent's DQN."""

    learning_rate: float = Field(1e-3, gt=0)
    gamma: float = Field(0.95, gt=0, le=1)
    max_grad_norm: float = Field(10.0, gt=0)
    buffer_size: int = Field(50_000, ge=1)
    learning_starts: int = Field(1_000, ge=0)
    batch_size: int = Field(64, ge=1)
    tau: float = Field(1.0, gt=0, le=1)
    train_freq: int = Field(1, ge=1)
    gradient_steps: int = Field(1, ge=1)
    target_update_interval: int = Field(1_000, ge=1)
    exploration_fraction: float = Field(0.2, gt=0, le=1)
    exploration_initial_eps: float = Field(1.0, ge=0, le=1)
    exploration_final_eps: float = Field(0.05, ge=0, le=1)

    @model_validator(mode="after")
    def _check_dqn(self) -> "DQNConfig":
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed buffer_size ({self.buffer_size})")
        if self.buffer_size < self.n_envs:
            raise ValueError(f"buffer_size ({self.buffer_size}) must be at least n_envs ({self.n_envs})")
        if self.exploration_final_eps > self.exploration_initial_eps:
            raise ValueError("exploration_final_eps must not exceed exploration_initial_eps")
        return self


class PPOConfig(BaselineConfig):
    """stable-baselines3 ``PPO``."""

    n_steps: int = Field(128, ge=1)
    """Steps per environment per rollout (a rollout is ``n_steps * n_envs`` env steps)."""
    batch_size: int = Field(256, ge=2)
    n_epochs: int = Field(4, ge=1)
    gae_lambda: float = Field(0.95, ge=0, le=1)
    clip_range: float = Field(0.2, gt=0)
    ent_coef: float = Field(0.01, ge=0)
    vf_coef: float = Field(0.5, ge=0)
    normalize_advantage: bool = True
    target_kl: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _check_ppo(self) -> "PPOConfig":
        rollout = self.n_steps * self.n_envs
        if rollout < 2:
            raise ValueError(f"n_steps * n_envs ({rollout}) must be at least 2")
        if self.batch_size > rollout:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed n_steps * n_envs ({rollout})")
        return self


class RecurrentPPOConfig(PPOConfig):
    """sb3-contrib ``RecurrentPPO`` with ``MlpLstmPolicy``: the extractor, then an LSTM, then the heads."""

    lstm_hidden_size: int = Field(64, ge=1)
    n_lstm_layers: int = Field(1, ge=1)
    shared_lstm: bool = False
    enable_critic_lstm: bool = True

    @classmethod
    def policy_fields(cls) -> set[str]:
        return {"lstm_hidden_size", "n_lstm_layers", "shared_lstm", "enable_critic_lstm"}

    @model_validator(mode="after")
    def _check_lstm(self) -> "RecurrentPPOConfig":
        if self.shared_lstm and self.enable_critic_lstm:
            raise ValueError("shared_lstm and enable_critic_lstm cannot both be true (set enable_critic_lstm=false)")
        return self


CONFIGS: dict[str, type[BaselineConfig]] = {"dqn": DQNConfig, "ppo": PPOConfig, "recurrent-ppo": RecurrentPPOConfig}
ALGOS = tuple(CONFIGS)


def default_baseline_hyperparams(algo: str, env_id: str) -> dict[str, Any]:
    """Tuned defaults of ``algo`` for ``env_id`` from ``hyperparams.yaml`` (its ``baselines: {algo}:`` section)."""
    if algo not in CONFIGS:
        raise ConfigError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGOS)}")
    section = (hyperparams_table().get("baselines") or {}).get(algo) or {}
    return env_defaults(section, env_id, nested=NESTED)


def resolve_baseline_config(
    algo: str,
    env_id: str,
    config_file: str | Path | None = None,
    overrides: list[str] | None = None,
    params: dict[str, Any] | None = None,
) -> BaselineConfig:
    """Defaults of ``algo`` for ``env_id`` <- config file <- ``key=value`` overrides <- ``params``.

    Raises ``ConfigError`` with a one-line message naming the offending fields.
    """
    layers = override_layers(config_file, overrides)
    if params is not None:
        layers.append(params)
    merged = merge_layers(default_baseline_hyperparams(algo, env_id), layers, nested=NESTED)
    try:
        return CONFIGS[algo](**merged)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None
