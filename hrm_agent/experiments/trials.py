"""A sweep's trials (``python -m hrm_agent.sweep``): the sweep file, the grid, the trials it plans,
the training of one trial on a Ray worker, and the results table of the trial run directories.

A sweep directory holds ``sweep.json`` (what was asked), ``runs/{trial name}/`` (one training run per
trial, with ``error.txt`` when it failed), ``summary.md`` and ``summary.csv``, and ``tune/``.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrm_agent.experiments.tune import eval_metrics
from hrm_agent.runs import UsageError

SWEEP_FILE = "sweep.json"
SWEEP_FORMAT = "hrm-agent-sweep"
SWEEP_VERSION = 1
CONFIG_COPY = "config.yaml"
RUNS = "runs"
TUNE_DIR = "tune"
ERROR_FILE = "error.txt"
SUMMARY_MD = "summary.md"
SUMMARY_CSV = "summary.csv"
VARIANTS = ("carry", "reset")
SUMMARY_FIELDS = ["trial", "env", "variant", "seed", "grid", "status", "total_steps", "final_success",
                  "final_success_se", "path_efficiency", "steps_to_90", "wall_clock_s", "error", "run"]


# ------------------------------------------------------------------ what a sweep is


@dataclass(frozen=True)
class Trial:
    env: str
    variant: str
    seed: int
    grid: tuple[tuple[str, Any], ...]  # (key, value) of each --grid axis

    @property
    def name(self) -> str:
        """Its run directory's name: ``{env}__{variant}__{seed}[__{key}={value},...]``."""
        return self._name(str(self.seed))

    @property
    def seeds_pattern(self) -> str:
        """The glob of the run directories of all seeds of its env x variant x grid values."""
        return self._name("*")

    def _name(self, seed: str) -> str:
        name = f"{self.env.split(':')[-1].replace('/', '-')}__{self.variant}__{seed}"
        if self.grid:
            name += "__" + ",".join(f"{k}={v}" for k, v in self.grid)
        return re.sub(r"[^A-Za-z0-9._=,+*-]", "_", name)

    @property
    def grid_label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.grid)

    def overrides(self) -> list[str]:
        """The grid values as ``--set`` items (after the sweep's own ``--set`` items)."""
        return [f"{k}={json.dumps(v)}" for k, v in self.grid]


def parse_grid(items: list[str]) -> list[tuple[str, list[Any]]]:
    """``["learning_rate=3e-4,1e-3", ...]`` -> ``[("learning_rate", [0.0003, 0.001]), ...]`` (values parsed as YAML)."""
    from hrm_agent.hyperparams import ConfigError, parse_override

    axes: list[tuple[str, list[Any]]] = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise UsageError(f"--grid {item!r} must look like KEY=V1,V2,... (e.g. learning_rate=3e-4,1e-3)")
        if key in (k for k, _ in axes):
            raise UsageError(f"--grid {key} is given twice")
        values = []
        for value_text in text.split(","):
            try:
                path, value = parse_override(f"{key}={value_text.strip()}")
            except ConfigError as err:
                raise UsageError(f"--grid {item!r}: {err}") from None
            values.append(value)
        if len(set(map(json.dumps, values))) != len(values):
            raise UsageError(f"--grid {item!r} repeats a value")
        axes.append((".".join(path), values))
    return axes


def plan(spec: dict[str, Any]) -> list[Trial]:
    """Every trial of a sweep, in a fixed order: env, variant, grid combination, seed."""
    axes = [(key, values) for key, values in spec["grid"]]
    combos = list(itertools.product(*(values for _, values in axes))) if axes else [()]
    return [
        Trial(env, variant, seed, tuple((key, value) for (key, _), value in zip(axes, combo)))
        for env in spec["envs"]
        for variant in spec["variants"]
        for combo in combos
        for seed in range(spec["seeds"])
    ]


def validate(spec: dict[str, Any], sweep_dir: Path) -> None:
    """Every trial's env and config resolve and pass :func:`hrm_agent.runs.check_config` (``hrm_agent.train``
    would accept them), else UsageError."""
    from hrm_agent.hyperparams import resolve_config
    from hrm_agent.runs import check_config, check_env, parse_env_kwargs

    if spec["seeds"] < 1:
        raise UsageError(f"--seeds must be at least 1, got {spec['seeds']}")
    if spec["total_steps"] is not None and spec["total_steps"] < 1:
        raise UsageError(f"--total-steps must be positive, got {spec['total_steps']}")
    unknown = [v for v in spec["variants"] if v not in VARIANTS]
    if unknown:
        raise UsageError(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if len(set(spec["envs"])) != len(spec["envs"]) or len(set(spec["variants"])) != len(spec["variants"]):
        raise UsageError("--env and --variants must not repeat a value")
    config_file = sweep_dir / spec["config"] if spec["config"] else None
    try:
        env_kwargs = parse_env_kwargs(spec["env_kwargs"])
        for env in spec["envs"]:
            check_env(env, env_kwargs)
    except UsageError as err:
        raise UsageError(str(err)) from None
    seen = set()
    for trial in plan(spec):
        key = (trial.env, trial.variant, trial.grid)
        if key in seen:
            continue
        seen.add(key)
        try:
            config = resolve_config(trial.env, config_file, spec["overrides"] + trial.overrides(),
                                    trial.variant == "carry")
            check_config(trial.env, env_kwargs, config)
        except UsageError as err:
            where = f"{trial.env}, {trial.variant} z" + (f", {trial.grid_label}" if trial.grid else "")
            raise UsageError(f"{where}: {err}") from None


def read_spec(sweep_dir: Path) -> dict[str, Any]:
    path = sweep_dir / SWEEP_FILE
    if not path.is_file():
        raise UsageError(f"{sweep_dir} is not a sweep directory (no {SWEEP_FILE})")
    try:
        spec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UsageError(f"cannot read {path}: {str(err).splitlines()[0]}") from None
    if not isinstance(spec, dict) or spec.get("format") != SWEEP_FORMAT:
        raise UsageError(f"{path} is not an hrm-agent sweep file")
    if spec.get("version") != SWEEP_VERSION:
        raise UsageError(f"{path} has version {spec.get('version')!r}; this hrm-agent reads version {SWEEP_VERSION}")
    return spec


# ------------------------------------------------------------------ one trial (runs in a Ray worker)


def train_argv(spec: dict[str, Any], trial: Trial, sweep_dir: Path, threads: int, device: str) -> list[str]:
    """The ``python -m hrm_agent.train`` arguments of a trial: a fresh start, or ``--resume`` from its checkpoint."""
    from hrm_agent.checkpoint import LAST_CHECKPOINT

    run_dir = sweep_dir / RUNS / trial.name
    common = ["--threads", str(threads), "--device", device, "--no-progress"]
    if spec["total_steps"] is not None:
        common += ["--total-steps", str(spec["total_steps"])]
    if (run_dir / LAST_CHECKPOINT).is_file():
        return ["--resume", str(run_dir), *common]
    argv = ["--env", trial.env, f"--{trial.variant}-z", "--seed", str(trial.seed), "--run-dir", str(run_dir), *common]
    if spec["config"]:
        argv += ["--config", str(sweep_dir / spec["config"])]
    argv += [f"--set={item}" for item in spec["overrides"] + trial.overrides()]
    return argv + [f"--env-kwarg={item}" for item in spec["env_kwargs"]]


def run_trial(tune_config: dict[str, Any]) -> None:
    """Tune's function trainable: one ``hrm_agent.train`` run, its evaluations reported as they come."""
    from ray import tune

    from hrm_agent import train
    from hrm_agent.checkpoint import LAST_CHECKPOINT, atomic_write

    config = tune_config["trial"]
    sweep_dir = Path(config["sweep_dir"])
    spec = read_spec(sweep_dir)
    trial = Trial(config["env"], config["variant"], config["seed"], tuple(tuple(kv) for kv in config["grid"]))
    run_dir = sweep_dir / RUNS / trial.name
    (run_dir / ERROR_FILE).unlink(missing_ok=True)
    if run_dir.is_dir() and not (run_dir / LAST_CHECKPOINT).is_file():
        shutil.rmtree(run_dir)  # an attempt that stopped before its first checkpoint: nothing to continue
    args = train.build_parser().parse_args(train_argv(spec, trial, sweep_dir, config["threads"], config["device"]))

    reported = 0

    def report(agent: Any) -> None:
        nonlocal reported
        for record in agent.eval_history[reported:]:
            tune.report(eval_metrics(record))
        reported = len(agent.eval_history)

    try:
        agent, summary = train.run(args, callback=report)
        if summary is None:
            raise RuntimeError(f"stopped at step {agent.num_timesteps} before the end; resume the sweep to continue")
    except BaseException as err:
        message = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
        try:  # also when the trial failed before its run directory was made
            atomic_write(run_dir / ERROR_FILE, lambda f: f.write(message.encode() + b"\n"))
        except OSError:
            pass
        raise
    report(agent)  # the final evaluation, made after the last step


# ------------------------------------------------------------------ the results table


def trial_row(sweep_dir: Path, trial: Trial) -> dict[str, Any]:
    """One trial's status (finished / failed / pending) and final results, from its run directory."""
    run_dir = sweep_dir / RUNS / trial.name
    row: dict[str, Any] = {"trial": trial.name, "env": trial.env, "variant": trial.variant, "seed": trial.seed,
                           "grid": trial.grid_label, "status": "pending", "error": "",
                           "run": str(Path(RUNS) / trial.name), "pattern": str(Path(RUNS) / trial.seeds_pattern)}
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, ValueError) as err:
            raise UsageError(f"cannot read {summary_path}: {str(err).splitlines()[0]}") from None
        final = summary.get("final_eval") or {}
        row.update(status="finished", total_steps=summary.get("total_steps"),
                   final_success=final.get("success_rate"), final_success_se=final.get("success_rate_se"),
                   path_efficiency=final.get("path_efficiency"), steps_to_90=summary.get("steps_to_90"),
                   wall_clock_s=summary.get("wall_clock_s"))
    elif (run_dir / ERROR_FILE).is_file():
        row.update(status="failed", error=(run_dir / ERROR_FILE).read_text().strip())
    return row


def summary_table(sweep_dir: Path, spec: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """Markdown: per env x variant (x grid values), final greedy success and path efficiency over seeds."""
    from hrm_agent.experiments.tables import sweep_table

    budget = f"{spec['total_steps']:,} env steps" if spec["total_steps"] else "the env's default budget"
    title = (f"sweep {sweep_dir}: {len(rows)} trials, {budget} each; greedy evaluation at the end of training "
             "(mean ± standard error over the finished seeds)")
    return sweep_table(title, rows, f"python -m hrm_agent.sweep --resume {sweep_dir}")


def write_summary(sweep_dir: Path, spec: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Write ``summary.md`` and ``summary.csv`` in the sweep directory; return the markdown and the rows."""
    from hrm_agent.checkpoint import atomic_write
    from hrm_agent.experiments.store import write_csv

    rows = [trial_row(sweep_dir, trial) for trial in plan(spec)]
    markdown = summary_table(sweep_dir, spec, rows)
    write_csv(sweep_dir / SUMMARY_CSV, SUMMARY_FIELDS, [{k: ("" if r.get(k) is None else r[k])
                                                          for k in SUMMARY_FIELDS} for r in rows])
    atomic_write(sweep_dir / SUMMARY_MD, lambda f: f.write(markdown.encode()))
    return markdown, rows


def error_file(config: dict[str, Any]) -> Path:
    """The ``error.txt`` of the trial of a Tune trial config."""
    return Path(config["sweep_dir"]) / RUNS / config["name"] / ERROR_FILE
