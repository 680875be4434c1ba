"""The SB3 DQN baseline's defaults are the HRM agent's DQN-level settings: only the network (and the
priors that only the HRM agent has) differ between the two learners of a comparison."""

from __future__ import annotations

import pytest

from hrm_agent.baselines.config import resolve_baseline_config
from hrm_agent.hyperparams import resolve_config

SHARED = ("n_envs", "learning_rate", "buffer_size", "learning_starts", "batch_size", "gamma", "train_freq",
          "gradient_steps", "target_update_interval", "exploration_fraction", "exploration_initial_eps",
          "exploration_final_eps", "max_grad_norm")


@pytest.mark.parametrize("env_id", ["DynamicMaze-v0", "FourRooms-v0"])
def test_sb3_dqn_gets_every_dqn_setting_of_the_hrm_agent(env_id):
    hrm = resolve_config(env_id).model_dump()
    dqn = resolve_baseline_config("dqn", env_id).model_dump()
    assert {k: dqn[k] for k in SHARED} == {k: hrm[k] for k in SHARED}
