"""Markdown tables of results rows: ``bench learn``'s per-learner table and its carry-vs-reset line, and
the sweep's per-trial-group table. Every number is a mean ± standard error over seeds
(:mod:`~hrm_agent.experiments.stats`)."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any

from hrm_agent.experiments.stats import bootstrap_difference, format_mean_se, number

HRM_VARIANTS = ("carry", "reset")
SB3_ALGOS = ("dqn", "ppo", "recurrent-ppo")
LEARNERS = (*HRM_VARIANTS, *SB3_ALGOS, "oracle")
LABELS = {"carry": "HRM carry z", "reset": "HRM reset z", "dqn": "SB3 DQN", "ppo": "SB3 PPO",
          "recurrent-ppo": "RecurrentPPO", "oracle": "BFS oracle"}
CORE_LABELS = {"hrm": "HRM", "trm": "TRM", "transformer": "Transformer"}


def learner_label(name: str, settings: str | list[str] = "") -> str:
    """``LABELS[name]``, with an HRM variant named by its core where ``settings`` (a row's ``settings`` cell or
    ``--set`` items) choose another one: ``model.core=trm`` gives ``TRM carry z``."""
    items = settings.split() if isinstance(settings, str) else settings
    core = next((item.split("=", 1)[1] for item in items if item.startswith("model.core=")), "hrm")
    if name in HRM_VARIANTS and core in CORE_LABELS:
        return LABELS[name].replace("HRM", CORE_LABELS[core], 1)
    return LABELS[name]


def by_learner(rows: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    groups: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        groups[r["variant"]].append(r)
    return {name: sorted(groups[name], key=lambda r: int(r["seed"])) for name in LEARNERS if name in groups}


def parse_curve(text: str) -> list[tuple[int, float]]:
    """A row's ``curve`` cell (``step:success;...``) as (step, success) points."""
    points = []
    for item in filter(None, (text or "").split(";")):
        step, _, value = item.partition(":")
        if number(step) is not None and number(value) is not None:
            points.append((int(float(step)), float(value)))
    return points


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
    """``bench learn``'s table: per learner, final greedy success, path efficiency, steps and minutes
    to 90 %, wall-clock and the mean success over the evaluations; then carry z against reset z."""
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
            to_90 = f"{len(reached)}/{len(group)} runs; median {statistics.median(reached):,.0f}"
            if len(minutes_reached) == len(reached):
                to_90 += f" ({statistics.median(minutes_reached):.0f} min)"
            elif minutes_reached:  # runs that recorded no wall-clock: the minutes of those that did, not a median
                to_90 += (f" (minutes recorded by {len(minutes_reached)} of them: "
                          f"{minutes_reached[0]:.0f}–{minutes_reached[-1]:.0f})")
        else:
            to_90 = f"not reached (0/{len(group)})"
        minutes = [x / 60 for r in group if (x := number(r["wall_clock_s"])) is not None]
        curve = [x for r in group if (x := curve_mean(r)) is not None]
        seeds = ", ".join(r["seed"] for r in group)
        label = learner_label(name, group[0].get("settings", ""))
        lines.append(f"| {label} | {seeds} | {format_mean_se(success)} | {format_mean_se(efficiency)} | {to_90} | "
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


def sweep_table(title: str, rows: list[dict[str, Any]], resume_hint: str) -> str:
    """A sweep's table: per env x variant (x grid values), final greedy success and path efficiency over
    the finished seeds; then the failed trials, and ``resume_hint`` when some are not finished."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["env"], row["variant"], row["grid"]), []).append(row)
    has_grid = any(row["grid"] for row in rows)
    lines = [
        title,
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
        lines += ["", f"{len(pending)} trial(s) not finished: {resume_hint}"]
    return "\n".join(lines) + "\n"
