"""The DQN update: TD target, loss, optimiser step, target-network sync, epsilon schedule.

Everything about the learning rule is in this file. The loss is the paper's

    L = MSE(Q_θ(s_t, a_t), y),   y = r_t + γ (1 − d_t) max_a' Q_θ⁻(s_{t+1}, a')

with ``d_t`` the *terminated* flag: a time-limit truncation still bootstraps.
With ``n_step`` sampling (``replay.py``), ``r_t`` is the discounted sum of up to
``n`` rewards and ``γ`` becomes ``γ^k`` for the ``k`` steps the sample spans.
With carry z the online network starts from the stored ``z_t`` on ``s_t`` and
the target network from ``z_{t+1}`` on ``s_{t+1}`` (``carry.start``; see ``carry.py``).

Deep supervision (as the HRM and the HRM-Agent authors train): the target is
computed once per minibatch, from the target network's full forward pass (all
``segments``); the online network then runs one segment at a time, each
continuing from the last with the carry detached in between, and every
segment's Q-values get their own optimiser step against that same target.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hrm_agent.carry import start as start_carry
from hrm_agent.model import HRMQNetwork
from hrm_agent.replay import ReplaySample


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
    carry = start_carry(online, batch.z_init, batch.episode_start, n)
    next_carry = start_carry(target, batch.z_next, None, n)

    with torch.no_grad():
        next_values = target.q_values(next_carry, batch.next_obs).max(1).values
        discount = gamma if batch.discounts is None else batch.discounts  # n-step samples: gamma^k
        y = td_target(batch.rewards, batch.terminated, next_values, discount)

    steps = online.config.segments if deep_supervision else 1
    for _ in range(steps):
        if deep_supervision:  # one segment at a time; the carry comes back detached
            carry, q, _ = online(carry, batch.obs, segments=1)
        else:  # all segments, no carry needed after them
            q = online.q_values(carry, batch.obs)
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
