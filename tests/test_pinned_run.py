"""A short training run pinned to the figures it gave before the code was reorganised: the same seed must
give the same run (same updates, same weights, same Q-values) whatever shape the code takes. Single
thread, eager, on CPU. A change that is meant to change learning updates these figures in its own commit."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

from conftest import TINY_ENV, tiny_config
from hrm_agent import HRMAgent

PINNED = {  # variant: (updates, sum of the online weights, sum of their magnitudes, Q-values of one state)
    "carry-token": (45, 13.364633167415377, 1295.981683991724, [0.282439, 0.282439, 0.398248, 0.336784]),
    "carry-full": (45, 13.746531942888396, 1296.8779752718692, [0.198679, 0.198679, 0.258799, 0.242384]),
    "reset": (45, 13.573431564982457, 1296.6756681598126, [0.145668, 0.145668, 0.191875, 0.178361]),
}
SETTINGS = {"carry-token": {"carry": "token"}, "carry-full": {"carry": "full"}, "reset": {"carry_z": False}}


@pytest.mark.parametrize("variant", list(PINNED))
def test_a_short_run_gives_the_pinned_weights_and_q_values(variant):
    agent = HRMAgent("DynamicMaze-v0", tiny_config(her_ratio=0.5, **SETTINGS[variant]), seed=7, env_kwargs=TINY_ENV)
    agent.learn(240)
    updates, total, magnitude, q_pinned = PINNED[variant]
    flat = torch.cat([p.detach().flatten() for p in agent.online.parameters()]).double()
    obs, _ = gym.make("DynamicMaze-v0", **TINY_ENV).reset(seed=3)
    with torch.no_grad():
        q = agent.online(agent.online.initial_carry(1), torch.from_numpy(agent.tokenizer(obs[None])))[1]
    assert agent.n_updates == updates
    assert float(flat.sum()) == pytest.approx(total, rel=1e-6)
    assert float(flat.abs().sum()) == pytest.approx(magnitude, rel=1e-6)
    assert q[0].tolist() == pytest.approx(q_pinned, abs=2e-6)


def test_a_model_saved_before_the_encoder_core_head_split_loads_and_acts_the_same():
    # tests/data/model_before_split.pt: a tiny carry-z agent (rope2d, goal offsets, neighbours read-out,
    # stay_on_blocked) saved with the network's old flat state-dict keys ("L_level.", "q_head.", "H_init")
    from pathlib import Path

    from conftest import TINY_ENV

    agent = HRMAgent.load(Path(__file__).parent / "data" / "model_before_split.pt")
    assert "core.L_level.layers.0.mlp.down_proj.weight" in agent.online.state_dict()
    obs, _ = gym.make("DynamicMaze-v0", **TINY_ENV).reset(seed=3)
    with torch.no_grad():
        q = agent.online(agent.online.initial_carry(1), torch.from_numpy(agent.tokenizer(obs[None])))[1]
    assert q[0].tolist() == pytest.approx([-0.069247, -0.069247, -0.079794, -0.070528], abs=2e-6)
