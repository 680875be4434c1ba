"""The recursive cores (model.core: hrm, trm, transformer): each pinned against its equations written out,
and carry z / reset z meaning the same for each behind the one encoder, read-out, replay and learner."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import TINY_ENV, tiny_config
from hrm_agent import HRMAgent
from hrm_agent.evaluate import evaluate
from hrm_agent.experiments.tables import CORE_LABELS
from test_analysis import command
from test_model import B, N, T, grads_of, make_model, make_tokens, random_carry


def trm_reference(model, carry, tokens, grad_cycles: int = 1, one_step: bool = False):
    """TRM as its paper writes it: N cycles of T updates ``z_L = f(z_L, z_H + x)`` and one ``z_H = f(z_H, z_L)``,
    the last ``grad_cycles`` cycles differentiated (with ``one_step``, only the last L- and H-update, as
    HRM's 1-step gradient would). Returns (z_H, z_L, q)."""
    f = model.core.net
    x, cos_sin = model.encoder.input_embeddings(tokens), model.encoder.rotary_emb()
    z_H, z_L = carry
    for cycle in range(N):
        last_cycle = cycle >= N - grad_cycles
        for i in range(T):
            with torch.set_grad_enabled(last_cycle and (not one_step or i == T - 1)):
                z_L = f(z_L, z_H + x, cos_sin)
        with torch.set_grad_enabled(last_cycle):
            z_H = f(z_H, z_L, cos_sin)
    return z_H, z_L, model.head.q_head(z_H[:, 0])


def test_trm_is_one_network_with_the_gradient_through_the_last_cycle():
    model = make_model(core="trm")
    assert not any(name.startswith("core.L_level") or name.startswith("core.H_level") for name, _ in
                   model.named_parameters())
    carry, tokens, weights = random_carry(model), make_tokens(), torch.randn(B, 4)
    new_carry, q, _ = model(carry, tokens)
    got = grads_of(model, q, weights)
    z_H, z_L, q_ref = trm_reference(model, carry, tokens)
    expected = grads_of(model, q_ref, weights)
    torch.testing.assert_close(q, q_ref)
    torch.testing.assert_close(new_carry.z_H, z_H.detach())
    torch.testing.assert_close(new_carry.z_L, z_L.detach())
    assert got.keys() == expected.keys() == {name for name, _ in model.named_parameters()}
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-7)
    # the check can fail: through every cycle, or through the last step only, the same Q-values' gradient differs
    name = "core.net.layers.0.self_attn.qkv_proj.weight"
    for other in ({"grad_cycles": N}, {"one_step": True}):
        *_, q_other = trm_reference(model, carry, tokens, **other)
        torch.testing.assert_close(q_other, q)
        assert not torch.allclose(got[name], grads_of(model, q_other, weights)[name], rtol=1e-2)


def test_transformer_runs_its_blocks_once_on_the_state_plus_input_with_the_full_gradient():
    model = make_model(core="transformer")
    carry, tokens, weights = random_carry(model), make_tokens(), torch.randn(B, 4)
    new_carry, q, _ = model(carry, tokens)
    got = grads_of(model, q, weights)
    x, cos_sin = model.encoder.input_embeddings(tokens), model.encoder.rotary_emb()
    z = model.core.blocks(carry.z_H, x, cos_sin)  # z_L plays no part
    q_ref = model.head.q_head(z[:, 0])
    expected = grads_of(model, q_ref, weights)
    torch.testing.assert_close(q, q_ref)
    torch.testing.assert_close(new_carry.z_H, z.detach())
    torch.testing.assert_close(new_carry.z_L, z.detach())
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-7)
    other_L = carry._replace(z_L=torch.randn_like(carry.z_L))
    torch.testing.assert_close(model(other_L, tokens)[1], q)
    # one trace entry per segment
    _, _, trace = model(carry, tokens, trace=True, segments=3)
    assert trace.z_H.shape[0] == 3 and torch.equal(trace.z_H, trace.z_L)


@pytest.mark.parametrize("core", ["hrm", "trm", "transformer"])
def test_q_values_reads_the_forward_q_values_for_every_core(core):
    model = make_model(core=core, readout="neighbors", pos_encodings="rope2d", grid_shape=(3, 3),
                       rope_anchor_token=4, action_offsets=((-1, 0), (0, 1), (1, 0), (0, -1)))
    carry, tokens = random_carry(model), make_tokens()
    tokens[:, 4] = 4  # the agent in the middle cell
    torch.testing.assert_close(model.q_values(carry, tokens), model(carry, tokens).q_values)


@pytest.mark.parametrize("core", ["trm", "transformer"])
def test_carry_z_and_reset_z_mean_the_same_for_every_core(core, tmp_path):
    model = {**tiny_config()["model"], "core": core, "L_layers": 2}
    obs, _ = gym.make("DynamicMaze-v0", **TINY_ENV).reset(seed=0)
    for carry_z in (True, False):
        agent = HRMAgent("DynamicMaze-v0", tiny_config(model=model, carry_z=carry_z, carry="full"), seed=0,
                         env_kwargs=TINY_ENV, run_dir=tmp_path / f"{core}-{carry_z}")
        agent.learn(160)  # acting, replay with its latents, the update
        assert agent.n_updates > 0
        _, state = agent.predict(obs, episode_start=True)
        fresh = agent.online(agent.online.initial_carry(1), torch.from_numpy(agent.tokenizer(obs[None])))
        torch.testing.assert_close(state.z_H, fresh[0].z_H)  # the first step starts from the initial state
        q_next = agent.online(state, torch.from_numpy(agent.tokenizer(obs[None])))[1]
        q_again = agent.online(agent.predict(obs, state=state, episode_start=False)[1], torch.from_numpy(
            agent.tokenizer(obs[None])))[1]
        if carry_z:  # the next step starts from the state the last one left
            assert not torch.allclose(q_next, fresh[1])
        else:  # every step starts fresh: predict ignores the state
            torch.testing.assert_close(agent.predict(obs, state=state)[1].z_H, fresh[0].z_H)
        assert q_again.shape == (1, 4)
        loaded = HRMAgent.load(tmp_path / f"{core}-{carry_z}")
        assert loaded.model_config.core == core
        result = evaluate(loaded, 2, record_latents=True)
        iterations = 1 if core == "transformer" else 4
        assert result.latents is not None and result.latents.iterations == iterations
        assert np.isfinite(result.latents.z_H).all()
        # the test-set tables name the core beside the variant
        assert command("test_set").label(loaded.config) == (
            f"{CORE_LABELS[core]} {'carry z (full)' if carry_z else 'reset z'}")
