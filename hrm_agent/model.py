"""The Q-network: encoder -> recursive core -> Q head (the HRM with a DQN head by default).

- :class:`GridEncoder` turns the observation tokens into ``x~`` (query token first) and the rotary
  tables: the grid priors of the input (2-D positions anchored at the agent, each cell's offset from
  the goal) live here.
- The core (``config.core``, :mod:`hrm_agent.cores`) runs one environment step's recursion on the latent
  ``(z_H, z_L)``: by default the HRM's ``M = segments`` segments of ``N = H_cycles`` high-level cycles of
  ``T = L_cycles`` low-level updates with the 1-step gradient.
- :class:`QHead` reads the final ``z_H``: ``Q = W_Q z_H[query position] + b_Q``, or with
  ``readout="neighbors"`` ``Q(a) = w_Q . z_H[cell that action a leads to] + b_Q``, one shared value read
  at each of the agent's neighbouring cells (the grid priors of the output).

Deep supervision (the learner's choice, see ``loop.py``) runs one segment per call. The state
``(z_H, z_L)`` is the carry: the caller decides whether the next forward pass starts from it ("carry z";
all of it or, with :meth:`HRMQNetwork.carry_state` in ``"token"`` mode, its query-position vectors) or
from the fixed initial state (``reset_carry``, "reset z").

Shapes: ``B`` batch, ``S = seq_len + 1`` positions (query token first), ``D``
hidden size, ``A`` actions.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from hrm_agent.config import HRMConfig
from hrm_agent.cores import CORES
from hrm_agent.layers import (
    CastedEmbedding,
    CastedLinear,
    CosSin,
    RotaryEmbedding,
    RotaryEmbedding2D,
    gather_positions,
    trunc_normal_init_,
)

# Prefix ``torch.compile`` puts before every key of the wrapped module's state_dict.
COMPILED_PREFIX = "_orig_mod."


class HRMCarry(NamedTuple):
    """Recurrent state between forward passes. Each: (B, S, D) in the forward dtype."""

    z_H: Tensor
    z_L: Tensor


class HRMTrace(NamedTuple):
    """States after each iteration of one forward pass. Each: (M*N*T, B, S, D).

    Entry ``i - 1`` holds ``z^i``: ``z_L`` after its ``i``-th update and ``z_H``
    as it stands then (it changes only at the end of each H cycle, i.e. after
    entries ``T-1, 2T-1, ...``). The last entry equals the returned carry.
    """

    z_H: Tensor
    z_L: Tensor


class QOutput(NamedTuple):
    """What a forward pass returns: ``carry`` (B, S, D) each, detached, in the forward dtype; ``q_values``
    (B, A) float32 with grad; ``trace`` over every iteration when asked for (``trace=True``), else None."""

    carry: HRMCarry
    q_values: Tensor
    trace: HRMTrace | None = None


def grid_cell(tokens: Tensor, token: int) -> Tensor:
    """(B,) long: the row-major index of the first cell holding ``token`` per sample (0 if it is absent)."""
    return (tokens == token).to(torch.uint8).argmax(dim=1)


class GridEncoder(nn.Module):
    """The input network: observation tokens -> ``x~`` (B, S, D), query token first, and the rotary tables.

    ``x~ = sqrt(D) * e`` with ``e`` the token embedding, with ``goal_embedding`` averaged
    (``(e + g) / sqrt(2)``, unit variance) with ``g``, a learned embedding of each cell's offset from the
    goal. Rotary positions (``rope``, or ``rope2d`` anchored at the agent's cell) act inside attention,
    through the tables returned beside ``x~``.
    """

    def __init__(self, config: HRMConfig) -> None:
        super().__init__()
        self.config = config
        self.forward_dtype = getattr(torch, config.forward_dtype)
        D = config.hidden_size
        # Token embedding (std 1/sqrt(D), scaled by sqrt(D) at use, so unit-scale inputs with a small
        # effective learning rate on the table).
        self.embed_scale = math.sqrt(D)
        embed_std = 1.0 / self.embed_scale
        self.embed_tokens = CastedEmbedding(config.vocab_size, D, init_std=embed_std, cast_to=self.forward_dtype)
        # The query token takes the place of the reference's puzzle embedding at position 0, where the Q head
        # reads with readout="query". Drawn like a token embedding (not zero) so that it is told apart from the
        # observation tokens from the start.
        self.query_token = nn.Parameter(trunc_normal_init_(torch.empty(D), std=embed_std))
        if config.pos_encodings == "rope":
            self.rotary_emb = RotaryEmbedding(config.head_dim, config.total_seq_len, base=config.rope_theta)
        else:
            assert config.grid_shape is not None  # checked by HRMConfig
            self.rotary_emb_2d = RotaryEmbedding2D(config.head_dim, config.grid_shape, base=config.rope_theta)
        if config.goal_embedding:  # one vector per (row, column) offset, -(rows-1) .. rows-1 by -(cols-1) .. cols-1
            assert config.grid_shape is not None
            rows, cols = config.grid_shape
            offsets = (2 * rows - 1) * (2 * cols - 1)
            self.embed_goal = CastedEmbedding(offsets, D, init_std=embed_std, cast_to=self.forward_dtype)

    def forward(self, tokens: Tensor) -> tuple[Tensor, CosSin]:
        """tokens (B, seq_len) integer -> ``x~`` (B, S, D) in the forward dtype and the rotary tables."""
        return self.input_embeddings(tokens), self.positions(tokens)

    def input_embeddings(self, tokens: Tensor) -> Tensor:
        """x~: tokens (B, seq_len) integer -> (B, S, D) in the forward dtype, query token first."""
        B = tokens.shape[0]
        emb = self.embed_tokens(tokens.long())
        query = self.query_token.to(self.forward_dtype).expand(B, 1, -1)
        x = torch.cat((query, emb), dim=1)
        if self.config.goal_embedding:  # the sum of two unit-variance embeddings, back to unit variance
            x = (x + self.embed_goal(self.goal_offsets(tokens))) / math.sqrt(2.0)
        return self.embed_scale * x

    def goal_offsets(self, tokens: Tensor) -> Tensor:
        """Index into ``embed_goal`` of every position's (row, col) offset from the goal's cell: (B, S) long,
        query first. The query position takes the agent's offset from the goal."""
        cfg = self.config
        assert cfg.grid_shape is not None and cfg.goal_token is not None and cfg.rope_anchor_token is not None
        rows, cols = cfg.grid_shape
        goal = grid_cell(tokens, cfg.goal_token)
        cells = torch.arange(rows * cols, device=tokens.device)
        d_row = (cells // cols)[None] - (goal // cols)[:, None] + rows - 1  # (B, rows*cols), 0 .. 2*rows-2
        d_col = (cells % cols)[None] - (goal % cols)[:, None] + cols - 1
        index = d_row * (2 * cols - 1) + d_col
        query = index.gather(1, grid_cell(tokens, cfg.rope_anchor_token)[:, None])
        return torch.cat((query, index), dim=1)

    def positions(self, tokens: Tensor) -> CosSin:
        """Rotary tables for ``tokens`` (B, seq_len): shared (S, hd) for rope, per sample (B, S, hd) for rope2d,
        where the query token takes the agent's cell."""
        if self.config.pos_encodings == "rope":
            return self.rotary_emb()
        assert self.config.grid_shape is not None and self.config.rope_anchor_token is not None
        cols = self.config.grid_shape[1]
        agent = grid_cell(tokens, self.config.rope_anchor_token)
        return self.rotary_emb_2d(agent // cols, agent % cols)


class QHead(nn.Module):
    """Q-values from the final ``z_H``: read at the query token (one output per action, ``readout="query"``)
    or at the cell each action leads to (one shared value per cell, ``readout="neighbors"``).

    The reference's halting head started at weight 0, bias -5 (sigmoid ~ 0). Action values here are
    discounted returns of a 0/1 goal reward, so in [0, 1], and near 0 for most states early in training:
    Q starts at about 0 with small random weights (output std ~0.01, z_H is RMS-normalised) and zero bias.
    Small, so the first TD errors stay of the size of the rewards rather than of an arbitrary initial value
    function; non-zero, so the trunk gets gradient from the first update and greedy ties are broken
    differently in different states.
    """

    def __init__(self, config: HRMConfig) -> None:
        super().__init__()
        self.config = config
        D = config.hidden_size
        self.q_head = CastedLinear(D, 1 if config.readout == "neighbors" else config.num_actions, bias=True)
        if config.readout == "neighbors":  # (A, 2) row, column step of each action; not saved (it is config)
            assert config.action_offsets is not None  # checked by HRMConfig
            self.register_buffer("action_offsets", torch.tensor(config.action_offsets), persistent=False)
            if config.stay_on_blocked:  # (vocab,) bool: the tokens a move cannot enter
                blocking = torch.zeros(config.vocab_size, dtype=torch.bool)
                blocking[list(config.blocking_tokens or ())] = True
                self.register_buffer("blocking", blocking, persistent=False)
        with torch.no_grad():
            trunc_normal_init_(self.q_head.weight, std=0.01 / math.sqrt(D))

    def readout_index(self, tokens: Tensor) -> Tensor:
        """(B, P) long: the positions the Q head reads: the query token's (P = 1) or, with
        readout="neighbors", one per action (P = A, :meth:`readout_positions`)."""
        if self.config.readout == "query":
            return torch.zeros((tokens.shape[0], 1), dtype=torch.long, device=tokens.device)
        return self.readout_positions(tokens)

    def readout_positions(self, tokens: Tensor) -> Tensor:
        """(B, A) long: the position (query first) each action's Q-value is read at with readout="neighbors":
        the cell the action moves the agent to, or the agent's own cell for a move off the grid (and, with
        ``stay_on_blocked``, for a move into a wall or closed door)."""
        cfg = self.config
        assert cfg.grid_shape is not None and cfg.rope_anchor_token is not None
        rows, cols = cfg.grid_shape
        own = grid_cell(tokens, cfg.rope_anchor_token)
        row, col = own // cols, own % cols
        offsets = self.action_offsets.to(tokens.device)
        to_row, to_col = row[:, None] + offsets[:, 0], col[:, None] + offsets[:, 1]
        inside = (to_row >= 0) & (to_row < rows) & (to_col >= 0) & (to_col < cols)
        cell = torch.where(inside, to_row * cols + to_col, own[:, None])
        if cfg.stay_on_blocked:
            cell = torch.where(self.blocking[tokens.gather(1, cell).long()], own[:, None], cell)
        return cell + 1

    def forward(self, z_read: Tensor) -> Tensor:
        """(B, A) float32 Q-values from z_H at the :meth:`readout_index` positions, (B, P, D). In float32
        even for a bf16 trunk: bf16 resolves only ~0.004 near 1, the size of the TD errors the values must
        track."""
        if self.config.readout == "query":
            return self.q_head(z_read[:, 0].float())
        return self.q_head(z_read.float()).squeeze(-1)


class HRMQNetwork(nn.Module):
    """A recursive core reading a token grid and returning one Q-value per action: encoder -> core -> head.

    ``model.core`` picks the core (``hrm``, ``trm``, ``transformer``); the grid priors (positions, goal
    offsets, the read-out) are the encoder's and the head's, the same for every core.

    Example::

        import torch
        from hrm_agent import HRMConfig, HRMQNetwork

        net = HRMQNetwork(HRMConfig(seq_len=81, vocab_size=6, num_actions=4))
        carry = net.initial_carry(batch_size=8)
        tokens = torch.randint(0, 6, (8, 81))  # (8, 81) integer ids, e.g. hrm_agent.rollout.Tokenizer's
        carry, q, _ = net(carry, tokens)       # q: (8, 4) Q-values
        done = torch.tensor([True] + [False] * 7)
        carry = net.reset_carry(done, carry)   # episode starts: back to H_init/L_init
    """

    def __init__(self, config: HRMConfig) -> None:
        super().__init__()
        self.config = config
        self.forward_dtype = getattr(torch, config.forward_dtype)
        self.encoder = GridEncoder(config)
        self.core = CORES[config.core](config)
        self.head = QHead(config)
        # Models saved before the encoder/core/head split, and checkpoints of a torch.compile'd model
        # ("_orig_mod." key prefixes), load as they are.
        self.register_load_state_dict_pre_hook(_upgrade_state_dict)

    @property
    def H_init(self) -> Tensor:
        """(D,) the fixed initial ``z_H`` (a buffer of the core)."""
        return self.core.H_init

    @property
    def L_init(self) -> Tensor:
        """(D,) the fixed initial ``z_L``."""
        return self.core.L_init

    # ---------------------------------------------------------------- forward

    def forward(self, carry: HRMCarry, tokens: Tensor, *, segments: int | None = None, trace: bool = False) -> QOutput:
        """One environment step: ``segments`` segments of the core's recursion from ``carry`` (default
        ``config.segments``: acting runs them all; deep supervision calls one at a time).

        carry: z_H, z_L (B, S, D) (cast to the forward dtype and module device); tokens: (B, seq_len)
        integer ids (uint8 or long), or a (B, H, W) grid, flattened row-major. Returns a :class:`QOutput`:
        the new carry, the Q-values read after the last segment and, with ``trace=True``, the
        :class:`HRMTrace` of every iteration.
        """
        tokens, x, cos_sin, z_H, z_L = self._inputs(carry, tokens)
        steps: list[tuple[Tensor, Tensor]] | None = [] if trace else None
        z_H, z_L = self.core(z_H, z_L, x, cos_sin, self._segments(segments), trace=steps)
        new_carry = HRMCarry(z_H=z_H.detach(), z_L=z_L.detach())
        q_values = self.head(gather_positions(z_H, self.readout_index(tokens)))
        if steps is None:
            return QOutput(new_carry, q_values)
        steps[-1] = new_carry  # the last state, without its graph
        return QOutput(new_carry, q_values, HRMTrace(z_H=torch.stack([h for h, _ in steps]),
                                                     z_L=torch.stack([l for _, l in steps])))

    def q_values(self, carry: HRMCarry, tokens: Tensor, *, segments: int | None = None) -> Tensor:
        """(B, A) float32: the Q-values :meth:`forward` returns, with grad, but no new carry: the last ``z_H``
        update is computed only at the positions the Q head reads (``readout_index``), not at all ``S``
        (the DQN update's forward passes)."""
        tokens, x, cos_sin, z_H, z_L = self._inputs(carry, tokens)
        z_read, _ = self.core(z_H, z_L, x, cos_sin, self._segments(segments), read=self.readout_index(tokens))
        return self.head(z_read)

    def readout_index(self, tokens: Tensor) -> Tensor:
        """(B, P) long: the positions the Q head reads (:meth:`QHead.readout_index`)."""
        return self.head.readout_index(tokens)

    def _segments(self, segments: int | None) -> int:
        return self.config.segments if segments is None else segments

    def _inputs(self, carry: HRMCarry, tokens: Tensor) -> tuple[Tensor, Tensor, CosSin, Tensor, Tensor]:
        """Checked tokens (B, seq_len) on the module's device, ``x~`` and the rotary tables, and the carry in
        the forward dtype."""
        tokens = tokens.flatten(1) if tokens.dim() > 2 else tokens
        if tokens.dim() != 2 or tokens.shape[1] != self.config.seq_len:
            raise ValueError(f"tokens must have shape (B, {self.config.seq_len}), got {tuple(tokens.shape)}")
        device = self.H_init.device
        tokens = tokens.to(device)
        x, cos_sin = self.encoder(tokens)
        z_H = carry.z_H.to(device=device, dtype=self.forward_dtype)
        z_L = carry.z_L.to(device=device, dtype=self.forward_dtype)
        return tokens, x, cos_sin, z_H, z_L

    # ------------------------------------------------------------------ carry

    def initial_carry(self, batch_size: int, device: torch.device | str | None = None) -> HRMCarry:
        """The fixed initial state ``(H_init, L_init)`` at every position.

        Returns z_H, z_L: (batch_size, S, D) in the forward dtype, on ``device``
        (default: the module's device). Fresh tensors, safe to modify.
        """
        shape = (batch_size, self.config.total_seq_len, self.config.hidden_size)
        device = self.H_init.device if device is None else device

        def fill(init: Tensor) -> Tensor:
            return init.to(device=device, dtype=self.forward_dtype).expand(shape).clone()

        return HRMCarry(z_H=fill(self.H_init), z_L=fill(self.L_init))

    def reset_carry(self, mask: Tensor, carry: HRMCarry) -> HRMCarry:
        """Set the rows where ``mask`` is true back to the initial state.

        mask: (B,) bool (a numpy array or list is accepted); carry: (B, S, D) each.
        Returns a new carry of the input carry's dtype; the input is not modified.
        """
        mask = torch.as_tensor(mask, dtype=torch.bool, device=carry.z_H.device).view(-1, 1, 1)
        return HRMCarry(
            z_H=torch.where(mask, self.H_init.to(carry.z_H), carry.z_H),
            z_L=torch.where(mask, self.L_init.to(carry.z_L), carry.z_L),
        )

    @staticmethod
    def carry_state(carry: HRMCarry, mode: str) -> Tensor:
        """What carry z keeps of a step's final state, stacked ``(z_H, z_L)``.

        ``"full"``: every position, (2, B, S, D). ``"token"``: the vectors at the
        query position (the HRM's read-out token), (2, B, D); as in the HRM-Agent authors'
        code, they seed the next step at every position.
        """
        if mode == "full":
            return torch.stack(carry)
        if mode == "token":
            return torch.stack((carry.z_H[:, 0], carry.z_L[:, 0]))
        raise ValueError(f"carry mode must be 'full' or 'token', got {mode!r}")

    def carry_from_state(self, state: Tensor) -> HRMCarry:
        """Inverse of :meth:`carry_state`: (2, B, S, D) or (2, B, D) -> HRMCarry (B, S, D) in the forward dtype."""
        state = state.to(device=self.H_init.device, dtype=self.forward_dtype)
        if state.dim() == 3:  # one vector per level, broadcast to every position
            state = state[:, :, None, :].expand(-1, -1, self.config.total_seq_len, -1)
        return HRMCarry(z_H=state[0], z_L=state[1])


# Where each state-dict key of a model saved before the encoder/core/head split lives now.
_MOVED = (("query_token", "encoder."), ("embed_", "encoder."), ("H_init", "core."), ("L_init", "core."),
          ("L_level.", "core."), ("H_level.", "core."), ("q_head.", "head."))


def _upgrade_state_dict(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
) -> None:
    """load_state_dict pre-hook: accept keys saved from a ``torch.compile`` wrapper, and models saved before
    the network was split into encoder, core and head."""
    compiled = prefix + COMPILED_PREFIX
    for key in [k for k in state_dict if k.startswith(compiled)]:
        state_dict[prefix + key[len(compiled) :]] = state_dict.pop(key)
    for key in [k for k in state_dict if k.startswith(prefix)]:
        name = key[len(prefix) :]
        for old, new in _MOVED:
            if name.startswith(old):
                state_dict[prefix + new + name] = state_dict.pop(key)
                break
