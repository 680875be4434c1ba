"""Carry z: where each forward pass starts, and what of its end state is kept.

The whole rule, for acting, replay and the update:

- A forward pass starts from a kept latent ``z`` (what the previous step of the
  same environment left), or from the fixed initial state ``(H_init, L_init)``
  when there is none (reset z, or the first step) or its episode starts.
- What is kept of a pass's end state is :func:`keep`: with carry z, ``config.carry``
  decides between every position's state (``full``, ``(2, B, S, D)``) and the
  query position's vectors (``token``, ``(2, B, D)``, broadcast to every position
  when the next pass starts, as the HRM-Agent authors do); with reset z nothing.
- Replay stores exactly what is kept, once per transition (``replay.py``): the
  online network restarts row ``t`` from row ``t - 1``'s ``z`` (reset at an
  episode start) and the target network reads ``s_{t+1}`` from row ``t``'s.

So :func:`start` is the only place a carry is made from a kept latent: the
acting loop, :meth:`HRMAgent.predict` and :func:`hrm_agent.loop.dqn_update` all
call it.
"""

from __future__ import annotations

import numpy as np
import torch

from hrm_agent.config import HRMConfig
from hrm_agent.model import HRMCarry, HRMQNetwork


def start(
    model: HRMQNetwork, z: torch.Tensor | None, reset: torch.Tensor | np.ndarray | None, batch: int
) -> HRMCarry:
    """The carry a forward pass of ``batch`` rows starts from.

    ``z``: a kept latent ``(2, B, *latent_shape)`` (any float dtype, any device) or None (the initial
    state for every row). ``reset``: ``(B,)`` bool, rows that start an episode (None: none do).
    Returns ``HRMCarry`` ``(B, S, D)`` each, in the model's forward dtype, on its device.
    """
    if z is None:
        return model.initial_carry(batch, device=model.H_init.device)
    carry = model.carry_from_state(z)
    if reset is None:
        return carry
    return model.reset_carry(torch.as_tensor(reset, device=model.H_init.device), carry)


def keep(model: HRMQNetwork, carry: HRMCarry, carry_z: bool, mode: str) -> torch.Tensor | None:
    """What carry z keeps of a pass's end state ``carry``: ``(2, B, S, D)`` (``full``), ``(2, B, D)``
    (``token``), or None with reset z."""
    return model.carry_state(carry, mode) if carry_z else None


def latent_shape(carry_z: bool, mode: str, model_config: HRMConfig) -> tuple[int, ...] | None:
    """The shape of each of ``z_H``/``z_L`` as kept (and stored in replay): ``(S, D)``, ``(D,)`` or None."""
    if not carry_z:
        return None
    D = model_config.hidden_size
    return (D,) if mode == "token" else (model_config.total_seq_len, D)


def latent_dtype(model_config: HRMConfig) -> torch.dtype:
    """Replay keeps latents in half precision: bfloat16 when the model runs in it (stored exactly), else float16."""
    return torch.bfloat16 if model_config.forward_dtype == "bfloat16" else torch.float16

