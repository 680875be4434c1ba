"""The DQN agent's training loop and update (as CleanRL's ``dqn.py``): act, step, store, sample, update, log.

:func:`train` is one straight loop over vector steps; everything around it
(evaluation, logs, checkpoints, progress bar, Ctrl-C, phase timing) is a
callback (``callbacks.py``). Observations are tokenised once, as they come out
of the environments: the loop keeps, acts on and stores tokens. What carry z
starts each forward pass from and what it keeps is ``carry.py``.

The update (:func:`dqn_update`) minimises the paper's loss

    L = MSE(Q_θ(s_t, a_t), y),   y = r_t + γ (1 − d_t) max_a' Q_θ⁻(s_{t+1}, a')

with ``d_t`` the *terminated* flag: a time-limit truncation still bootstraps.
With ``n_step`` sampling (``replay.py``), ``r_t`` is the discounted sum of up to
``n`` rewards and ``γ`` becomes ``γ^k`` for the ``k`` steps the sample spans.
With carry z the online network starts from the stored ``z_t`` on ``s_t`` and
the target network from ``z_{t+1}`` on ``s_{t+1}`` (``carry.start``).

Deep supervision (as the HRM and the HRM-Agent authors train): the target is
computed once per minibatch, from the target network's full forward pass (all
``segments``); the online network then runs one segment at a time, each
continuing from the last with the carry detached in between, and every
segment's Q-values get their own optimiser step against that same target.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from hrm_agent import carry
from hrm_agent.callbacks import Callback
from hrm_agent.model import HRMCarry, HRMQNetwork
from hrm_agent.replay import ReplaySample
from hrm_agent.rollout import Rollout, make_replay

if TYPE_CHECKING:
    from hrm_agent.agent import HRMAgent


class TrainingDiverged(RuntimeError):
    """The TD loss became non-finite; the last good checkpoint is kept."""


def setup(agent: "HRMAgent") -> None:
    """Make the agent's environments, replay buffer and (with a ``run_dir``) logger, where missing."""
    from hrm_agent.logger import agent_hparams, log_hparams, make_logger

    c = agent.config
    if agent.rollout is None:
        agent.rollout = Rollout.start(agent.env_id, agent.env_kwargs, c.n_envs, agent.seed, agent.tokenizer)
    if agent.replay is None:
        agent.replay = make_replay(agent)
    if agent.run_dir is not None and agent.logger is None:
        agent.logger = make_logger(agent.run_dir, resume_step=agent.resumed_at)
        log_hparams(agent.logger, agent_hparams(agent))


@torch.no_grad()
def act(model: HRMQNetwork, start: HRMCarry, tokens: np.ndarray) -> tuple[HRMCarry, np.ndarray]:
    """One batched forward pass: tokens ``(B, L)`` -> (the end state, greedy actions ``(B,)``)."""
    end, q, _ = model(start, torch.from_numpy(tokens).to(start.z_H.device))
    return end, q.argmax(dim=1).cpu().numpy()


def exploration_rate(agent: "HRMAgent") -> float:
    """ε at the agent's current step: linear over ``exploration_steps`` (or that fraction of the run)."""
    c = agent.config
    duration = c.exploration_steps or c.exploration_fraction * agent.total_timesteps
    return linear_schedule(c.exploration_initial_eps, c.exploration_final_eps, duration, agent.num_timesteps)


def train(agent: "HRMAgent", total_timesteps: int, callbacks: Callback) -> str:
    """Run ``total_timesteps`` more env steps of DQN on ``agent``; returns the outcome given to
    ``callbacks.on_training_end`` (``finished``, ``interrupted``, ``stopped``)."""
    c, rollout, replay, online = agent.config, agent.rollout, agent.replay, agent.online
    assert rollout is not None and replay is not None
    end = agent.num_timesteps + total_timesteps
    agent.total_timesteps = max(agent.total_timesteps, end)  # the exploration schedule's horizon

    @contextmanager
    def timed(phase: str) -> Iterator[None]:
        begin = time.perf_counter()
        yield
        callbacks.on_phase(phase, time.perf_counter() - begin)

    callbacks.on_training_start(agent, end)
    outcome, last_time = "failed", time.perf_counter()
    try:
        while agent.num_timesteps < end and not callbacks.interrupted:
            # act: one forward pass for all envs, also on random-action steps so z stays fresh
            with timed("act"):
                start = carry.start(online, rollout.z, rollout.episode_start, c.n_envs)
                end_state, actions = act(online, start, rollout.tokens)
            explore = agent.rng.random(c.n_envs) < exploration_rate(agent)
            actions = np.where(explore, agent.rng.integers(0, agent.action_space.n, size=c.n_envs), actions)

            with timed("env step"):
                next_tokens, stored_next, rewards, terminated, done = rollout.step(actions, agent.tokenizer)
            agent.n_episodes += int(done.sum())

            # store: the transition and what carry z keeps of this pass (z_out, see replay.py)
            z_out = carry.keep(online, end_state, c.carry_z, c.carry)
            with timed("replay add"):
                replay.add(rollout.tokens, stored_next, actions, rewards, terminated, rollout.episode_start, z_out)
            rollout.tokens, rollout.z, rollout.episode_start = next_tokens, z_out, done
            agent.num_timesteps += c.n_envs

            # learn
            if agent.num_timesteps >= agent.learning_starts_at and len(replay) >= c.batch_size:
                if (agent.num_timesteps // c.n_envs) % c.train_freq == 0:
                    gradient_steps(agent, timed, callbacks)
            if c.target_update == "periodic" and agent.num_timesteps - agent.last_target_sync >= c.target_update_interval:
                with timed("target sync"):
                    update_target(online, agent.target, c.tau)
                agent.last_target_sync = agent.num_timesteps

            # log, evaluate, checkpoint, ... (callbacks)
            now = time.perf_counter()
            agent.wall_time += now - last_time
            last_time = now
            if callbacks.on_step(agent) is False:
                break
        outcome = "interrupted" if callbacks.interrupted else "finished" if agent.num_timesteps >= end else "stopped"
    finally:
        callbacks.on_training_end(agent, outcome)
    return outcome


def gradient_steps(agent: "HRMAgent", timed: Any, callbacks: Callback) -> None:
    """``gradient_steps`` DQN updates on minibatches sampled from the agent's replay."""
    c, replay = agent.config, agent.replay
    assert replay is not None
    for _ in range(c.gradient_steps):
        with timed("replay sample"):
            batch = replay.sample(c.batch_size, agent.rng, agent.device, n_step=c.n_step, gamma=c.gamma,
                                  her_ratio=c.her_ratio)
        for group in agent.optimizer.param_groups:
            group["lr"] = warmup_lr(c.learning_rate, c.lr_warmup_steps, agent.n_updates)
        with timed("update"):
            stats = dqn_update(agent.online, agent.target, agent.optimizer, batch, gamma=c.gamma,
                               max_grad_norm=c.max_grad_norm, deep_supervision=c.deep_supervision,
                               target_tau=c.tau if c.target_update == "every_update" else None)
        if not np.isfinite(stats["loss"]):
            raise TrainingDiverged(
                f"non-finite TD loss at step {agent.num_timesteps}; try a lower learning_rate "
                f"(now {c.learning_rate}) or max_grad_norm; the last good checkpoint is kept"
            )
        agent.n_updates += stats["optimizer_steps"]
    callbacks.on_update(agent, stats)


# The update ---------------------------------------------------------------


def linear_schedule(start: float, end: float, duration: float, t: float) -> float:
    """Value at time ``t`` of a line from ``start`` (t=0) to ``end`` (t>=duration)."""
    if duration <= 0:
        return end
    return start + (end - start) * min(t / duration, 1.0)


def td_target(
    rewards: torch.Tensor, terminated: torch.Tensor, next_values: torch.Tensor, gamma: float | torch.Tensor
) -> torch.Tensor:
    """``y = r + γ (1 − terminated) V(s')``; all ``(B,)`` float tensors, ``gamma`` a float or ``(B,)``."""
    return rewards + gamma * (1.0 - terminated) * next_values


def warmup_lr(base_lr: float, warmup_steps: int, n_updates: int) -> float:
    """Learning rate after ``n_updates`` optimiser steps: linear warm-up to ``base_lr``, then constant."""
    if warmup_steps <= 0:
        return base_lr
    return base_lr * min(1.0, (n_updates + 1) / warmup_steps)


def dqn_update(
    online: HRMQNetwork,
    target: HRMQNetwork,
    optimizer: torch.optim.Optimizer,
    batch: ReplaySample,
    *,
    gamma: float,
    max_grad_norm: float | None = 10.0,
    deep_supervision: bool = False,
    target_tau: float | None = None,
) -> dict[str, float]:
    """Gradient steps on one replay batch; returns scalars for logging (of the last step).

    One optimiser step, or with ``deep_supervision`` one per segment of the online
    network (``online.config.segments``) against the same target. ``target_tau``:
    soft-update the target network after every optimiser step (None: the caller
    syncs it on its own schedule).
    """
    n = batch.obs.shape[0]
    state = carry.start(online, batch.z_init, batch.episode_start, n)
    next_state = carry.start(target, batch.z_next, None, n)

    with torch.no_grad():
        next_values = target.q_values(next_state, batch.next_obs).max(1).values
        discount = gamma if batch.discounts is None else batch.discounts  # n-step samples: gamma^k
        y = td_target(batch.rewards, batch.terminated, next_values, discount)

    steps = online.config.segments if deep_supervision else 1
    for _ in range(steps):
        if deep_supervision:  # one segment at a time; the carry comes back detached
            state, q, _ = online(state, batch.obs, segments=1)
        else:  # all segments, no carry needed after them
            q = online.q_values(state, batch.obs)
        q_taken = q.gather(1, batch.actions[:, None]).squeeze(1)
        td_loss = F.mse_loss(q_taken, y)
        optimizer.zero_grad(set_to_none=True)
        td_loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(online.parameters(), max_grad_norm or float("inf"))
        optimizer.step()
        if target_tau is not None:
            update_target(online, target, target_tau)
    return {
        "loss": td_loss.item(),
        "q_mean": q_taken.mean().item(),
        "grad_norm": float(grad_norm),
        "optimizer_steps": steps,
    }


@torch.no_grad()
def update_target(online: torch.nn.Module, target: torch.nn.Module, tau: float) -> None:
    """``θ⁻ ← τ θ + (1 − τ) θ⁻`` (``tau=1``: hard copy)."""
    for p_target, p in zip(target.parameters(), online.parameters()):
        if tau == 1.0:
            p_target.copy_(p)
        else:
            p_target.lerp_(p, tau)
