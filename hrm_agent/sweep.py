"""Multi-seed, multi-variant sweeps on Ray Tune: ``python -m hrm_agent.sweep``.

    python -m hrm_agent.sweep --env DynamicMaze-v0 FourRooms-v0 --variants carry reset --seeds 5
    python -m hrm_agent.sweep --env DynamicMaze-v0 --seeds 3 --grid learning_rate=3e-4,1e-3
    python -m hrm_agent.sweep --resume runs/sweep__20261123-150000     # run what is not finished
    python -m hrm_agent.sweep --summary runs/sweep__20261123-150000    # print the table again

One Tune trial per env x variant x seed (``0 .. K-1``) x ``--grid`` combination.
Each trial is the training of ``python -m hrm_agent.train`` (same config
resolution: the env's tuned defaults <- ``--config`` <- ``--set`` <- the grid
values; same run directory contents; same TensorBoard keys) and reports every
greedy evaluation (``eval/success_rate``, ``eval/path_efficiency``,
``eval/mean_ep_length`` at ``timesteps``) to Tune as it goes.

Without ``--address`` Ray starts embedded on this machine and runs as many
trials at once as its CPUs allow (``--cpus-per-trial`` each, default 1, which is
also the trial's torch thread count). With ``--address`` (``auto``, ``HOST:PORT``
or ``ray://HOST:10001``) the trials run on that Ray cluster: every node needs
hrm-agent installed and the sweep directory on storage all nodes see (the
trials write their run directories there).

The sweep directory (default ``runs/sweep__{timestamp}``) holds::

    sweep.json          what was asked (the trials are derived from it)
    config.yaml         a copy of --config, if one was given
    runs/{env}__{variant}__{seed}[__{key}={value},...]/   one training run each
    summary.md, summary.csv                               the results table
    tune/               Ray Tune's own experiment files

A failing trial is reported (its one-line error is also kept in its run
directory's ``error.txt``) and the others go on. Trials checkpoint with the
package's own format every ``checkpoint_freq`` steps; a trial Tune restarts
(``--max-failures``) and every unfinished trial of ``--resume`` continues from
its last checkpoint, and finished trials (those with a ``summary.json``) are
never run again. Exit code: 0 when every trial finished, 1 when some failed,
2 on a usage error, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import re
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrm_agent.runs import UsageError, one_line_errors

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
INSTALL_HINT = "the sweep runs on Ray Tune, which is not installed: pip install -e '.[sweep]' (or pip install 'ray[tune]')"
SUMMARY_FIELDS = ["trial", "env", "variant", "seed", "grid", "status", "total_steps", "final_success",
                  "final_success_se", "path_efficiency", "steps_to_90", "wall_clock_s", "error", "run"]


class SweepError(UsageError):
    """A user mistake or an unreadable sweep directory: one line, exit code 2."""


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
            raise SweepError(f"--grid {item!r} must look like KEY=V1,V2,... (e.g. learning_rate=3e-4,1e-3)")
        if key in (k for k, _ in axes):
            raise SweepError(f"--grid {key} is given twice")
        values = []
        for value_text in text.split(","):
            try:
                path, value = parse_override(f"{key}={value_text.strip()}")
            except ConfigError as err:
                raise SweepError(f"--grid {item!r}: {err}") from None
            values.append(value)
        if len(set(map(json.dumps, values))) != len(values):
            raise SweepError(f"--grid {item!r} repeats a value")
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
    would accept them), else SweepError."""
    from hrm_agent.hyperparams import ConfigError, resolve_config
    from hrm_agent.runs import check_config, check_env, parse_env_kwargs

    if spec["seeds"] < 1:
        raise SweepError(f"--seeds must be at least 1, got {spec['seeds']}")
    if spec["total_steps"] is not None and spec["total_steps"] < 1:
        raise SweepError(f"--total-steps must be positive, got {spec['total_steps']}")
    unknown = [v for v in spec["variants"] if v not in VARIANTS]
    if unknown:
        raise SweepError(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if len(set(spec["envs"])) != len(spec["envs"]) or len(set(spec["variants"])) != len(spec["variants"]):
        raise SweepError("--env and --variants must not repeat a value")
    config_file = sweep_dir / spec["config"] if spec["config"] else None
    try:
        env_kwargs = parse_env_kwargs(spec["env_kwargs"])
        for env in spec["envs"]:
            check_env(env, env_kwargs)
    except UsageError as err:
        raise SweepError(str(err)) from None
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
        except (ConfigError, UsageError) as err:
            where = f"{trial.env}, {trial.variant} z" + (f", {trial.grid_label}" if trial.grid else "")
            raise SweepError(f"{where}: {err}") from None


def read_spec(sweep_dir: Path) -> dict[str, Any]:
    path = sweep_dir / SWEEP_FILE
    if not path.is_file():
        raise SweepError(f"{sweep_dir} is not a sweep directory (no {SWEEP_FILE})")
    try:
        spec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise SweepError(f"cannot read {path}: {str(err).splitlines()[0]}") from None
    if not isinstance(spec, dict) or spec.get("format") != SWEEP_FORMAT:
        raise SweepError(f"{path} is not an hrm-agent sweep file")
    if spec.get("version") != SWEEP_VERSION:
        raise SweepError(f"{path} has version {spec.get('version')!r}; this hrm-agent reads version {SWEEP_VERSION}")
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


def eval_metrics(record: dict[str, Any]) -> dict[str, Any]:
    """A greedy-evaluation record of ``eval_history`` as the metrics reported to Tune."""
    metrics: dict[str, Any] = {"timesteps": record["step"]}
    for key in ("success_rate", "path_efficiency", "mean_ep_length"):
        value = record.get(key)
        metrics[f"eval/{key}"] = float("nan") if value is None else float(value)
    return metrics


def run_trial(tune_config: dict[str, Any]) -> None:
    """Tune's function trainable: one ``hrm_agent.train`` run, its evaluations reported as they come."""
    from ray import tune

    from hrm_agent import train
    from hrm_agent.checkpoint import LAST_CHECKPOINT
    from hrm_agent.checkpoint import atomic_write

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
            raise SweepError(f"cannot read {summary_path}: {str(err).splitlines()[0]}") from None
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
    from hrm_agent.analysis import format_mean_se, number

    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["env"], row["variant"], row["grid"]), []).append(row)
    has_grid = any(row["grid"] for row in rows)
    budget = f"{spec['total_steps']:,} env steps" if spec["total_steps"] else "the env's default budget"
    lines = [
        f"sweep {sweep_dir}: {len(rows)} trials, {budget} each; greedy evaluation at the end of training "
        "(mean ± standard error over the finished seeds)",
        "",
        "| env | variant |" + (" grid |" if has_grid else "") + " finished | greedy success | path efficiency "
        "| steps to 90 % | runs |",
        "|---|---|" + ("---|" if has_grid else "") + "---|---|---|---|---|",
    ]
    for (env, variant, grid), group in groups.items():
        done = [r for r in group if r["status"] == "finished"]
        failed = sum(r["status"] == "failed" for r in group)
        success = [x for r in done if (x := number(r.get("final_success"))) is not None]
        efficiency = [x for r in done if (x := number(r.get("path_efficiency"))) is not None]
        reached = [x for r in done if (x := number(r.get("steps_to_90"))) is not None]
        to_90 = (f"{len(reached)}/{len(done)} runs; median {statistics.median(reached):,.0f}" if reached
                 else f"not reached (0/{len(done)})" if done else "–")
        status = f"{len(done)}/{len(group)}" + (f" ({failed} failed)" if failed else "")
        lines.append(f"| {env} | {variant} |" + (f" {grid} |" if has_grid else "") +
                     f" {status} | {format_mean_se(success)} | {format_mean_se(efficiency)} | {to_90} | `{group[0]['pattern']}` |")
    failures = [r for r in rows if r["status"] == "failed"]
    if failures:
        lines += ["", "failed trials:"] + [f"- {r['trial']}: {r['error']}" for r in failures]
    pending = [r for r in rows if r["status"] == "pending"]
    if pending:
        lines += ["", f"{len(pending)} trial(s) not finished: python -m hrm_agent.sweep --resume {sweep_dir}"]
    return "\n".join(lines) + "\n"


def write_summary(sweep_dir: Path, spec: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Write ``summary.md`` and ``summary.csv`` in the sweep directory; return the markdown and the rows."""
    from hrm_agent.analysis import write_csv
    from hrm_agent.checkpoint import atomic_write

    rows = [trial_row(sweep_dir, trial) for trial in plan(spec)]
    markdown = summary_table(sweep_dir, spec, rows)
    write_csv(sweep_dir / SUMMARY_CSV, SUMMARY_FIELDS, [{k: ("" if r.get(k) is None else r[k])
                                                          for k in SUMMARY_FIELDS} for r in rows])
    atomic_write(sweep_dir / SUMMARY_MD, lambda f: f.write(markdown.encode()))
    return markdown, rows


# ------------------------------------------------------------------ running on Ray


def import_ray() -> Any:
    try:
        import ray
        from ray import tune  # noqa: F401
    except ImportError:
        raise SweepError(INSTALL_HINT) from None
    return ray


def start_ray(ray: Any, address: str | None) -> str:
    """Connect to ``address``, or start Ray embedded on this machine; returns a description for the log."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address:
            ray.init(address=address, **options)
            where = f"Ray cluster at {address}"
        else:  # embedded: this machine's CPUs, a small object store (trials exchange only metrics)
            ray.init(num_cpus=os.cpu_count(), object_store_memory=128 * 1024**2, **options)
            where = "Ray on this machine"
    except Exception as err:  # ConnectionError, ValueError on a malformed address, ...
        raise SweepError(f"cannot start Ray{f' at {address}' if address else ''}: "
                         f"{str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}") from None
    cpus = ray.cluster_resources().get("CPU", 0)
    return f"{where} ({cpus:g} CPUs)"


def local_resources() -> dict[str, float]:
    """The CPUs and GPUs Ray would find on this machine, counted without starting it."""
    import torch

    return {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}


def check_resources(have: dict[str, float], cpus_per_trial: float, gpus_per_trial: float) -> None:
    """On this machine (``have``: its ``CPU`` and ``GPU`` counts), a trial that asks for more than there is
    would wait for ever: say so instead."""
    for name, want in (("CPU", cpus_per_trial), ("GPU", gpus_per_trial)):
        if want > have.get(name, 0):
            raise SweepError(f"--{name.lower()}s-per-trial {want:g}: this machine has {have.get(name, 0):g} {name}s")


def make_printer(tune: Any, total: int) -> Any:
    class Printer(tune.Callback):
        """One line per greedy evaluation, finished trial and failed trial."""

        def __init__(self) -> None:
            self.ended = 0

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            if "eval/success_rate" in result:
                print(f"  {trial.config['trial']['name']}: step {result['timesteps']:,} greedy success "
                      f"{result['eval/success_rate']:.2f}", flush=True)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.ended += 1
            print(f"[{self.ended}/{total}] finished {trial.config['trial']['name']}", flush=True)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.ended += 1
            error = Path(trial.config["trial"]["sweep_dir"]) / RUNS / trial.config["trial"]["name"] / ERROR_FILE
            message = error.read_text().strip() if error.is_file() else "see Ray's error file"
            print(f"[{self.ended}/{total}] FAILED {trial.config['trial']['name']}: {message}", flush=True)

    return Printer()


def launch(sweep_dir: Path, spec: dict[str, Any], args: argparse.Namespace) -> int:
    """Run every unfinished trial on Ray Tune, then write and print the summary."""
    ray = import_ray()
    from ray import tune

    from hrm_agent.checkpoint import atomic_write

    trials = plan(spec)
    rows = [trial_row(sweep_dir, t) for t in trials]
    todo = [t for t, r in zip(trials, rows) if r["status"] != "finished"]
    print(f"sweep {sweep_dir}: {len(trials)} trials, {len(trials) - len(todo)} finished, {len(todo)} to run",
          flush=True)
    if todo:
        where = start_ray(ray, args.address)
        if not args.address:
            try:
                check_resources(ray.cluster_resources(), args.cpus_per_trial, args.gpus_per_trial)
            except SweepError:
                ray.shutdown()
                raise
        print(f"{where}; {args.cpus_per_trial:g} CPU(s)" +
              (f" and {args.gpus_per_trial:g} GPU(s)" if args.gpus_per_trial else "") + " per trial", flush=True)
        device = "cuda" if args.gpus_per_trial > 0 else "cpu"
        threads = max(1, int(args.cpus_per_trial))
        configs = [{"name": t.name, "env": t.env, "variant": t.variant, "seed": t.seed, "grid": [list(kv) for kv in t.grid],
                    "sweep_dir": str(sweep_dir), "threads": threads, "device": device} for t in todo]
        logging.getLogger("ray.tune").setLevel(logging.CRITICAL)  # the printer reports errors in one line each
        tuner = tune.Tuner(
            tune.with_resources(run_trial, {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial}),
            param_space={"trial": tune.grid_search(configs)},
            tune_config=tune.TuneConfig(
                trial_name_creator=lambda trial: trial.config["trial"]["name"],
                trial_dirname_creator=lambda trial: trial.config["trial"]["name"][:120],
            ),
            run_config=tune.RunConfig(
                name=f"{TUNE_DIR}-{time.strftime('%Y%m%d-%H%M%S')}",
                storage_path=str(sweep_dir / TUNE_DIR),
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=args.max_failures),
                callbacks=[make_printer(tune, len(todo))],
            ),
        )
        try:
            results = tuner.fit()
            for result in results:  # a trial killed from outside (out of memory, a lost node) wrote no error.txt
                run_dir = sweep_dir / RUNS / result.config["trial"]["name"]
                if result.error is not None and not (run_dir / ERROR_FILE).is_file():
                    message = str(result.error).strip().splitlines()[-1] if str(result.error).strip() else ""
                    atomic_write(run_dir / ERROR_FILE, lambda f: f.write(
                        f"{type(result.error).__name__}: {message}\n".encode()))
        except KeyboardInterrupt:
            write_summary(sweep_dir, spec)
            print(f"\ninterrupted; continue with: python -m hrm_agent.sweep --resume {sweep_dir}", file=sys.stderr)
            return 130
        finally:
            ray.shutdown()
    markdown, rows = write_summary(sweep_dir, spec)
    print()
    print(markdown, end="")
    print(f"wrote {sweep_dir / SUMMARY_MD}, {sweep_dir / SUMMARY_CSV}")
    return 0 if all(r["status"] == "finished" for r in rows) else 1


# ------------------------------------------------------------------ command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hrm_agent.sweep", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--env", nargs="+", metavar="ENV", help="registered env ids, e.g. DynamicMaze-v0 FourRooms-v0")
    p.add_argument("--variants", nargs="+", metavar="VARIANT", help="carry and/or reset (default both)")
    p.add_argument("--seeds", type=int, help="seeds 0 .. K-1 of every combination (default 3)")
    p.add_argument("--grid", action="append", metavar="KEY=V1,V2,...",
                   help="a hyperparameter axis, e.g. learning_rate=3e-4,1e-3 or model.hidden_size=32,64 (repeatable)")
    p.add_argument("--total-steps", type=int, help="env steps of every trial (default: each env's tuned budget)")
    p.add_argument("--config", type=Path, help="YAML file of hyperparameters for every trial (as hrm_agent.train)")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                   help="hyperparameter for every trial (as hrm_agent.train)")
    p.add_argument("--env-kwarg", dest="env_kwargs", action="append", metavar="KEY=VALUE",
                   help="gym.make keyword for every trial, e.g. --env-kwarg size=9")
    p.add_argument("--sweep-dir", type=Path, help="output folder (default runs/sweep__{timestamp})")
    p.add_argument("--resume", type=Path, metavar="SWEEP_DIR", help="run the unfinished trials of a sweep")
    p.add_argument("--summary", type=Path, metavar="SWEEP_DIR", help="print a sweep's results table again")
    p.add_argument("--address", help="Ray cluster to join: auto, HOST:PORT or ray://HOST:10001 "
                                     "(default: start Ray on this machine)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial, also its torch threads (default 1)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial; > 0 trains on CUDA (default 0)")
    p.add_argument("--max-failures", type=int, default=0,
                   help="times Tune restarts a failed trial from its last checkpoint (default 0)")
    return p


SPEC_OPTIONS = ("env", "variants", "seeds", "grid", "total_steps", "config", "overrides", "env_kwargs", "sweep_dir")


def new_sweep(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """Create the sweep directory and its ``sweep.json`` after checking every trial's config."""
    from hrm_agent.checkpoint import atomic_write
    from hrm_agent.runs import check_writable

    if not args.env:
        raise SweepError("--env is required (or --resume SWEEP_DIR / --summary SWEEP_DIR)")
    spec = {
        "format": SWEEP_FORMAT, "version": SWEEP_VERSION, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "envs": list(args.env), "variants": list(args.variants or VARIANTS),
        "seeds": 3 if args.seeds is None else args.seeds, "grid": parse_grid(args.grid or []),
        "total_steps": args.total_steps, "config": None,
        "overrides": list(args.overrides or []), "env_kwargs": list(args.env_kwargs or []),
    }
    sweep_dir = (args.sweep_dir or Path("runs") / f"sweep__{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    if sweep_dir.is_dir() and any(sweep_dir.iterdir()):
        hint = (f"; continue it with --resume {sweep_dir}" if (sweep_dir / SWEEP_FILE).is_file() else "")
        raise SweepError(f"sweep directory {sweep_dir} already exists and is not empty{hint}")
    check_writable(sweep_dir, "--sweep-dir", directory=True)
    config_text = None
    if args.config is not None:
        try:
            config_text = args.config.read_bytes()
        except OSError as err:
            raise SweepError(f"cannot read --config {args.config}: {err.strerror}") from None
        spec["config"] = CONFIG_COPY
    staging = sweep_dir.with_name(sweep_dir.name + ".new")  # validate against the config copy, then publish
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        if config_text is not None:
            (staging / CONFIG_COPY).write_bytes(config_text)
        validate(spec, staging)
        atomic_write(staging / SWEEP_FILE, lambda f: f.write(json.dumps(spec, indent=2).encode()))
        if sweep_dir.exists():
            sweep_dir.rmdir()  # empty (checked above)
        staging.rename(sweep_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sweep_dir, spec


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0 or args.max_failures < 0:
        raise SweepError("--cpus-per-trial must be positive, --gpus-per-trial and --max-failures not negative")
    existing = args.summary or args.resume
    if args.summary and args.resume:
        raise SweepError("give --resume or --summary, not both")
    if existing is not None:
        given = [f"--{name.replace('_', '-')}" for name in SPEC_OPTIONS if getattr(args, name) is not None]
        if given:
            raise SweepError(f"{', '.join(given)}: a sweep's settings are in {existing / SWEEP_FILE}; "
                             f"--resume/--summary take only the Ray options")
        sweep_dir = existing.resolve()
        spec = read_spec(sweep_dir)
        if args.summary:
            markdown, _ = write_summary(sweep_dir, spec)
            print(markdown, end="")
            return 0
        import_ray()
    else:
        import_ray()  # before creating anything
        if not args.address:
            check_resources(local_resources(), args.cpus_per_trial, args.gpus_per_trial)
        sweep_dir, spec = new_sweep(args)
    return launch(sweep_dir, spec, args)


if __name__ == "__main__":
    sys.exit(main())
