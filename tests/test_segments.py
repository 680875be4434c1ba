"""Segments per env step, deep supervision, carry modes and the ``paper`` preset."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from hrm_agent.carry import start as start_carry
from hrm_agent.agent import HRMAgent
from hrm_agent.config import HRMConfig
from hrm_agent.loop import dqn_update, warmup_lr
from hrm_agent.hyperparams import ConfigError, resolve_config
from hrm_agent.model import HRMQNetwork
from hrm_agent.replay import ReplaySample

from conftest import TINY_ENV, TINY_MODEL, tiny_config

SEGMENTS = 3


def net(segments: int = SEGMENTS, seed: int = 0) -> HRMQNetwork:
    torch.manual_seed(seed)
    return HRMQNetwork(HRMConfig(seq_len=9, vocab_size=6, num_actions=4, segments=segments, **TINY_MODEL))


def random_batch(model: HRMQNetwork, n: int = 4, z: torch.Tensor | None = None) -> ReplaySample:
    g = torch.Generator().manual_seed(1)
    obs = torch.randint(0, 6, (n, 9), dtype=torch.uint8, generator=g)
    return ReplaySample(
        obs=obs,
        actions=torch.randint(0, 4, (n,), generator=g),
        rewards=torch.rand(n, generator=g),
        next_obs=torch.randint(0, 6, (n, 9), dtype=torch.uint8, generator=g),
        terminated=torch.zeros(n),
        episode_start=torch.zeros(n, dtype=torch.bool),
        z_init=z,
        z_next=z,
    )


def test_acting_runs_all_segments_each_continuing_from_the_last():
    model = net()
    tokens = torch.randint(0, 6, (2, 9), dtype=torch.uint8)
    with torch.no_grad():
        carry_all, q_all, _ = model(model.initial_carry(2), tokens)
        carry = model.initial_carry(2)
        for _ in range(SEGMENTS):
            carry, q, _ = model(carry, tokens, segments=1)
    torch.testing.assert_close(carry_all.z_H, carry.z_H)
    torch.testing.assert_close(carry_all.z_L, carry.z_L)
    torch.testing.assert_close(q_all, q)
    # and one segment is not the same as three
    with torch.no_grad():
        one, _, _ = model(model.initial_carry(2), tokens, segments=1)
    assert not torch.allclose(one.z_H, carry_all.z_H)


def test_trace_covers_every_iteration_of_every_segment():
    model = net()
    cfg = model.config
    with torch.no_grad():
        carry, _, trace = model(model.initial_carry(2), torch.zeros(2, 9, dtype=torch.uint8), trace=True)
    assert trace.z_H.shape[0] == SEGMENTS * cfg.H_cycles * cfg.L_cycles
    torch.testing.assert_close(trace.z_H[-1], carry.z_H)


def test_gradient_flows_only_through_the_last_iteration_of_the_last_segment():
    model = net()
    tokens = torch.randint(0, 6, (2, 9), dtype=torch.uint8)
    with torch.no_grad():
        before, _, _ = model(model.initial_carry(2), tokens, segments=SEGMENTS - 1)
    _, q_ref, _ = model(before, tokens, segments=1)
    q_ref.sum().backward()
    ref = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    _, q, _ = model(model.initial_carry(2), tokens)
    q.sum().backward()
    for g_ref, p in zip(ref, model.parameters()):
        torch.testing.assert_close(p.grad, g_ref)


def test_deep_supervision_takes_one_optimiser_step_per_segment_against_one_target(monkeypatch):
    online = net()
    target = copy.deepcopy(online)
    optimizer = torch.optim.SGD(online.parameters(), lr=0.1)
    target_calls, steps, targets = [], [], []
    target.register_forward_hook(lambda *args: target_calls.append(1))
    original_q_values = target.q_values
    monkeypatch.setattr(target, "q_values", lambda *a, **k: (target_calls.append(1), original_q_values(*a, **k))[1])
    original_step = optimizer.step
    monkeypatch.setattr(optimizer, "step", lambda *a, **k: (steps.append(1), original_step(*a, **k))[1])
    import hrm_agent.loop as dqn

    original_mse = dqn.F.mse_loss
    monkeypatch.setattr(dqn.F, "mse_loss", lambda q, y: (targets.append(y.clone()), original_mse(q, y))[1])

    stats = dqn_update(online, target, optimizer, random_batch(online), gamma=0.9, deep_supervision=True)
    assert len(steps) == SEGMENTS == stats["optimizer_steps"]
    assert len(target_calls) == 1  # the target is computed once per minibatch
    assert len(targets) == SEGMENTS and all(torch.equal(y, targets[0]) for y in targets)


def test_deep_supervision_segments_continue_from_the_detached_carry():
    # with lr 0 the online net is unchanged, so segment k must see the state after k segments
    online = net()
    target = copy.deepcopy(online)
    seen = []
    online.register_forward_hook(lambda mod, args, kwargs, out: seen.append(out[0].z_H.clone()), with_kwargs=True)
    optimizer = torch.optim.SGD(online.parameters(), lr=0.0)
    batch = random_batch(online)
    dqn_update(online, target, optimizer, batch, gamma=0.9, deep_supervision=True)
    with torch.no_grad():
        carry, _, _ = online(online.initial_carry(4), batch.obs)
    torch.testing.assert_close(seen[-1], carry.z_H)


def test_without_deep_supervision_one_step_runs_all_segments(monkeypatch):
    online = net()
    target = copy.deepcopy(online)
    optimizer = torch.optim.SGD(online.parameters(), lr=0.1)
    stats = dqn_update(online, target, optimizer, random_batch(online), gamma=0.9)
    assert stats["optimizer_steps"] == 1


def test_soft_target_update_after_every_optimiser_step():
    online = net()
    target = copy.deepcopy(online)
    with torch.no_grad():
        for p in target.parameters():
            p.zero_()
    optimizer = torch.optim.SGD(online.parameters(), lr=0.0)  # online stays fixed
    dqn_update(online, target, optimizer, random_batch(online), gamma=0.9, deep_supervision=True, target_tau=0.5)
    for p_t, p in zip(target.parameters(), online.parameters()):
        torch.testing.assert_close(p_t, p * (1 - 0.5**SEGMENTS))


def test_warmup_lr_is_linear_then_constant():
    assert warmup_lr(1e-3, 0, 0) == 1e-3
    assert warmup_lr(1e-3, 10, 0) == pytest.approx(1e-4)
    assert warmup_lr(1e-3, 10, 4) == pytest.approx(5e-4)
    assert warmup_lr(1e-3, 10, 9) == pytest.approx(1e-3)
    assert warmup_lr(1e-3, 10, 500) == pytest.approx(1e-3)


@pytest.mark.parametrize("mode", ["full", "token"])
def test_carry_state_round_trip(mode):
    model = net()
    with torch.no_grad():
        carry, _, _ = model(model.initial_carry(3), torch.randint(0, 6, (3, 9), dtype=torch.uint8))
    state = model.carry_state(carry, mode)
    S, D = model.config.total_seq_len, model.config.hidden_size
    assert state.shape == ((2, 3, S, D) if mode == "full" else (2, 3, D))
    back = model.carry_from_state(state)
    if mode == "full":
        torch.testing.assert_close(back.z_H, carry.z_H)
    else:  # the query position's vectors at every position
        torch.testing.assert_close(back.z_H, carry.z_H[:, :1].expand(-1, S, -1))
        torch.testing.assert_close(back.z_L, carry.z_L[:, :1].expand(-1, S, -1))


def test_token_carry_in_the_agent_resets_at_episode_start_and_is_broadcast():
    agent = HRMAgent("DynamicMaze-v0", tiny_config(carry="token", n_envs=2), env_kwargs=TINY_ENV)
    agent.learn(60)
    rollout = agent.rollout
    z = start_carry(agent.online, rollout.z, rollout.episode_start, 2).z_H  # what the next step starts from
    init = agent.online.initial_carry(2).z_H
    for i in range(2):
        if rollout.episode_start[i]:
            torch.testing.assert_close(z[i], init[i])
        else:  # one vector at every position
            assert torch.equal(z[i], z[i, :1].expand_as(z[i]))
    # predict returns the broadcast state, and episode_start resets it
    obs = np.stack([gym.make("DynamicMaze-v0", **TINY_ENV).reset(seed=0)[0]] * 2)
    _, state = agent.predict(obs, state=None)
    assert torch.equal(state.z_H, state.z_H[:, :1].expand_as(state.z_H))
    _, fresh = agent.predict(obs, state=state, episode_start=np.array([True, False]))
    _, again = agent.predict(obs, state=None)
    torch.testing.assert_close(fresh.z_H[0], again.z_H[0])


def test_agent_with_segments_and_deep_supervision_counts_optimiser_steps():
    config = tiny_config(deep_supervision=True, train_freq=1, learning_starts=32, lr_warmup_steps=10)
    config["model"]["segments"] = 2
    agent = HRMAgent("DynamicMaze-v0", config, env_kwargs=TINY_ENV)
    agent.learn(40)
    minibatches = (40 - 32) // 2 + 1  # one per vector step of 2 envs from learning_starts on
    assert agent.n_updates == 2 * minibatches
    assert agent.optimizer.param_groups[0]["lr"] == pytest.approx(config.get("learning_rate", 1e-3) * (agent.n_updates - 1) / 10)


def test_exploration_steps_sets_an_absolute_schedule():
    agent = HRMAgent("DynamicMaze-v0", tiny_config(exploration_steps=100, exploration_final_eps=0.3), env_kwargs=TINY_ENV)
    agent.total_timesteps = 10_000
    agent.num_timesteps = 50
    assert agent.exploration_rate() == pytest.approx(0.65)
    agent.num_timesteps = 5_000
    assert agent.exploration_rate() == pytest.approx(0.3)


# the authors' settings (SPEC §3; their configs at d79040f), as the README's preset table lists them
PAPER = {
    "carry_z": True,
    "carry": "token",
    "n_envs": 256,
    "learning_rate": 1e-4,
    "lr_warmup_steps": 10_000,
    "adam_betas": (0.9, 0.999),
    "weight_decay": 0.0,
    "max_grad_norm": None,
    "deep_supervision": True,
    "buffer_size": 1_048_576,
    "batch_size": 256,
    "gamma": 0.95,
    "target_update": "every_update",
    "tau": 0.001,
    "exploration_initial_eps": 1.0,
    "exploration_final_eps": 0.33,
    "exploration_steps": 300_000 // 8 * 256,
    "eval_episodes": 256,
}
PAPER_MODEL = {
    "hidden_size": 64,
    "num_heads": 2,
    "expansion": 4.0,
    "mlp_width_multiple": 256,
    "H_layers": 4,
    "L_layers": 4,
    "H_cycles": 2,
    "L_cycles": 2,
    "segments": 8,
    "pos_encodings": "rope",
    "forward_dtype": "bfloat16",
}


@pytest.mark.parametrize("env_id", ["DynamicMaze-v0", "FourRooms-v0"])
def test_paper_preset_resolves_to_the_authors_settings(env_id):
    config = resolve_config(env_id, preset="paper")
    for key, value in PAPER.items():
        assert getattr(config, key) == value, key
    for key, value in PAPER_MODEL.items():
        assert config.model[key] == value, key
    # overrides still go on top of the preset
    assert resolve_config(env_id, preset="paper", overrides=["n_envs=4"]).n_envs == 4


def test_paper_preset_model_has_the_authors_size():
    config = resolve_config("DynamicMaze-v0", preset="paper")
    model = HRMQNetwork(HRMConfig(seq_len=99, vocab_size=6, num_actions=4, **config.model))
    n = sum(p.numel() for p in model.parameters())
    # ~0.54 M in theirs, whose vocabulary-wide embedding and LM head (131 x 64 each) we don't have
    assert 0.5e6 < n < 0.56e6


def test_unknown_preset_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown preset 'nope'; available: paper"):
        resolve_config("DynamicMaze-v0", preset="nope")


def test_hrm_agent_takes_a_preset():
    agent = HRMAgent("DynamicMaze-v0", {"n_envs": 2, "buffer_size": 64, "batch_size": 8}, preset="paper",
                     env_kwargs=TINY_ENV, device="cpu")
    assert agent.model_config.segments == 8 and agent.config.deep_supervision
    assert agent.config.n_envs == 2


def test_a_model_saved_before_segments_and_carry_modes_loads_as_it_was(tmp_path):
    from hrm_agent import checkpoint

    agent = HRMAgent("DynamicMaze-v0", tiny_config(carry="full"), env_kwargs=TINY_ENV)
    agent.save(tmp_path / "model.pt")
    data = checkpoint.load_file(tmp_path / "model.pt")
    for key in ("segments", "mlp_width_multiple", "grid_shape", "rope_anchor_token", "readout", "action_offsets"):
        del data["model_config"][key]
    del data["config"]["carry"]
    checkpoint.save_file(tmp_path / "old.pt", "model", {k: v for k, v in data.items() if k not in ("format", "version", "kind")})
    old = HRMAgent.load(tmp_path / "old.pt", device="cpu")
    assert old.config.carry == "full" and old.model_config.segments == 1
    obs = np.zeros((2, *agent.observation_space.shape), dtype=np.uint8)
    obs[:, 1, 1] = 4
    a1, s1 = agent.predict(obs)
    a2, s2 = old.predict(obs)
    assert np.array_equal(a1, a2) and torch.equal(s1.z_H, s2.z_H)


def test_every_update_target_needs_a_soft_tau():
    with pytest.raises(ConfigError, match="every_update' needs tau < 1"):
        resolve_config("DynamicMaze-v0", params={"target_update": "every_update", "tau": 1.0})
