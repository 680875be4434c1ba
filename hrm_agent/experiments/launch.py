"""Training runs as processes: the command of each, a pool-friendly launcher, and the run directories
an earlier, interrupted command left under ``--runs-dir``.

A run directory belongs to a task when its name is ``{env}__{variant}__{seed}__*`` and its
``config.yaml`` records the task's env, env kwargs, variant, seed, budget (``total_steps``; for a
baseline, the ``--total-steps`` of the command in its ``train.log``) and a learner config with the
task's :func:`~hrm_agent.experiments.store.fingerprint`. Such a directory with
a ``summary.json`` is a finished run (:func:`finished_run`: its row is recorded without training); an
HRM one with a checkpoint is continued (``python -m hrm_agent.train --resume``). Baseline runs do not
resume (stable-baselines3 keeps no replay buffer or rollout state in its checkpoints): an unfinished
one is trained again in a new directory.

Directories are claimed with an exclusive ``flock`` held while their process runs, so two commands
sharing ``--runs-dir`` never train in the same one.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hrm_agent.experiments.store import KEY_FIELDS, fingerprint
from hrm_agent.experiments.tables import HRM_VARIANTS
from hrm_agent.runs import EXIT_INTERRUPTED


@dataclass
class Task:
    """One training run of an experiment (or an oracle evaluation)."""

    variant: str
    seed: int
    settings: list[str]  # --set items that apply to this learner
    key: tuple[str, ...] = field(default=())  # run_key(...) + (threads,)
    run_dir: Path | None = None
    threads: int = 1
    resumed: bool = False  # run_dir is an earlier run, continued from its checkpoint

    @property
    def defaults(self) -> str:
        return self.key[KEY_FIELDS.index("defaults")]


def run_dir_glob(env_id: str, variant: str, seed: int) -> str:
    """The names :func:`hrm_agent.runs.run_name` gives the runs of this env, variant and seed."""
    return f"{env_id.split(':')[-1].replace('/', '-')}__{variant}__{seed}__*"


def belongs(run_dir: Path, task: Task, env_id: str, env_kwargs: dict[str, Any], budget: int) -> bool:
    """Whether ``run_dir``'s ``config.yaml`` is a run of ``task`` (see the module docstring)."""
    try:
        record = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    if not isinstance(record, dict) or not isinstance(record.get("agent"), dict):
        return False
    agent = {k: v for k, v in record["agent"].items() if k != "algo"}  # the baselines record their algo
    same = (record.get("env"), record.get("env_kwargs") or {}, record.get("variant"), record.get("seed"),
            recorded_budget(run_dir, agent, task.variant)) == (env_id, env_kwargs, task.variant, task.seed, budget)
    try:
        return same and fingerprint(env_id, env_kwargs, agent) == task.defaults
    except (TypeError, ValueError):
        return False


def recorded_budget(run_dir: Path, agent: dict[str, Any], variant: str) -> int | None:
    """The env steps a run was asked for: an HRM run's ``config.yaml`` records them (``total_steps``); a
    baseline's keeps its config's default there, so its budget is the ``--total-steps`` of the command
    that ``train.log`` starts with (written by :class:`Launcher`)."""
    if variant in HRM_VARIANTS:
        return agent.get("total_steps")
    try:
        with (run_dir / "train.log").open() as log:
            words = log.readline().split()
        return int(words[words.index("--total-steps") + 1])
    except (OSError, UnicodeDecodeError, ValueError, IndexError):
        return None


def candidates(root: Path, task: Task, env_id: str, env_kwargs: dict[str, Any], budget: int) -> list[Path]:
    """The run directories under ``root`` that belong to ``task``, newest first."""
    if not root.is_dir():
        return []
    found = sorted(root.glob(run_dir_glob(env_id, task.variant, task.seed)), key=lambda p: p.name, reverse=True)
    return [p for p in found if p.is_dir() and belongs(p, task, env_id, env_kwargs, budget)]


def finished_run(root: Path, task: Task, env_id: str, env_kwargs: dict[str, Any], budget: int
                 ) -> tuple[Path, dict[str, Any]] | None:
    """A finished run of ``task`` under ``root`` timed at the task's threads, and its ``summary.json``."""
    for run_dir in candidates(root, task, env_id, env_kwargs, budget):
        try:
            summary = json.loads((run_dir / "summary.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(summary, dict) and str(summary.get("threads") or 1) == str(task.threads):
            return run_dir, summary
    return None


def command(task: Task, env_id: str, budget: int, env_kwargs: list[str]) -> list[str]:
    """The process that trains ``task`` in ``task.run_dir``: a fresh run, or with ``task.resumed`` the
    continuation of the run there from its checkpoint."""
    assert task.run_dir is not None
    if task.resumed:
        return [sys.executable, "-m", "hrm_agent.train", "--resume", str(task.run_dir), "--threads",
                str(task.threads), "--no-progress"]
    if task.variant in HRM_VARIANTS:
        cmd = [sys.executable, "-m", "hrm_agent.train", "--env", env_id, f"--{task.variant}-z"]
    else:
        cmd = [sys.executable, "-m", "hrm_agent.baselines", "--algo", task.variant, "--env", env_id]
    cmd += ["--seed", str(task.seed), "--total-steps", str(budget), "--threads", str(task.threads), "--no-progress",
            "--run-dir", str(task.run_dir)]
    cmd += [f"--set={s}" for s in task.settings] + [f"--env-kwarg={k}" for k in env_kwargs]
    return cmd


def _claim(path: Path) -> int | None:
    """An exclusive lock on the directory ``path`` (its open descriptor), or None when another holds it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


class Launcher:
    """Runs training processes from worker threads; :meth:`stop` interrupts the running ones and starts no more.

    ``Launcher(root, env_id, env_kwargs, budget)(task)`` claims the task's run directory when the task
    starts (an unfinished HRM run of it under ``root``, else a new ``{env}__{variant}__{seed}__{time}``),
    trains there and returns the exit code and the last line of output.
    """

    def __init__(self, root: Path, env_id: str, env_kwargs: dict[str, Any], kwarg_items: list[str],
                 budget: int) -> None:
        self.root, self.env_id, self.env_kwargs, self.kwarg_items, self.budget = (
            root, env_id, env_kwargs, kwarg_items, budget)
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()
        self._stopped = False

    def claim(self, task: Task) -> int:
        """Set ``task.run_dir`` (and ``task.resumed``) to the directory it trains in, locked: returns the lock."""
        from hrm_agent.checkpoint import LAST_CHECKPOINT
        from hrm_agent.runs import default_run_dir

        if task.variant in HRM_VARIANTS:
            for run_dir in candidates(self.root, task, self.env_id, self.env_kwargs, self.budget):
                if (run_dir / LAST_CHECKPOINT).is_file() and not (run_dir / "summary.json").is_file():
                    fd = _claim(run_dir)
                    if fd is not None:
                        task.run_dir, task.resumed = run_dir, True
                        return fd
        while True:
            run_dir = default_run_dir(self.env_id, task.variant, task.seed, root=self.root)
            fd = _claim(run_dir)
            if fd is not None:
                task.run_dir, task.resumed = run_dir, False
                return fd

    def __call__(self, task: Task) -> tuple[int, str]:
        """Run one training process; its output goes to ``train.log`` in its run directory (after the
        log of the run it continues)."""
        from hrm_agent.checkpoint import atomic_write
        from hrm_agent.runs import error_line

        env = {**os.environ, "OMP_NUM_THREADS": str(task.threads), "MKL_NUM_THREADS": str(task.threads)}
        with self._lock:
            if self._stopped:
                return -1, "not started: interrupted"
            fd = self.claim(task)
            assert task.run_dir is not None
            if task.resumed:
                print(f"resuming {task.run_dir} from its last checkpoint", flush=True)
            cmd = command(task, self.env_id, self.budget, self.kwarg_items)
            try:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            except OSError:
                os.close(fd)
                raise
            self._running.add(proc)
        try:
            out, err = proc.communicate()
        finally:
            with self._lock:
                self._running.discard(proc)
                # a training stopped by Ctrl-C sent to it alone: start no more (the caller stops the rest)
                self._stopped = self._stopped or proc.returncode == EXIT_INTERRUPTED
            os.close(fd)
        last = (err.strip().splitlines() or out.strip().splitlines() or [""])[-1]
        log = task.run_dir / "train.log"
        try:
            before = log.read_text() if task.resumed and log.is_file() else ""
            atomic_write(log, lambda f: f.write(f"{before}$ {' '.join(cmd)}\n{out}{err}".encode()))
        except OSError as write_error:  # the run's own outcome still counts; its log is what is lost
            last = f"{last} (and {error_line(write_error)})"
        return proc.returncode, last

    def stop(self) -> None:
        """Ctrl-C for the running trainings (each writes a checkpoint and exits); no new ones start."""
        with self._lock:
            self._stopped = True
            for proc in self._running:
                proc.send_signal(signal.SIGINT)
