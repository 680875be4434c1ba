"""Figures of results: the ``bench learn`` panels, learning curves from a run's TensorBoard events, and
the helpers every figure here uses (a pyplot-free ``Figure``, PNG + SVG written atomically, colours)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hrm_agent.checkpoint import atomic_write
from hrm_agent.experiments.stats import mean_se, number
from hrm_agent.experiments.store import write_csv
from hrm_agent.experiments.tables import by_learner, curve_mean, learner_label, parse_curve, threads_label
from hrm_agent.runs import UsageError

VARIANT_COLOURS = {"carry": "tab:blue", "reset": "tab:orange", "dqn": "tab:green", "ppo": "tab:red",
                   "recurrent-ppo": "tab:purple"}
COLOURS = {**VARIANT_COLOURS, "oracle": "black"}
LEARNING_TAGS = ("eval/success_rate", "rollout/success_rate")
LEARNING_FIELDS = ["run", "env", "variant", "seed", "tag", "step", "value"]


def variant_label(variant: str) -> str:
    """Legend text: ``carry z``/``reset z`` for the HRM variants, the algorithm name for baselines."""
    return f"{variant} z" if variant in ("carry", "reset") else variant


def new_figure(ncols: int, nrows: int = 1, width: float = 5.0, height: float = 3.8) -> Any:
    """A ``Figure`` and its (nrows, ncols) axes; no pyplot: no global state, no GUI backend."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def save_figure(fig: Any, out_dir: str | Path, name: str) -> list[Path]:
    """Write ``fig`` as ``out_dir/name.png`` and ``.svg``, atomically; the same figure gives the same bytes
    (no date in the SVG, its element ids salted by ``name``), so a figure redrawn from unchanged rows
    leaves git with nothing to commit."""
    import matplotlib

    paths = []
    for fmt, metadata in (("png", None), ("svg", {"Date": None})):
        path = Path(out_dir) / f"{name}.{fmt}"
        with matplotlib.rc_context({"svg.hashsalt": name}):
            atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=120, metadata=metadata))
        paths.append(path)
    return paths


# ------------------------------------------------------------------ bench learn


def plot_learn(rows: list[dict[str, str]], title: str, out_dir: Path, name: str,
               threads: int | dict[str, int] = 1) -> list[Path]:
    """``bench learn``'s figure: greedy learning curves, final success, path efficiency, steps to 90 %,
    wall-clock and mean success over the evaluations per learner; written as PNG and SVG."""
    from matplotlib.figure import Figure

    groups = by_learner(rows)
    names = list(groups)
    labels = {name: learner_label(name, group[0].get("settings", "")) for name, group in groups.items()}
    fig = Figure(figsize=(15, 7.5), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    fig.suptitle(title, fontsize=10)

    ax = axes[0]  # learning curves: mean greedy success over seeds at each evaluation step
    for learner, group in groups.items():
        if learner == "oracle":
            ax.axhline(mean_se([float(r["final_success"]) for r in group])[0], color="black", ls="--",
                       label=labels[learner])
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
                    color=COLOURS[learner], label=labels[learner])
    ax.set(title="greedy success during training (thin: each seed; bold: mean)", xlabel="environment steps",
           ylabel="success rate", ylim=(-0.02, 1.02))
    ax.legend(fontsize=7)

    def bars(ax: Any, learners: list[str], values_of: Any, title: str, ylim: tuple[float, float] | None = None) -> None:
        for i, learner in enumerate(learners):
            values = values_of(learner)
            if not values:
                continue
            m, se = mean_se(values)
            ax.bar(i, m, yerr=0 if math.isnan(se) else se, color=COLOURS[learner], capsize=4, alpha=0.85)
            ax.plot([i] * len(values), values, "k.", ms=4)
        ax.set_xticks(range(len(learners)), [labels[n] for n in learners], rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        if ylim:
            ax.set_ylim(*ylim)

    def column(name: str, scale: float = 1.0) -> Any:
        return lambda learner: [x * scale for r in groups[learner] if (x := number(r[name])) is not None]

    bars(axes[1], names, column("final_success"), "final greedy success (mean ± SE, dots: seeds)", ylim=(0, 1.05))
    bars(axes[2], names, column("path_efficiency"), "path efficiency of successful episodes", ylim=(0, 1.2))
    bars(axes[4], names, column("wall_clock_s", 1 / 60),
         f"training wall-clock (min, {threads_label(threads, ' per run')})")

    ax = axes[3]  # steps to first reach 90 %: a dot per seed, a cross at the top for runs that never did
    trained = [n for n in names if n != "oracle"]
    budget = max([int(r["budget"]) for r in rows] or [1])
    for i, learner in enumerate(trained):
        for r in groups[learner]:
            x = number(r["steps_to_90"])
            ax.plot(i, budget * 1.05 if x is None else x, "x" if x is None else "o", color=COLOURS[learner])
    ax.axhline(budget, color="grey", lw=0.8)
    ax.set_xticks(range(len(trained)), [labels[n] for n in trained], rotation=30, ha="right", fontsize=8)
    ax.set(title="env steps to first reach 90 % greedy success (x: never)", ylim=(0, budget * 1.12))
    # mean success over the evaluations (area under the curve), a dot per seed
    bars(axes[5], trained, lambda learner: [x for r in groups[learner] if (x := curve_mean(r)) is not None],
         "mean success over the evaluations (area under the curve)", ylim=(0, 1.05))
    for ax in axes:
        ax.grid(alpha=0.3)
    return save_figure(fig, out_dir, name)


# ------------------------------------------------------------------ learning curves of run directories


def existing_run_dir(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"no such run directory: {path}")
    return path


def run_info(run_dir: Path) -> dict[str, Any]:
    """``run, env, variant, seed`` of a training run, from its ``config.yaml`` (else ``summary.json``)."""
    import yaml

    info: dict[str, Any] = {}
    try:
        if (run_dir / "config.yaml").is_file():
            info = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
        elif (run_dir / "summary.json").is_file():
            info = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise UsageError(f"cannot read {run_dir}: {str(err).splitlines()[0]}") from None
    return {"run": run_dir.name, "env": info.get("env", "?"), "variant": info.get("variant", "?"),
            "seed": info.get("seed", "")}


def learning_curve_rows(run_dir: str | Path, tags: Sequence[str] = LEARNING_TAGS) -> list[dict[str, Any]]:
    """Rows ``run, env, variant, seed, tag, step, value`` of ``tags`` in the run's TensorBoard event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = existing_run_dir(run_dir)
    if not any(run_dir.glob("events.out.tfevents.*")):
        raise UsageError(f"{run_dir} has no TensorBoard event files (not a training run directory?)")
    info = run_info(run_dir)
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    try:
        accumulator.Reload()
    except Exception as err:  # a damaged event file
        raise UsageError(f"cannot read the event files of {run_dir}: {type(err).__name__}: {err}") from None
    available = set(accumulator.Tags().get("scalars", []))
    return [{**info, "tag": tag, "step": event.step, "value": event.value}
            for tag in tags if tag in available for event in accumulator.Scalars(tag)]


def plot_learning_curves(rows: list[dict[str, Any]], tags: Sequence[str] = LEARNING_TAGS) -> Any:
    """A row of panels (one per tag) per env; a line per run, coloured by variant. Returns the Figure."""
    envs = sorted({r["env"] for r in rows}) or ["(no data)"]
    fig, axes = new_figure(len(tags), len(envs))
    for env, panel_row in zip(envs, axes):
        for ax, tag in zip(panel_row, tags):
            by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for r in rows:
                if r["env"] == env and r["tag"] == tag:
                    by_run[r["run"]].append(r)
            labelled = set()
            for run, points in sorted(by_run.items()):
                points.sort(key=lambda p: p["step"])
                variant = points[0]["variant"]
                ax.plot([p["step"] for p in points], [p["value"] for p in points],
                        color=VARIANT_COLOURS.get(variant, "grey"), alpha=0.8, marker="." if len(points) < 20 else None,
                        label=None if variant in labelled else variant_label(variant))
                labelled.add(variant)
            ax.set_title(f"{env}: {tag}", fontsize=9)
            ax.set_xlabel("environment steps")
            ax.set_ylabel("proportion of episodes reaching the goal")
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
            if labelled:
                ax.legend(fontsize=8)
    return fig


def write_learning_curves(run_dirs: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """``learning_curves.{png,svg,csv}`` in ``out_dir`` from the runs' TensorBoard event files."""
    rows = [row for run_dir in run_dirs for row in learning_curve_rows(run_dir)]
    fig = plot_learning_curves(rows)
    csv_path = write_csv(Path(out_dir) / "learning_curves.csv", LEARNING_FIELDS, rows)
    return [*save_figure(fig, out_dir, "learning_curves"), csv_path]
