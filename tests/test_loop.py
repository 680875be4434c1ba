"""The training loop and its callbacks: hook order and cadence, phase timing, tokenising once, old checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hrm_agent import HRMAgent, carry
from hrm_agent.callbacks import Callback, LogCadence, PhaseTimer, due
from hrm_agent.hyperparams import ConfigError, resolve_config

from conftest import TINY_ENV, tiny_config

DATA = Path(__file__).parent / "data"


class Recorder(Callback):
    def __init__(self, stop_at: int | None = None) -> None:
        self.events: list[tuple] = []
        self.stop_at = stop_at

    def on_training_start(self, agent, end):
        self.events.append(("start", agent.num_timesteps, end))

    def on_update(self, agent, stats):
        self.events.append(("update", agent.num_timesteps))

    def on_step(self, agent):
        self.events.append(("step", agent.num_timesteps))
        return None if self.stop_at is None or agent.num_timesteps < self.stop_at else False

    def on_training_end(self, agent, outcome):
        self.events.append(("end", agent.num_timesteps, outcome))


def test_hooks_run_in_order_updates_every_train_freq_and_the_outcome_says_why_it_ended():
    agent = HRMAgent("DynamicMaze-v0", tiny_config(learning_starts=40, train_freq=2), env_kwargs=TINY_ENV)
    recorder = Recorder()
    agent.learn(60, callback=recorder)
    events = recorder.events
    assert events[0] == ("start", 0, 60) and events[-1] == ("end", 60, "finished")
    assert [e[1] for e in events if e[0] == "step"] == list(range(2, 61, 2))
    # an update at every second vector step from learning_starts on, before that step's on_step
    assert [e[1] for e in events if e[0] == "update"] == [40, 44, 48, 52, 56, 60]
    assert events.index(("update", 44)) < events.index(("step", 44))

    stopper = Recorder(stop_at=70)
    agent.learn(100, callback=stopper)
    assert stopper.events[0] == ("start", 60, 160) and stopper.events[-1] == ("end", 70, "stopped")
    assert not agent.interrupted


def test_the_phase_timer_sees_every_phase_of_every_step():
    config = tiny_config(learning_starts=40, train_freq=1, gradient_steps=2, target_update_interval=20)
    agent = HRMAgent("DynamicMaze-v0", config, env_kwargs=TINY_ENV)
    timer = PhaseTimer()
    agent.learn(60, callback=timer)
    steps = 60 // 2
    assert timer.calls["act"] == timer.calls["env step"] == timer.calls["replay add"] == steps
    minibatches = 2 * ((60 - 40) // 2 + 1)  # two per vector step from learning_starts on
    assert timer.calls["replay sample"] == timer.calls["update"] == minibatches == agent.n_updates
    assert timer.calls["target sync"] == 3  # at 20, 40, 60
    assert all(seconds > 0 for seconds in timer.seconds.values())


class CountingTokenizer:
    """The agent's tokenizer, counting the observations it is given."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.rows = tokenizer, 0

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)

    def __call__(self, obs):
        tokens = self.tokenizer(obs)
        self.rows += len(tokens)
        return tokens


def test_each_observation_is_tokenised_once():
    agent = HRMAgent("DynamicMaze-v0", tiny_config(learning_starts=10_000), env_kwargs=TINY_ENV)
    agent.tokenizer = counting = CountingTokenizer(agent.tokenizer)
    agent.learn(200)
    # the reset observations, then each step's observations and the final observation of each ended episode
    assert counting.rows == 2 + 200 + agent.n_episodes and agent.n_episodes > 0


def test_cadence_helpers_fire_once_per_interval():
    assert [s for s in range(4, 41, 4) if due(s, 10, 4)] == [12, 20, 32, 40]
    assert not any(due(s, 0, 4) for s in range(4, 41, 4))
    cadence = LogCadence(0)
    assert [s for s in range(500, 3001, 500) if cadence.due(s, evaluated=s == 1_500)] == [1_000, 1_500, 2_000, 3_000]


def test_carry_start_is_the_initial_state_without_a_latent_and_resets_episode_starts():
    agent = HRMAgent("DynamicMaze-v0", tiny_config(carry="token"), env_kwargs=TINY_ENV)
    model, initial = agent.online, agent.online.initial_carry(3)
    fresh = carry.start(model, None, None, 3)
    assert torch.equal(fresh.z_H, initial.z_H) and torch.equal(fresh.z_L, initial.z_L)
    z = torch.randn(2, 3, model.config.hidden_size)
    started = carry.start(model, z, np.array([False, True, False]), 3)
    assert torch.equal(started.z_H[1], initial.z_H[1]) and torch.equal(started.z_L[1], initial.z_L[1])
    assert torch.equal(started.z_H[0], z[0, 0].expand_as(started.z_H[0]))  # token: broadcast to every position
    assert carry.keep(model, started, False, "token") is None  # reset z keeps nothing
    assert carry.keep(model, started, True, "token").shape == (2, 3, model.config.hidden_size)


def test_a_checkpoint_written_before_tokens_were_kept_resumes_as_an_uninterrupted_run():
    # tests/data/checkpoint_before_tokens.pt: tiny_config(checkpoint_replay=True, learning_starts=100,
    # her_ratio=0.5, buffer_size=400), seed 5, learn(200) of a 400-step budget, written when a checkpoint
    # held raw observations and the next step's carry (and the config still had optimizer, loss, double_q;
    # carry z carried the query token then by default)
    config = tiny_config(checkpoint_replay=True, learning_starts=100, her_ratio=0.5, buffer_size=400, carry="token")
    straight = HRMAgent("DynamicMaze-v0", config, env_kwargs=TINY_ENV, seed=5)
    straight.learn(400)
    resumed = HRMAgent.load_checkpoint(DATA / "checkpoint_before_tokens.pt")
    assert resumed.num_timesteps == 200 and resumed.rollout is not None and resumed.rollout.tokens.dtype == np.uint8
    resumed.learn(200)
    assert resumed.n_updates == straight.n_updates and resumed.n_episodes == straight.n_episodes
    for p, q in zip(resumed.online.parameters(), straight.online.parameters()):
        assert torch.equal(p, q)


def test_a_retired_option_is_accepted_at_its_one_value_and_refused_at_another():
    assert resolve_config("DynamicMaze-v0", overrides=["double_q=false", "loss=mse", "optimizer=adam"])
    for setting in ("double_q=true", "loss=huber", "optimizer=adamw"):
        with pytest.raises(ConfigError, match="is no longer an option"):
            resolve_config("DynamicMaze-v0", overrides=[setting])
