"""The recursive cores of the Q-network (``model.core``): the latent ``(z_H, z_L)`` and its update equations.

- ``hrm``, :class:`HRMCore`: the Hierarchical Reasoning Model, two modules and the 1-step gradient.
- ``trm``, :class:`TRMCore`: the Tiny Recursive Model, one network for both updates and the gradient
  through the last cycle.
- ``transformer``, :class:`TransformerCore`: plain transformer blocks, no inner recursion.

Each takes the state a forward pass starts from and the embedded input ``x~`` (B, S, D) with its rotary
tables, and returns the final state; the encoder before and the Q head after it
(:mod:`hrm_agent.model`) are the same for every core, and so is what carry z carries. What they share
(segments, the gradient only in the last one, the trace, the fixed initial state) is :class:`RecursiveCore`'s;
each core writes only its segment.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hrm_agent.config import HRMConfig
from hrm_agent.layers import Block, CosSin, ReasoningModule, trunc_normal_init_

Trace = list[tuple[Tensor, Tensor]]


class RecursiveCore(nn.Module):
    """A recursive core: the latent ``(z_H, z_L)``, its fixed initial state, and its update equations.

    ``M = segments`` segments per environment step (the reference's ``halt_max_steps``; ACT is off, so all
    of them run), each continuing from the last. Only the last segment can carry gradient; within it,
    each core says which of its updates do (:meth:`segment`).
    """

    def __init__(self, config: HRMConfig) -> None:
        super().__init__()
        self.config = config

    def init_state(self) -> None:
        """Register ``H_init``, ``L_init`` (D,). Called after the networks are built: the draws come in
        that order, so that a seed gives the same weights as before."""
        # Fixed initial state, broadcast to every position: saved with the model, never learned (buffers get
        # no gradient). Kept in the forward dtype, the dtype of the carry; drawn in float32 so the draw does
        # not depend on it.
        dtype = getattr(torch, self.config.forward_dtype)
        for name in ("H_init", "L_init"):
            self.register_buffer(name, trunc_normal_init_(torch.empty(self.config.hidden_size), std=1.0).to(dtype))

    def compiled_modules(self) -> list[nn.Module]:
        """The modules ``torch.compile`` wraps (the networks the recursion calls)."""
        raise NotImplementedError

    @staticmethod
    def describe(config: HRMConfig) -> str:
        """What a segment of this core runs under ``config``, in a few words (benchmark headers)."""
        raise NotImplementedError

    def forward(
        self, z_H: Tensor, z_L: Tensor, x: Tensor, cos_sin: CosSin | None, segments: int,
        read: Tensor | None = None, trace: Trace | None = None,
    ) -> tuple[Tensor, Tensor]:
        """One environment step's recursion: ``segments`` segments from ``(z_H, z_L)`` (B, S, D) each, on the
        input ``x`` (B, S, D). Returns the final ``(z_H, z_L)``.

        read: (B, P) positions: the last ``z_H`` update is computed at those positions only and returned
        (B, P, D) (what a Q head reads; the DQN update needs no carry). trace: a list that gets the state
        after every iteration (the latent analysis).
        """
        grad = torch.is_grad_enabled()
        for s in range(1, segments + 1):
            last = s == segments
            with torch.set_grad_enabled(grad and last):
                z_H, z_L = self.segment(z_H, z_L, x, cos_sin, read if last else None, trace)
        return z_H, z_L

    def segment(
        self, z_H: Tensor, z_L: Tensor, x: Tensor, cos_sin: CosSin | None, read: Tensor | None, trace: Trace | None
    ) -> tuple[Tensor, Tensor]:
        """One segment from ``(z_H, z_L)``: the core's equations (arguments as in :meth:`forward`)."""
        raise NotImplementedError


def _record(trace: Trace | None, z_H: Tensor, z_L: Tensor) -> None:
    if trace is not None:
        trace.append((z_H, z_L))


class HRMCore(RecursiveCore):
    """The Hierarchical Reasoning Model: two modules, ``f_L`` fast and ``f_H`` slow, and the 1-step gradient.

    A segment is ``N = H_cycles`` high-level cycles of ``T = L_cycles`` low-level updates, iteration
    ``i = 1 .. N*T``::

        z_L^i = f_L(z_L^{i-1} + z_H^{i-1} + x~)
        z_H^i = f_H(z_H^{i-1} + z_L^i)   if i % T == 0   else   z_H^{i-1}

    Only the last ``f_L`` and ``f_H`` updates are differentiable, so memory does not grow with the number
    of cycles or segments.
    """

    def __init__(self, config: HRMConfig) -> None:
        super().__init__(config)
        self.L_level = ReasoningModule([Block(config) for _ in range(config.L_layers)])
        self.H_level = ReasoningModule([Block(config) for _ in range(config.H_layers)])
        self.init_state()

    def compiled_modules(self) -> list[nn.Module]:
        return [self.L_level, self.H_level]

    @staticmethod
    def describe(config: HRMConfig) -> str:
        return f"layers H{config.H_layers}+L{config.L_layers}, cycles H{config.H_cycles}xL{config.L_cycles}"

    def segment(
        self, z_H: Tensor, z_L: Tensor, x: Tensor, cos_sin: CosSin | None, read: Tensor | None, trace: Trace | None
    ) -> tuple[Tensor, Tensor]:
        T = self.config.L_cycles
        with torch.no_grad():
            for i in range(1, self.config.H_cycles * T):
                z_L = self.L_level(z_L, z_H + x, cos_sin)
                if i % T == 0:
                    z_H = self.H_level(z_H, z_L, cos_sin)
                _record(trace, z_H, z_L)
        # 1-step gradient
        z_L = self.L_level(z_L, z_H + x, cos_sin)
        z_H = self.H_level(z_H, z_L, cos_sin, positions=read)
        _record(trace, z_H, z_L)
        return z_H, z_L


class TRMCore(RecursiveCore):
    """The Tiny Recursive Model (Jolicoeur-Martineau 2025): one network ``f`` (``L_layers`` blocks) for both
    updates, ``z_L = f(z_L, z_H + x)`` ``L_cycles`` times (the paper's n), then ``z_H = f(z_H, z_L)`` (no
    ``x``: its absence tells the network which update it makes), ``H_cycles`` cycles per segment (the paper's
    T, not the HRM's), and the gradient through the whole last cycle (its ``L_cycles`` L-updates and the
    H-update) instead of HRM's last step. ``H_layers`` is not used.
    """

    def __init__(self, config: HRMConfig) -> None:
        super().__init__(config)
        self.net = ReasoningModule([Block(config) for _ in range(config.L_layers)])
        self.init_state()

    def compiled_modules(self) -> list[nn.Module]:
        return [self.net]

    @staticmethod
    def describe(config: HRMConfig) -> str:
        return f"layers {config.L_layers} (one network), cycles H{config.H_cycles}xL{config.L_cycles}"

    def segment(
        self, z_H: Tensor, z_L: Tensor, x: Tensor, cos_sin: CosSin | None, read: Tensor | None, trace: Trace | None
    ) -> tuple[Tensor, Tensor]:
        cycles, n = self.config.H_cycles, self.config.L_cycles
        grad = torch.is_grad_enabled()
        for cycle in range(1, cycles + 1):
            last = cycle == cycles
            with torch.set_grad_enabled(grad and last):  # gradient through the last cycle
                for i in range(1, n + 1):
                    z_L = self.net(z_L, z_H + x, cos_sin)
                    if i == n:
                        z_H = self.net(z_H, z_L, cos_sin, positions=read if last else None)
                    _record(trace, z_H, z_L)
        return z_H, z_L


class TransformerCore(RecursiveCore):
    """A plain transformer: ``L_layers`` blocks run once per segment on ``z + x``, with the full gradient through
    the last segment; ``z_H = z_L = z`` (one stream, no inner recursion). Carry z is then its only recurrence:
    the output of the last environment step is the state the next one adds its input to. ``L_layers = 2``
    has the parameters of the HRM default's two one-block modules; ``L_layers = 6`` its block applications per
    step (``H_cycles``, ``L_cycles`` and ``H_layers`` are not used).
    """

    def __init__(self, config: HRMConfig) -> None:
        super().__init__(config)
        self.blocks = ReasoningModule([Block(config) for _ in range(config.L_layers)])
        self.init_state()

    def compiled_modules(self) -> list[nn.Module]:
        return [self.blocks]

    @staticmethod
    def describe(config: HRMConfig) -> str:
        return f"layers {config.L_layers}, no recursion"

    def segment(
        self, z_H: Tensor, z_L: Tensor, x: Tensor, cos_sin: CosSin | None, read: Tensor | None, trace: Trace | None
    ) -> tuple[Tensor, Tensor]:
        z = self.blocks(z_H, x, cos_sin, positions=read)
        _record(trace, z, z)
        return z, z


CORES: dict[str, type[RecursiveCore]] = {"hrm": HRMCore, "trm": TRMCore, "transformer": TransformerCore}
