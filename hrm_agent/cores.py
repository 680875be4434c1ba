"""The recursive cores of the Q-network (``model.core``): the latent ``(z_H, z_L)`` and its update equations.

- ``hrm``, :class:`HRMCore`: the Hierarchical Reasoning Model, two modules and the 1-step gradient.
- ``trm``, :class:`TRMCore`: the Tiny Recursive Model, one network for both updates and the gradient
  through the last cycle.
- ``transformer``, :class:`TransformerCore`: plain transformer blocks, no inner recursion.

Each takes the state a forward pass starts from and the embedded input ``x~`` (B, S, D) with its rotary
tables, and returns the final state; the encoder before and the Q head after it
(:mod:`hrm_agent.model`) are the same for every core, and so is what carry z carries.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hrm_agent.config import HRMConfig
from hrm_agent.layers import Block, CosSin, ReasoningModule, trunc_normal_init_


class RecursiveCore(nn.Module):
    """A recursive core: the latent ``(z_H, z_L)``, its fixed initial state, and the update equations.

    ``forward(z_H, z_L, x, cos_sin, segments, read, trace)`` runs one environment step's recursion from the
    given state and returns the final ``(z_H, z_L)``; with ``read`` (B, P) positions the last ``z_H`` update is
    computed at those positions only, ``(B, P, D)`` (what a Q head reads; the DQN update needs no carry). With
    ``trace`` a list, the state after each iteration is appended to it (the latent analysis).
    """

    def __init__(self, config: HRMConfig) -> None:
        super().__init__()
        self.config = config

    def _init_state(self) -> None:
        # Fixed initial state, broadcast to every position: saved with the model, never learned (buffers get
        # no gradient). Kept in the forward dtype, the dtype of the carry; drawn in float32 so the draw does
        # not depend on it.
        dtype = getattr(torch, self.config.forward_dtype)
        for name in ("H_init", "L_init"):
            self.register_buffer(name, trunc_normal_init_(torch.empty(self.config.hidden_size), std=1.0).to(dtype))

    def compiled_modules(self) -> list[nn.Module]:
        """The modules ``torch.compile`` wraps (the networks the recursion calls)."""
        raise NotImplementedError

    def recurse(
        self, f_L: nn.Module, f_H: nn.Module, z_H: Tensor, z_L: Tensor, x: Tensor, cos_sin: CosSin | None,
        iterations: int, grad_iterations: int, read: Tensor | None, trace: list[tuple[Tensor, Tensor]] | None,
    ) -> tuple[Tensor, Tensor]:
        """The HRM/TRM recursion: iteration ``i = 1 .. iterations``::

            z_L = f_L(z_L, z_H + x)
            z_H = f_H(z_H, z_L)      every T = L_cycles iterations

        with gradient only through the last ``grad_iterations`` iterations (HRM's 1-step gradient: 1; TRM's
        last cycle: T).
        """
        T = self.config.L_cycles
        for i in range(1, iterations + 1):
            with torch.set_grad_enabled(torch.is_grad_enabled() and i > iterations - grad_iterations):
                z_L = f_L(z_L, z_H + x, cos_sin)
                if i % T == 0:
                    z_H = f_H(z_H, z_L, cos_sin, positions=read if i == iterations else None)
            if trace is not None:
                trace.append((z_H, z_L))
        return z_H, z_L


class HRMCore(RecursiveCore):
    """The Hierarchical Reasoning Model: two modules, ``f_L`` fast and ``f_H`` slow, and the 1-step gradient.

    ``M = segments`` segments of ``N = H_cycles`` high-level cycles of ``T = L_cycles`` low-level updates,
    ``M*N*T`` iterations in all; only the last ``f_L`` and ``f_H`` updates are differentiable, so memory does
    not grow with the number of cycles or segments.
    """

    def __init__(self, config: HRMConfig) -> None:
        super().__init__(config)
        self.L_level = ReasoningModule([Block(config) for _ in range(config.L_layers)])
        self.H_level = ReasoningModule([Block(config) for _ in range(config.H_layers)])
        self._init_state()

    def compiled_modules(self) -> list[nn.Module]:
        return [self.L_level, self.H_level]

    def forward(self, z_H: Tensor, z_L: Tensor, x: Tensor, cos_sin: CosSin | None, segments: int,
                read: Tensor | None = None, trace: list[tuple[Tensor, Tensor]] | None = None) -> tuple[Tensor, Tensor]:
        iterations = segments * self.config.H_cycles * self.config.L_cycles
        return self.recurse(self.L_level, self.H_level, z_H, z_L, x, cos_sin, iterations, 1, read, trace)


class TRMCore(RecursiveCore):
    """The Tiny Recursive Model (Jolicoeur-Martineau 2025): one network ``f`` (``L_layers`` blocks) for both
    updates, ``z_L = f(z_L, z_H + x)`` ``n = L_cycles`` times, then ``z_H = f(z_H, z_L)`` (no ``x``: its
    absence tells the network which update it makes), ``T = H_cycles`` cycles per segment, and the gradient
    through the whole last cycle (its ``n`` L-updates and the H-update) instead of HRM's last step.
    ``H_layers`` is not used.
    """

    def __init__(self, config: HRMConfig) -> None:
        super().__init__(config)
        self.net = ReasoningModule([Block(config) for _ in range(config.L_layers)])
        self._init_state()

    def compiled_modules(self) -> list[nn.Module]:
        return [self.net]

    def forward(self, z_H: Tensor, z_L: Tensor, x: Tensor, cos_sin: CosSin | None, segments: int,
                read: Tensor | None = None, trace: list[tuple[Tensor, Tensor]] | None = None) -> tuple[Tensor, Tensor]:
        T = self.config.L_cycles
        iterations = segments * self.config.H_cycles * T
        return self.recurse(self.net, self.net, z_H, z_L, x, cos_sin, iterations, T, read, trace)


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
        self._init_state()

    def compiled_modules(self) -> list[nn.Module]:
        return [self.blocks]

    def forward(self, z_H: Tensor, z_L: Tensor, x: Tensor, cos_sin: CosSin | None, segments: int,
                read: Tensor | None = None, trace: list[tuple[Tensor, Tensor]] | None = None) -> tuple[Tensor, Tensor]:
        z = z_H
        for s in range(1, segments + 1):
            with torch.set_grad_enabled(torch.is_grad_enabled() and s == segments):
                z = self.blocks(z, x, cos_sin, positions=read if s == segments else None)
            if trace is not None:
                trace.append((z, z))
        return z, z


CORES: dict[str, type[RecursiveCore]] = {"hrm": HRMCore, "trm": TRMCore, "transformer": TransformerCore}
