"""The latent analysis: metrics on synthetic latents with known answers, and the analysis commands
and notebook on tiny training runs."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hrm_agent import analysis
from hrm_agent.experiments.stats import mean_ci
from hrm_agent.experiments.store import read_csv
from hrm_agent.latents import Latents, load
from hrm_agent.runs import UsageError

from test_train_cli import TINY_ARGS, assert_user_error

ANALYSIS = Path(__file__).resolve().parents[1] / "analysis"
COMMANDS = ("convergence", "divergence", "learning_curves", "make_figures")


# ------------------------------------------------------------------ synthetic latents


def synthetic(z_H, episode_length=None, variant="reset", changed=None, init=0.0) -> Latents:
    """A recording with z_H = z_L = ``z_H`` (n, N*T, S, D) and the initial state ``init`` everywhere."""
    z_H = np.asarray(z_H, dtype=np.float16)
    n, iterations, S, D = z_H.shape
    lengths = np.asarray(episode_length if episode_length is not None else [n])
    return Latents(
        z_H=z_H, z_L=z_H.copy(), H_init=np.full(D, init, np.float32), L_init=np.full(D, init, np.float32),
        obs=np.zeros((n, 3, 3), np.uint8), action=np.zeros(n, np.int64), reward=np.zeros(n, np.float32),
        changed=np.zeros(n, bool) if changed is None else np.asarray(changed, bool),
        agent_pos=np.zeros((n, 2), np.int64), step=np.concatenate([np.arange(k) for k in lengths]),
        episode=np.repeat(np.arange(len(lengths)), lengths), episode_success=np.zeros(len(lengths), bool),
        episode_length=lengths,
        metadata={"variant": variant, "env_id": "Test-v0", "H_cycles": iterations, "L_cycles": 1,
                  "hidden_size": D, "total_seq_len": S},
    )


def test_geometric_convergence_gives_the_expected_curve():
    # z^i = r^i at every position and unit (z^0 = 1 = the initial state): MSE(z^i, z^NT) = (r^i - r^NT)^2
    r, NT = 0.5, 6
    z = np.broadcast_to((r ** np.arange(1, NT + 1))[None, :, None, None], (3, NT, 5, 4))
    lat = synthetic(z, init=1.0)
    expected = (r ** np.arange(NT + 1) - r**NT) ** 2
    np.testing.assert_allclose(analysis.convergence_curves(lat, "z_L"), np.tile(expected, (3, 1)), rtol=1e-6)
    np.testing.assert_allclose(analysis.mse_to_final(z)[0], expected[1:], rtol=1e-6)


def test_carry_z_starts_each_step_from_the_previous_final_state():
    # step t ends at t + 1; with carry z step t > 0 starts from t, so MSE(z^0, z^NT) = 1
    z = np.broadcast_to((np.arange(3.0) + 1)[:, None, None, None], (3, 2, 2, 2))
    carry, reset = synthetic(z, variant="carry"), synthetic(z, variant="reset")
    np.testing.assert_allclose(analysis.convergence_curves(carry, "z_H")[:, 0], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(analysis.convergence_curves(reset, "z_H")[:, 0], [1.0, 4.0, 9.0])


def test_identical_states_give_zero():
    z = np.ones((4, 3, 2, 2))
    lat = synthetic(z, episode_length=[2, 2], init=1.0, variant="carry")
    assert not analysis.convergence_curves(lat, "z_H").any()
    assert not analysis.divergence_curves(lat, "z_L").any()
    assert not analysis.mse(z, z).any()


def test_divergence_compares_each_step_with_its_episode_first_step():
    # final state of step t is t (each episode starting again at 0): MSE = t^2
    lengths = [4, 2]
    finals = np.concatenate([np.arange(k, dtype=float) for k in lengths])
    lat = synthetic(np.broadcast_to(finals[:, None, None, None], (6, 2, 3, 3)), episode_length=lengths)
    np.testing.assert_allclose(analysis.divergence_curves(lat, "z_H"), finals**2)
    rows = [r for r in analysis.divergence_table([lat]) if r["level"] == "z_H"]
    assert [(r["step"], r["mean"], r["n"]) for r in rows] == [(1, 0, 2), (2, 1, 2), (3, 4, 1), (4, 9, 1)]


def test_mean_ci_is_the_normal_95_percent_interval():
    mean, low, high, n = mean_ci(np.array([1.0, 2.0, 3.0, 4.0]))
    half = 1.959964 * np.std([1, 2, 3, 4], ddof=1) / 2
    assert n == 4 and mean == 2.5 and np.isclose(low, 2.5 - half) and np.isclose(high, 2.5 + half)
    assert np.isnan(mean_ci(np.array([1.0]))[1])


def test_convergence_table_splits_changed_steps_and_leaves_out_first_steps():
    rng = np.random.default_rng(0)
    changed = [False, True, False, False, False, True]
    lat = synthetic(rng.normal(size=(6, 4, 2, 2)), episode_length=[3, 3], changed=changed, variant="carry")
    curves = analysis.convergence_curves(lat, "z_L")
    cases = ((False, {False: [2, 4], True: [1, 5]}), (True, {False: [0, 2, 3, 4], True: [1, 5]}))
    for include_first, expected in cases:
        rows = analysis.convergence_table([lat], include_first_step=include_first, split="any")
        for flag, picked in expected.items():
            got = [r for r in rows if r["level"] == "z_L" and r["changed"] == flag]
            assert [r["iteration"] for r in got] == [0, 1, 2, 3, 4] and {r["n"] for r in got} == {len(picked)}
            np.testing.assert_allclose([r["mean"] for r in got], curves[picked].mean(axis=0))


def test_the_path_split_counts_only_changes_that_touched_the_shortest_path():
    rng = np.random.default_rng(1)
    changed = np.array([False, True, True, False, True, True])
    lat = synthetic(rng.normal(size=(6, 4, 2, 2)), episode_length=[3, 3], changed=changed, variant="carry")
    with pytest.raises(UsageError, match="no path_changed.*--split any"):
        analysis.convergence_table([lat])
    lat.path_changed = np.array([False, False, True, False, True, False])
    curves = analysis.convergence_curves(lat, "z_H")
    rows = analysis.convergence_table([lat])  # the default split is the shortest path's
    for flag, picked in ((False, [1, 5]), (True, [2, 4])):  # first steps (rows 0 and 3) left out
        got = [r for r in rows if r["level"] == "z_H" and r["changed"] == flag]
        assert {r["n"] for r in got} == {2} and {r["split"] for r in got} == {"path"}
        np.testing.assert_allclose([r["mean"] for r in got], curves[picked].mean(axis=0))
    any_rows = analysis.convergence_table([lat], split="any")
    assert {r["n"] for r in any_rows if r["changed"]} == {4}
    with pytest.raises(UsageError, match="split must be"):
        analysis.convergence_table([lat], split="door")


def test_the_query_measure_sums_the_query_tokens_squared_difference_over_hidden_units():
    # two steps of one reset-z episode; the query position (0) and the others move differently
    z = np.zeros((2, 2, 3, 4))
    z[:, 0, 0] = 1.0  # iteration 1: query vector 1 in each of 4 units, final 0
    z[:, 0, 1:] = 3.0  # other positions far away: only "mse" sees them
    z[1, :, 0] += 2.0  # step 2's query vector is 2 further out (final too)
    lat = synthetic(z, init=0.0)
    query = analysis.convergence_curves(lat, "z_H", measure="query")
    np.testing.assert_allclose(query, [[0.0, 4.0, 0.0], [16.0, 4.0, 0.0]])  # z^0 = init = 0
    mse = analysis.convergence_curves(lat, "z_H")
    np.testing.assert_allclose(mse[0, 1], (4 * 1 + 8 * 9) / 12)
    np.testing.assert_allclose(analysis.divergence_curves(lat, "z_H", measure="query"), [0.0, 16.0])
    rows = analysis.divergence_table([lat], measure="query")
    assert {r["measure"] for r in rows} == {"query"}
    with pytest.raises(UsageError, match="measure must be"):
        analysis.convergence_curves(lat, "z_H", measure="l1")


def test_settling_is_the_first_iteration_from_which_the_state_stays_near_its_final_value():
    # z^i = r^i (z^0 = 1, the initial state): d(z^i, z^NT) = (r^i - r^NT)^2 against 0.1 (1 - r^NT)^2
    r, NT = 0.5, 6
    z = np.broadcast_to((r ** np.arange(1, NT + 1))[None, :, None, None], (2, NT, 3, 2))
    lat = synthetic(z, init=1.0)
    gaps = (r ** np.arange(NT + 1) - r**NT) ** 2
    expected = next(i for i in range(NT + 1) if (gaps[i:] <= 0.1 * (1 - r**NT) ** 2).all())
    assert expected == 2
    np.testing.assert_array_equal(analysis.settling_iterations(lat, "z_H"), [expected, expected])
    # carry z: a step that starts at its final value settles at 0 (the first step starts from init: 1)
    steady = synthetic(np.ones((2, 3, 2, 2)), init=0.0, variant="carry")
    assert analysis.settling_iterations(steady, "z_L").tolist() == [1, 0]
    # a state that leaves and comes back settles only when it is back
    away = np.zeros((1, 3, 2, 2))
    away[0, 1] = 5.0  # leaves at iteration 2, back at 3
    assert analysis.settling_iterations(synthetic(away + 1, init=0.0), "z_L").tolist() == [3]


def test_settling_table_separates_the_steps_that_first_saw_an_intervention():
    z = np.zeros((6, 2, 2, 2))
    z[:, 0] = 1.0  # every step settles at 2 (z^1 = 1, final 0, init 1 -> d = 1 > 0.1) ...
    z[[2, 4], 0] = 0.0  # ... but steps 2 and 4 already at iteration 1
    lat = synthetic(z, episode_length=[3, 3], init=1.0, variant="carry")
    lat.intervention_step = np.array([2, 1])  # rows 2 (step 2) and 4 (step 1) first saw it
    rows = {(r["level"], r["steps"]): r for r in analysis.settling_table([lat])}
    first, other = rows[("z_L", "intervention")], rows[("z_L", "other")]
    assert (first["n"], other["n"]) == (2, 2)  # rows 1, 5: the other steps after each first one
    assert (first["mean"], other["mean"]) == (0.0, 2.0)
    lat.intervention_step = None
    assert {r["steps"]: r["n"] for r in analysis.settling_table([lat]) if r["level"] == "z_H"} == {
        "intervention": 0, "other": 4}


def test_latents_from_different_environments_are_not_pooled():
    a, b = synthetic(np.zeros((2, 2, 2, 2))), synthetic(np.zeros((2, 2, 2, 2)))
    b.metadata["env_id"] = "Other-v0"
    with pytest.raises(UsageError, match="several environments"):
        analysis.convergence_table([a, b])


# ------------------------------------------------------------------ commands on tiny runs


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env)


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A carry-z and a reset-z tiny training run with recorded latents (trained side by side)."""
    root = tmp_path_factory.mktemp("analysis_runs")
    dirs = {v: root / f"maze_{v}" for v in ("carry", "reset")}
    training = [start("-m", "hrm_agent.train", "--env", "DynamicMaze-v0", "--run-dir", str(d), f"--{v}-z",
                      "--seed", str(i), "--total-steps", "200", "--set=eval_freq=100", "--set=checkpoint_freq=0",
                      *TINY_ARGS) for i, (v, d) in enumerate(dirs.items())]
    for proc in training:
        finish(proc)
    evaluating = [start("-m", "hrm_agent.evaluate", str(dirs["carry"]), "--episodes", "3", "--save-latents"),
                  start("-m", "hrm_agent.evaluate", str(dirs["reset"]), "--episodes", "3", "--save-latents",
                        str(dirs["reset"] / "latents.npz"))]
    outputs = [finish(proc) for proc in evaluating]
    assert all("wrote" in out and "steps x 4 iterations" in out for out in outputs), outputs
    return dirs


def command(name: str):
    """An analysis command's module, to call its ``main(argv)`` in this process."""
    spec = importlib.util.spec_from_file_location(f"analysis_{name}", ANALYSIS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_figure(out: Path, name: str) -> list[dict[str, str]]:
    assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert b"<svg" in (out / f"{name}.svg").read_bytes()[:1000]
    assert not list(out.glob(".*.tmp"))
    return read_csv(out / f"{name}.csv")


def test_evaluate_saves_latents_in_the_run_directory(runs):
    lat = load(runs["carry"] / "latents.npz")
    assert lat.variant == "carry" and lat.n_episodes == 3 and lat.iterations == 4
    assert lat.metadata["run"] == "maze_carry" and lat.metadata["source"] == str(runs["carry"])
    assert load(runs["reset"] / "latents.npz").variant == "reset"


def test_convergence_command(runs, tmp_path, capsys):
    assert command("convergence").main([str(runs["carry"]), str(runs["reset"] / "latents.npz"),
                                        "--out", str(tmp_path)]) == 0
    rows = assert_figure(tmp_path, "convergence")
    assert len(rows) == 2 * 2 * 2 * 5  # level x variant x changed x iterations 0..4
    assert all(float(r["mean"]) == 0 for r in rows if r["iteration"] == "4" and r["n"] != "0")
    assert {(r["split"], r["measure"]) for r in rows} == {("path", "mse")}
    assert "wrote" in capsys.readouterr().out
    # the second views: any change; the authors' query-token measure
    assert command("convergence").main([str(runs["carry"]), "--split", "any", "--measure", "query",
                                        "--out", str(tmp_path)]) == 0
    rows = assert_figure(tmp_path, "convergence_any-change_query")
    assert {(r["split"], r["measure"], r["variant"]) for r in rows} == {("any", "query", "carry")}
    path_changed = sum(int(r["n"]) for r in read_csv(tmp_path / "convergence.csv")
                       if r["changed"] == "True" and r["variant"] == "carry" and r["iteration"] == "0")
    any_changed = sum(int(r["n"]) for r in rows if r["changed"] == "True" and r["iteration"] == "0")
    assert path_changed <= any_changed


def test_divergence_command(runs, tmp_path):
    assert command("divergence").main([str(runs["carry"]), str(runs["reset"]), "--out", str(tmp_path)]) == 0
    rows = assert_figure(tmp_path, "divergence")
    assert {(r["level"], r["variant"]) for r in rows} == {(l, v) for l in ("z_H", "z_L") for v in ("carry", "reset")}
    assert all(float(r["mean"]) == 0 for r in rows if r["step"] == "1")
    assert command("divergence").main([str(runs["carry"]), "--measure", "query", "--out", str(tmp_path)]) == 0
    assert {r["measure"] for r in assert_figure(tmp_path, "divergence_query")} == {"query"}


def test_learning_curves_command(runs, tmp_path):
    assert command("learning_curves").main([str(runs["carry"]), str(runs["reset"]), "--out", str(tmp_path)]) == 0
    rows = assert_figure(tmp_path, "learning_curves")
    evals = [(r["run"], r["variant"], r["step"]) for r in rows if r["tag"] == "eval/success_rate"]
    assert evals == [("maze_carry", "carry", "100"), ("maze_carry", "carry", "200"),
                     ("maze_reset", "reset", "100"), ("maze_reset", "reset", "200")]
    assert {r["tag"] for r in rows} == {"eval/success_rate", "rollout/success_rate"}


def test_make_figures_builds_every_figure(runs, tmp_path):
    result = run(str(ANALYSIS / "make_figures.py"), str(runs["carry"]), str(runs["reset"]), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for name in ("learning_curves", "convergence", "convergence_any-change", "convergence_query", "divergence",
                 "divergence_query"):
        assert assert_figure(tmp_path, name)
    assert "latents from 2 of 2 runs" in result.stdout


def test_make_figures_skips_the_latent_figures_when_no_run_has_latents(runs, tmp_path, capsys):
    bare = tmp_path / "bare"
    shutil.copytree(runs["reset"], bare, ignore=shutil.ignore_patterns("latents.npz"))
    assert command("make_figures").main([str(bare), "--out", str(tmp_path / "out")]) == 0
    assert "convergence and divergence skipped" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "learning_curves.csv", "learning_curves.png", "learning_curves.svg"]


def test_q_values_command_tabulates_held_out_states_by_distance(runs, tmp_path, capsys):
    out = tmp_path / "q.csv"
    assert command("q_values").main([str(runs["carry"]), "--states", "30", "--csv", str(out)]) == 0
    rows = read_csv(out)
    assert rows[-1]["distance"] == "all" and int(rows[-1]["states"]) == 30
    assert sum(int(r["states"]) for r in rows[:-1]) == 30
    for r in rows:
        assert 0 <= float(r["greedy_optimal"]) <= 1 and 0 < float(r["chance"]) <= 1
        assert float(r["spread"]) >= 0 and 0 < float(r["shortest_path_value"]) <= 1
    assert "greedy optimal" in capsys.readouterr().out
    assert command("q_values").main([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    help_text = run(str(ANALYSIS / "q_values.py"), "--help", timeout=30)
    assert help_text.returncode == 0 and "usage: python analysis/q_values.py" in help_text.stdout


def test_intervention_table_tabulates_evaluate_json_reports(runs, tmp_path, capsys):
    reports = []
    for run_dir, kind in ((runs["carry"], "goal"), (runs["reset"], "door")):
        reports.append(tmp_path / f"{run_dir.name}_{kind}.json")
        result = run("-m", "hrm_agent.evaluate", str(run_dir), "--episodes", "4", "--intervention", kind,
                     "--json", str(reports[-1]))
        assert result.returncode == 0, result.stderr
    out = tmp_path / "table.md"
    assert command("intervention_table").main([*map(str, reports), "--out", str(out)]) == 0
    rows = read_csv(out.with_suffix(".csv"))
    assert [(r["variant"], r["intervention"]) for r in rows] == [("reset", "door"), ("carry", "goal")]
    assert all(r["run"] for r in rows) and "| DynamicMaze-v0 | carry z | goal after step 3 |" in out.read_text()
    assert f"--intervention goal --intervention-step 3 --json {reports[0]}" in out.read_text()
    (tmp_path / "other.json").write_text('{"success_rate": 1.0}')
    assert command("intervention_table").main([str(tmp_path / "other.json"), "--out", str(out)]) == 2
    assert "not an evaluate --intervention report" in capsys.readouterr().err


@pytest.mark.parametrize("name", COMMANDS)
def test_help(name):
    result = run(str(ANALYSIS / f"{name}.py"), "--help", timeout=30)
    assert result.returncode == 0 and "usage: python analysis/" in result.stdout


def test_missing_latents_give_one_line_and_exit_code_2(runs, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    result = run(str(ANALYSIS / "convergence.py"), str(bare), "--out", str(tmp_path / "out"))
    assert_user_error(result, "has no latents.npz", "--save-latents")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", COMMANDS)
def test_bad_input_gives_one_line_and_exit_code_2(name, runs, tmp_path, capsys):
    main = command(name).main
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    if name in ("convergence", "divergence", "make_figures"):
        broken = tmp_path / "broken"
        shutil.copytree(runs["carry"], broken)
        (broken / "latents.npz").write_bytes(b"PK\x03\x04 truncated")
        assert main([str(broken), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "truncated, corrupt" in err and len(err.strip().splitlines()) == 1
    if name == "learning_curves":
        assert main([str(tmp_path), "--out", str(tmp_path / "out")]) == 2
        assert "no TensorBoard event files" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_notebook_executes_on_the_tiny_runs(runs, monkeypatch, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    from hrm_agent.evaluate_cli import main as evaluate_main

    replanning = []
    for variant, run_dir in runs.items():  # re-planning recordings for the settling section
        replanning.append(tmp_path / f"{variant}_goal.npz")
        assert evaluate_main([str(run_dir), "--episodes", "4", "--intervention", "goal", "--intervention-step", "1",
                              "--save-latents", str(replanning[-1])]) == 0
    monkeypatch.setenv("HRM_LATENT_RUNS", os.pathsep.join(str(d) for d in runs.values()))
    monkeypatch.setenv("HRM_INTERVENTION_RUNS", os.pathsep.join(str(p) for p in replanning))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(ANALYSIS / "latents.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")  # stored clean
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(ANALYSIS)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # the two figures
    assert any("carry z" in o.get("text", "") for o in outputs)
    text = "".join(o.get("text", "") for o in outputs)
    for variant in ("carry", "reset"):  # the settling section read both recordings
        assert f"{variant} z, intervention goal, applied in" in text
        assert re.search(rf"z_H {variant} *z, intervention +steps: \d+\.\d\d iterations", text), text



def test_ablation_table_keeps_runs_timed_alone_apart_and_says_how_they_ran(tmp_path, monkeypatch):
    from hrm_agent.bench.learn import check_settings
    from hrm_agent.experiments.store import fingerprint, write_results

    module = command("ablation_table")
    settings = "target_update_interval=250"
    resolved = check_settings("DynamicMaze-v0", ["carry"], {"carry": settings.split()})["carry"]
    defaults = fingerprint("DynamicMaze-v0", {}, resolved)

    def row(seed: int, threads: int, success: float, seconds: float) -> dict:
        return {"env": "DynamicMaze-v0", "env_kwargs": "", "variant": "carry", "seed": seed, "budget": 1000,
                "settings": settings, "defaults": defaults, "total_steps": 1000, "final_success": success,
                "final_success_se": 0.03, "path_efficiency": 0.9, "path_efficiency_se": 0.01,
                "mean_ep_length": 20, "steps_to_90": None, "wall_clock_s": seconds, "threads": threads,
                "run": f"run{seed}-{threads}", "curve": "500:0.5;1000:0.6"}

    arms = tmp_path / "ablation"
    write_results(arms / "arm.csv", [row(0, 1, 0.5, 600), row(1, 1, 0.6, 720), row(0, 2, 0.7, 300)])
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    monkeypatch.setattr(module, "ARMS", arms)
    assert module.main() == 0
    markdown = (tmp_path / "ablation_DynamicMaze-v0.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| arm | carry |")]
    assert len(rows) == 2  # one per thread count, never averaged together
    (alone,) = [r for r in rows if "(2 threads, alone)" in r]
    assert "| 0 | 0.70 ± 0.03 (1 seed) |" in alone and "| 5.0 (2 threads, alone) |" in alone
    (shared,) = [r for r in rows if r is not alone]
    assert "| 0, 1 | 0.55 ± 0.05 |" in shared and "| 11.0 ± 1.0 |" in shared
    commands = [line for line in markdown.splitlines() if line.startswith("- arm: ")]
    assert len(commands) == 2 and sum("--jobs 1 --threads 2 --learners carry" in c for c in commands) == 1
    assert all(f"--set hrm:{settings}" in c for c in commands)


def test_test_set_plays_each_agent_once_and_tabulates_paired_differences(runs, tmp_path, capsys):
    from hrm_agent.agent import HRMAgent
    from hrm_agent.evaluate import TEST_SEED, evaluate

    results = tmp_path / "test.csv"
    sources = [str(runs["carry"]), str(runs["reset"]), "oracle:DynamicMaze-v0"]
    assert command("test_set").main([*sources, "--results", str(results), "--episodes", "12"]) == 0
    rows = read_csv(results)
    assert [(r["label"], r["seed"]) for r in rows] == [("carry z (full)", "0"), ("reset z", "1"), ("oracle", "0")]
    # the row is evaluate's figure on the test set's episodes, with every episode's outcome kept
    expected = evaluate(HRMAgent.load(runs["carry"]), 12, seed=TEST_SEED).success
    module = command("test_set")
    assert float(rows[0]["success"]) == pytest.approx(expected.mean())
    assert module.outcomes(rows[0]).tolist() == expected.astype(float).tolist()
    assert rows[0]["train_steps"] == "200" and float(rows[2]["success"]) == 1.0
    report = results.with_suffix(".md").read_text()
    assert "| reset z (first 12 episodes) − carry z (full) (first 12 episodes) |" in report or \
        "| carry z (full) (first 12 episodes) − reset z (first 12 episodes) |" in report
    capsys.readouterr()
    # played once: the same command again plays nothing new; another label is a new row
    assert command("test_set").main([str(runs["carry"]), "--results", str(results), "--episodes", "12"]) == 0
    assert "already in" in capsys.readouterr().out and len(read_csv(results)) == 3
    # a quick look on fewer episodes beside them is its own group, compared with no group of another length
    assert command("test_set").main([str(runs["reset"]), "--results", str(results), "--episodes", "5"]) == 0
    report = results.with_suffix(".md").read_text()
    assert "| reset z (first 5 episodes) | 1 |" in report and " − reset z (first 5 episodes) |" not in report
    assert "reset z (first 5 episodes) − " not in report and len(read_csv(results)) == 4
    assert command("test_set").main([str(tmp_path / "nowhere"), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no such run directory") and len(err.strip().splitlines()) == 1
    # a model file alone does not know its training; --trained-by fills the row, also one already there
    model, quick = str(runs["carry"] / "final_model.pt"), ["--results", str(results), "--episodes", "7"]
    assert command("test_set").main([model, *quick]) == 0
    assert [r["train_steps"] for r in read_csv(results) if r["episodes"] == "7"] == [""]
    assert command("test_set").main([model, *quick, "--trained-by", str(runs["carry"])]) == 0
    assert [r["train_steps"] for r in read_csv(results) if r["episodes"] == "7"] == ["200"]
    assert len(read_csv(results)) == 5
    capsys.readouterr()
    assert command("test_set").main([model, *quick, "--trained-by", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a finished training run" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as exit_info:
        command("test_set").main([model, model, *quick, "--trained-by", str(runs["carry"])])
    assert exit_info.value.code == 2
    help_text = run(str(ANALYSIS / "test_set.py"), "--help", timeout=30)
    assert help_text.returncode == 0 and "usage: python analysis/test_set.py" in help_text.stdout


def test_evaluate_test_flag_plays_the_test_set_and_refuses_a_custom_seed(runs, tmp_path):
    result = run("-m", "hrm_agent.evaluate", str(runs["carry"]), "--test", "--seed", "3")
    assert result.returncode == 2 and "--test plays the fixed test set" in result.stderr
    result = run("-m", "hrm_agent.evaluate", str(runs["carry"]), "--test", "--episodes", "2000")
    assert result.returncode == 2 and "--episodes must be between 1 and 1024" in result.stderr
    report = tmp_path / "test.json"
    result = run("-m", "hrm_agent.evaluate", str(runs["carry"]), "--test", "--json", str(report), timeout=300)
    assert result.returncode == 0, result.stderr
    import json

    data = json.loads(report.read_text())
    assert (data["episodes"], data["seed"], data["episode_set"]) == (1024, 10_000_000, "test")


def test_the_read_measure_takes_the_positions_the_q_head_read_at_each_step():
    # 2 steps of one carry-z episode, 3 positions: position p of step t ends at (t + 1) * (p + 1); the Q head
    # read position 2 at step 0 and positions 1 and 2 at step 1
    finals = np.array([[[1.0], [2.0], [3.0]], [[2.0], [4.0], [6.0]]])  # (n, S, D)
    z = np.stack([np.zeros_like(finals), finals], axis=1)  # (n, 2 iterations, S, D)
    lat = synthetic(z, variant="carry")
    with pytest.raises(UsageError, match="no read positions"):
        analysis.convergence_curves(lat, "z_H", "read")
    lat.read_positions = np.array([[2, 2], [1, 2]])
    curves = analysis.convergence_curves(lat, "z_H", "read")
    # step 1 starts from step 0's final state at the positions it reads: (2 - 4)^2 and (3 - 6)^2
    np.testing.assert_allclose(curves[1], [(4 + 9) / 2, (16 + 36) / 2, 0.0])
    np.testing.assert_allclose(curves[0], [9.0, 9.0, 0.0])  # from the initial state 0
    # divergence at step 1: step 0's and step 1's final states, at step 1's read positions
    np.testing.assert_allclose(analysis.divergence_curves(lat, "z_H", "read"), [0.0, (4 + 9) / 2])
    np.testing.assert_allclose(analysis.convergence_curves(lat, "z_H", "mse")[1, 0], (1 + 4 + 9) / 3)


def test_a_recording_keeps_the_positions_the_q_head_read(runs, tmp_path):
    import torch

    from hrm_agent import latents as latents_module
    from hrm_agent.agent import HRMAgent
    from hrm_agent.evaluate import evaluate

    agent = HRMAgent.load(runs["carry"])
    lat = evaluate(agent, 2, record_latents=True).latents
    tokens = torch.from_numpy(agent.tokenizer(lat.obs)).flatten(1)
    np.testing.assert_array_equal(lat.read_positions, agent.online.readout_index(tokens).numpy())
    path = latents_module.save(tmp_path / "l.npz", lat)
    np.testing.assert_array_equal(latents_module.load(path).read_positions, lat.read_positions)
    assert np.isfinite(analysis.convergence_curves(lat, "z_L", "read")).all()
