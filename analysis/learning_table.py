"""Collect finished training runs into the committed learning results, and tabulate them.

    python analysis/learning_table.py runs/*            # add/update runs, rewrite table and figure
    python analysis/learning_table.py                   # rewrite table and figure from the results file

Reads each run directory's ``summary.json`` and ``config.yaml`` (written by
``python -m hrm_agent.train``) and keeps one row per run in
``analysis/results/learning_runs.csv`` (a run already there is replaced, so
results accumulate across sessions and machines), its greedy-evaluation
history in ``analysis/results/learning_curves.csv``, and writes from them:

- ``analysis/results/learning_table.md``: per env x variant, mean ± standard
  error over seeds of the final greedy success rate and path efficiency, env
  steps to first reach 90 % success, wall-clock;
- ``analysis/results/learning_curves.png`` (and ``.svg``): greedy success
  against env steps, one line per run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from hrm_agent.checkpoint import atomic_write
from hrm_agent.experiments.figures import VARIANT_COLOURS, save_figure, variant_label
from hrm_agent.experiments.stats import format_mean_se, number
from hrm_agent.experiments.store import read_csv, write_csv
from hrm_agent.runs import UsageError

RESULTS = Path(__file__).resolve().parent / "results"
RUN_FIELDS = [
    "env", "env_kwargs", "variant", "seed", "total_steps", "final_success", "final_success_se", "path_efficiency",
    "steps_to_90", "wall_clock_s", "threads", "config", "run",
]
CURVE_FIELDS = ["run", "env", "env_kwargs", "variant", "seed", "step", "success_rate", "path_efficiency"]


def read_run(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One results row and the evaluation curve of a finished run."""
    summary_path, config_path = run_dir / "summary.json", run_dir / "config.yaml"
    if not summary_path.is_file():
        raise UsageError(f"{run_dir} has no summary.json (not a finished training run)")
    try:
        summary = json.loads(summary_path.read_text())
        config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise UsageError(f"cannot read {run_dir}: {str(err).splitlines()[0]}") from None
    final = summary.get("final_eval") or {}
    env_kwargs = config.get("env_kwargs") or {}
    row = {
        "env": summary["env"],
        "env_kwargs": " ".join(f"{k}={v}" for k, v in sorted(env_kwargs.items())),
        "variant": summary["variant"],
        "seed": summary["seed"],
        "total_steps": summary["total_steps"],
        "final_success": final.get("success_rate"),
        "final_success_se": final.get("success_rate_se"),
        "path_efficiency": final.get("path_efficiency"),
        "steps_to_90": summary.get("steps_to_90"),
        "wall_clock_s": summary.get("wall_clock_s"),
        "threads": summary.get("threads", ""),
        "config": json.dumps({"agent": config.get("agent"), "env_kwargs": config.get("env_kwargs")}, sort_keys=True),
        "run": run_dir.name,
    }
    curve = [
        {"run": run_dir.name, "env": row["env"], "env_kwargs": row["env_kwargs"], "variant": row["variant"], "seed": row["seed"],
         "step": h["step"], "success_rate": h["success_rate"], "path_efficiency": h.get("path_efficiency")}
        for h in summary.get("eval_history", [])
    ]
    return row, curve


def env_label(row: dict[str, str]) -> str:
    """The env id, with its non-default ``gym.make`` keywords if any."""
    kwargs = row.get("env_kwargs", "")
    return f"{row['env']} ({kwargs})" if kwargs else row["env"]


def table(runs: list[dict[str, str]]) -> str:
    """Markdown table per env x variant x budget (mean ± standard error over seeds)."""
    groups: dict[tuple[str, str, int], list[dict[str, str]]] = defaultdict(list)
    for r in runs:
        groups[(env_label(r), r["variant"], int(r["total_steps"]))].append(r)
    lines = [
        "| env | variant | budget (env steps) | seeds | greedy success | path efficiency | steps to 90 % | wall-clock (min) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (env, variant, budget), rows in sorted(groups.items()):
        success = [x for r in rows if (x := number(r["final_success"])) is not None]
        efficiency = [x for r in rows if (x := number(r["path_efficiency"])) is not None]
        reached = sorted(int(float(r["steps_to_90"])) for r in rows if number(r["steps_to_90"]) is not None)
        to_90 = (f"{len(reached)}/{len(rows)} runs; median {reached[len(reached) // 2]:,}" if reached
                 else f"not reached (0/{len(rows)})")
        minutes = [x / 60 for r in rows if (x := number(r["wall_clock_s"])) is not None]
        seeds = ", ".join(sorted((r["seed"] for r in rows), key=int))
        lines.append(f"| {env} | {variant} | {budget:,} | {seeds} | {format_mean_se(success)} | {format_mean_se(efficiency)} "
                     f"| {to_90} | {format_mean_se(minutes)} |")
    return "\n".join(lines) + "\n"


def plot(curves: list[dict[str, str]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({env_label(c) for c in curves})
    fig, axes = plt.subplots(1, max(len(envs), 1), figsize=(5.5 * max(len(envs), 1), 4), squeeze=False)
    for ax, env in zip(axes[0], envs):
        by_run: dict[str, list[tuple[int, float]]] = defaultdict(list)
        variant_of = {}
        for c in curves:
            if env_label(c) == env:
                by_run[c["run"]].append((int(c["step"]), float(c["success_rate"])))
                variant_of[c["run"]] = c["variant"]
        labelled = set()
        for run, points in sorted(by_run.items()):
            points.sort()
            variant = variant_of[run]
            ax.plot(*zip(*points), color=VARIANT_COLOURS.get(variant, "grey"), alpha=0.8,
                    label=None if variant in labelled else variant_label(variant))
            labelled.add(variant)
        ax.set_title(env)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("greedy success rate")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    save_figure(fig, path.parent, path.stem)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="finished run directories to add or update")
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"results folder (default {RESULTS})")
    args = parser.parse_args(argv)

    runs_path, curves_path = args.results / "learning_runs.csv", args.results / "learning_curves.csv"
    runs = {r["run"]: r for r in read_csv(runs_path)}
    curves = read_csv(curves_path)
    try:
        new = [read_run(run_dir) for run_dir in args.runs]
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for row, curve in new:
        runs[row["run"]] = row
        curves = [c for c in curves if c["run"] != row["run"]] + curve
    if not runs:
        print("error: no runs: give finished run directories", file=sys.stderr)
        return 2
    rows = sorted(runs.values(), key=lambda r: (env_label(r), r["variant"], int(r["seed"]), r["run"]))
    write_csv(runs_path, RUN_FIELDS, rows)
    write_csv(curves_path, CURVE_FIELDS, curves)
    markdown = table([{k: str(v) for k, v in r.items()} for r in rows])
    atomic_write(args.results / "learning_table.md", lambda f: f.write(markdown.encode()))
    plot([{k: str(v) for k, v in c.items()} for c in curves], args.results / "learning_curves.png")
    print(markdown, end="")
    print(f"wrote {runs_path}, {curves_path}, {args.results / 'learning_table.md'}, "
          f"{args.results / 'learning_curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
