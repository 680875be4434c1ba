"""The committed trained agents (analysis/agents/) and the command that adds to them."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from hrm_agent.experiments.store import read_csv
from test_analysis import command
from test_train_cli import TINY_ARGS, run

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "analysis" / "agents"


@pytest.mark.parametrize("folder", [ZOO, ZOO / "matched", ZOO / "cores" / "transformer", ZOO / "cores" / "trm"],
                         ids=["zoo", "matched", "transformer", "trm"])
def test_every_committed_agent_loads_and_plays(folder, capsys):
    zoo = command("zoo")
    rows = zoo.read_manifest(folder)
    assert rows, f"{folder / 'manifest.csv'} lists no agents"
    assert zoo.main(["--zoo", str(folder), "check", "--episodes", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(rows) and all("/2 test episodes reached the goal" in line for line in lines)
    for row in rows:
        assert (folder / row["file"]).stat().st_size < 1_000_000  # small: config and online weights only
        assert row["command"].startswith(f"python -m hrm_agent.train --env {row['env']}")
        assert 0.0 <= float(row["test_success"]) <= 1.0 and int(row["env_steps"]) > 0


def test_add_copies_the_model_plays_the_test_set_and_records_the_command(tmp_path, capsys):
    from hrm_agent.agent import HRMAgent
    from hrm_agent.hyperparams import resolve_config

    run_dir = tmp_path / "run"
    result = run("-m", "hrm_agent.train", "--env", "DynamicMaze-v0", "--reset-z", "--seed", "3", "--run-dir",
                 str(run_dir), "--total-steps", "100", "--set=eval_freq=0", "--set=checkpoint_freq=0", *TINY_ARGS)
    assert result.returncode == 0, result.stderr
    zoo, results = tmp_path / "zoo", tmp_path / "test.csv"
    module = command("zoo")
    argv = ["--zoo", str(zoo), "add", str(run_dir), "--test-results", str(results), "--commit", "abc"]
    assert module.main(argv) == 0
    (row,) = module.read_manifest(zoo)
    assert (row["env"], row["variant"], row["seed"], row["env_steps"], row["commit"]) == (
        "DynamicMaze-v0", "reset", "3", "100", "abc")
    agent = HRMAgent.load(zoo / row["file"])
    original = HRMAgent.load(run_dir)
    for key, value in original.online.state_dict().items():
        assert agent.online.state_dict()[key].equal(value)
    # the recorded command resolves to the agent's config
    words = shlex.split(row["command"])
    sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    assert "--reset-z" in words and words[words.index("--total-steps") + 1] == "100"
    assert resolve_config("DynamicMaze-v0", None, sets, carry_z=False).model_dump() == {
        **agent.config.model_dump(), "total_steps": resolve_config("DynamicMaze-v0").total_steps}
    assert float(row["test_success"]) == float(module.read_manifest(zoo)[0]["test_success"])
    assert len((results).read_text().strip().splitlines()) == 2
    # the test-set row carries the run's training record, which the copied model file does not know
    summary = json.loads((run_dir / "summary.json").read_text())
    (played,) = read_csv(results)
    assert (played["train_steps"], played["wall_clock_s"]) == (str(summary["total_steps"]),
                                                                str(summary["wall_clock_s"]))
    # adding it again replaces its row; a directory that is no run is one line and exit code 2
    assert module.main(argv) == 0 and len(module.read_manifest(zoo)) == 1
    capsys.readouterr()
    assert module.main(["--zoo", str(zoo), "add", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a finished HRM training run" in err and len(err.splitlines()) == 1
    assert module.main(["--zoo", str(tmp_path / "empty"), "check"]) == 2


def test_paper_questions_tabulate_latents_and_replanning_of_every_agent(tmp_path, capsys):
    import csv

    zoo, results = tmp_path / "zoo", tmp_path / "test.csv"
    for variant, seed in (("carry", 0), ("reset", 1)):
        run_dir = tmp_path / variant
        result = run("-m", "hrm_agent.train", "--env", "DynamicMaze-v0", f"--{variant}-z", "--seed", str(seed),
                     "--run-dir", str(run_dir), "--total-steps", "100", "--set=eval_freq=50", "--set=eval_episodes=8",
                     "--set=checkpoint_freq=0", "--set=carry=full", "--set=save_eval_models=true", *TINY_ARGS)
        assert result.returncode == 0, result.stderr
        assert command("zoo").main(["--zoo", str(zoo), "add", str(run_dir), "--test-results", str(results)]) == 0
    paper = command("paper_questions")
    out = tmp_path / "paper"
    assert paper.main(["--zoo", str(zoo), "--episodes", "4", "--out", str(out)]) == 0
    env_out = out / "DynamicMaze-v0"
    latents = (env_out / "latents.md").read_text()
    for measure in ("mse", "query", "read"):
        for variant in ("carry", "reset"):
            assert f"| {measure} | z_H | {variant} |" in latents
        assert (env_out / "latents" / ("convergence" + ("" if measure == "mse" else f"_{measure}") + ".png")).is_file()
    with (env_out / "replanning.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted({r["agent"] for r in rows}) == ["BFS oracle", "DynamicMaze-v0__carry-full__0",
                                                 "DynamicMaze-v0__reset__1"]
    assert {r["intervention"] for r in rows} == {"door", "goal"}
    for r in rows:
        if r["agent"] == "BFS oracle" and int(r["applied"]):
            assert float(r["success_after"]) == 1.0  # it replans on the true grid
        if r["agent"] != "BFS oracle" and int(r["applied"]):
            assert 0 <= float(r["settle_z_H"]) <= 4
    pooled = (env_out / "replanning.md").read_text().split("Pooled by variant")[1]
    for r in rows:  # one agent per variant: its pooled row is its own row
        after = float(r["success_after"])
        shown = "–" if after != after else f"{after:.2f}"
        assert f"| {r['variant']} | 1 | {r['intervention']} | {shown} [{shown}, {shown}] |" in pooled
    # --seeds K: only each variant's seeds 0 .. K-1 (here the carry agent, seed 0)
    assert paper.main(["--zoo", str(zoo), "--episodes", "2", "--seeds", "1", "--out", str(tmp_path / "seed0")]) == 0
    with (tmp_path / "seed0" / "DynamicMaze-v0" / "replanning.csv").open() as f:
        assert sorted({r["agent"] for r in csv.DictReader(f)}) == ["BFS oracle", "DynamicMaze-v0__carry-full__0"]
    capsys.readouterr()
    assert paper.main(["--zoo", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error: no agents")

    # matched competence: the carry run's model at the first evaluation to reach reset z's test success
    matched = tmp_path / "matched"
    module = command("zoo")
    argv = ["--zoo", str(zoo), "match", str(tmp_path / "carry"), "--matched", str(matched),
            "--test-results", str(results)]
    rows = module.read_manifest(zoo)
    (reset,) = [r for r in rows if r["variant"] == "reset"]
    history = module.eval_history(tmp_path / "carry")
    assert [h["step"] for h in history] == [50, 100]
    for target, expected in ((history[0]["success_rate"], 50), (1.01, None)):  # reached at the first; never
        reset["test_success"] = target
        module.write_manifest(zoo, rows)
        capsys.readouterr()
        assert module.main(argv) == (0 if expected else 2)
        if expected is None:
            assert "no evaluation has reached reset z's success 1.010 yet" in capsys.readouterr().err
    (row,) = module.read_manifest(matched)
    assert int(row["env_steps"]) == 50
    with pytest.raises(SystemExit) as exit_info:  # not a success rate: argparse's one line
        module.main([*argv, "--target", "1.5"])
    assert exit_info.value.code == 2 and "--target must be a success rate" in capsys.readouterr().err
    assert module.main(["--zoo", str(matched), "check", "--episodes", "2"]) == 0
    assert paper.main(["--zoo", str(zoo), "--episodes", "2", "--out", str(out), "--matched", str(matched)]) == 0
    with (env_out / "matched" / "replanning.csv").open() as f:
        assert sorted({r["agent"] for r in csv.DictReader(f)}) == [
            "BFS oracle", f"DynamicMaze-v0__carry-full__0@{int(row['env_steps'])}", "DynamicMaze-v0__reset__1"]
    # a reset run, or one without its evaluations' models, is refused in one line
    capsys.readouterr()
    for bad in ("reset", "none"):
        assert module.main(["--zoo", str(zoo), "match", str(tmp_path / bad), "--matched", str(matched)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    history = [{"step": 3, "success_rate": 0.5}, {"step": 1, "success_rate": 0.7}, {"step": 2, "success_rate": 0.8}]
    assert module.first_reaching(history, {1, 2, 3}, 0.6)["step"] == 1
    with pytest.raises(module.UsageError, match="step 1"):  # its model is gone: not a later one instead
        module.first_reaching(history, {2, 3}, 0.6)
