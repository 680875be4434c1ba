"""Faults and bad input: every command checks before it starts, ends on one line, and loses nothing.

The faults are real or injected at the system-call boundary, since the tests run as root (a chmod does
not stop root): a full disk is ``/dev/full`` put under the temporary file of an atomic write (the
kernel's own ENOSPC), a read-only folder an ``EROFS`` from ``os.open``/``os.mkdir``/``open`` for paths
inside it, a path under a regular file the kernel's ``NotADirectoryError``, a kill ``SIGKILL``.
"""

from __future__ import annotations

import builtins
import csv
import errno
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import pytest

from conftest import TINY_ENV, TINY_MODEL, tiny_config

ROOT = Path(__file__).resolve().parents[1]
ENV_ARGS = [f"--env-kwarg={k}={v}" for k, v in TINY_ENV.items()]
TRAIN_ARGS = ["--env", "DynamicMaze-v0", *[f"--set=model.{k}={v}" for k, v in TINY_MODEL.items()], *ENV_ARGS,
              "--set=buffer_size=2000", "--set=learning_starts=64", "--set=batch_size=16", "--set=eval_episodes=2",
              "--set=compile=false", "--n-envs=2", "--no-progress", "--threads=1"]
DQN_ARGS = ["--algo", "dqn", "--env", "DynamicMaze-v0", *ENV_ARGS, "--set=n_envs=2", "--set=learning_starts=64",
            "--set=batch_size=16", "--set=buffer_size=2000", "--set=policy.channels=[8]",
            "--set=policy.features_dim=32", "--set=policy.net_arch=[32]", "--set=eval_episodes=2",
            "--no-progress", "--threads=1"]
CHECKPOINT = Path("checkpoints") / "last.pt"


# ------------------------------------------------------------------ helpers


def error_line(capsys) -> str:
    """The command's stderr: exactly one ``error: ...`` line, no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def main_of(module: str) -> Callable[[list[str]], int]:
    return importlib.import_module(module).main


def call(main: Callable[[list[str]], int], argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse
        return exit_.code


def steps_of(run_dir: Path) -> list[int]:
    return [int(r["time/total_timesteps"]) for r in csv.DictReader((run_dir / "progress.csv").open())]


@pytest.fixture
def read_only(monkeypatch) -> Callable[..., None]:
    """``read_only(folder, armed)``: from when ``armed()`` is true, creating or writing anything inside
    ``folder`` fails with EROFS, as on a file system mounted read-only (files already open stay writable)."""

    def make(folder: Path, armed: Callable[[], bool] = lambda: True) -> None:
        folder = folder.resolve()
        real_os_open, real_mkdir, real_open = os.open, os.mkdir, builtins.open

        def refused(path: object) -> bool:
            if not isinstance(path, (str, bytes, os.PathLike)) or not armed():
                return False
            return Path(os.fsdecode(path)).resolve().is_relative_to(folder)

        def fail(path: object) -> None:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

        def os_open(path, flags, *args, **kwargs):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and refused(path):
                fail(path)
            return real_os_open(path, flags, *args, **kwargs)

        def mkdir(path, *args, **kwargs):
            if refused(path) and not os.path.isdir(path):
                fail(path)
            return real_mkdir(path, *args, **kwargs)

        def open_(file, mode="r", *args, **kwargs):
            if any(c in mode for c in "wax+") and refused(file):
                fail(file)
            return real_open(file, mode, *args, **kwargs)

        monkeypatch.setattr(os, "open", os_open)
        monkeypatch.setattr(os, "mkdir", mkdir)
        monkeypatch.setattr(builtins, "open", open_)
        monkeypatch.setattr(io, "open", open_)

    return make


@pytest.fixture
def disk_full(monkeypatch) -> Callable[..., None]:
    """``disk_full(folder, armed)``: from when ``armed()`` is true, the atomic writes into ``folder`` write
    to ``/dev/full`` (every write fails with the kernel's ENOSPC); their temporary file is created as usual."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")

    def make(folder: Path, armed: Callable[[], bool] = lambda: True) -> None:
        real_mkstemp = tempfile.mkstemp

        def mkstemp(*args, **kwargs):
            fd, name = real_mkstemp(*args, **kwargs)
            if Path(name).parent.resolve() == folder.resolve() and armed():
                os.close(fd)
                fd = os.open("/dev/full", os.O_WRONLY)
            return fd, name

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)

    return make


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished 200-step HRM run: events, checkpoint, final model."""
    from hrm_agent import train

    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    assert train.main([*TRAIN_ARGS, "--total-steps", "200", "--set=eval_freq=100", "--set=checkpoint_freq=100",
                       "--run-dir", str(run_dir)]) == 0
    return run_dir


# ------------------------------------------------------------------ 1. resume without duplicated rows

KILLER = """
import os, signal, sys
from hrm_agent import train

def kill(agent):  # kill -9 at this step: no checkpoint, no cleanup
    if agent.num_timesteps >= int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)

train.run(train.build_parser().parse_args(sys.argv[2:]), callback=kill)
"""


def test_a_run_killed_between_checkpoints_resumes_as_one_uninterrupted_run(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    run_dir = tmp_path / "run"
    args = [*TRAIN_ARGS, "--total-steps", "700", "--set=eval_freq=100", "--set=checkpoint_freq=300",
            "--run-dir", str(run_dir)]
    killed = subprocess.run([sys.executable, "-c", KILLER, "500", *args], capture_output=True, text=True, timeout=180)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert steps_of(run_dir) == [100, 200, 300, 400, 500]  # 400 and 500 logged after the checkpoint at 300
    before = (run_dir / "progress.csv").read_text().splitlines()

    resumed = subprocess.run([sys.executable, "-m", "hrm_agent.train", "--resume", str(run_dir), "--threads=1",
                              "--no-progress"], capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert "300/700 steps" in resumed.stdout
    uninterrupted = [100, 200, 300, 400, 500, 600, 700]
    assert steps_of(run_dir) == uninterrupted
    assert (run_dir / "progress.csv").read_text().splitlines()[:4] == before[:4]  # header + rows to 300 kept
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [h["step"] for h in summary["eval_history"]] == uninterrupted
    # what TensorBoard shows ...
    shown = EventAccumulator(str(run_dir))
    shown.Reload()
    for tag in ("eval/success_rate", "rollout/exploration_rate", "time/fps"):
        assert [e.step for e in shown.Scalars(tag)] == uninterrupted, tag
    # ... and what any reader of the event files finds: each step once, in order, across the files
    files = sorted(run_dir.glob("events.out.tfevents.*"))
    assert len(files) == 2
    steps: dict[str, list[int]] = {}
    for path in files:
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                steps.setdefault(value.tag, []).append(event.step)
    assert steps["eval/success_rate"] == uninterrupted


def test_truncate_logs_keeps_what_the_checkpoint_covers_and_drops_cut_records(tmp_path):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from torch.utils.tensorboard import SummaryWriter

    from hrm_agent.runs import truncate_logs

    (tmp_path / "progress.csv").write_text("a,time/total_timesteps\n1,100\n2,200\n3,300\n4,40")  # last row cut
    writer = SummaryWriter(str(tmp_path))
    for step in (100, 200, 300):
        writer.add_scalar("x", step / 100, step)
    writer.close()
    (events,) = tmp_path.glob("events.out.tfevents.*")
    events.write_bytes(events.read_bytes() + events.read_bytes()[-30:-5])  # a record cut short at the end
    truncate_logs(tmp_path, 200)
    assert (tmp_path / "progress.csv").read_text() == "a,time/total_timesteps\n1,100\n2,200\n"
    kept = [(e.step, v.tag) for e in EventFileLoader(str(events)).Load() for v in e.summary.value]
    assert kept == [(100, "x"), (200, "x")]
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    truncate_logs(tmp_path, 200)  # nothing past the step: nothing rewritten
    assert {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == stamps


# ------------------------------------------------------------------ 2. disk full


def test_an_atomic_write_on_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, disk_full):
    import torch

    from hrm_agent.checkpoint import OutputError, atomic_write

    path = tmp_path / "model.pt"
    path.write_bytes(b"old")
    disk_full(tmp_path)
    with pytest.raises(OutputError) as caught:
        atomic_write(path, lambda f: torch.save({"x": torch.zeros(10_000)}, f))  # torch: RuntimeError from ENOSPC
    assert str(caught.value) == f"cannot write {path}: No space left on device"
    assert caught.value.errno == errno.ENOSPC
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_disk_full_at_a_checkpoint_stops_with_one_line_keeps_the_last_and_resumes(tmp_path, capsys, disk_full,
                                                                                 monkeypatch):
    from hrm_agent import HRMAgent, train

    run_dir = tmp_path / "run"
    checkpoint = run_dir / CHECKPOINT
    disk_full(run_dir / "checkpoints", armed=checkpoint.exists)  # the first checkpoint fits, the second not
    code = train.main([*TRAIN_ARGS, "--total-steps", "400", "--set=eval_freq=100", "--set=checkpoint_freq=200",
                       "--run-dir", str(run_dir)])
    assert code == 1
    assert error_line(capsys) == (
        f"error: cannot write {checkpoint}: No space left on device; the run stopped at step 400; "
        f"continue from its last checkpoint with: python -m hrm_agent.train --resume {run_dir}")
    assert HRMAgent.load_checkpoint(checkpoint).num_timesteps == 200  # the old checkpoint is whole
    assert [p.name for p in checkpoint.parent.iterdir()] == ["last.pt"]  # no temporary file left
    monkeypatch.undo()  # space again: the command it printed finishes the run
    assert train.main(["--resume", str(run_dir), "--threads=1", "--no-progress"]) == 0
    assert steps_of(run_dir) == [100, 200, 300, 400]
    assert (run_dir / "final_model.pt").is_file()


def test_disk_full_during_a_baselines_run_is_one_line(tmp_path, capsys, disk_full):
    from hrm_agent.baselines.cli import main

    run_dir = tmp_path / "run"
    disk_full(run_dir / "checkpoints")
    code = main([*DQN_ARGS, "--total-steps", "200", "--set=eval_freq=100", "--set=checkpoint_freq=100",
                 "--run-dir", str(run_dir)])
    assert code == 1
    assert error_line(capsys) == (
        f"error: cannot write {run_dir / 'checkpoints' / 'last.zip'}: No space left on device; the run stopped at "
        "step 100; a baselines run does not resume: start it again with another --run-dir")
    assert list((run_dir / "checkpoints").iterdir()) == []  # no temporary file left


# ------------------------------------------------------------------ 3. unwritable and wrong output paths


@pytest.mark.parametrize("command", ["hrm_agent.train", "hrm_agent.baselines.cli"])
@pytest.mark.parametrize("where, fragment", [
    ("read-only/run", "cannot write in {tmp}/read-only: Read-only file system"),
    ("file", "--run-dir {tmp}/file is a file, not a directory"),
    ("file/run", "--run-dir {tmp}/file/run: {tmp}/file is a file, not a directory"),
])
def test_a_run_dir_that_cannot_be_written_is_refused_before_any_work(command, where, fragment, tmp_path, capsys,
                                                                    read_only):
    (tmp_path / "read-only").mkdir()
    (tmp_path / "file").write_text("keep")
    read_only(tmp_path / "read-only")
    args = [*TRAIN_ARGS] if command == "hrm_agent.train" else [*DQN_ARGS]
    assert call(main_of(command), [*args, "--total-steps", "100", "--run-dir", str(tmp_path / where)]) == 2
    assert fragment.format(tmp=tmp_path) in error_line(capsys)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["file", "read-only"]
    assert (tmp_path / "file").read_text() == "keep"


@pytest.mark.parametrize("fault", ["progress logger", "checkpoint folder"])
def test_a_run_dir_made_read_only_mid_run_stops_with_one_line_and_how_to_resume(fault, tmp_path, capsys, monkeypatch,
                                                                              read_only):
    from stable_baselines3.common.logger import CSVOutputFormat

    from hrm_agent import HRMAgent, train

    run_dir = tmp_path / "run"
    checkpoint = run_dir / CHECKPOINT
    if fault == "progress logger":
        write = CSVOutputFormat.write

        def refuse(self, *args, **kwargs):
            if checkpoint.exists():
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
            return write(self, *args, **kwargs)

        monkeypatch.setattr(CSVOutputFormat, "write", refuse)
        failed, step = run_dir / "progress.csv", 300
    else:
        read_only(run_dir / "checkpoints", armed=checkpoint.exists)
        failed, step = checkpoint, 400
    code = train.main([*TRAIN_ARGS, "--total-steps", "400", "--set=eval_freq=100", "--set=checkpoint_freq=200",
                       "--run-dir", str(run_dir)])
    assert code == 1
    reason = "Permission denied" if fault == "progress logger" else "Read-only file system"
    assert error_line(capsys) == (
        f"error: cannot write {failed}: {reason}; the run stopped at step {step}; "
        f"continue from its last checkpoint with: python -m hrm_agent.train --resume {run_dir}")
    assert HRMAgent.load_checkpoint(checkpoint).num_timesteps == 200
    assert [p.name for p in checkpoint.parent.iterdir()] == ["last.pt"]


@pytest.mark.parametrize("option", ["--gif", "--json", "--save-latents", "--save-latents=", "--json-under-a-file"])
def test_evaluate_checks_its_outputs_before_playing(option, tiny_run, tmp_path, capsys, monkeypatch, read_only):
    import shutil

    from hrm_agent import evaluate_cli

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    (tmp_path / "read-only").mkdir()
    (tmp_path / "file").write_text("keep")
    if option == "--save-latents=":  # the default: RUN_DIR/latents.npz
        read_only(run_dir)
        argv, expected = ["--save-latents"], f"--save-latents {run_dir / 'latents.npz'}: cannot write in {run_dir}"
    elif option == "--json-under-a-file":
        argv, expected = ["--json", str(tmp_path / "file" / "r.json")], f"{tmp_path / 'file'} is a file"
    else:
        read_only(tmp_path / "read-only")
        target = tmp_path / "read-only" / "out"
        argv, expected = [option, str(target)], f"{option} {target}: cannot write in {tmp_path / 'read-only'}"

    def played(*args, **kwargs):
        raise AssertionError("an episode was played before the outputs were checked")

    monkeypatch.setattr(evaluate_cli, "evaluate", played)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert evaluate_cli.main([str(run_dir), "--episodes", "2", *argv]) == 2
    assert expected in error_line(capsys)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


# ------------------------------------------------------------------ 4. bench: bad input is one line, exit 2


@pytest.mark.parametrize("argv, fragment", [
    (["model", "--env", "Nope-v0"], "unknown env id 'Nope-v0'"),
    (["model", "--preset", "nonexistent"], "unknown preset 'nonexistent'; available: paper"),
    (["model", "--seq-len", "0"], "--seq-len"),
    (["model", "--threads", "0"], "--threads must be at least 1"),
    (["model", "--env", "CartPole-v1"], "needs a 2-D integer token-grid observation"),
    (["model", "--set", "model.nope=1"], "invalid hyperparameters: model.nope: Extra inputs are not permitted"),
    (["model", "--set", "model.core"], "model.core"),
    (["env", "--steps", "0"], "--steps and --repeats must be at least 1, got 0 and 5"),
    (["train", "--set", "hrm:model.segments=0"], "carry: invalid hyperparameters: model.segments: Input should be "
                                                 "greater than 0"),
    (["train", "--env", "DynamicMaze-v0", "--env-kwarg", "obs_mode=minigrid"], "needs a 2-D integer token-grid"),
])
def test_bench_bad_input_is_one_line_and_exit_code_2(argv, fragment, capsys):
    import torch

    from hrm_agent.bench.__main__ import main

    threads = torch.get_num_threads()
    assert call(main, argv) == 2
    assert fragment in error_line(capsys)
    assert torch.get_num_threads() == threads  # nothing was run or set


@pytest.mark.parametrize("extra, fragment", [
    (["--set", "hrm:model.segments=0"], "carry: invalid hyperparameters: model.segments"),
    (["--set", "hrm:model.hidden_size=33"], "hidden_size (33) must be divisible by num_heads"),
    (["--env-kwarg", "obs_mode=minigrid"], "needs a 2-D integer token-grid observation"),
    (["--results", "{tmp}/read-only/r.csv"], "--results {tmp}/read-only/r.csv: cannot write in {tmp}/read-only"),
    (["--runs-dir", "{tmp}/read-only/runs"], "--runs-dir {tmp}/read-only/runs: cannot write in"),
])
def test_bench_learn_checks_every_learner_and_its_outputs_before_training_any(extra, fragment, tmp_path, capsys,
                                                                             read_only):
    from hrm_agent.bench.__main__ import main

    (tmp_path / "read-only").mkdir()
    read_only(tmp_path / "read-only")
    argv = ["learn", "--env", "DynamicMaze-v0", "--seeds", "1", "--budget", "100", *ENV_ARGS,
            "--results", str(tmp_path / "results" / "r.csv"), "--runs-dir", str(tmp_path / "runs"),
            *[item.format(tmp=tmp_path) for item in extra]]
    assert call(main, argv) == 2
    assert fragment.format(tmp=tmp_path) in error_line(capsys)
    assert [p.name for p in tmp_path.iterdir()] == ["read-only"]  # no results, figures or runs


# ------------------------------------------------------------------ 5. sweep: checked before Ray or a folder


@pytest.mark.parametrize("argv, fragment", [
    (["--set", "model.segments=0"], "DynamicMaze-v0, carry z: invalid hyperparameters: model.segments"),
    (["--grid", "model.hidden_size=32,33"], "model.hidden_size=33: invalid hyperparameters: model: Value error, "
                                            "hidden_size (33) must be divisible by num_heads"),
    (["--gpus-per-trial", "1000"], "--gpus-per-trial 1000: this machine has"),
    (["--sweep-dir", "{tmp}/file/sweep"], "{tmp}/file is a file, not a directory"),
])
def test_sweep_checks_every_trial_and_the_machine_before_creating_anything(argv, fragment, tmp_path, capsys):
    import ray

    from hrm_agent import sweep

    (tmp_path / "file").write_text("keep")
    argv = [item.format(tmp=tmp_path) for item in argv]
    if "--sweep-dir" not in argv:
        argv += ["--sweep-dir", str(tmp_path / "sweep")]
    assert sweep.main(["--env", "DynamicMaze-v0", "--total-steps", "100", *argv]) == 2
    assert fragment.format(tmp=tmp_path) in error_line(capsys)
    assert [p.name for p in tmp_path.iterdir()] == ["file"]  # no sweep.json: the corrected command can run
    assert not ray.is_initialized()


def test_a_trial_that_fails_before_its_run_directory_exists_leaves_its_error_txt(tmp_path):
    from hrm_agent.experiments import trials
    from hrm_agent.hyperparams import ConfigError

    spec = {"format": trials.SWEEP_FORMAT, "version": trials.SWEEP_VERSION, "envs": ["DynamicMaze-v0"],
            "variants": ["carry"], "seeds": 1, "grid": [], "total_steps": 100, "config": None,
            "overrides": ["model.segments=0"], "env_kwargs": []}  # a sweep.json edited by hand
    (tmp_path / trials.SWEEP_FILE).write_text(json.dumps(spec))
    (trial,) = trials.plan(spec)
    config = {"name": trial.name, "env": trial.env, "variant": trial.variant, "seed": 0, "grid": [],
              "sweep_dir": str(tmp_path), "threads": 1, "device": "cpu"}
    with pytest.raises(ConfigError):
        trials.run_trial({"trial": config})
    error = (tmp_path / trials.RUNS / trial.name / trials.ERROR_FILE).read_text()
    assert error.startswith("ConfigError: invalid hyperparameters: model.segments")
    assert trials.trial_row(tmp_path, trial)["status"] == "failed"


# ------------------------------------------------------------------ 6. unclear messages made clear


@pytest.mark.parametrize("command, args", [
    ("hrm_agent.train", TRAIN_ARGS),
    ("hrm_agent.baselines.cli", DQN_ARGS),
])
def test_an_env_whose_observations_the_learner_cannot_read_is_named(command, args, tmp_path, capsys):
    argv = [*args, "--env-kwarg", "obs_mode=minigrid", "--run-dir", str(tmp_path / "r")]
    assert call(main_of(command), argv) == 2
    line = error_line(capsys)
    assert line.endswith("a 2-D integer token-grid observation (Box of shape (H, W), e.g. DynamicMaze-v0/"
                         "FourRooms-v0 with obs_mode='full'); got a Dict space"), line
    assert not (tmp_path / "r").exists()


def test_evaluate_says_a_baselines_run_is_one_and_what_reads_it(tmp_path, capsys):
    from hrm_agent import evaluate_cli

    (tmp_path / "final_model.zip").write_bytes(b"PK")
    assert evaluate_cli.main([str(tmp_path)]) == 2
    line = error_line(capsys)
    assert f"{tmp_path} is a run of python -m hrm_agent.baselines" in line
    assert "stable_baselines3.DQN.load" in line and "summary.json" in line


def test_evaluate_latent_positions_without_save_latents_is_refused(tiny_run, capsys):
    from hrm_agent import evaluate_cli

    assert call(evaluate_cli.main, [str(tiny_run), "--latent-positions", "query"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--latent-positions applies to the latents --save-latents records" in err
    assert not (tiny_run / "latents.npz").exists()


def test_make_figures_says_a_recording_holds_only_the_query_position(tiny_run, tmp_path, capsys):
    import shutil

    from hrm_agent import evaluate_cli

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    assert evaluate_cli.main([str(run_dir), "--episodes", "2", "--save-latents", "--latent-positions", "query"]) == 0
    spec = importlib.util.spec_from_file_location("make_figures", ROOT / "analysis" / "make_figures.py")
    make_figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_figures)
    capsys.readouterr()
    assert make_figures.main([str(run_dir), "--out", str(tmp_path / "figures")]) == 0
    out = capsys.readouterr().out
    assert f"note: {run_dir.name} recorded only the query position (--latent-positions query)" in out


def test_tiny_config_is_what_the_cli_arguments_say():
    # the in-process runs above use the suite's tiny agent: the same model and replay as tiny_config
    config = tiny_config()
    assert all(f"--set=model.{k}={v}" in TRAIN_ARGS for k, v in config["model"].items())
