"""Latent recording during evaluation, the latents file format and its loader."""

from __future__ import annotations

import dataclasses
import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs.interventions import intervene, static_kwargs
from hrm_agent import HRMAgent
from hrm_agent.evaluate import evaluate
from hrm_agent.latents import FORMAT, load, save
from hrm_agent.recording import record_traces
from hrm_agent.runs import UsageError

from conftest import TINY_ENV, TINY_MODEL, tiny_config

N_CYCLES, T_CYCLES = 3, 2  # N*T = 6, unlike any other size in the tiny model
TINY_ENV_GRID = (TINY_ENV["size"], TINY_ENV["size"])


def tiny_agent(carry_z: bool) -> HRMAgent:
    config = tiny_config(carry_z=carry_z, model={**TINY_MODEL, "H_cycles": N_CYCLES, "L_cycles": T_CYCLES})
    return HRMAgent("DynamicMaze-v0", config, env_kwargs=TINY_ENV, seed=2)


@pytest.fixture(scope="module", params=[True, False], ids=["carry", "reset"])
def recorded(request):
    """An agent, the carries its forward passes started from, and its evaluation with latents."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped: set up before conftest's per-test thread setting
    agent = tiny_agent(request.param)
    starts = []
    handle = agent.online.register_forward_pre_hook(
        lambda module, args: starts.append(tuple(z.clone() for z in args[0]))
    )
    try:
        result = evaluate(agent, 4, seed=11, record_latents=True)
    finally:
        handle.remove()
        torch.set_num_threads(threads)
    return agent, starts, result


def test_recording_holds_every_step_and_all_NT_iterations(recorded):
    agent, _, result = recorded
    lat = result.latents
    S, D = agent.model_config.total_seq_len, agent.model_config.hidden_size
    n = int(result.length.sum())
    assert lat.z_H.shape == lat.z_L.shape == (n, N_CYCLES * T_CYCLES, S, D)
    assert lat.z_H.dtype == np.float16 and lat.iterations == 6
    assert lat.obs.shape == (n, *TINY_ENV_GRID) and lat.agent_pos.shape == (n, 2)
    assert all(getattr(lat, k).shape == (n,) for k in ("action", "reward", "changed", "step", "episode"))
    np.testing.assert_array_equal(lat.episode_length, result.length)
    np.testing.assert_array_equal(lat.episode_success, result.success)
    np.testing.assert_array_equal(lat.step, np.concatenate([np.arange(k) for k in result.length]))
    np.testing.assert_allclose(np.bincount(lat.episode, weights=lat.reward), result.episode_return)
    assert lat.variant == agent.variant and lat.metadata["eval_seed"] == 11
    # z_H moves only at the end of each H cycle (iterations T, 2T, ...; entry i-1 holds z^i)
    np.testing.assert_array_equal(lat.z_H[:, 0], lat.initial_state("z_H"))
    np.testing.assert_array_equal(lat.z_H[:, T_CYCLES - 1], lat.z_H[:, T_CYCLES])
    assert not np.array_equal(lat.z_H[:, T_CYCLES - 2], lat.z_H[:, T_CYCLES - 1])


def test_last_iteration_is_the_carry_the_agent_continued_with(recorded):
    agent, starts, result = recorded
    lat = result.latents
    for level, index in (("z_H", 0), ("z_L", 1)):
        # starts[k]: (B, S, D) carry given to the forward pass of batch step k, one row per episode
        started = np.stack([starts[s][index][e].numpy() for e, s in zip(lat.episode, lat.step)]).astype(np.float16)
        np.testing.assert_array_equal(lat.initial_state(level), started)
        if agent.config.carry_z:
            continued = lat.step > 0
            final = getattr(lat, level)[np.flatnonzero(continued) - 1, -1]
            if agent.config.carry == "token":  # the query position's vector, at every position
                final = np.broadcast_to(final[:, :1], final.shape)
            np.testing.assert_array_equal(started[continued], final)
        init = (agent.online.H_init if level == "z_H" else agent.online.L_init).numpy().astype(np.float16)
        first = started if not agent.config.carry_z else started[lat.step == 0]
        np.testing.assert_array_equal(first, np.broadcast_to(init, first.shape))


def test_changed_flags_positions_and_rewards_match_the_env(recorded):
    agent, _, result = recorded
    lat = result.latents
    for e in range(lat.n_episodes):
        rows = np.flatnonzero(lat.episode == e)
        env = gym.make("DynamicMaze-v0", **TINY_ENV)
        obs, info = env.reset(seed=11 + e)
        for r in rows:
            np.testing.assert_array_equal(lat.obs[r], obs)
            assert lat.changed[r] == info["changed"] and tuple(lat.agent_pos[r]) == info["agent_pos"]
            assert lat.path_changed[r] == info["path_changed"]
            obs, reward, _, _, info = env.step(int(lat.action[r]))
            assert lat.reward[r] == reward
    assert lat.changed.any() and not lat.changed[lat.step == 0].any()


def test_recording_does_not_change_the_evaluation():
    agent = tiny_agent(True)
    plain, recorded = evaluate(agent, 3, seed=4), evaluate(agent, 3, seed=4, record_latents=True)
    assert plain.latents is None
    np.testing.assert_array_equal(plain.length, recorded.length)
    np.testing.assert_array_equal(plain.success, recorded.success)
    # the greedy actions counted are the ones recorded, one per step of every episode
    np.testing.assert_array_equal(recorded.action_counts, np.bincount(recorded.latents.action, minlength=4))
    assert plain.action_counts.sum() == plain.length.sum() and plain.action_shares().sum() == pytest.approx(1.0)


def test_record_traces_hands_callers_what_they_asked_for():
    net = tiny_agent(True).online
    carry, tokens = net.initial_carry(2), torch.zeros(2, net.config.seq_len, dtype=torch.long)
    with record_traces(net) as traces:
        assert net(carry, tokens).trace is None
        new_carry, _, trace = net(carry, tokens, trace=True)
    assert len(traces) == 2 and traces[1] is trace
    torch.testing.assert_close(traces[0].z_L[-1], new_carry.z_L)
    assert net(carry, tokens).trace is None  # hooks removed


def test_save_load_round_trip(recorded, tmp_path):
    lat = recorded[2].latents
    path = save(tmp_path / "latents.npz", lat)
    back = load(path)
    for name, value in lat.arrays().items():
        np.testing.assert_array_equal(getattr(back, name), value)
        assert getattr(back, name).dtype == value.dtype
    assert back.metadata == lat.metadata
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file


def test_loader_rejects_a_truncated_file(recorded, tmp_path):
    path = save(tmp_path / "latents.npz", recorded[2].latents)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UsageError, match="truncated, corrupt or not an .npz file"):
        load(path)


def _entries(latents, **changes):
    entries = {"format": np.array(FORMAT), "version": np.array(1), "metadata": np.array(json.dumps(latents.metadata)),
               **latents.arrays()}
    entries.update(changes)
    return entries


def test_loader_rejects_another_version_a_foreign_file_and_bad_shapes(recorded, tmp_path):
    lat = recorded[2].latents
    cases = [
        (_entries(lat, version=np.array(2)), "has latents format version 2, this hrm-agent reads version 1"),
        ({"x": np.zeros(3)}, "is not an hrm-agent latents file"),
        (_entries(lat, z_L=lat.z_L[:, :-1]), "z_L has shape"),
        (_entries(lat, changed=lat.changed[:-1]), "changed has shape"),
        (_entries(lat, episode_length=lat.episode_length + 1), "episode_length does not match"),
    ]
    for entries, message in cases:
        path = tmp_path / "bad.npz"
        np.savez(path, **entries)
        with pytest.raises(UsageError, match=message):
            load(path)
    path.write_text("not a zip file")
    with pytest.raises(UsageError, match="not an .npz file"):
        load(path)
    with pytest.raises(UsageError, match="no such latents file"):
        load(tmp_path / "missing.npz")


@pytest.mark.parametrize("carry", ["token", "full"])
def test_query_position_recording_is_the_full_recordings_first_position(carry, tmp_path):
    agent = HRMAgent("DynamicMaze-v0", tiny_config(carry=carry), env_kwargs=TINY_ENV, seed=3)
    full = evaluate(agent, 3, seed=5, record_latents=True).latents
    query = evaluate(agent, 3, seed=5, record_latents=True, latent_positions="query").latents
    D = agent.model_config.hidden_size
    assert query.z_H.shape == (full.n_steps, full.iterations, 1, D) and query.positions == "query"
    for level in ("z_H", "z_L"):
        np.testing.assert_array_equal(getattr(query, level), getattr(full, level)[:, :, :1])
        np.testing.assert_array_equal(query.initial_state(level), full.initial_state(level)[:, :1])
    assert load(save(tmp_path / "q.npz", query)).positions == "query"
    with pytest.raises(ValueError, match="positions must be"):
        evaluate(agent, 1, record_latents=True, latent_positions="last")


def test_files_without_path_changed_still_load(recorded, tmp_path):
    _, _, result = recorded
    lat = result.latents
    assert lat.path_changed is not None and lat.path_changed.shape == lat.changed.shape
    entries = {"format": np.array(FORMAT), "version": np.array(1), "metadata": np.array(json.dumps(lat.metadata))}
    entries.update({k: v for k, v in lat.arrays().items() if k != "path_changed"})  # as recorded before the entry
    np.savez_compressed(tmp_path / "old.npz", **entries)
    old = load(tmp_path / "old.npz")
    assert old.path_changed is None and old.n_steps == lat.n_steps
    np.testing.assert_array_equal(load(save(tmp_path / "new.npz", lat)).path_changed, lat.path_changed)
    bad = dataclasses.replace(lat, path_changed=~lat.changed)
    with pytest.raises(UsageError, match="path_changed is set on a step where changed is not"):
        save(tmp_path / "bad.npz", bad)


@pytest.mark.parametrize("kind", ["goal", "door"])
def test_an_intervention_changes_the_grid_the_next_step_sees_and_is_recorded(kind, tmp_path):
    agent = tiny_agent(True)
    K = 2
    result = evaluate(agent, 6, seed=11, record_latents=True, intervention=kind, intervention_step=K)
    lat = result.latents
    applied = result.intervention_step >= 0
    assert applied.any() and set(result.intervention_step[applied]) == {K} and (result.length[applied] > K).all()
    np.testing.assert_array_equal(lat.intervention_step, result.intervention_step)
    assert lat.metadata["intervention"] == kind
    for e in np.flatnonzero(applied).tolist():
        rows = np.flatnonzero(lat.episode == e)
        # replay: the same episode without dynamics, the same actions, then the intervention
        env = gym.make("DynamicMaze-v0", **static_kwargs(TINY_ENV))
        obs, _ = env.reset(seed=11 + e)
        for r in rows[:K]:
            np.testing.assert_array_equal(lat.obs[r], obs)
            obs, *_ = env.step(int(lat.action[r]))
        assert intervene(env.unwrapped, kind)
        seen = lat.obs[rows[K]]
        np.testing.assert_array_equal(seen, env.unwrapped.gen_obs())
        assert not np.array_equal(seen, obs)  # what the step would have seen without it
        assert lat.changed[rows[K]] and lat.path_changed[rows[K]]
        x, y = lat.agent_pos[rows[K]]
        assert result.shortest_after[e] == env.unwrapped.distances()[y, x] > 0
    assert not lat.changed[~np.isin(lat.step, [K])].any()  # change_prob=0: nothing else changes
    summary = result.intervention_summary()
    reached = applied & result.success
    assert summary["applied"] == applied.sum()
    assert summary["success_after"] == pytest.approx(result.success[applied].mean())
    if reached.any():
        assert summary["extra_steps"] == pytest.approx(
            np.mean(result.length[reached] - K - result.shortest_after[reached]))
    back = load(save(tmp_path / "iv.npz", lat))
    np.testing.assert_array_equal(back.intervention_step, lat.intervention_step)


def test_an_intervention_step_past_every_episode_applies_nowhere():
    result = evaluate(tiny_agent(False), 3, seed=4, intervention="goal", intervention_step=10_000)
    assert (result.intervention_step == -1).all() and result.intervention_summary()["applied"] == 0
    with pytest.raises(ValueError, match="intervention_step"):
        evaluate(tiny_agent(False), 3, intervention="goal", intervention_step=0)
    with pytest.raises(ValueError, match="without an intervention"):
        evaluate(tiny_agent(False), 1).intervention_summary()


def test_a_file_with_an_impossible_intervention_step_is_refused(recorded, tmp_path):
    lat = dataclasses.replace(recorded[2].latents)
    lat.intervention_step = lat.episode_length.copy()  # no row sees it
    with pytest.raises(UsageError, match="intervention_step"):
        save(tmp_path / "bad.npz", lat)


def test_a_stochastic_evaluation_acts_at_random_with_the_final_exploration_rate():
    config = tiny_config(carry_z=False, exploration_final_eps=1.0)
    agent = HRMAgent("DynamicMaze-v0", config, env_kwargs=TINY_ENV, seed=2)
    greedy, random_ = evaluate(agent, 8, seed=3), evaluate(agent, 8, seed=3, deterministic=False)
    assert greedy.action_shares().max() > random_.action_shares().max()
    assert (random_.action_counts > 0).all() and random_.action_shares().max() < 0.5
