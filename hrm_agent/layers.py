"""Transformer building blocks of the HRM, as in the reference implementation.

Post-norm blocks with a weightless RMSNorm computed in fp32, non-causal
attention with one fused qkv projection and RoPE, a SwiGLU MLP, no biases,
and truncated LeCun-normal initialisation.

Parameters are kept in float32. Layers run in the dtype of their input and
cast their weights to it at use (as the reference's ``CastedLinear`` does), so
a bfloat16 forward pass needs no ``model.to(bfloat16)`` and the optimiser
keeps updating float32 master weights.

Shapes: ``B`` batch, ``S`` sequence length, ``D`` hidden size, ``H`` heads,
``hd`` head dim (``D / H``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hrm_agent.config import HRMConfig

CosSin = tuple[Tensor, Tensor]

# SwiGLU widths are rounded up to a multiple of this by default (the config's
# ``mlp_width_multiple``). The reference uses 256, which would grow the MLP of a
# hidden-64 model by half; 16 is one AVX-512 register of float32, enough for
# aligned vector kernels on CPU.
MLP_WIDTH_MULTIPLE = 16


def trunc_normal_init_(tensor: Tensor, std: float = 1.0, lower: float = -2.0, upper: float = 2.0) -> Tensor:
    """Fill ``tensor`` in place from a normal truncated at ``[lower, upper]`` standard deviations.

    Unlike ``torch.nn.init.trunc_normal_``, the result has standard deviation
    ``std``: truncation shrinks the spread, so the draw is scaled up by the
    ratio of the untruncated to the truncated standard deviation (the JAX /
    flax ``truncated_normal`` initialiser the reference ports). Values lie in
    ``[lower * c, upper * c]`` with ``c`` that corrected scale (about
    ``1.14 * std`` for the default cut at 2).
    """
    with torch.no_grad():
        if std == 0:
            return tensor.zero_()
        sqrt2 = math.sqrt(2.0)
        # CDF values of the cut points, in erf units: sample uniformly between them
        # and map back through the inverse CDF.
        a = math.erf(lower / sqrt2)
        b = math.erf(upper / sqrt2)
        mass = (b - a) / 2  # probability mass of a standard normal inside the cut
        pdf_lower = math.exp(-0.5 * lower**2) / math.sqrt(2 * math.pi)
        pdf_upper = math.exp(-0.5 * upper**2) / math.sqrt(2 * math.pi)
        # Variance of a standard normal truncated to [lower, upper].
        truncated_var = (
            1
            + (lower * pdf_lower - upper * pdf_upper) / mass
            - ((pdf_lower - pdf_upper) / mass) ** 2
        )
        scale = std / math.sqrt(truncated_var)
        tensor.uniform_(a, b)
        tensor.erfinv_()
        tensor.mul_(sqrt2 * scale)
        tensor.clamp_(lower * scale, upper * scale)
    return tensor


def rms_norm(x: Tensor, eps: float) -> Tensor:
    """RMSNorm without a learnable weight over the last dim, computed in float32.

    x: (..., D) any float dtype -> (..., D) same dtype.
    """
    # Normalising in fp32 keeps the recurrent state well conditioned in bf16
    # runs; for an fp32 input ``.float()`` is a no-op.
    return F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)


class CastedLinear(nn.Module):
    """Linear layer with float32 master weights cast to the input's dtype at use.

    Weight: truncated LeCun normal (std ``1/sqrt(in_features)``); bias (if any): zero.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(
            trunc_normal_init_(torch.empty(out_features, in_features), std=1.0 / math.sqrt(in_features))
        )
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., in_features) -> (..., out_features), dtype of x."""
        # ``.to`` returns the parameter itself when the dtype already matches.
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.weight.to(x.dtype), bias)


class CastedEmbedding(nn.Module):
    """Embedding table with float32 master weights, looked up in ``cast_to``."""

    def __init__(self, num_embeddings: int, embedding_dim: int, init_std: float, cast_to: torch.dtype) -> None:
        super().__init__()
        self.cast_to = cast_to
        self.weight = nn.Parameter(trunc_normal_init_(torch.empty(num_embeddings, embedding_dim), std=init_std))

    def forward(self, ids: Tensor) -> Tensor:
        """ids: (...) integer -> (..., embedding_dim) in ``cast_to``."""
        return F.embedding(ids, self.weight.to(self.cast_to))


class RotaryEmbedding(nn.Module):
    """Rotary position tables for ``max_positions`` positions (not saved in checkpoints)."""

    def __init__(self, head_dim: int, max_positions: int, base: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(max_positions, dtype=torch.float32), inv_freq)
        # Rotate the two halves of each head against each other (the "rotate_half"
        # convention): the same rotation as the paper's interleaved pairs, permuted.
        angles = torch.cat((freqs, freqs), dim=-1)  # (S, hd)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self) -> CosSin:
        """-> (cos, sin), each (S, hd) float32."""
        return self.cos, self.sin


class RotaryEmbedding2D(nn.Module):
    """Rotary tables for a ``rows x cols`` grid of tokens after one query token.

    Each head's rotation pairs ``(j, j + hd/2)`` are split: the first ``hd/4``
    turn with the token's row, the other ``hd/4`` with its column, each axis
    with the frequencies of a 1-D RoPE of dimension ``hd/2``. A query-key score
    then depends on the row and column offsets between the two tokens. The
    query token's cell is given per sample at every call.
    """

    def __init__(self, head_dim: int, grid_shape: tuple[int, int], base: float) -> None:
        super().__init__()
        rows, cols = grid_shape
        self.inv_freq: Tensor
        self.register_buffer(
            "inv_freq", 1.0 / (base ** (torch.arange(0, head_dim // 2, 2, dtype=torch.float32) / (head_dim // 2))),
            persistent=False,
        )
        r = torch.arange(rows, dtype=torch.float32).repeat_interleave(cols)
        c = torch.arange(cols, dtype=torch.float32).repeat(rows)
        cos, sin = self._tables(r, c)
        self.register_buffer("grid_cos", cos, persistent=False)  # (rows*cols, hd)
        self.register_buffer("grid_sin", sin, persistent=False)

    def _tables(self, row: Tensor, col: Tensor) -> CosSin:
        half = torch.cat((torch.outer(row, self.inv_freq), torch.outer(col, self.inv_freq)), dim=-1)  # (n, hd/2)
        angles = torch.cat((half, half), dim=-1)  # rotate_half pairs j with j + hd/2
        return angles.cos(), angles.sin()

    def forward(self, query_row: Tensor, query_col: Tensor) -> CosSin:
        """query_row, query_col: (B,) float cells of the query token -> (cos, sin), each (B, 1 + rows*cols, hd)."""
        B = query_row.shape[0]
        q_cos, q_sin = self._tables(query_row.float(), query_col.float())
        cos = torch.cat((q_cos[:, None], self.grid_cos.expand(B, -1, -1)), dim=1)
        sin = torch.cat((q_sin[:, None], self.grid_sin.expand(B, -1, -1)), dim=1)
        return cos, sin


def _rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary_pos_emb(x: Tensor, cos_sin: CosSin) -> Tensor:
    """Rotate ``x`` by position. x: (B, H, S, hd); cos, sin: (S, hd) or per sample (B, S, hd), float32."""
    cos, sin = cos_sin
    if cos.dim() == 3:  # per-sample tables: broadcast over heads
        cos, sin = cos[:, None], sin[:, None]
    # Positions are rotated in fp32 (the tables are fp32), then cast back.
    xf = x.float()
    return (xf * cos + _rotate_half(xf) * sin).to(x.dtype)


def gather_positions(x: Tensor, positions: Tensor) -> Tensor:
    """x: (B, S, D), positions: (B, P) long -> x at those positions, (B, P, D)."""
    return x.gather(1, positions[:, :, None].expand(-1, -1, x.shape[-1]))


def gather_cos_sin(cos_sin: CosSin, positions: Tensor) -> CosSin:
    """Rotary tables (S, hd) or per sample (B, S, hd) -> the rows at ``positions`` (B, P), each (B, P, hd)."""
    cos, sin = cos_sin
    if cos.dim() == 2:
        return cos[positions], sin[positions]
    return gather_positions(cos, positions), gather_positions(sin, positions)


class Attention(nn.Module):
    """Non-causal multi-head self-attention: fused qkv projection, RoPE, SDPA, no biases."""

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.qkv_proj = CastedLinear(hidden_size, 3 * hidden_size, bias=False)
        self.o_proj = CastedLinear(hidden_size, hidden_size, bias=False)

    def forward(self, x: Tensor, cos_sin: CosSin | None, positions: Tensor | None = None) -> Tensor:
        """x: (B, S, D) -> (B, S, D); with ``positions`` (B, P) long, only those positions' outputs, (B, P, D).

        Every position is still a key and value; only the queries are restricted.
        """
        B, S, D = x.shape
        H, hd = self.num_heads, self.head_dim
        if positions is None:
            # (B, S, 3D) -> (3, B, H, S, hd): the head-major layout SDPA wants.
            q, k, v = self.qkv_proj(x).view(B, S, 3, H, hd).permute(2, 0, 3, 1, 4).unbind(0)
            q_cos_sin = cos_sin
        else:
            weight = self.qkv_proj.weight.to(x.dtype)  # rows: q, k, v
            q = F.linear(gather_positions(x, positions), weight[:D]).view(B, -1, H, hd).transpose(1, 2)
            k, v = F.linear(x, weight[D:]).view(B, S, 2, H, hd).permute(2, 0, 3, 1, 4).unbind(0)
            q_cos_sin = None if cos_sin is None else gather_cos_sin(cos_sin, positions)
        if cos_sin is not None:
            assert q_cos_sin is not None
            q = apply_rotary_pos_emb(q, q_cos_sin)
            k = apply_rotary_pos_emb(k, cos_sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=False)  # (B, H, S or P, hd)
        return self.o_proj(y.transpose(1, 2).reshape(B, -1, D))


class SwiGLU(nn.Module):
    """Gated MLP ``down(silu(gate(x)) * up(x))`` with one fused gate/up projection, no biases.

    Hidden width: ``round(expansion * D * 2/3)`` rounded up to a multiple of
    ``multiple`` (the 2/3 keeps the parameter count of a plain
    ``expansion``-wide MLP).
    """

    def __init__(self, hidden_size: int, expansion: float, multiple: int = MLP_WIDTH_MULTIPLE) -> None:
        super().__init__()
        width = max(1, round(expansion * hidden_size * 2 / 3))
        width = -(-width // multiple) * multiple  # round up
        self.gate_up_proj = CastedLinear(hidden_size, 2 * width, bias=False)
        self.down_proj = CastedLinear(width, hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, S, D) -> (B, S, D)."""
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class Block(nn.Module):
    """Post-norm transformer block: ``x = norm(x + attn(x)); x = norm(x + mlp(x))``."""

    def __init__(self, config: HRMConfig) -> None:
        super().__init__()
        self.self_attn = Attention(config.hidden_size, config.num_heads)
        self.mlp = SwiGLU(config.hidden_size, config.expansion, config.mlp_width_multiple)
        self.norm_eps = config.rms_norm_eps

    def forward(self, x: Tensor, cos_sin: CosSin | None, positions: Tensor | None = None) -> Tensor:
        """x: (B, S, D) -> (B, S, D); with ``positions`` (B, P) long, only those positions' outputs, (B, P, D)."""
        residual = x if positions is None else gather_positions(x, positions)
        x = rms_norm(residual + self.self_attn(x, cos_sin, positions), self.norm_eps)
        x = rms_norm(x + self.mlp(x), self.norm_eps)
        return x


class ReasoningModule(nn.Module):
    """One HRM level (``f_L`` or ``f_H``): add the injection to the state, then run the blocks."""

    def __init__(self, layers: list[Block]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(
        self, hidden: Tensor, injection: Tensor, cos_sin: CosSin | None = None, positions: Tensor | None = None
    ) -> Tensor:
        """hidden, injection: (B, S, D) -> new hidden (B, S, D).

        With ``positions`` (B, P) long: only those positions of the new hidden state, (B, P, D). Every
        layer but the last still runs at all positions (the last one's keys and values need them); the
        last computes its queries, output projection and MLP at the ``P`` positions only.
        """
        hidden = hidden + injection  # input injection is additive
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            hidden = layer(hidden, cos_sin, positions if i == last else None)
        return hidden
