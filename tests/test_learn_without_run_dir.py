"""``HRMAgent.learn`` without a ``run_dir``: past checkpoint_freq and eval_freq, in chunks, and Ctrl-C.

Without a run directory nothing is written (no checkpoints, no logs), greedy evaluation still runs
every ``eval_freq`` steps and at the end into ``agent.eval_history``, and ``learn(n)`` called again
continues the counters (as stable-baselines3's ``reset_num_timesteps=False``).
"""

from __future__ import annotations

import os
import signal
import tempfile

import pytest

from hrm_agent import HRMAgent
from hrm_agent.loop import linear_schedule

from conftest import TINY_ENV, tiny_config


@pytest.fixture
def empty_dirs(tmp_path, monkeypatch):
    """Run inside an empty working directory with an empty temp directory; both are checked afterwards."""
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield cwd, tmp
    assert os.listdir(cwd) == []
    # torch makes its compile cache dir (torchinductor_$USER) in the temp dir the first time it loads dynamo
    assert [name for name in os.listdir(tmp) if not name.startswith("torchinductor_")] == []


def agent(**overrides) -> HRMAgent:
    return HRMAgent("DynamicMaze-v0", tiny_config(**overrides), env_kwargs=TINY_ENV, seed=1)


def test_learn_past_checkpoint_and_eval_freq_writes_nothing_and_keeps_the_evaluations(empty_dirs):
    a = agent(checkpoint_freq=100, eval_freq=100, eval_episodes=3, train_freq=4)
    assert a.run_dir is None
    a.learn(250)
    assert a.num_timesteps == 250 and a.n_updates > 0
    # every eval_freq steps, and once more at the end
    assert [e["step"] for e in a.eval_history] == [100, 200, 250]
    assert all(0.0 <= e["success_rate"] <= 1.0 and e["episodes"] == 3 for e in a.eval_history)


def test_learn_in_chunks_continues_counters_and_the_exploration_schedule(empty_dirs):
    a = agent(eval_freq=200, eval_episodes=3, checkpoint_freq=100, exploration_fraction=1.0)
    seen: list[tuple[int, float]] = []

    def record(agent: HRMAgent) -> None:
        seen.append((agent.num_timesteps, agent.exploration_rate()))

    a.learn(200, callback=record)
    first = {"updates": a.n_updates, "episodes": a.n_episodes, "replay": len(a.replay)}
    assert a.num_timesteps == a.total_timesteps == 200
    a.learn(200, callback=record)

    assert a.num_timesteps == a.total_timesteps == 400  # steps add up; the schedule's horizon moves on
    assert [step for step, _ in seen] == list(range(2, 401, 2))  # no restart from 0
    c = a.config
    for step, eps in seen[100:]:  # the second chunk's epsilon: one schedule over the 400 steps
        assert eps == pytest.approx(linear_schedule(c.exploration_initial_eps, c.exploration_final_eps, 400, step))
    # no second warm-up: an update every train_freq vector steps throughout the second chunk
    assert a.n_updates - first["updates"] == 200 // (c.n_envs * c.train_freq)
    assert a.n_episodes >= first["episodes"] and len(a.replay) == first["replay"] + 200
    assert [e["step"] for e in a.eval_history] == [200, 400]  # the end of chunk 1 is not evaluated twice


def test_ctrl_c_without_run_dir_returns_after_the_current_step(empty_dirs):
    a = agent()
    previous = signal.getsignal(signal.SIGINT)

    def interrupt_at_100(agent: HRMAgent) -> None:
        if agent.num_timesteps == 100:
            os.kill(os.getpid(), signal.SIGINT)

    try:
        a.learn(1_000, callback=interrupt_at_100)  # no checkpoint: there is nowhere to write it
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped learn as KeyboardInterrupt")
    assert a.num_timesteps in (100, 102)  # the signal lands at or right after the step that sent it
    assert signal.getsignal(signal.SIGINT) is previous
    stopped = a.num_timesteps
    a.learn(100)  # and learn goes on from there
    assert a.num_timesteps == stopped + 100
