"""The experiments layer's pieces that need no training: statistics, the results file, run adoption."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from hrm_agent.experiments.launch import Task, belongs, candidates, recorded_budget
from hrm_agent.experiments.stats import format_mean_se, mean_se, t_interval
from hrm_agent.experiments.store import FIELDS, ResultsFile, fingerprint, read_results, write_results
from hrm_agent.runs import UsageError


def test_t_interval_uses_the_t_quantile_of_the_seeds_and_is_undefined_for_one():
    mean, half = t_interval(np.array([0.5, 0.7]))
    assert mean == pytest.approx(0.6) and half == pytest.approx(12.706 * np.std([0.5, 0.7], ddof=1) / np.sqrt(2))
    assert np.isnan(t_interval(np.array([0.5]))[1])
    assert format_mean_se([0.5, 0.7]) == "0.60 ± 0.10" and format_mean_se([0.5]) == "0.50"
    assert format_mean_se([]) == "–" and np.isnan(mean_se([])[0])


def test_appending_to_a_results_file_keeps_the_rows_another_command_wrote_meanwhile(tmp_path):
    path = tmp_path / "r.csv"
    row = {k: "" for k in FIELDS} | {"env": "DynamicMaze-v0", "variant": "carry", "seed": "0", "budget": "100"}
    results = ResultsFile(path)
    results.append(row)
    write_results(path, read_results(path) + [{**row, "seed": "1"}])  # another command's row
    results.append({**row, "seed": "2"})
    assert [r["seed"] for r in read_results(path)] == ["0", "1", "2"] == [r["seed"] for r in results.rows]
    path.write_text("a,b\n1,2\n")
    with pytest.raises(UsageError, match="not a bench learn results file"):
        ResultsFile(path)


def test_a_run_directory_belongs_to_a_task_of_its_env_seed_budget_and_config(tmp_path):
    config = {"gamma": 0.9, "total_steps": 500}
    task = Task("carry", 3, [], key=("", "", "", "", "", "", fingerprint("DynamicMaze-v0", {}, config), "1"))
    run_dir = tmp_path / "DynamicMaze-v0__carry__3__20260101-000000"
    run_dir.mkdir()
    record = {"env": "DynamicMaze-v0", "env_kwargs": {}, "seed": 3, "variant": "carry", "agent": config}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(record))
    assert belongs(run_dir, task, "DynamicMaze-v0", {}, 500)
    assert candidates(tmp_path, task, "DynamicMaze-v0", {}, 500) == [run_dir]
    assert not belongs(run_dir, task, "DynamicMaze-v0", {}, 600)  # another budget
    assert not belongs(run_dir, task, "DynamicMaze-v0", {"size": 9}, 500)  # other env kwargs
    other = Task("carry", 3, [], key=(*task.key[:6], fingerprint("DynamicMaze-v0", {}, {"gamma": 0.99}), "1"))
    assert not belongs(run_dir, other, "DynamicMaze-v0", {}, 500)  # another config
    assert candidates(tmp_path, Task("carry", 4, [], key=task.key), "DynamicMaze-v0", {}, 500) == []
    # a baseline's budget is the one its command asked for
    assert recorded_budget(run_dir, config, "dqn") is None
    (run_dir / "train.log").write_text("$ python -m hrm_agent.baselines --algo dqn --total-steps 700 --seed 3\n")
    assert recorded_budget(run_dir, config, "dqn") == 700 and recorded_budget(run_dir, config, "carry") == 500


def test_committed_rows_keep_their_fingerprint_under_the_current_package():
    """A committed results row is found again by the command that wrote it: options retired since (at the
    value every run had) and fields added since (at their off value) leave the fingerprint as it was."""
    from pathlib import Path

    from hrm_agent.hyperparams import resolve_config

    results = Path(__file__).resolve().parents[1] / "analysis" / "results" / "ablation" / "carry-full.csv"
    row = next(r for r in read_results(results) if r["env"] == "DynamicMaze-v0" and r["seed"] == "0")
    config = resolve_config("DynamicMaze-v0", None, row["settings"].split(), carry_z=True)
    assert fingerprint("DynamicMaze-v0", {}, config.model_dump()) == row["defaults"]


def test_a_figure_drawn_twice_is_written_as_the_same_bytes(tmp_path):
    from hrm_agent.experiments.figures import new_figure, save_figure

    digests = []
    for out in (tmp_path / "a", tmp_path / "b"):
        out.mkdir()
        fig, axes = new_figure(1)
        axes[0, 0].plot([0, 1, 2], [0.2, 0.5, 0.9], label="carry z")
        axes[0, 0].legend()
        digests.append([p.read_bytes() for p in save_figure(fig, out, "curves")])
    assert [len(b) > 0 for b in digests[0]] == [True, True]
    assert digests[0] == digests[1]
