"""``python -m hrm_agent.bench learn``: how well and how fast each learner learns one env on a fixed budget.

Trains, for seeds ``0 .. K-1``, the HRM agent with carry z and with reset z
(``python -m hrm_agent.train``) and stable-baselines3 DQN, PPO and sb3-contrib
RecurrentPPO (``python -m hrm_agent.baselines``), each as its own process with
``--threads`` torch threads (default 1), up to ``--jobs`` at a time (``--jobs 1 --threads 2``: one run
alone on a 2-core machine; ``--threads hrm:2`` gives the named learners their own count, with the
prefixes of ``--set``), and evaluates the BFS oracle (the
ceiling: it replans on the true grid every step) with the same greedy protocol
(:func:`hrm_agent.evaluate.evaluate`, episodes seeded ``seed + 1,000,000 + i``).

Every finished run is appended to the results file (default
``analysis/results/bench_learn.csv``, meant to be committed) and is not run
again: the same command continues an interrupted benchmark, and a larger
``--seeds`` only adds seeds. A run is identified by env, env kwargs, learner,
seed, budget, the ``--set`` items that apply to it, a fingerprint of the
package defaults it resolved to (``defaults``: the env's parameters and the
learner's full config) and its threads, so rows recorded under other defaults,
or timed at another thread count, are never reused.

Writes beside the results file, for the runs this command asked for:
``{results stem}_{env}.md`` (per learner, mean ± standard error over seeds of
the final greedy success rate and path efficiency; env steps to first reach
90 % greedy success; training wall-clock) and ``.png``/``.svg`` of the same with
the greedy learning curves.

``--set [LEARNER:]KEY=VALUE`` passes ``--set KEY=VALUE`` to the learners it
names: ``hrm`` (carry and reset), ``sb3`` (dqn, ppo, recurrent-ppo), one
learner, or without a prefix every learner (keys both kinds have: ``n_envs``,
``eval_freq``, ``eval_episodes``, ``checkpoint_freq``, ``learning_rate``,
``gamma``, ...). The oracle takes ``eval_episodes`` only.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hrm_agent.analysis import bootstrap_difference, format_mean_se, mean_se, number
from hrm_agent.runs import UsageError

DEFAULT_RESULTS = Path("analysis") / "results" / "bench_learn.csv"
HRM_VARIANTS = ("carry", "reset")
SB3_ALGOS = ("dqn", "ppo", "recurrent-ppo")
LEARNERS = (*HRM_VARIANTS, *SB3_ALGOS, "oracle")
LABELS = {"carry": "HRM carry z", "reset": "HRM reset z", "dqn": "SB3 DQN", "ppo": "SB3 PPO",
          "recurrent-ppo": "RecurrentPPO", "oracle": "BFS oracle"}
COLOURS = {"carry": "tab:blue", "reset": "tab:orange", "dqn": "tab:green", "ppo": "tab:red",
           "recurrent-ppo": "tab:purple", "oracle": "black"}
# ``--set`` prefix -> the learners it reaches
PREFIXES = {"hrm": HRM_VARIANTS, "sb3": SB3_ALGOS, **{name: (name,) for name in LEARNERS}}
FIELDS = [
    "env", "env_kwargs", "variant", "seed", "budget", "settings", "defaults", "total_steps", "final_success",
    "final_success_se", "path_efficiency", "path_efficiency_se", "mean_ep_length", "steps_to_90",
    "wall_clock_s", "threads", "run", "curve", "minutes_to_90",
]
KEY_FIELDS = ("env", "env_kwargs", "variant", "seed", "budget", "settings", "defaults")


class BenchError(UsageError):
    """A user mistake or unreadable results file: one line, exit code 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", required=True, help="registered env id, e.g. DynamicMaze-v0")
    parser.add_argument("--seeds", type=int, required=True, help="seeds 0 .. K-1 of every learner")
    parser.add_argument("--budget", type=int, required=True, help="env steps of every training run")
    parser.add_argument("--jobs", type=int, default=2, help="training runs at a time (default 2)")
    parser.add_argument("--threads", action="append", default=[], metavar="[LEARNER:]N",
                        help="torch CPU threads of each training run (default 1; with --jobs 1 --threads 2, "
                             "each run has a 2-core machine to itself); with a prefix as for --set "
                             "(hrm, sb3, one learner), for those learners only; later items win")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                        help=f"results file: finished runs, never re-run (default {DEFAULT_RESULTS})")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run directories go (default runs)")
    parser.add_argument("--learners", default=",".join(LEARNERS),
                        help=f"comma-separated subset of {','.join(LEARNERS)} (default all)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="[LEARNER:]KEY=VALUE",
                        help="hyperparameter for the learners named (hrm, sb3, or one learner; none: all)")
    parser.add_argument("--env-kwarg", dest="env_kwargs", action="append", default=[], metavar="KEY=VALUE",
                        help="gym.make keyword for every learner, e.g. --env-kwarg size=9")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: rewrite the table and figures from the rows already in --results "
                             "that this command covers (e.g. while some of its runs are still to do)")


# ------------------------------------------------------------------ planning


@dataclass
class Task:
    variant: str
    seed: int
    settings: list[str]  # --set items that apply to this learner
    key: tuple[str, ...] = field(default=())  # run_key(...) + (threads,)
    run_dir: Path | None = None
    threads: int = 1


def split_overrides(items: list[str]) -> dict[str, list[str]]:
    """``--set`` items -> the ``KEY=VALUE`` items of each learner, in the order given.

    The oracle only takes ``eval_episodes`` (an unprefixed one reaches it; other unprefixed keys do not).
    """
    per_learner: dict[str, list[str]] = {name: [] for name in LEARNERS}
    for item in items:
        head, sep, _ = item.partition("=")
        if not sep or not head:
            raise BenchError(f"--set {item!r} must look like [LEARNER:]KEY=VALUE (e.g. sb3:learning_rate=3e-4)")
        prefix, colon, key = head.partition(":")
        if colon:
            if prefix not in PREFIXES:
                raise BenchError(f"--set {item!r}: unknown learner {prefix!r}; use one of {', '.join(PREFIXES)}")
            if prefix == "oracle" and key.strip() != "eval_episodes":
                raise BenchError(f"--set {item!r}: the oracle takes only eval_episodes")
            targets, text = PREFIXES[prefix], item[len(prefix) + 1:]
        else:
            key, text = head, item
            targets = LEARNERS if key.strip() == "eval_episodes" else tuple(n for n in LEARNERS if n != "oracle")
        for name in targets:
            per_learner[name].append(text)
    return per_learner


def split_threads(items: list[str]) -> dict[str, int]:
    """``--threads`` items -> each trained learner's torch threads (default 1; later items win).

    The oracle is evaluated in this process and always counts as one thread.
    """
    threads = {name: 1 for name in LEARNERS}
    for item in items:
        prefix, colon, text = item.rpartition(":")
        if colon and prefix not in PREFIXES:
            raise BenchError(f"--threads {item!r}: unknown learner {prefix!r}; use one of {', '.join(PREFIXES)}")
        try:
            count = int(text)
        except ValueError:
            raise BenchError(f"--threads {item!r} must look like [LEARNER:]N (e.g. 2 or hrm:2)") from None
        if count < 1:
            raise BenchError(f"--threads must be at least 1, got {item!r}")
        for name in PREFIXES[prefix] if colon else LEARNERS:
            threads[name] = count
    threads["oracle"] = 1
    return threads


def check_settings(env_id: str, learners: list[str], per_learner: dict[str, list[str]],
                   env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Resolve and check every learner's config once (:func:`hrm_agent.runs.check_config`: the model
    with the env's token grid too), so a bad ``--set`` fails before anything runs; returns them."""
    from hrm_agent.baselines.config import resolve_baseline_config
    from hrm_agent.hyperparams import ConfigError, resolve_config
    from hrm_agent.runs import check_config, check_env
    from hrm_agent.tokens import Tokenizer

    resolved: dict[str, Any] = {}
    for name in learners:
        try:
            if name in HRM_VARIANTS:
                config = resolve_config(env_id, None, per_learner[name], carry_z=name == "carry")
            elif name in SB3_ALGOS:
                config = resolve_baseline_config(name, env_id, None, per_learner[name])
            else:
                resolved[name] = {"eval_episodes": oracle_episodes(env_id, per_learner[name])}
                try:  # the oracle plans on the token grid
                    Tokenizer(check_env(env_id, env_kwargs or {})[0], crop_border=False)
                except ValueError as err:
                    raise BenchError(f"oracle: {str(err).replace('the HRM agent needs', 'the oracle needs')}") from None
                continue
            check_config(env_id, env_kwargs or {}, config)
            resolved[name] = config.model_dump()
        except (ConfigError, UsageError) as err:
            if isinstance(err, BenchError):
                raise
            hint = (" (an unprefixed --set reaches every learner; prefix it, e.g. --set hrm:KEY=VALUE)"
                    if "Extra inputs" in str(err) else "")
            raise BenchError(f"{name}: {err}{hint}") from None
    return resolved


# Config fields added after results were recorded, with the value that does what runs did before
# them: left out of the fingerprint at that value, so older rows still match.
FINGERPRINT_OFF = {"her_ratio": 0.0, "save_eval_models": False}
# the same for fields of a nested section: the HRM's ``model``, the baselines' ``policy``
FINGERPRINT_NESTED_OFF = {"model": {"readout": "query", "stay_on_blocked": False, "core": "hrm"},
                          "policy": {"view": "grid"}}
# A config's default budget does not change a run (bench learn passes its own): hashed as this constant
# (the default budget of every learner when fingerprints began), so changing a default budget keeps rows.
FINGERPRINT_TOTAL_STEPS = 60_000


def fingerprint(env_id: str, env_kwargs: dict[str, Any], learner_config: dict[str, Any]) -> str:
    """Short hash of everything a run's outcome depends on besides seed and budget: the env's
    parameters with their current defaults and the learner's resolved config. A row recorded under
    other package defaults has another fingerprint, so it is never taken for this run."""
    import hashlib
    import inspect

    import gymnasium as gym

    entry = gym.spec(env_id).entry_point
    if isinstance(entry, str):
        module, _, name = entry.partition(":")
        entry = getattr(__import__(module, fromlist=[name]), name)
    params = {p.name: p.default for p in inspect.signature(entry).parameters.values()
              if p.default is not inspect.Parameter.empty}
    learner_config = {k: v for k, v in learner_config.items()
                      if not (k in FINGERPRINT_OFF and v == FINGERPRINT_OFF[k])}
    if "total_steps" in learner_config:  # the run's budget (--total-steps, a key field) replaces it
        learner_config["total_steps"] = FINGERPRINT_TOTAL_STEPS
    for section, off in FINGERPRINT_NESTED_OFF.items():
        if isinstance(learner_config.get(section), dict):
            learner_config[section] = {k: v for k, v in learner_config[section].items()
                                       if not (k in off and v == off[k])}
    text = json.dumps({"env": env_id, "env_params": {**params, **env_kwargs}, "learner": learner_config},
                      sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def oracle_episodes(env_id: str, settings: list[str]) -> int:
    """Evaluation episodes of the oracle: the HRM agent's for this env, or ``--set [oracle:]eval_episodes=N``."""
    from hrm_agent.hyperparams import parse_override, resolve_config

    episodes = resolve_config(env_id).eval_episodes
    for text in settings:
        path, value = parse_override(text)
        if path == ["eval_episodes"]:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise BenchError(f"oracle: eval_episodes must be a positive integer, got {value!r}")
            episodes = value
    return episodes


def kwargs_label(env_kwargs: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(env_kwargs.items()))


def row_key(row: dict[str, str]) -> tuple[str, ...]:
    """A results row's identity: its KEY_FIELDS and the torch threads it ran with (rows without: 1)."""
    return (*(row[k] for k in KEY_FIELDS), row.get("threads") or "1")


def run_key(env_id: str, env_kwargs: str, variant: str, seed: int, budget: int, settings: list[str],
            defaults: str) -> tuple[str, ...]:
    return (env_id, env_kwargs, variant, str(seed), str(budget), " ".join(settings), defaults)


# ------------------------------------------------------------------ results file


def read_results(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            # rows from before the "defaults" fingerprint have none: they match no new run
            missing = [k for k in KEY_FIELDS if k != "defaults" and k not in (reader.fieldnames or [])]
            if missing:
                raise BenchError(f"{path} is not a bench learn results file (no column {missing[0]})")
            return [{"defaults": "", **row} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise BenchError(f"cannot read {path}: {err}") from None


def write_results(path: Path, rows: list[dict[str, Any]]) -> None:
    from hrm_agent.analysis import write_csv

    write_csv(path, FIELDS, [{k: ("" if r.get(k) is None else r[k]) for k in FIELDS} for r in rows])


def row_from_summary(task: Task, env_id: str, env_kwargs: str, budget: int, summary: dict[str, Any],
                     run: str) -> dict[str, Any]:
    final = summary.get("final_eval") or {}
    curve = ";".join(f"{h['step']}:{h['success_rate']:.4g}" for h in summary.get("eval_history", []))
    return {
        "env": env_id, "env_kwargs": env_kwargs, "variant": task.variant, "seed": task.seed, "budget": budget,
        "settings": " ".join(task.settings), "defaults": task.key[KEY_FIELDS.index("defaults")],
        "total_steps": summary.get("total_steps"),
        "final_success": final.get("success_rate"), "final_success_se": final.get("success_rate_se"),
        "path_efficiency": final.get("path_efficiency"), "path_efficiency_se": final.get("path_efficiency_se"),
        "mean_ep_length": final.get("mean_ep_length"), "steps_to_90": summary.get("steps_to_90"),
        "minutes_to_90": summary.get("minutes_to_90"),
        "wall_clock_s": summary.get("wall_clock_s"), "threads": summary.get("threads"), "run": run, "curve": curve,
    }


# ------------------------------------------------------------------ running


def command(task: Task, env_id: str, budget: int, env_kwargs: list[str]) -> list[str]:
    assert task.run_dir is not None
    if task.variant in HRM_VARIANTS:
        cmd = [sys.executable, "-m", "hrm_agent.train", "--env", env_id, f"--{task.variant}-z"]
    else:
        cmd = [sys.executable, "-m", "hrm_agent.baselines", "--algo", task.variant, "--env", env_id]
    cmd += ["--seed", str(task.seed), "--total-steps", str(budget), "--threads", str(task.threads), "--no-progress",
            "--run-dir", str(task.run_dir)]
    cmd += [f"--set={s}" for s in task.settings] + [f"--env-kwarg={k}" for k in env_kwargs]
    return cmd


class Launcher:
    """Runs training processes from worker threads; :meth:`stop` interrupts the running ones and starts no more."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()
        self._stopped = False

    def __call__(self, task: Task, cmd: list[str]) -> tuple[int, str]:
        """Run one training process; its output goes to ``train.log`` in its run directory."""
        assert task.run_dir is not None
        env = {**os.environ, "OMP_NUM_THREADS": str(task.threads), "MKL_NUM_THREADS": str(task.threads)}
        with self._lock:
            if self._stopped:
                return -1, "not started: interrupted"
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            self._running.add(proc)
        try:
            out, err = proc.communicate()
        finally:
            with self._lock:
                self._running.discard(proc)
        last = (err.strip().splitlines() or out.strip().splitlines() or [""])[-1]
        from hrm_agent.checkpoint import atomic_write
        from hrm_agent.runs import error_line

        try:
            atomic_write(task.run_dir / "train.log", lambda f: f.write(f"$ {' '.join(cmd)}\n{out}{err}".encode()))
        except OSError as write_error:  # the run's own outcome still counts; its log is what is lost
            last = f"{last} (and {error_line(write_error)})"
        return proc.returncode, last

    def stop(self) -> None:
        """Ctrl-C for the running trainings (each writes a checkpoint and exits); no new ones start."""
        with self._lock:
            self._stopped = True
            for proc in self._running:
                proc.send_signal(signal.SIGINT)


def evaluate_oracle(env_id: str, env_kwargs: dict[str, Any], seed: int, episodes: int) -> dict[str, Any]:
    """The oracle's ``summary.json``-shaped record: one greedy evaluation on the training runs' episodes."""
    from envs.oracle import BFSOracle
    from hrm_agent.evaluate import EVAL_SEED_OFFSET
    from hrm_agent.baselines.sb3 import EvalPolicy
    from hrm_agent.evaluate import evaluate

    start = time.perf_counter()
    result = evaluate(EvalPolicy(BFSOracle(seed), env_id, env_kwargs, "oracle"), episodes,
                      seed=seed + EVAL_SEED_OFFSET).summary()
    history = [{"step": 0, **result}]
    return {"total_steps": 0, "final_eval": result, "eval_history": history,
            "steps_to_90": 0 if result["success_rate"] >= 0.9 else None,
            "wall_clock_s": round(time.perf_counter() - start, 1), "threads": 1}


# ------------------------------------------------------------------ table and figure


def by_learner(rows: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    groups: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        groups[r["variant"]].append(r)
    return {name: sorted(groups[name], key=lambda r: int(r["seed"])) for name in LEARNERS if name in groups}


def curve_mean(row: dict[str, str]) -> float | None:
    """Mean greedy success over a run's evaluations during training: the area under its success curve
    over the budget (evaluations are evenly spaced), a less noisy summary than the final evaluation."""
    values = [value for _, value in parse_curve(row.get("curve", ""))]
    return sum(values) / len(values) if values else None


def minutes_to_90(row: dict[str, str]) -> float | None:
    """Wall-clock minutes of training to the first evaluation at 90 %, as that evaluation recorded them
    (None for a run that did not reach it, or whose evaluations recorded no wall-clock)."""
    return number(row.get("minutes_to_90"))


def threads_label(threads: int | dict[str, int], suffix: str = " each") -> str:
    """``2 threads each``; given the trained learners' threads and they differ, per learner:
    ``threads per run: 2 for HRM carry z, HRM reset z; 1 for SB3 DQN``."""
    if isinstance(threads, dict):
        groups: dict[int, list[str]] = defaultdict(list)
        for name, n in threads.items():
            groups[n].append(LABELS[name])
        if len(groups) > 1:
            return "threads per run: " + "; ".join(f"{n} for {', '.join(names)}" for n, names in groups.items())
        threads = next(iter(groups), 1)
    return f"{threads} thread{'s' if threads > 1 else ''}{suffix}"


def table(rows: list[dict[str, str]], env_id: str, env_kwargs: str, budget: int,
          threads: int | dict[str, int] = 1) -> str:
    env = f"{env_id} ({env_kwargs})" if env_kwargs else env_id
    lines = [
        f"bench learn: {env}, budget {budget:,} env steps per training run "
        f"({threads_label(threads)}), greedy evaluation (mean ± standard error over seeds)",
        "",
        "| learner | seeds | greedy success | path efficiency | steps to 90 % | wall-clock (min) | "
        "mean success over the evaluations |",
        "|---|---|---|---|---|---|---|",
    ]
    groups = by_learner(rows)
    for name, group in groups.items():
        success = [x for r in group if (x := number(r["final_success"])) is not None]
        efficiency = [x for r in group if (x := number(r["path_efficiency"])) is not None]
        reached = sorted(int(x) for r in group if (x := number(r["steps_to_90"])) is not None)
        minutes_reached = sorted(x for r in group if (x := minutes_to_90(r)) is not None)
        if name == "oracle":
            to_90 = "– (no training)"
        elif reached:
            to_90 = (f"{len(reached)}/{len(group)} runs; median {reached[len(reached) // 2]:,}"
                     + (f" ({minutes_reached[len(minutes_reached) // 2]:.0f} min)" if minutes_reached else ""))
        else:
            to_90 = f"not reached (0/{len(group)})"
        minutes = [x / 60 for r in group if (x := number(r["wall_clock_s"])) is not None]
        curve = [x for r in group if (x := curve_mean(r)) is not None]
        seeds = ", ".join(r["seed"] for r in group)
        lines.append(f"| {LABELS[name]} | {seeds} | {format_mean_se(success)} | {format_mean_se(efficiency)} | {to_90} | "
                     f"{format_mean_se(minutes, 2)} | {format_mean_se(curve) if name != 'oracle' else '–'} |")
    if "carry" in groups and "reset" in groups:
        lines += ["", compare_variants(groups["carry"], groups["reset"])]
    return "\n".join(lines) + "\n"


def compare_variants(carry: list[dict[str, str]], reset: list[dict[str, str]]) -> str:
    """One line: carry z minus reset z in final success, mean success over the evaluations and steps to
    90 %, each with a 95 % bootstrap interval over seeds."""

    def diff(column: Any) -> str:
        values = [[x for r in group if (x := column(r)) is not None] for group in (carry, reset)]
        d, low, high = bootstrap_difference(*values)
        if math.isnan(d):
            return "–"
        interval = "" if math.isnan(low) else f" [{low:+.2f}, {high:+.2f}]"
        return f"{d:+.2f}{interval}"

    reached = [sum(number(r["steps_to_90"]) is not None for r in group) for group in (carry, reset)]
    if reached == [len(carry), len(reset)]:
        d, low, high = bootstrap_difference(*[[float(r["steps_to_90"]) for r in g] for g in (carry, reset)])
        steps = f"{d:+,.0f}" + ("" if math.isnan(low) else f" [{low:+,.0f}, {high:+,.0f}]")
    else:
        steps = f"cannot tell (reached by {reached[0]}/{len(carry)} and {reached[1]}/{len(reset)} runs)"
    return (f"carry z − reset z ({len(carry)} and {len(reset)} seeds; 95 % bootstrap interval over seeds): "
            f"final greedy success {diff(lambda r: number(r['final_success']))}; mean success over the "
            f"evaluations {diff(curve_mean)}; steps to 90 % {steps}.")


def parse_curve(text: str) -> list[tuple[int, float]]:
    points = []
    for item in filter(None, (text or "").split(";")):
        step, _, value = item.partition(":")
        if number(step) is not None and number(value) is not None:
            points.append((int(float(step)), float(value)))
    return points


def plot(rows: list[dict[str, str]], title: str, out_dir: Path, name: str,
         threads: int | dict[str, int] = 1) -> list[Path]:
    from matplotlib.figure import Figure

    from hrm_agent.analysis import save_figure

    groups = by_learner(rows)
    names = list(groups)
    fig = Figure(figsize=(15, 7.5), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    fig.suptitle(title, fontsize=10)

    ax = axes[0]  # learning curves: mean greedy success over seeds at each evaluation step
    for learner, group in groups.items():
        if learner == "oracle":
            ax.axhline(mean_se([float(r["final_success"]) for r in group])[0], color="black", ls="--",
                       label=LABELS[learner])
            continue
        per_step: dict[int, list[float]] = defaultdict(list)
        for r in group:
            curve = parse_curve(r["curve"])
            if curve:  # every seed, thin
                ax.plot(*zip(*curve), color=COLOURS[learner], alpha=0.3, lw=0.8)
            for step, value in curve:
                per_step[step].append(value)
        if per_step:
            steps = sorted(per_step)
            ax.plot(steps, [sum(per_step[s]) / len(per_step[s]) for s in steps], marker=".",
                    color=COLOURS[learner], label=LABELS[learner])
    ax.set(title="greedy success during training (thin: each seed; bold: mean)", xlabel="environment steps",
           ylabel="success rate", ylim=(-0.02, 1.02))
    ax.legend(fontsize=7)

    def bars(ax: Any, column: str, title: str, scale: float = 1.0, ylim: tuple[float, float] | None = None) -> None:
        for i, learner in enumerate(names):
            values = [x * scale for r in groups[learner] if (x := number(r[column])) is not None]
            if not values:
                continue
            m, se = mean_se(values)
            ax.bar(i, m, yerr=0 if math.isnan(se) else se, color=COLOURS[learner], capsize=4, alpha=0.85)
            ax.plot([i] * len(values), values, "k.", ms=4)
        ax.set_xticks(range(len(names)), [LABELS[n] for n in names], rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        if ylim:
            ax.set_ylim(*ylim)

    bars(axes[1], "final_success", "final greedy success (mean ± SE, dots: seeds)", ylim=(0, 1.05))
    bars(axes[2], "path_efficiency", "path efficiency of successful episodes", ylim=(0, 1.2))
    bars(axes[4], "wall_clock_s", f"training wall-clock (min, {threads_label(threads, ' per run')})",
         scale=1 / 60)

    ax = axes[3]  # steps to first reach 90 %: a dot per seed, a cross at the top for runs that never did
    trained = [n for n in names if n != "oracle"]
    budget = max([int(r["budget"]) for r in rows] or [1])
    for i, learner in enumerate(trained):
        for r in groups[learner]:
            x = number(r["steps_to_90"])
            ax.plot(i, budget * 1.05 if x is None else x, "x" if x is None else "o", color=COLOURS[learner])
    ax.axhline(budget, color="grey", lw=0.8)
    ax.set_xticks(range(len(trained)), [LABELS[n] for n in trained], rotation=30, ha="right", fontsize=8)
    ax.set(title="env steps to first reach 90 % greedy success (x: never)", ylim=(0, budget * 1.12))
    ax = axes[5]  # mean success over the evaluations (area under the curve), a dot per seed
    for i, learner in enumerate(trained):
        values = [x for r in groups[learner] if (x := curve_mean(r)) is not None]
        if values:
            m, se = mean_se(values)
            ax.bar(i, m, yerr=0 if math.isnan(se) else se, color=COLOURS[learner], capsize=4, alpha=0.85)
            ax.plot([i] * len(values), values, "k.", ms=4)
    ax.set_xticks(range(len(trained)), [LABELS[n] for n in trained], rotation=30, ha="right", fontsize=8)
    ax.set_title("mean success over the evaluations (area under the curve)", fontsize=10)
    ax.set_ylim(0, 1.05)
    for ax in axes:
        ax.grid(alpha=0.3)
    return save_figure(fig, out_dir, name)


# ------------------------------------------------------------------ command


def run(args: argparse.Namespace) -> int:
    return _run(args)  # a mistake: BenchError, one line and exit code 2 (bench's main)


def _run(args: argparse.Namespace) -> int:
    from hrm_agent.runs import check_env, check_writable, error_line, parse_env_kwargs

    if args.seeds < 1:
        raise BenchError(f"--seeds must be at least 1, got {args.seeds}")
    if args.budget < 1:
        raise BenchError(f"--budget must be positive, got {args.budget}")
    if args.jobs < 1:
        raise BenchError(f"--jobs must be at least 1, got {args.jobs}")
    learners = [n.strip() for n in args.learners.split(",") if n.strip()]
    unknown = [n for n in learners if n not in LEARNERS]
    if unknown or not learners:
        raise BenchError(f"--learners: unknown {', '.join(unknown) or '(none given)'}; choose from {','.join(LEARNERS)}")
    learners = [n for n in LEARNERS if n in learners]
    try:
        env_kwargs = parse_env_kwargs(args.env_kwargs)
        check_env(args.env, env_kwargs)
    except UsageError as err:
        raise BenchError(str(err)) from None
    per_learner = split_overrides(args.overrides)
    threads = split_threads(args.threads)
    resolved = check_settings(args.env, learners, per_learner, env_kwargs)
    kwargs_text = kwargs_label(env_kwargs)
    try:
        check_writable(args.results, "--results")
        if not args.report_only and [n for n in learners if n != "oracle"]:
            check_writable(args.runs_dir, "--runs-dir", directory=True)
    except UsageError as err:
        raise BenchError(str(err)) from None

    results_path: Path = args.results
    rows = read_results(results_path)
    done = {row_key(r) for r in rows}
    tasks = []
    for seed in range(args.seeds):
        for name in learners:
            task = Task(name, seed, per_learner[name], threads=threads[name])
            task.key = run_key(args.env, kwargs_text, name, seed, args.budget, task.settings,
                               fingerprint(args.env, env_kwargs, resolved[name])) + (str(task.threads),)
            tasks.append(task)
    todo = [t for t in tasks if t.key not in done]
    trained = {name: threads[name] for name in learners if name != "oracle"}
    plan = (f"report only, {len(todo)} left out" if args.report_only
            else f"{len(todo)} to run ({args.jobs} at a time, {threads_label(trained)})")
    print(f"bench learn: {args.env}{f' ({kwargs_text})' if kwargs_text else ''}, budget {args.budget:,}, "
          f"seeds 0-{args.seeds - 1}, {len(learners)} learners: {len(tasks) - len(todo)} of {len(tasks)} runs "
          f"already in {results_path}, {plan}")
    if args.report_only:
        if len(todo) == len(tasks):
            raise BenchError(f"--report-only: none of this command's runs is in {results_path}")
        todo = []

    try:
        return _execute(args, tasks, todo, rows, learners, threads, env_kwargs, kwargs_text)
    except OSError as err:  # a results or run file the file system refused, mid-benchmark
        from hrm_agent.runs import RunFault

        raise RunFault(f"{error_line(err)}; the runs recorded so far are in {results_path}: run the same "
                       "command again to continue") from None


def _execute(args: argparse.Namespace, tasks: list[Task], todo: list[Task], rows: list[dict[str, str]],
             learners: list[str], threads: dict[str, int], env_kwargs: dict[str, Any], kwargs_text: str) -> int:
    """Run ``todo``, record each finished run in the results file, then write the table and figures."""
    from hrm_agent.runs import default_run_dir

    results_path: Path = args.results
    trained = {name: threads[name] for name in learners if name != "oracle"}
    lock = threading.Lock()
    failures: list[str] = []

    def record(row: dict[str, Any]) -> None:
        # Another bench learn may share the results file: re-read it under an exclusive file
        # lock and append, so that rows finished elsewhere meanwhile are kept.
        import fcntl

        results_path.parent.mkdir(parents=True, exist_ok=True)
        with lock, open(results_path.with_name(f".{results_path.name}.lock"), "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            new = {k: ("" if row.get(k) is None else str(row[k])) for k in FIELDS}
            rows[:] = read_results(results_path) + [new]
            write_results(results_path, rows)

    def report(task: Task, row: dict[str, Any], index: int) -> None:
        success = number(row["final_success"])
        print(f"[{index}/{len(todo)}] {LABELS[task.variant]} seed {task.seed}: greedy success "
              f"{'–' if success is None else f'{success:.2f}'}, steps to 90 %: {row['steps_to_90'] or '–'}, "
              f"{float(row['wall_clock_s'] or 0):.0f} s", flush=True)

    finished = 0
    for task in (t for t in todo if t.variant == "oracle"):
        episodes = oracle_episodes(args.env, task.settings)
        summary = evaluate_oracle(args.env, env_kwargs, task.seed, episodes)
        row = row_from_summary(task, args.env, kwargs_text, args.budget, summary, run="")
        record(row)
        finished += 1
        report(task, row, finished)

    training = [t for t in todo if t.variant != "oracle"]
    for task in training:
        task.run_dir = default_run_dir(args.env, task.variant, task.seed, root=args.runs_dir)
    launcher = Launcher()
    pool = ThreadPoolExecutor(max_workers=args.jobs)
    try:
        futures = {pool.submit(launcher, t, command(t, args.env, args.budget, args.env_kwargs)): t
                   for t in training}
        for future in as_completed(futures):
            task = futures[future]
            assert task.run_dir is not None
            code, last_line = future.result()
            summary_path = task.run_dir / "summary.json"
            if code != 0 or not summary_path.is_file():
                failures.append(f"{task.variant} seed {task.seed} (exit {code}: {last_line}; "
                                f"log: {task.run_dir / 'train.log'})")
                print(f"failed: {failures[-1]}", file=sys.stderr, flush=True)
                continue
            row = row_from_summary(task, args.env, kwargs_text, args.budget,
                                   json.loads(summary_path.read_text()), run=task.run_dir.name)
            record(row)
            finished += 1
            report(task, row, finished)
    except KeyboardInterrupt:
        launcher.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        print(f"\ninterrupted; finished runs are in {results_path}: run the same command to continue",
              file=sys.stderr)
        return 130
    except OSError:  # the results file refused: stop the running trainings (each checkpoints) first
        launcher.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()

    keys = {t.key for t in tasks}
    selected = [r for r in rows if row_key(r) in keys]
    env_name = args.env.split(":")[-1].replace("/", "-")
    stem = f"{results_path.stem}_{env_name}"
    markdown = table(selected, args.env, kwargs_text, args.budget, trained)
    from hrm_agent.checkpoint import atomic_write

    table_path = results_path.with_name(stem + ".md")
    atomic_write(table_path, lambda f: f.write(markdown.encode()))
    figures = plot(selected, markdown.splitlines()[0], results_path.parent, stem, trained) if selected else []
    print()
    print(markdown, end="")
    written = [table_path, *figures] if args.report_only else [results_path, table_path, *figures]
    print("wrote " + ", ".join(str(p) for p in written))
    if failures:
        print(f"error: {len(failures)} run(s) failed: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0
