"""The HRM Q-network: recursion, 1-step gradient, carry, trace, dtypes, checkpoints, config."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hrm_agent.config import HRMConfig
from hrm_agent.model import HRMCarry, HRMQNetwork

B = 3
N, T = 2, 3  # distinct cycle counts, so a swap of H and L loops would show


def tiny_config(**overrides) -> HRMConfig:
    fields = dict(
        seq_len=9, vocab_size=6, num_actions=4, H_cycles=N, L_cycles=T,
        H_layers=1, L_layers=2, hidden_size=32, num_heads=4, expansion=2.0,
    )
    return HRMConfig(**{**fields, **overrides})


def make_model(seed: int = 0, **overrides) -> HRMQNetwork:
    torch.manual_seed(seed)
    return HRMQNetwork(tiny_config(**overrides))


def make_tokens(seed: int = 1, batch: int = B, seq_len: int = 9) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 6, (batch, seq_len), generator=g, dtype=torch.uint8)


def random_carry(model: HRMQNetwork, seed: int = 2, batch: int = B) -> HRMCarry:
    """A non-initial carry: every row and position different."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, model.config.total_seq_len, model.config.hidden_size)
    return HRMCarry(torch.randn(shape, generator=g), torch.randn(shape, generator=g))


def reference_forward(model: HRMQNetwork, carry: HRMCarry, tokens: torch.Tensor, one_step_grad: bool = True):
    """The recursion written out as in the reference code: N outer cycles of T L-updates and one H-update.

    With ``one_step_grad`` everything but the last L- and H-update runs without
    gradient; without it, the whole recursion is differentiated (full BPTT).
    Returns (z_H, z_L, q).
    """
    x = model.encoder.input_embeddings(tokens)
    cos_sin = model.encoder.rotary_emb()
    z_H, z_L = carry
    with torch.set_grad_enabled(not one_step_grad):
        for h in range(N):
            for l in range(T):
                if not (h == N - 1 and l == T - 1):
                    z_L = model.core.L_level(z_L, z_H + x, cos_sin)
            if h != N - 1:
                z_H = model.core.H_level(z_H, z_L, cos_sin)
    z_L = model.core.L_level(z_L, z_H + x, cos_sin)
    z_H = model.core.H_level(z_H, z_L, cos_sin)
    return z_H, z_L, model.head.q_head(z_H[:, 0])


def grads_of(model: HRMQNetwork, q: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    (q * weights).sum().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


# ---------------------------------------------------------------- gradient structure


def test_gradient_is_the_one_step_gradient_of_the_reference_recursion():
    model = make_model()
    carry, tokens = random_carry(model), make_tokens()
    weights = torch.randn(B, 4)

    _, q, _ = model(carry, tokens)
    got = grads_of(model, q, weights)
    *_, q_ref = reference_forward(model, carry, tokens, one_step_grad=True)
    expected = grads_of(model, q_ref, weights)
    *_, q_bptt = reference_forward(model, carry, tokens, one_step_grad=False)
    bptt = grads_of(model, q_bptt, weights)

    assert torch.allclose(q, q_ref)
    assert got.keys() == expected.keys() == {name for name, _ in model.named_parameters()}
    for name in expected:
        assert torch.allclose(got[name], expected[name], rtol=1e-4, atol=1e-7), name
    # The check can fail: full backpropagation through time gives other gradients.
    assert not torch.allclose(got["core.L_level.layers.0.self_attn.qkv_proj.weight"],
                              bptt["core.L_level.layers.0.self_attn.qkv_proj.weight"], rtol=1e-2)


def test_parameters_of_both_modules_and_the_input_network_receive_gradient():
    model = make_model()
    _, q, _ = model(model.initial_carry(B), make_tokens())
    q.sum().backward()
    for name, p in model.named_parameters():
        if name == "encoder.embed_tokens.weight":
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # Through the injection into the last L-update, the embeddings of the tokens seen learn.
    seen = make_tokens().long().unique()
    assert (model.encoder.embed_tokens.weight.grad[seen].abs().sum(-1) > 0).all()


def test_no_gradient_reaches_the_initial_state():
    model = make_model()
    params = {name for name, _ in model.named_parameters()}
    assert "core.H_init" not in params and "core.L_init" not in params
    assert {"core.H_init", "core.L_init"} <= set(model.state_dict())
    H_init, L_init = model.H_init.clone(), model.L_init.clone()

    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    _, q, _ = model(model.initial_carry(B), make_tokens())
    q.sum().backward()
    optimizer.step()

    assert not model.H_init.requires_grad and model.H_init.grad is None
    assert torch.equal(model.H_init, H_init) and torch.equal(model.L_init, L_init)


def test_returned_carry_is_detached_and_q_is_not():
    model = make_model()
    carry, q, _ = model(model.initial_carry(B), make_tokens())
    assert not carry.z_H.requires_grad and not carry.z_L.requires_grad
    assert carry.z_H.grad_fn is None and carry.z_L.grad_fn is None
    assert q.requires_grad


# ---------------------------------------------------------------- trace


def test_trace_has_one_entry_per_iteration_and_ends_at_the_returned_carry():
    model = make_model()
    carry, q, trace = model(random_carry(model), make_tokens(), trace=True)
    S, D = model.config.total_seq_len, model.config.hidden_size
    assert trace.z_H.shape == trace.z_L.shape == (N * T, B, S, D)
    assert torch.equal(trace.z_H[-1], carry.z_H) and torch.equal(trace.z_L[-1], carry.z_L)
    assert not trace.z_H.requires_grad
    # Tracing changes nothing else.
    carry2, q2, _ = model(random_carry(model), make_tokens())
    assert torch.equal(q, q2) and torch.equal(carry.z_H, carry2.z_H)


def test_trace_z_H_changes_only_at_the_end_of_each_H_cycle():
    model = make_model()
    start = random_carry(model)
    _, _, trace = model(start, make_tokens(), trace=True)
    for i in range(1, N * T + 1):  # paper's iteration index: entry i-1 holds z^i
        previous_H = start.z_H if i == 1 else trace.z_H[i - 2]
        previous_L = start.z_L if i == 1 else trace.z_L[i - 2]
        assert not torch.allclose(trace.z_L[i - 1], previous_L)  # L updates every iteration
        if i % T == 0:
            assert not torch.allclose(trace.z_H[i - 1], previous_H)
        else:
            assert torch.equal(trace.z_H[i - 1], previous_H)


def test_trace_matches_the_reference_iterates():
    model = make_model()
    carry, tokens = random_carry(model), make_tokens()
    _, _, trace = model(carry, tokens, trace=True)
    with torch.no_grad():
        x, cs = model.encoder.input_embeddings(tokens), model.encoder.rotary_emb()
        z_H, z_L = carry
        for i in range(1, N * T + 1):
            z_L = model.core.L_level(z_L, z_H + x, cs)
            if i % T == 0:
                z_H = model.core.H_level(z_H, z_L, cs)
            assert torch.allclose(trace.z_L[i - 1], z_L, atol=1e-5)
            assert torch.allclose(trace.z_H[i - 1], z_H, atol=1e-5)


# ---------------------------------------------------------------- carry


def test_initial_carry_is_deterministic_and_holds_the_init_vectors_everywhere():
    model = make_model()
    a, b = model.initial_carry(B), model.initial_carry(B)
    assert torch.equal(a.z_H, b.z_H) and torch.equal(a.z_L, b.z_L)
    S, D = model.config.total_seq_len, model.config.hidden_size
    assert a.z_H.shape == a.z_L.shape == (B, S, D)
    assert torch.equal(a.z_H, model.H_init.expand(B, S, D))
    assert torch.equal(a.z_L, model.L_init.expand(B, S, D))
    a.z_H.add_(1.0)  # a fresh tensor: the buffer is untouched
    assert torch.equal(b.z_H, model.H_init.expand(B, S, D))


def test_reset_carry_resets_exactly_the_masked_rows_and_leaves_the_input_alone():
    model = make_model()
    carry = random_carry(model, batch=4)
    before = HRMCarry(carry.z_H.clone(), carry.z_L.clone())
    mask = torch.tensor([True, False, True, False])
    reset = model.reset_carry(mask, carry)
    initial = model.initial_carry(4)
    for row in range(4):
        for got, init, old in ((reset.z_H, initial.z_H, carry.z_H), (reset.z_L, initial.z_L, carry.z_L)):
            assert torch.equal(got[row], init[row] if mask[row] else old[row])
    assert torch.equal(carry.z_H, before.z_H) and torch.equal(carry.z_L, before.z_L)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=6))
def test_reset_carry_with_any_numpy_mask(mask_list):
    model = make_model()
    mask = np.array(mask_list)
    carry = random_carry(model, batch=len(mask))
    reset = model.reset_carry(mask, carry)
    rows_changed = (reset.z_H != carry.z_H).flatten(1).any(1).numpy()
    assert (rows_changed == mask).all()


def test_carrying_the_latent_changes_the_output():
    model = make_model()
    tokens = make_tokens()
    carry, _, _ = model(model.initial_carry(B), tokens)
    with torch.no_grad():
        _, q_carry, _ = model(carry, tokens)
        _, q_reset, _ = model(model.reset_carry(torch.ones(B, dtype=torch.bool), carry), tokens)
    assert not torch.allclose(q_carry, q_reset)


def test_two_steps_with_carry_equal_the_reference_run_with_the_intermediate_carry():
    model = make_model()
    tokens1, tokens2 = make_tokens(1), make_tokens(2)
    with torch.no_grad():
        carry, _, _ = model(model.initial_carry(B), tokens1)
        carry, q, _ = model(carry, tokens2)
        z_H, z_L, _ = reference_forward(model, model.initial_carry(B), tokens1)
        z_H, z_L, q_ref = reference_forward(model, HRMCarry(z_H, z_L), tokens2)
    assert torch.allclose(q, q_ref, atol=1e-6)
    assert torch.allclose(carry.z_H, z_H, atol=1e-6) and torch.allclose(carry.z_L, z_L, atol=1e-6)


def test_a_carry_of_another_dtype_is_cast_to_the_forward_dtype():
    model = make_model()
    carry, tokens = random_carry(model), make_tokens()
    compact = HRMCarry(carry.z_H.to(torch.bfloat16), carry.z_L.to(torch.bfloat16))  # as stored in replay
    rounded = HRMCarry(compact.z_H.float(), compact.z_L.float())
    with torch.no_grad():
        new, q, _ = model(compact, tokens)
        assert new.z_H.dtype == torch.float32
        assert torch.equal(q, model(rounded, tokens)[1])


# ---------------------------------------------------------------- shapes, dtypes, seeds


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("positions", [{"pos_encodings": "rope"},
                                       {"pos_encodings": "rope2d", "grid_shape": (3, 3), "rope_anchor_token": 4}])
def test_shapes_and_dtypes(dtype, positions):
    model = make_model(forward_dtype=dtype, **positions)
    forward_dtype = getattr(torch, dtype)
    carry = model.initial_carry(B)
    assert carry.z_H.dtype == carry.z_L.dtype == forward_dtype
    new, q, trace = model(carry, make_tokens(), trace=True)
    S, D = model.config.total_seq_len, model.config.hidden_size
    assert new.z_H.shape == new.z_L.shape == (B, S, D)
    assert new.z_H.dtype == new.z_L.dtype == trace.z_H.dtype == forward_dtype
    assert q.shape == (B, 4) and q.dtype == torch.float32 and torch.isfinite(q).all()
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    q.sum().backward()
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())


def test_bfloat16_model_tracks_the_float32_model():
    f32 = make_model()
    bf16 = make_model(forward_dtype="bfloat16")
    bf16.load_state_dict(f32.state_dict())
    tokens = make_tokens()
    with torch.no_grad():
        c32, _, _ = f32(f32.initial_carry(B), tokens)
        c16, _, _ = bf16(bf16.initial_carry(B), tokens)
    assert (c32.z_H - c16.z_H.float()).abs().mean() < 0.05  # states are RMS-normalised, ~1


def test_grid_observations_are_flattened_and_bad_shapes_rejected():
    model = make_model()
    tokens = make_tokens()
    carry = model.initial_carry(B)
    with torch.no_grad():
        assert torch.equal(model(carry, tokens.view(B, 3, 3))[1], model(carry, tokens)[1])
        with pytest.raises(ValueError, match="shape"):
            model(carry, make_tokens(seq_len=8))


def test_same_seed_gives_same_init_and_outputs_and_another_seed_does_not():
    a, b, c = make_model(seed=0), make_model(seed=0), make_model(seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["core.H_init"], sc["core.H_init"])
    tokens = make_tokens()
    with torch.no_grad():
        assert torch.equal(a(a.initial_carry(B), tokens)[1], b(b.initial_carry(B), tokens)[1])


def test_initial_q_values_are_small_and_differ_between_actions():
    model = make_model()
    with torch.no_grad():
        _, q, _ = model(model.initial_carry(B), make_tokens())
    assert q.abs().max() < 0.1
    assert (q.std(dim=1) > 0).all()


# ---------------------------------------------------------------- checkpoints


def q_values(model: HRMQNetwork) -> torch.Tensor:
    with torch.no_grad():
        carry, _, _ = model(model.initial_carry(B), make_tokens(1))  # exercise a carried step too
        return model(carry, make_tokens(2))[1]


def test_state_dict_round_trip_gives_identical_q_values():
    model = make_model(seed=0)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = make_model(seed=1)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(q_values(fresh), q_values(model))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised by torch's own compile imports
def test_state_dict_of_a_compiled_model_loads_into_a_fresh_model():
    model = make_model(seed=0)
    compiled_state = torch.compile(model).state_dict()  # compiles lazily: nothing is compiled here
    assert all(k.startswith("_orig_mod.") for k in compiled_state)
    fresh = make_model(seed=1)
    fresh.load_state_dict(compiled_state)  # strict
    assert torch.equal(q_values(fresh), q_values(model))


def test_compiled_prefix_is_stripped_also_when_the_model_is_a_submodule():
    outer, fresh = torch.nn.ModuleDict({"online": make_model(seed=0)}), torch.nn.ModuleDict({"online": make_model(seed=1)})
    state = {k.replace("online.", "online._orig_mod.", 1): v for k, v in outer.state_dict().items()}
    fresh.load_state_dict(state)
    assert torch.equal(q_values(fresh["online"]), q_values(outer["online"]))


def test_rope_tables_are_not_saved():
    assert not any("rotary" in k for k in make_model().state_dict())


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"hidden_size": 30, "num_heads": 4}, "hidden_size"),
        ({"hidden_size": 12, "num_heads": 4}, "num_heads"),  # head dim 3 is odd
        ({"H_cycles": 0}, "H_cycles"),
        ({"L_cycles": -1}, "L_cycles"),
        ({"H_layers": 0}, "H_layers"),
        ({"seq_len": 0}, "seq_len"),
        ({"num_actions": 0}, "num_actions"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"expansion": 0.0}, "expansion"),
        ({"forward_dtype": "float16"}, "forward_dtype"),
        ({"pos_encodings": "sinusoidal"}, "pos_encodings"),
        ({"halt_max_steps": 16}, "halt_max_steps"),  # ACT is off: no halting fields
    ],
)
def test_invalid_config_is_rejected_naming_the_field(overrides, field):
    with pytest.raises(ValidationError, match=field):
        tiny_config(**overrides)


def test_config_counts_the_query_token():
    cfg = tiny_config()
    assert cfg.total_seq_len == cfg.seq_len + 1 == 10
    cos, _ = HRMQNetwork(cfg).encoder.positions(make_tokens())
    assert cos.shape == (10, cfg.head_dim)


def test_a_retired_field_loads_at_its_inert_value_and_is_refused_at_any_other():
    assert tiny_config(anchor_embedding=False) == tiny_config()
    with pytest.raises(ValidationError, match="anchor_embedding: retired"):
        tiny_config(anchor_embedding=True)
    with pytest.raises(ValidationError, match="pos_encodings"):
        tiny_config(pos_encodings="learned")


# ---------------------------------------------------------------- devices


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_runs_on_cuda(dtype):
    model = make_model(forward_dtype=dtype).cuda()
    carry = model.initial_carry(B)
    assert carry.z_H.is_cuda
    carry, q, _ = model(carry, make_tokens().cuda())
    q.sum().backward()
    carry = model.reset_carry(torch.tensor([True, False, True]), carry)
    assert q.is_cuda and carry.z_L.is_cuda and q.dtype == torch.float32
    cpu = make_model(forward_dtype=dtype)
    with torch.no_grad():
        q_gpu = model(model.initial_carry(B), make_tokens().cuda())[1].cpu()
        q_cpu = cpu(cpu.initial_carry(B), make_tokens())[1]
    assert torch.allclose(q_gpu, q_cpu, atol=1e-2 if dtype == "bfloat16" else 1e-4)
