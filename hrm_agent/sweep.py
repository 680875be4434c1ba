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
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from hrm_agent.experiments import tune as ray_tune
from hrm_agent.experiments.cli import add_env_kwarg, add_seeds, add_set
from hrm_agent.experiments.trials import (
    CONFIG_COPY, SUMMARY_CSV, SUMMARY_MD, SWEEP_FILE, SWEEP_FORMAT, SWEEP_VERSION, TUNE_DIR, VARIANTS, error_file,
    parse_grid, plan, read_spec, run_trial, trial_row, validate, write_summary,
)
from hrm_agent.runs import EXIT_INTERRUPTED, UsageError, one_line_errors


# ------------------------------------------------------------------ running on Ray


def launch(sweep_dir: Path, spec: dict[str, Any], args: argparse.Namespace) -> int:
    """Run every unfinished trial on Ray Tune, then write and print the summary."""
    ray = ray_tune.import_ray()
    trials = plan(spec)
    rows = [trial_row(sweep_dir, t) for t in trials]
    todo = [t for t, r in zip(trials, rows) if r["status"] != "finished"]
    print(f"sweep {sweep_dir}: {len(trials)} trials, {len(trials) - len(todo)} finished, {len(todo)} to run",
          flush=True)
    if todo:
        where = ray_tune.start_ray(ray, args.address)
        if not args.address:
            try:
                ray_tune.check_resources(ray.cluster_resources(), args.cpus_per_trial, args.gpus_per_trial)
            except UsageError:
                ray.shutdown()
                raise
        print(f"{where}; {args.cpus_per_trial:g} CPU(s)" +
              (f" and {args.gpus_per_trial:g} GPU(s)" if args.gpus_per_trial else "") + " per trial", flush=True)
        device = "cuda" if args.gpus_per_trial > 0 else "cpu"
        threads = max(1, int(args.cpus_per_trial))
        configs = [{"name": t.name, "env": t.env, "variant": t.variant, "seed": t.seed, "grid": [list(kv) for kv in t.grid],
                    "sweep_dir": str(sweep_dir), "threads": threads, "device": device} for t in todo]
        try:
            ray_tune.fit(run_trial, configs, sweep_dir / TUNE_DIR, args.cpus_per_trial, args.gpus_per_trial,
                         args.max_failures, error_file)
        except KeyboardInterrupt:
            write_summary(sweep_dir, spec)
            print(f"\ninterrupted; continue with: python -m hrm_agent.sweep --resume {sweep_dir}", file=sys.stderr)
            return EXIT_INTERRUPTED
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
    add_seeds(p, "every combination", default_text="3")
    p.add_argument("--grid", action="append", metavar="KEY=V1,V2,...",
                   help="a hyperparameter axis, e.g. learning_rate=3e-4,1e-3 or model.hidden_size=32,64 (repeatable)")
    p.add_argument("--total-steps", type=int, help="env steps of every trial (default: each env's tuned budget)")
    p.add_argument("--config", type=Path, help="YAML file of hyperparameters for every trial (as hrm_agent.train)")
    add_set(p, "hyperparameter for every trial (as hrm_agent.train)")
    add_env_kwarg(p, "every trial")
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
        raise UsageError("--env is required (or --resume SWEEP_DIR / --summary SWEEP_DIR)")
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
        raise UsageError(f"sweep directory {sweep_dir} already exists and is not empty{hint}")
    check_writable(sweep_dir, "--sweep-dir", directory=True)
    config_text = None
    if args.config is not None:
        try:
            config_text = args.config.read_bytes()
        except OSError as err:
            raise UsageError(f"cannot read --config {args.config}: {err.strerror}") from None
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
        raise UsageError("--cpus-per-trial must be positive, --gpus-per-trial and --max-failures not negative")
    existing = args.summary or args.resume
    if args.summary and args.resume:
        raise UsageError("give --resume or --summary, not both")
    if existing is not None:
        given = [f"--{name.replace('_', '-')}" for name in SPEC_OPTIONS if getattr(args, name) is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: a sweep's settings are in {existing / SWEEP_FILE}; "
                             f"--resume/--summary take only the Ray options")
        sweep_dir = existing.resolve()
        spec = read_spec(sweep_dir)
        if args.summary:
            markdown, _ = write_summary(sweep_dir, spec)
            print(markdown, end="")
            return 0
        ray_tune.import_ray()
    else:
        ray_tune.import_ray()  # before creating anything
        if not args.address:
            ray_tune.check_resources(ray_tune.local_resources(), args.cpus_per_trial, args.gpus_per_trial)
        sweep_dir, spec = new_sweep(args)
    return launch(sweep_dir, spec, args)


if __name__ == "__main__":
    sys.exit(main())
