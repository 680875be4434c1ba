"""Configuration of the HRM Q-network.

Field names follow the reference implementation's
``HierarchicalReasoningModel_ACTV1Config`` where they apply. The halting
fields are absent because Adaptive Computation Time is off: every forward pass
runs all ``segments`` segments (the reference's ``halt_max_steps``) of the full
``H_cycles x L_cycles`` recursion. ``batch_size`` is absent too:
the network works for any batch size.

The defaults are far smaller than the reference's (hidden 512, 4 + 4 layers,
27 M parameters) so that the agent learns on a 2-core CPU.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Fields of earlier versions, with the value that left them without effect: a saved config holding that
# value still describes today's model; any other value names a model this version no longer builds.
RETIRED_FIELDS: dict[str, Any] = {"anchor_embedding": False}


def without_retired(params: dict[str, Any], retired: dict[str, Any] = RETIRED_FIELDS) -> dict[str, Any]:
    """``params`` less the ``retired`` options (name -> the value every run had) that hold that value;
    one that holds another raises ValueError naming it. Used for the model's fields and the agent's options."""
    for key, inert in retired.items():
        if key in params and params[key] != inert:
            raise ValueError(f"{key}: retired ({params[key]!r} is no longer an option; every run used {inert!r}; "
                             "analysis/results/HISTORY.md says what it measured)")
    return {k: v for k, v in params.items() if k not in retired}


class HRMConfig(BaseModel):
    """Architecture of :class:`hrm_agent.model.HRMQNetwork`.

    ``seq_len`` counts the observation tokens only; the network prepends one
    learned query token, so it runs on ``total_seq_len = seq_len + 1``
    positions and reads the Q-values at position 0.
    """

    model_config = ConfigDict(extra="forbid")

    seq_len: int = Field(gt=0, description="observation tokens per sample (without the query token)")
    vocab_size: int = Field(gt=0, description="number of distinct observation token ids")
    num_actions: int = Field(gt=0, description="Q-values per sample, one per discrete action")

    core: Literal["hrm", "trm", "transformer"] = "hrm"
    """The recursive core (``hrm_agent.cores``): ``hrm``, the HRM's two modules with the 1-step gradient;
    ``trm``, the Tiny Recursive Model's one network (``L_layers`` blocks) for both updates with the gradient
    through the last cycle; ``transformer``, ``L_layers`` blocks run once per segment, no inner recursion.
    The encoder, the read-out and what carry z carries are the same for each. ``trm`` ignores ``H_layers``,
    ``transformer`` also ``H_cycles`` and ``L_cycles``; each has the ``hrm`` core's parameters when its
    ``L_layers`` is the HRM's ``H_layers + L_layers`` (2 with the envs' defaults), so set it."""
    H_cycles: int = Field(2, gt=0, description="N: high-level updates per segment (trm: cycles, the paper's T)")
    L_cycles: int = Field(2, gt=0, description="T: low-level updates per high-level update (trm: the paper's n)")
    segments: int = Field(
        1,
        gt=0,
        description="M: segments per forward pass, each N x T iterations continuing from the last "
        "(the reference's halt_max_steps, always run in full since ACT is off)",
    )
    H_layers: int = Field(2, gt=0, description="transformer blocks in the H module")
    L_layers: int = Field(2, gt=0, description="transformer blocks in the L module")

    hidden_size: int = Field(64, gt=0)
    expansion: float = Field(4.0, gt=0, description="SwiGLU width relative to hidden_size (before the 2/3 factor)")
    mlp_width_multiple: int = Field(16, gt=0, description="SwiGLU width rounded up to a multiple of this (reference: 256)")
    num_heads: int = Field(4, gt=0)
    pos_encodings: Literal["rope", "rope2d"] = "rope"
    """``rope``: 1-D rotary positions over the row-major token order (the reference's default);
    ``rope2d``: 2-D rotary positions, half of each head's rotation pairs turning with the token's
    row and half with its column, the query token placed on the cell of ``rope_anchor_token``
    (the agent), so that attention from the query token depends on offsets from the agent."""
    grid_shape: tuple[int, int] | None = Field(
        None,
        description="(rows, cols) of the token grid; needed by rope2d, the goal embedding and the neighbors read-out",
    )
    rope_anchor_token: int | None = Field(
        None,
        ge=0,
        description="the token id of the anchor, the agent: its cell is the query token's for rope2d and the goal "
        "embedding, and the cell the neighbors read-out moves from",
    )
    goal_token: int | None = Field(None, ge=0, description="goal_embedding: the goal's token id")
    goal_embedding: bool = Field(
        False,
        description="add to every input a learned embedding of its cell's (row, column) offset from the goal's "
        "cell; the query token gets the anchor cell's (the agent's) offset from the goal. Needs grid_shape, "
        "goal_token and rope_anchor_token",
    )

    readout: Literal["query", "neighbors"] = "query"
    """Where the Q head reads ``z_H``: ``query``, the query token (the HRM's read-out position), one
    output per action; ``neighbors``, the cell each action moves the agent to (``action_offsets`` from
    the ``rope_anchor_token`` cell; a move off the grid reads the agent's own cell), one shared value
    output per cell, so that Q(s, a) is the value the network computes for the cell the move leads to,
    as in value-iteration networks. Needs grid_shape, rope_anchor_token and action_offsets."""
    action_offsets: tuple[tuple[int, int], ...] | None = Field(
        None, description="(row, column) step of each action on the token grid, for readout='neighbors'"
    )
    blocking_tokens: tuple[int, ...] | None = Field(
        None, description="token ids of the cells a move cannot enter (walls, closed doors), for stay_on_blocked"
    )
    stay_on_blocked: bool = False
    """With ``readout="neighbors"``: a move onto a cell holding one of ``blocking_tokens`` reads the
    agent's own cell, where that move leaves it (as a move off the grid does), instead of the wall's
    or door's cell. Needs blocking_tokens; no effect with ``readout="query"``."""

    rms_norm_eps: float = Field(1e-5, gt=0)
    rope_theta: float = Field(10000.0, gt=0)

    forward_dtype: Literal["float32", "bfloat16"] = "float32"

    @model_validator(mode="before")
    @classmethod
    def _refuse_retired(cls, data: Any) -> Any:
        return without_retired(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _check(self) -> "HRMConfig":
        if self.hidden_size % self.num_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.pos_encodings == "rope" and self.head_dim % 2 != 0:
            raise ValueError(
                f"hidden_size / num_heads = {self.head_dim} must be even for pos_encodings='rope' "
                "(RoPE rotates pairs of channels)"
            )
        if self.pos_encodings == "rope2d" and self.head_dim % 4 != 0:
            raise ValueError(
                f"hidden_size / num_heads = {self.head_dim} must be a multiple of 4 for pos_encodings='rope2d' "
                "(pairs of channels for rows and for columns)"
            )
        grid_fits = self.grid_shape is not None and self.grid_shape[0] * self.grid_shape[1] == self.seq_len
        if self.pos_encodings == "rope2d" and (not grid_fits or self.rope_anchor_token is None):
            raise ValueError(
                f"pos_encodings='rope2d' needs rope_anchor_token and grid_shape with rows * cols = seq_len "
                f"({self.seq_len})"
            )
        if self.goal_embedding and (self.goal_token is None or self.rope_anchor_token is None or not grid_fits):
            raise ValueError(
                f"goal_embedding needs goal_token, rope_anchor_token and grid_shape with rows * cols = seq_len "
                f"({self.seq_len})"
            )
        if self.readout == "neighbors":
            if not grid_fits or self.rope_anchor_token is None:
                raise ValueError(
                    f"readout='neighbors' needs rope_anchor_token and grid_shape with rows * cols = seq_len "
                    f"({self.seq_len})"
                )
            if self.action_offsets is None or len(self.action_offsets) != self.num_actions:
                raise ValueError(
                    f"readout='neighbors' needs action_offsets, one (row, column) step per action ({self.num_actions})"
                )
        if self.stay_on_blocked and self.readout == "neighbors":
            if not self.blocking_tokens or not all(0 <= t < self.vocab_size for t in self.blocking_tokens):
                raise ValueError(f"stay_on_blocked needs blocking_tokens, token ids below vocab_size ({self.vocab_size})")
        return self

    @property
    def total_seq_len(self) -> int:
        """Positions the network runs on: the query token plus ``seq_len`` observation tokens."""
        return self.seq_len + 1

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads
