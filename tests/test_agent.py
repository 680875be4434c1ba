"""HRMAgent's stable-baselines3-shaped API: predict with state, evaluate_policy, save/load, resume."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from hrm_agent import HRMAgent
from hrm_agent.loop import TrainingDiverged
from hrm_agent.checkpoint import CheckpointError

from conftest import TINY_ENV, tiny_config


@pytest.fixture
def obs_batch():
    env = gym.make("DynamicMaze-v0", **TINY_ENV)
    return np.stack([env.reset(seed=s)[0] for s in range(3)])


def test_predict_carries_state_and_resets_rows_at_episode_start(obs_batch):
    agent = HRMAgent("DynamicMaze-v0", tiny_config(carry_z=True), env_kwargs=TINY_ENV)
    actions, state = agent.predict(obs_batch)
    assert actions.shape == (3,) and state.z_H.shape[0] == 3
    _, carried = agent.predict(obs_batch, state=state, episode_start=np.zeros(3, bool))
    _, fresh = agent.predict(obs_batch, state=None)
    _, mixed = agent.predict(obs_batch, state=state, episode_start=np.array([True, False, False]))
    assert not torch.allclose(carried.z_H, fresh.z_H)  # the carried latent changes the forward pass
    torch.testing.assert_close(mixed.z_H[0], fresh.z_H[0])
    torch.testing.assert_close(mixed.z_H[1:], carried.z_H[1:])


def test_reset_z_predict_ignores_the_state(obs_batch):
    agent = HRMAgent("DynamicMaze-v0", tiny_config(carry_z=False), env_kwargs=TINY_ENV)
    _, state = agent.predict(obs_batch)
    _, again = agent.predict(obs_batch, state=state, episode_start=np.zeros(3, bool))
    torch.testing.assert_close(again.z_H, state.z_H)


def test_predict_single_observation_and_batch_mismatch(obs_batch):
    agent = HRMAgent("DynamicMaze-v0", tiny_config(), env_kwargs=TINY_ENV)
    action, state = agent.predict(obs_batch[0])
    assert np.ndim(action) == 0 and 0 <= int(action) < 4
    with pytest.raises(ValueError, match="state holds 1 latents for a batch of 3"):
        agent.predict(obs_batch, state=state)


def test_evaluate_policy_runs_on_the_agent():
    from stable_baselines3.common.evaluation import evaluate_policy

    agent = HRMAgent("DynamicMaze-v0", tiny_config(), env_kwargs=TINY_ENV)
    env = gym.make("DynamicMaze-v0", **TINY_ENV)
    rewards, lengths = evaluate_policy(agent, env, n_eval_episodes=4, return_episode_rewards=True)
    assert len(rewards) == 4 and all(1 <= n <= 28 for n in lengths)


def test_eval_result_groups_success_by_start_distance_and_finds_stuck_failures():
    from hrm_agent.evaluate import EvalResult

    success = np.array([True, False, True, False, False, True])
    result = EvalResult(success, np.full(6, 10), np.zeros(6), np.array([3, 12, 25, 9, -1, -1]),
                        cells_visited=np.array([4, 1, 8, 3, 5, 4]), late_cells=np.array([4, 1, 8, 2, 3, 4]))
    assert result.success_by_distance() == [("1-9", 0.5, 2), ("10-19", 0.0, 1), ("20+", 1.0, 1), ("none", 0.5, 2)]
    assert result.success_by_distance(bins=(1, 5)) == [("1-4", 1.0, 1), ("5+", 1 / 3, 3), ("none", 0.5, 2)]
    assert result.stuck.tolist() == [False, True, False, True, False, False]  # failed, on 1 or 2 cells
    unreported = EvalResult(success, np.full(6, 10), np.zeros(6), np.full(6, -1))
    assert unreported.success_by_distance() == [] and not unreported.stuck.any()


def test_evaluate_counts_a_policy_walking_into_a_wall_as_stuck(monkeypatch):
    from hrm_agent.evaluate import evaluate

    agent = HRMAgent("DynamicMaze-v0", tiny_config(), env_kwargs=TINY_ENV)
    monkeypatch.setattr(agent, "predict", lambda obs, **kw: (np.zeros(len(obs), dtype=np.int64), None))  # always up
    result = evaluate(agent, 12, seed=5)
    failed = ~result.success
    assert failed.any() and (result.length[failed] == TINY_ENV["max_steps"]).all()
    assert (result.stuck == failed).all() and (result.late_cells[failed] == 1).all()
    assert (result.cells_visited <= 5).all()  # a column of the 5 x 5 interior at most


def test_save_load_round_trip_gives_identical_predictions(tmp_path, obs_batch):
    agent = HRMAgent("DynamicMaze-v0", tiny_config(), env_kwargs=TINY_ENV, seed=3)
    agent.learn(200)
    agent.save(tmp_path / "model.pt")
    loaded = HRMAgent.load(tmp_path / "model.pt")
    a1, s1 = agent.predict(obs_batch)
    a2, s2 = loaded.predict(obs_batch)
    assert np.array_equal(a1, a2)
    assert torch.equal(s1.z_H, s2.z_H) and torch.equal(s1.z_L, s2.z_L)
    assert loaded.config == agent.config and loaded.env_kwargs == TINY_ENV


def test_load_rejects_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        HRMAgent.load(tmp_path / "absent.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        HRMAgent.load(bad)
    agent = HRMAgent("DynamicMaze-v0", tiny_config(), env_kwargs=TINY_ENV)
    agent.save(tmp_path / "ok.pt")
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        HRMAgent.load(tmp_path / "truncated.pt")


@pytest.mark.parametrize("carry_z", [True, False])
def test_resume_matches_an_uninterrupted_run(tmp_path, carry_z):
    config = tiny_config(carry_z=carry_z, checkpoint_replay=True, learning_starts=100)
    straight = HRMAgent("DynamicMaze-v0", config, env_kwargs=TINY_ENV, seed=5)
    straight.learn(400)

    first = HRMAgent("DynamicMaze-v0", config, env_kwargs=TINY_ENV, seed=5)
    first.total_timesteps = 400  # as if `learn(400)` had been interrupted after 200 steps
    first.learn(200)
    first.save_checkpoint(tmp_path / "ckpt.pt")
    resumed = HRMAgent.load_checkpoint(tmp_path / "ckpt.pt")
    assert resumed.num_timesteps == 200 and resumed.n_updates == first.n_updates
    resumed.learn(200)

    assert resumed.num_timesteps == straight.num_timesteps == 400
    assert resumed.n_updates == straight.n_updates and resumed.n_episodes == straight.n_episodes
    for p, q in zip(resumed.online.parameters(), straight.online.parameters()):
        assert torch.equal(p, q)


def test_resume_without_replay_refills_before_updating(tmp_path):
    agent = HRMAgent("DynamicMaze-v0", tiny_config(learning_starts=100), env_kwargs=TINY_ENV)
    agent.learn(200)
    agent.save_checkpoint(tmp_path / "ckpt.pt")
    resumed = HRMAgent.load_checkpoint(tmp_path / "ckpt.pt")
    updates = resumed.n_updates
    resumed.learn(98)  # still refilling: no update yet
    assert resumed.n_updates == updates and len(resumed.replay) == 98
    resumed.learn(50)
    assert resumed.n_updates > updates


def test_same_seed_gives_the_same_training_run():
    runs = []
    for _ in range(2):
        agent = HRMAgent("DynamicMaze-v0", tiny_config(), env_kwargs=TINY_ENV, seed=11)
        agent.learn(300)
        runs.append(torch.cat([p.flatten() for p in agent.online.parameters()]))
    assert torch.equal(runs[0], runs[1])
    other = HRMAgent("DynamicMaze-v0", tiny_config(), env_kwargs=TINY_ENV, seed=12)
    other.learn(300)
    assert not torch.equal(runs[0], torch.cat([p.flatten() for p in other.online.parameters()]))


def test_non_finite_loss_stops_training_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    import hrm_agent.loop as loop_module

    agent = HRMAgent("DynamicMaze-v0", tiny_config(checkpoint_freq=100), env_kwargs=TINY_ENV,
                     run_dir=tmp_path)
    agent.learn(100)
    checkpoint = tmp_path / "checkpoints" / "last.pt"
    before = checkpoint.read_bytes()
    monkeypatch.setattr(loop_module, "dqn_update", lambda *a, **k: {"loss": float("nan"), "q_mean": 0.0,
                                                                        "grad_norm": 0.0})
    with pytest.raises(TrainingDiverged, match="non-finite TD loss"):
        agent.learn(200)
    assert checkpoint.read_bytes() == before
    assert HRMAgent.load_checkpoint(checkpoint).num_timesteps == 100


def test_learn_writes_tensorboard_keys_and_eval(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    agent = HRMAgent("DynamicMaze-v0", tiny_config(eval_freq=500), env_kwargs=TINY_ENV, run_dir=tmp_path)
    agent.learn(1_000)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for key in ("rollout/ep_rew_mean", "rollout/ep_len_mean", "rollout/success_rate",
                "rollout/exploration_rate", "train/loss", "train/q_mean", "time/fps",
                "eval/success_rate", "eval/mean_ep_length", "eval/path_efficiency"):
        assert key in tags, key
    assert [e.step for e in events.Scalars("eval/success_rate")] == [500, 1_000]
    assert (tmp_path / "final_model.pt").is_file() and (tmp_path / "checkpoints" / "last.pt").is_file()


def test_learns_a_tiny_maze_quickly():
    """A 5 x 5 maze (2 x 2 cells, random start and goal): a few thousand steps reach a high greedy success rate.

    Reset z: carry z learns this maze far more slowly (see the README's results).
    """
    from hrm_agent.evaluate import evaluate

    # the previous env: start and goal on cells, 20 steps, no bump penalty
    env_kwargs = {"size": 5, "n_fixed_walls": 0, "n_dynamic_walls": 0, "dynamics": "toggle", "max_steps": 20,
                  "bump_penalty": 0.0}
    config = tiny_config(
        carry_z=False, n_envs=4, buffer_size=5_000, learning_starts=500, batch_size=32, train_freq=1,
        target_update_interval=250, learning_rate=1e-3, exploration_fraction=0.4, gamma=0.9,
    )
    agent = HRMAgent("DynamicMaze-v0", config, env_kwargs=env_kwargs, seed=0)
    before = evaluate(agent, 50, seed=123).summary()["success_rate"]
    agent.learn(4_000)
    result = evaluate(agent, 50, seed=123).summary()
    # 0.88 and 1.00 after 4,000 steps on two machines (float results differ by CPU); random moves: about 0.1
    assert before < 0.6 and result["success_rate"] >= 0.75, (before, result)


def test_a_dict_config_applies_over_the_tuned_defaults_like_the_cli():
    from hrm_agent.hyperparams import ConfigError, default_hyperparams, resolve_config

    agent = HRMAgent("FourRooms-v0", {"learning_rate": 3e-4, "model": {"hidden_size": 16}})
    tuned = default_hyperparams("FourRooms-v0")
    assert agent.config == resolve_config("FourRooms-v0", None, ["learning_rate=3e-4", "model.hidden_size=16"])
    assert agent.config.n_envs == tuned["n_envs"] and agent.model_config.num_heads == tuned["model"]["num_heads"]
    assert agent.model_config.hidden_size == 16
    with pytest.raises(ConfigError, match="learning_rate"):
        HRMAgent("FourRooms-v0", {"learning_rate": -1})


def test_compiled_agent_keeps_the_eager_parameter_names(tmp_path):
    """``compile: true`` compiles the H and L modules in place: the same state_dict keys, so
    checkpoints of compiled and eager runs load into each other (compiling itself is lazy)."""
    eager = HRMAgent("DynamicMaze-v0", tiny_config(), env_kwargs=TINY_ENV, seed=0)
    compiled = HRMAgent("DynamicMaze-v0", tiny_config(compile=True), env_kwargs=TINY_ENV, seed=0)
    assert list(compiled.online.state_dict()) == list(eager.online.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(compiled.online.state_dict().values(), eager.online.state_dict().values()))
    compiled.save(tmp_path / "compiled.pt")
    loaded = HRMAgent.load(tmp_path / "compiled.pt")
    assert loaded.config.compile
    assert eager.online.core.L_level._compiled_call_impl is None
    assert all(net.core.L_level._compiled_call_impl is not None and net.core.H_level._compiled_call_impl is not None
               for net in (compiled.online, compiled.target))


def test_without_a_cpp_compiler_a_compiled_config_warns_and_runs_eager(monkeypatch):
    from torch._inductor import config as inductor_config

    monkeypatch.setattr(inductor_config.cpp, "cxx", (None, "no-such-compiler++"))
    with pytest.warns(UserWarning, match=r"no C\+\+ compiler found for torch.compile on CPU; running eager"):
        agent = HRMAgent("DynamicMaze-v0", tiny_config(compile=True), env_kwargs=TINY_ENV, seed=0)
    assert agent.config.compile  # the setting stands (a checkpoint keeps it); only this process runs eager
    assert all(net.core.L_level._compiled_call_impl is None and net.core.H_level._compiled_call_impl is None
               for net in (agent.online, agent.target))
    agent.learn(80)  # eager: no compiler is called
    assert agent.num_timesteps == 80
