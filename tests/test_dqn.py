"""The DQN learning rule: TD targets, the update, the target network and the epsilon schedule."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from hrm_agent.agent import HRMAgent
from hrm_agent.config import HRMConfig
from hrm_agent.loop import dqn_update, linear_schedule, td_target, update_target
from hrm_agent.model import HRMQNetwork
from hrm_agent.replay import ReplaySample

from conftest import TINY_ENV, TINY_MODEL, tiny_config


def test_td_target_terminated_truncated_and_ordinary_steps():
    rewards = torch.tensor([1.0, 0.0, 0.0])
    # row 0 terminated (goal), row 1 truncated at the time limit, row 2 ordinary
    terminated = torch.tensor([1.0, 0.0, 0.0])
    next_values = torch.tensor([0.7, 0.5, 0.25])
    y = td_target(rewards, terminated, next_values, gamma=0.9)
    torch.testing.assert_close(y, torch.tensor([1.0, 0.45, 0.225]))


def test_truncated_transition_bootstraps_and_terminated_does_not_in_the_update():
    torch.manual_seed(0)
    config = HRMConfig(seq_len=9, vocab_size=6, num_actions=4, **TINY_MODEL)
    online = HRMQNetwork(config)
    target = copy.deepcopy(online)
    with torch.no_grad():  # make the target's values clearly non-zero
        target.head.q_head.bias.fill_(0.5)
    obs = torch.randint(0, 6, (2, 9), dtype=torch.uint8)
    batch = ReplaySample(
        obs=obs,
        actions=torch.tensor([1, 2]),
        rewards=torch.tensor([0.0, 0.0]),
        next_obs=obs.flip(0),
        terminated=torch.tensor([1.0, 0.0]),  # row 0 terminal, row 1 truncated
        episode_start=torch.tensor([True, True]),
        z_init=None,
        z_next=None,
    )
    with torch.no_grad():
        _, q, _ = online(online.initial_carry(2), obs)
        _, next_q, _ = target(target.initial_carry(2), batch.next_obs)
    y = torch.tensor([0.0, 0.9 * next_q[1].max().item()])
    expected = torch.nn.functional.mse_loss(q[[0, 1], [1, 2]], y).item()
    optimizer = torch.optim.SGD(online.parameters(), lr=0.0)
    stats = dqn_update(online, target, optimizer, batch, gamma=0.9)
    assert stats["loss"] == pytest.approx(expected, rel=1e-5)
    assert y[1] > 0.4  # the truncated row really bootstrapped


def test_update_moves_q_of_taken_action_towards_target():
    torch.manual_seed(1)
    config = HRMConfig(seq_len=9, vocab_size=6, num_actions=4, **TINY_MODEL)
    online = HRMQNetwork(config)
    target = copy.deepcopy(online)
    obs = torch.randint(0, 6, (8, 9), dtype=torch.uint8)
    batch = ReplaySample(obs, torch.zeros(8, dtype=torch.long), torch.ones(8), obs, torch.ones(8),
                         torch.ones(8, dtype=torch.bool), None, None)
    optimizer = torch.optim.Adam(online.parameters(), lr=1e-2)
    losses = [dqn_update(online, target, optimizer, batch, gamma=0.9)["loss"] for _ in range(30)]
    assert losses[-1] < 0.1 * losses[0]


def test_hard_and_polyak_target_updates():
    a, b = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    before = [p.clone() for p in b.parameters()]
    update_target(a, b, tau=0.25)
    for p_b, p_a, p0 in zip(b.parameters(), a.parameters(), before):
        torch.testing.assert_close(p_b, 0.75 * p0 + 0.25 * p_a)
    update_target(a, b, tau=1.0)
    for p_b, p_a in zip(b.parameters(), a.parameters()):
        assert torch.equal(p_b, p_a)


def test_linear_schedule_endpoints_and_midpoint():
    assert linear_schedule(1.0, 0.1, 100, 0) == 1.0
    assert linear_schedule(1.0, 0.1, 100, 50) == pytest.approx(0.55)
    assert linear_schedule(1.0, 0.1, 100, 100) == pytest.approx(0.1)
    assert linear_schedule(1.0, 0.1, 100, 1_000) == pytest.approx(0.1)


def test_agent_exploration_rate_follows_the_configured_schedule():
    agent = HRMAgent("DynamicMaze-v0", tiny_config(exploration_fraction=0.5, exploration_final_eps=0.1),
                     env_kwargs=TINY_ENV)
    rates = []
    agent.learn(400, callback=lambda a: rates.append((a.num_timesteps, a.exploration_rate())))
    steps, eps = np.array(rates).T
    assert eps[0] == pytest.approx(1.0 - 0.9 * steps[0] / 200)
    assert eps[steps == 100][0] == pytest.approx(0.55)
    assert np.all(eps[steps >= 200] == pytest.approx(0.1))


def test_target_network_synced_every_interval(monkeypatch):
    import hrm_agent.loop as loop_module

    synced = []
    real = loop_module.update_target

    def spy(online, target, tau):
        synced.append(agent.num_timesteps)
        real(online, target, tau)

    monkeypatch.setattr(loop_module, "update_target", spy)
    agent = HRMAgent("DynamicMaze-v0", tiny_config(target_update_interval=100), env_kwargs=TINY_ENV)
    agent.learn(500)
    assert synced == [100, 200, 300, 400, 500]
    for p, q in zip(agent.online.parameters(), agent.target.parameters()):
        assert torch.equal(p, q)  # synced at the last step
