"""``python -m hrm_agent.train`` / ``hrm_agent.evaluate`` end to end, and their answers to bad input."""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import TINY_ENV, TINY_MODEL

TINY_ARGS = [f"--set=model.{k}={v}" for k, v in TINY_MODEL.items()] + [
    f"--env-kwarg={k}={v}" for k, v in TINY_ENV.items()
] + ["--set=buffer_size=2000", "--set=learning_starts=64", "--set=batch_size=16", "--set=eval_episodes=5",
     "--set=compile=false", "--n-envs=2", "--no-progress", "--threads=1"]


def run(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def train(run_dir: Path, *extra: str, steps: int = 400) -> subprocess.CompletedProcess:
    return run("-m", "hrm_agent.train", "--env", "DynamicMaze-v0", "--run-dir", str(run_dir),
               "--total-steps", str(steps), "--set=eval_freq=200", "--set=checkpoint_freq=200", *TINY_ARGS, *extra)


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    for fragment in fragments:
        assert fragment in message, message


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "maze"
    result = train(run_dir, "--reset-z", "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert "final greedy eval" in result.stdout
    return run_dir


def test_cli_writes_config_events_checkpoint_model_and_summary(trained_run):
    assert (trained_run / "final_model.pt").is_file()
    assert (trained_run / "checkpoints" / "last.pt").is_file()
    assert list(trained_run.glob("events.out.tfevents.*"))
    config = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert config["env"] == "DynamicMaze-v0" and config["seed"] == 3 and config["variant"] == "reset"
    assert config["agent"]["carry_z"] is False and config["model"]["hidden_size"] == TINY_MODEL["hidden_size"]
    assert config["env_kwargs"] == TINY_ENV and config["agent"]["total_steps"] == 400  # the budget run
    summary = json.loads((trained_run / "summary.json").read_text())
    assert summary["total_steps"] == 400 and [h["step"] for h in summary["eval_history"]] == [200, 400]
    assert "eval/success_rate" in (trained_run / "progress.csv").read_text().splitlines()[0]


def test_default_run_dir_follows_the_cleanrl_pattern(tmp_path):
    result = run("-m", "hrm_agent.train", "--env", "DynamicMaze-v0", "--total-steps", "20", "--seed", "4",
                 "--set=eval_freq=0", *TINY_ARGS, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    env, variant, seed, stamp = run_dir.name.split("__")
    assert (env, variant, seed) == ("DynamicMaze-v0", "carry", "4") and len(stamp) == 15


def test_evaluate_cli_prints_rates_and_writes_a_gif(trained_run, tmp_path):
    gif = tmp_path / "episode.gif"
    result = run("-m", "hrm_agent.evaluate", str(trained_run), "--episodes", "6", "--gif", str(gif))
    assert result.returncode == 0, result.stderr
    assert "success rate:" in result.stdout and "path efficiency:" in result.stdout and "±" in result.stdout
    shares = [float(x.rstrip("%")) for x in result.stdout.split("greedy actions:")[1].split()[1:8:2]]
    assert len(shares) == 4 and abs(sum(shares) - 100) <= 2
    by_distance = result.stdout.split("by start distance: ")[1].split("  (BFS")[0].split("  ")
    assert sum(int(group.split("(")[1].rstrip(")")) for group in by_distance) == 6  # every episode in one group
    pattern = r"failed episodes: (\d+), stuck: (\d+) \((\d+) in place, .*; (\d+) back and forth\)"
    failed, stuck, in_place, back_and_forth = (int(x) for x in re.findall(pattern, result.stdout)[0])
    assert 0 <= stuck <= failed <= 6 and in_place + back_and_forth == stuck
    assert gif.read_bytes()[:6] == b"GIF89a"


def test_evaluate_cli_runs_the_replanning_test_and_writes_json(trained_run, tmp_path):
    out = tmp_path / "door.json"
    result = run("-m", "hrm_agent.evaluate", str(trained_run), "--episodes", "6", "--intervention", "door",
                 "--intervention-step", "2", "--json", str(out))
    assert result.returncode == 0, result.stderr
    for line in ("intervention:    door after step 2", "success after:", "the same episodes without it",
                 "extra steps:", "settle z_H:", "settle z_L:"):
        assert line in result.stdout
    report = json.loads(out.read_text())
    assert report["intervention"] == "door" and report["intervention_step"] == 2 and report["episodes"] == 6
    assert 0 <= report["applied"] <= 6 and not list(tmp_path.glob(".*.tmp"))
    assert sum(group["episodes"] for group in report["success_by_start_distance"].values()) == 6
    assert 0 <= report["stuck"] <= report["failed"] <= 6
    assert report["stuck_in_place"] + report["stuck_back_and_forth"] == report["stuck"]
    for key in ("success_rate", "success_after", "success_without", "settle_z_H", "settle_z_L_other"):
        assert key in report
    assert not (trained_run / "latents.npz").exists()  # recorded for the settling, kept only when asked
    assert_user_error(run("-m", "hrm_agent.evaluate", str(trained_run), "--intervention", "goal",
                          "--intervention-step", "0"), "--intervention-step must be at least 1")
    assert_user_error(run("-m", "hrm_agent.evaluate", str(trained_run), "--intervention", "wall"), "invalid choice")


def test_evaluate_prints_no_nan_when_an_se_or_a_mean_is_undefined():
    from hrm_agent.experiments.stats import format_mean_se  # what the evaluate CLI prints

    assert format_mean_se([0.0, 0.5], 3) == "0.250 ± 0.250"
    assert format_mean_se([1.0], 3) == "1.000"  # one successful episode: no SE
    assert format_mean_se([], 3) == "–"  # none: no path efficiency


def test_resume_continues_the_step_count(trained_run, tmp_path):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(trained_run, run_dir)
    result = run("-m", "hrm_agent.train", "--resume", str(run_dir), "--total-steps", "600", "--no-progress",
                 "--threads=1")
    assert result.returncode == 0, result.stderr
    assert "400/600 steps" in result.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["total_steps"] == 600 and summary["eval_history"][-1]["step"] == 600
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["agent"]["total_steps"] == 600
    # progress.csv keeps the rows logged before the resume and appends the new ones
    rows = list(csv.DictReader((run_dir / "progress.csv").read_text().splitlines()))
    steps = [int(r["time/total_timesteps"]) for r in rows]
    assert steps[0] < 400 < steps[-1] == 600 and steps == sorted(steps)


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    run_dir = tmp_path / "interrupted"
    cmd = [sys.executable, "-m", "hrm_agent.train", "--env", "DynamicMaze-v0", "--run-dir", str(run_dir),
           "--total-steps", "1000000", "--set=eval_freq=0", "--set=checkpoint_freq=0", *TINY_ARGS]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # the first log row (after 1,000 steps): training is under way, so Ctrl-C lands in the loop
    deadline = time.time() + 120
    while time.time() < deadline and not (
            (run_dir / "progress.csv").exists() and len((run_dir / "progress.csv").read_text().splitlines()) > 1):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "checkpoint saved" in out
    from hrm_agent import HRMAgent

    resumed = HRMAgent.load_checkpoint(run_dir)
    assert 0 < resumed.num_timesteps < 1_000_000


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--env", "NoSuchEnv-v0"], ["unknown env id 'NoSuchEnv-v0'", "DynamicMaze-v0, FourRooms-v0"]),
        (["--env", "DynamicMaze-v0", "--carry-z", "--reset-z"], ["not allowed with argument"]),
        (["--env", "DynamicMaze-v0", "--set", "learning_rate=-1"], ["learning_rate", "greater than 0"]),
        (["--env", "DynamicMaze-v0", "--set", "gamma=1.5"], ["gamma", "less than or equal to 1"]),
        (["--env", "DynamicMaze-v0", "--set", "batch_size=500", "--set", "buffer_size=100"],
         ["batch_size (500) must not exceed buffer_size (100)"]),
        (["--env", "DynamicMaze-v0", "--set", "no_such_field=1"], ["no_such_field", "Extra inputs"]),
        (["--env", "DynamicMaze-v0", "--set", "model.hidden_size=33"], ["model", "hidden_size (33) must be divisible by num_heads"]),
        (["--env", "DynamicMaze-v0", "--set", "oops"], ["must look like key=value"]),
        (["--env", "DynamicMaze-v0", "--config", "/no/such/file.yaml"], ["config file not found"]),
        (["--env", "DynamicMaze-v0", "--env-kwarg", "size=8"], ["size must be an odd integer"]),
        (["--env", "DynamicMaze-v0", "--total-steps", "0"], ["--total-steps must be positive"]),
        (["--resume", "/no/such/run"], ["nothing to resume"]),
        ([], ["--env is required"]),
    ],
)
def test_bad_input_gives_one_line_and_exit_code_2(args, fragments, tmp_path):
    result = run("-m", "hrm_agent.train", "--run-dir", str(tmp_path / "r"), *args, timeout=60)
    assert_user_error(result, *fragments)
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_malformed_config_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: [unclosed\n")
    assert_user_error(run("-m", "hrm_agent.train", "--env", "DynamicMaze-v0", "--config", str(bad)),
                      "cannot read config file")
    bad.write_text("- just\n- a list\n")
    assert_user_error(run("-m", "hrm_agent.train", "--env", "DynamicMaze-v0", "--config", str(bad)),
                      "must hold a mapping")


def test_existing_run_dir_is_not_overwritten(trained_run):
    before = {p: p.stat().st_mtime_ns for p in trained_run.rglob("*")}
    result = train(trained_run)
    assert_user_error(result, "already exists", "--resume")
    assert {p: p.stat().st_mtime_ns for p in trained_run.rglob("*")} == before


def test_corrupt_checkpoint_and_mismatched_resume(trained_run, tmp_path):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(trained_run, run_dir)
    mismatch = run("-m", "hrm_agent.train", "--resume", str(run_dir), "--carry-z", "--set", "gamma=0.5")
    assert_user_error(mismatch, "does not match the checkpoint", "carry_z", "gamma")
    checkpoint = run_dir / "checkpoints" / "last.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    assert_user_error(run("-m", "hrm_agent.train", "--resume", str(run_dir)), "corrupt")
    assert_user_error(run("-m", "hrm_agent.evaluate", str(tmp_path / "missing")), "no such file")


def test_config_file_and_overrides_layer_in_order(tmp_path):
    from hrm_agent.hyperparams import resolve_config

    config_file = tmp_path / "c.yaml"
    config_file.write_text("learning_rate: 0.002\ngamma: 0.9\nmodel:\n  hidden_size: 32\n")
    config = resolve_config("DynamicMaze-v0", config_file, ["gamma=0.8", "model.H_cycles=3"], carry_z=False)
    assert config.learning_rate == 0.002 and config.gamma == 0.8 and config.carry_z is False
    assert config.model["hidden_size"] == 32 and config.model["H_cycles"] == 3
    assert config.model["L_cycles"] == 2  # untouched defaults stay


LEARNING_TABLE = Path(__file__).resolve().parents[1] / "analysis" / "learning_table.py"


def test_learning_table_accumulates_runs_and_writes_table_and_figure(trained_run, tmp_path):
    results = tmp_path / "results"
    first = run(str(LEARNING_TABLE), str(trained_run), "--results", str(results))
    assert first.returncode == 0, first.stderr
    rows = (results / "learning_runs.csv").read_text().splitlines()
    (row,) = csv.DictReader(rows)
    kwargs = "bump_penalty=0.0 dynamics=toggle max_steps=28 n_dynamic_walls=2 n_fixed_walls=2 size=7 toggle_prob=0.2"
    assert (row["env"], row["env_kwargs"], row["variant"], row["seed"], row["total_steps"]) == (
        "DynamicMaze-v0", kwargs, "reset", "3", "400")
    assert 0 <= float(row["final_success"]) <= 1 and row["run"] == trained_run.name
    curve = list(csv.DictReader((results / "learning_curves.csv").read_text().splitlines()))
    assert [c["step"] for c in curve] == ["200", "400"]
    table = (results / "learning_table.md").read_text()
    assert f"| DynamicMaze-v0 ({kwargs}) | reset | 400 | 3 |" in table and table in first.stdout
    assert (results / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    # adding the same run again replaces it; no arguments re-tabulates what is stored
    again = run(str(LEARNING_TABLE), str(trained_run), "--results", str(results))
    assert again.returncode == 0 and (results / "learning_runs.csv").read_text().splitlines() == rows
    assert run(str(LEARNING_TABLE), "--results", str(results)).stdout.startswith(table)


def test_learning_table_rejects_a_folder_that_is_not_a_run(tmp_path):
    result = run(str(LEARNING_TABLE), str(tmp_path), "--results", str(tmp_path / "results"))
    assert_user_error(result, "has no summary.json")
    assert not (tmp_path / "results").exists()


def test_evaluate_validation_replays_the_runs_own_evaluation_episodes_and_agrees_with_it(trained_run, tmp_path):
    # the episodes of a run's evaluations during training are seeded 1,000,000 + its seed + i: replayed by
    # --validation, the final model gives the final evaluation's figures exactly
    import json

    summary = json.loads((trained_run / "summary.json").read_text())
    report = tmp_path / "validation.json"
    result = run("-m", "hrm_agent.evaluate", str(trained_run), "--validation", "--json", str(report))
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    assert (data["seed"], data["episode_set"]) == (1_000_003, "validation")  # seed 3
    final = summary["final_eval"]
    clock = [h["wall_clock_s"] for h in summary["eval_history"]]  # each evaluation records when it was made
    assert clock == sorted(clock) and 0 < clock[-1] <= summary["wall_clock_s"]
    assert data["episodes"] == final["episodes"]
    assert data["success_rate"] == final["success_rate"] and data["mean_ep_length"] == final["mean_ep_length"]
    other = run("-m", "hrm_agent.evaluate", str(trained_run), "--validation", "--seed", "1000000")
    assert_user_error(other, "--validation plays the run's own evaluation episodes")


def test_save_eval_models_keeps_the_model_of_every_evaluation(tmp_path):
    import json

    from hrm_agent.agent import HRMAgent
    from hrm_agent.evaluate import EVAL_SEED_OFFSET
    from hrm_agent.evaluate import evaluate

    run_dir = tmp_path / "run"
    result = train(run_dir, "--set=save_eval_models=true", steps=300)
    assert result.returncode == 0, result.stderr
    history = json.loads((run_dir / "summary.json").read_text())["eval_history"]
    models = sorted((run_dir / "models").glob("step_*.pt"))
    assert [int(p.stem.split("_")[1]) for p in models] == [h["step"] for h in history]
    for path, entry in zip(models, history):  # each is the agent as that evaluation found it
        agent = HRMAgent.load(path)
        replay = evaluate(agent, agent.config.eval_episodes, seed=agent.seed + EVAL_SEED_OFFSET).summary()
        assert replay["success_rate"] == entry["success_rate"]
        assert replay["mean_ep_length"] == entry["mean_ep_length"]
    # saving them changes nothing the run learns (bench learn counts the two as one run)
    plain = tmp_path / "plain"
    assert train(plain, steps=300).returncode == 0
    saved, unsaved = (torch.load(d / "final_model.pt", weights_only=False)["model"] for d in (run_dir, plain))
    assert saved.keys() == unsaved.keys() and all(torch.equal(saved[k], unsaved[k]) for k in saved)
