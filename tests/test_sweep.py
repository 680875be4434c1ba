"""``python -m hrm_agent.sweep``: a tiny local Ray Tune sweep end to end, resume, the summary, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import TINY_ENV, TINY_MODEL
from hrm_agent import sweep, train
from hrm_agent.experiments import trials
from hrm_agent.experiments import tune as ray_tune
from hrm_agent.runs import UsageError

TINY = {
    "model": dict(TINY_MODEL, H_cycles=1, L_cycles=1),
    "n_envs": 2, "buffer_size": 2000, "learning_starts": 64, "batch_size": 16, "train_freq": 2,
    "target_update_interval": 100, "eval_freq": 100, "eval_episodes": 3, "checkpoint_freq": 100,
    "compile": False,
}
STEPS = 300
ENV_ARGS = [f"--env-kwarg={k}={v}" for k, v in TINY_ENV.items()]
GOOD, BAD = "DynamicMaze-v0__carry__0__learning_rate=0.001", "DynamicMaze-v0__carry__0__learning_rate=1e+30"


def run_sweep(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hrm_agent.sweep", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture(scope="module")
def swept(tmp_path_factory, config_file) -> tuple[Path, subprocess.CompletedProcess]:
    """Two trials on embedded Ray: one trains, the other diverges (learning rate 1e30) and fails."""
    sweep_dir = tmp_path_factory.mktemp("sweeps") / "tiny"
    result = run_sweep("--env", "DynamicMaze-v0", "--variants", "carry", "--seeds", "1",
                       "--grid", "learning_rate=0.001,1.0e+30", "--total-steps", str(STEPS),
                       "--config", str(config_file), *ENV_ARGS, "--sweep-dir", str(sweep_dir))
    return sweep_dir, result


def test_sweep_runs_trials_reports_the_failure_and_the_other_finishes(swept):
    sweep_dir, result = swept
    assert result.returncode == 1, result.stdout + result.stderr  # one trial failed
    assert "Traceback" not in result.stdout
    assert f"FAILED {BAD}: TrainingDiverged: non-finite TD loss" in result.stdout
    assert f"finished {GOOD}" in result.stdout
    good, bad = sweep_dir / "runs" / GOOD, sweep_dir / "runs" / BAD
    # the finished trial wrote what python -m hrm_agent.train writes
    for name in ("config.yaml", "progress.csv", "summary.json", "final_model.pt", "checkpoints/last.pt"):
        assert (good / name).is_file(), name
    assert list(good.glob("events.out.tfevents.*"))
    config = yaml.safe_load((good / "config.yaml").read_text())
    assert config["agent"]["learning_rate"] == 0.001 and config["agent"]["total_steps"] == STEPS
    assert config["agent"]["eval_freq"] == 100 and config["env_kwargs"] == TINY_ENV
    assert not (good / trials.ERROR_FILE).exists()
    assert "non-finite TD loss" in (bad / trials.ERROR_FILE).read_text()
    assert not (bad / "summary.json").exists()


def test_sweep_reports_every_evaluation_to_tune(swept):
    sweep_dir, _ = swept
    results = list((sweep_dir / trials.TUNE_DIR).glob(f"*/{GOOD}*/result.json"))
    assert len(results) == 1, list((sweep_dir / trials.TUNE_DIR).rglob("result.json"))
    reported = [json.loads(line) for line in results[0].read_text().splitlines() if line.strip()]
    history = json.loads((sweep_dir / "runs" / GOOD / "summary.json").read_text())["eval_history"]
    assert [r["timesteps"] for r in reported] == [h["step"] for h in history] == [100, 200, 300]
    assert [r["eval/success_rate"] for r in reported] == [h["success_rate"] for h in history]


def test_a_trial_is_the_training_of_hrm_agent_train(swept, config_file, tmp_path):
    sweep_dir, _ = swept
    run_dir = tmp_path / "direct"
    code = train.main(["--env", "DynamicMaze-v0", "--carry-z", "--seed", "0", "--total-steps", str(STEPS),
                       "--config", str(config_file), "--set=learning_rate=0.001", *ENV_ARGS, "--threads", "1",
                       "--device", "cpu", "--no-progress", "--run-dir", str(run_dir)])
    assert code == 0
    direct = json.loads((run_dir / "summary.json").read_text())
    trial = json.loads((sweep_dir / "runs" / GOOD / "summary.json").read_text())
    def outcomes(history):  # each evaluation's figures; the wall-clock it was made at differs between machines' runs
        return [{k: v for k, v in h.items() if k != "wall_clock_s"} for h in history]

    assert outcomes(trial["eval_history"]) == outcomes(direct["eval_history"])
    assert yaml.safe_load((sweep_dir / "runs" / GOOD / "config.yaml").read_text())["agent"] == \
        yaml.safe_load((run_dir / "config.yaml").read_text())["agent"]


def test_summary_table_and_reprint(swept):
    sweep_dir, result = swept
    markdown = (sweep_dir / trials.SUMMARY_MD).read_text()
    assert markdown in result.stdout
    assert "| DynamicMaze-v0 | carry | learning_rate=0.001 | 1/1 |" in markdown
    assert "| DynamicMaze-v0 | carry | learning_rate=1e+30 | 0/1 (1 failed) |" in markdown
    assert "`runs/DynamicMaze-v0__carry__*__learning_rate=0.001`" in markdown
    rows = {r["trial"]: r for r in trials.write_summary(sweep_dir, trials.read_spec(sweep_dir))[1]}
    assert rows[GOOD]["status"] == "finished" and rows[BAD]["status"] == "failed"
    again = run_sweep("--summary", str(sweep_dir))
    assert again.returncode == 0 and again.stdout == markdown


def test_resume_skips_finished_trials_and_reruns_the_rest(swept):
    sweep_dir, _ = swept
    finished = sweep_dir / "runs" / GOOD / "summary.json"
    before = finished.stat().st_mtime_ns, finished.read_bytes()
    result = run_sweep("--resume", str(sweep_dir))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 trials, 1 finished, 1 to run" in result.stdout
    assert f"FAILED {BAD}: TrainingDiverged" in result.stdout and f"finished {GOOD}" not in result.stdout
    assert (finished.stat().st_mtime_ns, finished.read_bytes()) == before


# ------------------------------------------------------------------ pieces


def test_plan_names_and_grid():
    spec = {"envs": ["DynamicMaze-v0", "FourRooms-v0"], "variants": ["carry", "reset"], "seeds": 2,
            "grid": trials.parse_grid(["learning_rate=3e-4,0.001", "model.hidden_size=16,32"])}
    planned = trials.plan(spec)
    assert len(planned) == 2 * 2 * 2 * 2 * 2 and len({t.name for t in planned}) == len(planned)
    assert spec["grid"] == [("learning_rate", ["3e-4", 0.001]), ("model.hidden_size", [16, 32])]
    first = planned[0]
    assert first.name == "DynamicMaze-v0__carry__0__learning_rate=3e-4,model.hidden_size=16"
    assert first.seeds_pattern == "DynamicMaze-v0__carry__*__learning_rate=3e-4,model.hidden_size=16"
    assert first.overrides() == ['learning_rate="3e-4"', "model.hidden_size=16"]


def test_train_argv_starts_fresh_or_resumes_from_the_checkpoint(tmp_path):
    spec = {"total_steps": 500, "config": None, "overrides": ["gamma=0.9"], "env_kwargs": ["size=7"]}
    trial = trials.Trial("DynamicMaze-v0", "reset", 2, (("learning_rate", 0.01),))
    argv = trials.train_argv(spec, trial, tmp_path, threads=1, device="cpu")
    args = train.build_parser().parse_args(argv)
    assert args.env == "DynamicMaze-v0" and args.carry_z is False and args.seed == 2 and args.total_steps == 500
    assert args.overrides == ["gamma=0.9", "learning_rate=0.01"] and args.env_kwargs == ["size=7"]
    assert args.run_dir == tmp_path / "runs" / trial.name and args.resume is None
    checkpoint = tmp_path / "runs" / trial.name / "checkpoints" / "last.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"")
    args = train.build_parser().parse_args(trials.train_argv(spec, trial, tmp_path, threads=1, device="cpu"))
    assert args.resume == tmp_path / "runs" / trial.name and args.env is None and args.total_steps == 500


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--env", "NoSuchEnv-v0"], "unknown env id 'NoSuchEnv-v0'"),
        (["--env", "DynamicMaze-v0", "--seeds", "0"], "--seeds must be at least 1"),
        (["--env", "DynamicMaze-v0", "--variants", "carry", "sideways"], "--variants: unknown sideways"),
        (["--env", "DynamicMaze-v0", "--grid", "learning_rate"], "must look like KEY=V1,V2"),
        (["--env", "DynamicMaze-v0", "--grid", "learning_rate=0.001,-1"], "learning_rate"),
        (["--env", "DynamicMaze-v0", "--grid", "no_such_key=1,2"], "no_such_key"),
        (["--env", "DynamicMaze-v0", "--env-kwarg", "size=4"], "size"),
        (["--env", "DynamicMaze-v0", "--config", "/no/such/file.yaml"], "cannot read --config"),
        (["--env", "DynamicMaze-v0", "--total-steps", "0"], "--total-steps must be positive"),
        (["--env", "DynamicMaze-v0", "--cpus-per-trial", "0"], "--cpus-per-trial must be positive"),
        ([], "--env is required"),
    ],
)
def test_bad_arguments_exit_2_with_one_line_and_create_nothing(argv, fragment, tmp_path, capsys):
    sweep_dir = tmp_path / "sweep"
    assert sweep.main([*argv, "--sweep-dir", str(sweep_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and fragment in err, err
    assert not sweep_dir.exists() and list(tmp_path.iterdir()) == []


def test_a_trial_larger_than_this_machine_is_refused():
    have = {"CPU": 2.0}
    ray_tune.check_resources(have, 2, 0)
    with pytest.raises(UsageError, match="--cpus-per-trial 4: this machine has 2 CPUs"):
        ray_tune.check_resources(have, 4, 0)
    with pytest.raises(UsageError, match="--gpus-per-trial 1: this machine has 0 GPUs"):
        ray_tune.check_resources(have, 1, 1)


def test_resume_and_summary_need_a_sweep_directory(tmp_path, capsys):
    assert sweep.main(["--resume", str(tmp_path)]) == 2
    assert "is not a sweep directory" in capsys.readouterr().err
    (tmp_path / trials.SWEEP_FILE).write_text("{not json")
    assert sweep.main(["--summary", str(tmp_path)]) == 2
    assert "cannot read" in capsys.readouterr().err
    (tmp_path / trials.SWEEP_FILE).write_text(json.dumps({"format": trials.SWEEP_FORMAT, "version": 99}))
    assert sweep.main(["--summary", str(tmp_path)]) == 2
    assert "version 99" in capsys.readouterr().err
    assert sweep.main(["--resume", str(tmp_path), "--env", "DynamicMaze-v0"]) == 2
    assert "--env: a sweep's settings are in" in capsys.readouterr().err


def test_an_existing_sweep_directory_is_not_overwritten(swept, capsys):
    sweep_dir, _ = swept
    before = (sweep_dir / trials.SWEEP_FILE).read_bytes()
    assert sweep.main(["--env", "DynamicMaze-v0", "--sweep-dir", str(sweep_dir)]) == 2
    assert f"continue it with --resume {sweep_dir}" in capsys.readouterr().err
    assert (sweep_dir / trials.SWEEP_FILE).read_bytes() == before


def test_without_ray_the_error_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert sweep.main(["--env", "DynamicMaze-v0", "--sweep-dir", str(tmp_path / "s")]) == 2
    assert "pip install -e '.[sweep]'" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
