"""Building blocks of the HRM: norm, init, attention, MLP, blocks."""

from __future__ import annotations

import math

import pytest
import torch

from hrm_agent.config import HRMConfig
from hrm_agent.layers import (
    Attention,
    Block,
    CastedLinear,
    ReasoningModule,
    RotaryEmbedding,
    SwiGLU,
    rms_norm,
    trunc_normal_init_,
)


def small_config(**overrides) -> HRMConfig:
    return HRMConfig(**{"seq_len": 7, "vocab_size": 6, "num_actions": 4, "hidden_size": 32, **overrides})


# ---------------------------------------------------------------- rms_norm


def test_rms_norm_gives_unit_rms_per_position():
    x = 3.0 * torch.randn(4, 5, 32) + 1.0
    y = rms_norm(x, 1e-5)
    assert torch.allclose(y.square().mean(-1), torch.ones(4, 5), atol=1e-4)


def test_rms_norm_of_bfloat16_is_computed_in_float32_and_cast_back():
    x = torch.randn(8, 64).to(torch.bfloat16)
    y = rms_norm(x, 1e-5)
    assert y.dtype == torch.bfloat16
    xf = x.float()
    expected = (xf / torch.sqrt(xf.square().mean(-1, keepdim=True) + 1e-5)).to(torch.bfloat16)
    assert torch.equal(y, expected)


def test_blocks_have_no_norm_weights_and_no_biases():
    block = Block(small_config())
    names = [name for name, _ in block.named_parameters()]
    assert names == [
        "self_attn.qkv_proj.weight",
        "self_attn.o_proj.weight",
        "mlp.gate_up_proj.weight",
        "mlp.down_proj.weight",
    ]


# ---------------------------------------------------------------- init


@pytest.mark.parametrize("std", [1.0, 0.125])
def test_trunc_normal_init_has_the_requested_std_and_cut(std):
    torch.manual_seed(0)
    w = trunc_normal_init_(torch.empty(1_000_000), std=std)
    assert abs(w.mean().item()) < 0.01 * std
    # Corrected for the truncation: the std is the requested one (torch's own
    # trunc_normal_ would give about 0.88 of it).
    assert w.std().item() == pytest.approx(std, rel=0.01)
    # Cut at 2 standard deviations of the underlying normal, whose std is
    # about 1.137 * std after the correction.
    bound = w.abs().max().item() / std
    assert 2.2 < bound <= 2.275


def test_trunc_normal_init_with_zero_std_gives_zeros():
    assert torch.equal(trunc_normal_init_(torch.ones(10), std=0.0), torch.zeros(10))


def test_casted_linear_is_lecun_initialised_and_runs_in_the_input_dtype():
    torch.manual_seed(0)
    layer = CastedLinear(256, 512)
    assert layer.bias is None
    assert layer.weight.dtype == torch.float32
    assert layer.weight.std().item() == pytest.approx(1 / math.sqrt(256), rel=0.02)
    y = layer(torch.randn(3, 256).to(torch.bfloat16))
    assert y.dtype == torch.bfloat16 and y.shape == (3, 512)
    assert layer.weight.dtype == torch.float32  # master weights stay fp32


def test_swiglu_width_is_two_thirds_expansion_rounded_up_to_16():
    mlp = SwiGLU(hidden_size=64, expansion=4.0)  # round(4 * 64 * 2/3) = 171 -> 176
    assert mlp.gate_up_proj.weight.shape == (2 * 176, 64)
    assert mlp.down_proj.weight.shape == (64, 176)


# ---------------------------------------------------------------- attention


def test_attention_is_not_causal():
    torch.manual_seed(0)
    attn = Attention(hidden_size=32, num_heads=4)
    x = torch.randn(1, 6, 32)
    x2 = x.clone()
    x2[:, -1] += 1.0  # change only the last position
    with torch.no_grad():
        assert not torch.allclose(attn(x, None)[:, 0], attn(x2, None)[:, 0])


def test_rope_makes_attention_position_aware():
    torch.manual_seed(0)
    attn = Attention(hidden_size=32, num_heads=4)
    rope = RotaryEmbedding(head_dim=8, max_positions=6, base=10000.0)
    x = torch.randn(1, 6, 32)
    perm = torch.tensor([3, 1, 5, 0, 2, 4])
    with torch.no_grad():
        # Without positions attention is permutation-equivariant; with RoPE it is not.
        assert torch.allclose(attn(x[:, perm], None), attn(x, None)[:, perm], atol=1e-5)
        assert not torch.allclose(attn(x[:, perm], rope()), attn(x, rope())[:, perm], atol=1e-3)


def test_rope_preserves_relative_position_scores():
    # q.k after rotation depends only on the distance between positions.
    rope = RotaryEmbedding(head_dim=8, max_positions=10, base=10000.0)
    from hrm_agent.layers import apply_rotary_pos_emb

    q, k = torch.randn(8), torch.randn(8)
    qs = apply_rotary_pos_emb(q.expand(1, 1, 10, 8), rope())[0, 0]
    ks = apply_rotary_pos_emb(k.expand(1, 1, 10, 8), rope())[0, 0]
    assert torch.allclose(qs[2] @ ks[5], qs[4] @ ks[7], atol=1e-5)


# ---------------------------------------------------------------- blocks


def test_block_is_post_norm():
    torch.manual_seed(0)
    block = Block(small_config())
    with torch.no_grad():
        y = block(10.0 * torch.randn(2, 5, 32), None)
    assert torch.allclose(y.square().mean(-1), torch.ones(2, 5), atol=1e-4)


def test_reasoning_module_adds_its_injection_before_its_layers():
    hidden, injection = torch.randn(2, 3, 32), torch.randn(2, 3, 32)
    assert torch.equal(ReasoningModule([])(hidden, injection), hidden + injection)
    block = Block(small_config())
    with torch.no_grad():
        assert torch.equal(ReasoningModule([block])(hidden, injection), block(hidden + injection, None))


def test_block_runs_in_bfloat16():
    block = Block(small_config())
    rope = RotaryEmbedding(head_dim=8, max_positions=5, base=10000.0)
    y = block(torch.randn(2, 5, 32).to(torch.bfloat16), rope())
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()
