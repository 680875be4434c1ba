"""Tabulate the learning ablation: one ``bench learn`` results file per arm.

    python analysis/ablation_table.py        # rewrite analysis/results/ablation_{env}.md and .csv

Each arm of the ablation is one results file ``analysis/results/ablation/{arm}.csv``
written by ``python -m hrm_agent.bench learn ... --results analysis/results/ablation/{arm}.csv``
with the arm's ``--set`` items (so an arm continues where it stopped, and more
seeds only add runs). This script groups every file's rows by env, learner,
budget and settings, and writes per env:

- ``analysis/results/ablation_{env}.md``: per arm, the seeds, final greedy
  success and path efficiency (mean ± standard error over seeds; with one seed,
  the standard error over its evaluation episodes), env steps to first reach
  90 % greedy success, training wall-clock, and the command that produces it;
- ``analysis/results/ablation_{env}.csv``: the same numbers, one row per arm;
- where an arm ran both carry z and reset z, their difference with a bootstrap
  interval over seeds (``hrm_agent.experiments.tables.compare_variants``).

A row's settings are over the package defaults of its day (its ``defaults``
fingerprint). Rows recorded before the learning levers became defaults get, in
their command, the settings that give the same run today (``PREVIOUS_DEFAULTS``),
checked against that fingerprint.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

from hrm_agent.checkpoint import atomic_write
from hrm_agent.experiments.stats import format_mean_se, number
from hrm_agent.experiments.store import write_csv
from hrm_agent.experiments.tables import compare_variants, curve_mean

RESULTS = Path(__file__).resolve().parent / "results"
ARMS = RESULTS / "ablation"
FIELDS = [
    "env", "arm", "learner", "budget", "settings", "seeds", "final_success", "final_success_se", "path_efficiency",
    "steps_to_90", "wall_clock_min", "curve_mean", "command",
]


# The defaults before rope2d, the goal embedding, hindsight goals, the neighbours read-out, the faster
# target updates, compiling, the 256-episode evaluations and (on the maze) stay_on_blocked became
# defaults (a row that sets some of these keys keeps its own values).
PREVIOUS_DEFAULTS = ["model.pos_encodings=rope", "model.goal_embedding=false", "her_ratio=0.0", "model.readout=query",
                     "target_update_interval=1000", "compile=false", "eval_freq=5000", "eval_episodes=50",
                     "model.stay_on_blocked=false"]


def settings_today(env: str, learner: str, settings: str, env_kwargs: str, recorded: str) -> tuple[str, bool]:
    """``--set`` items (space-separated) that give a row recorded under fingerprint ``recorded`` with
    today's defaults, and whether that fingerprint confirms it. Rows that do not run as recorded get
    the previous defaults spelled out; rows from versions with fewer config fields match no
    fingerprint today (False) though their settings are the same."""
    from hrm_agent.bench.learn import check_settings
    from hrm_agent.experiments.store import fingerprint
    from hrm_agent.runs import UsageError, parse_env_kwargs

    kwargs = parse_env_kwargs(env_kwargs.split())
    items = settings.split()
    keys = {item.split("=", 1)[0] for item in items}
    previous = items + [d for d in PREVIOUS_DEFAULTS if d.split("=", 1)[0] not in keys]
    token = [] if "carry" in keys else ["carry=token"]  # the carry default until carry: full
    for candidate in (items, items + token, previous + token, previous):
        try:
            resolved = check_settings(env, [learner], {learner: candidate})[learner]
        except UsageError:  # not a valid config under today's defaults (e.g. n_step with hindsight goals)
            continue
        if fingerprint(env, kwargs, resolved) == recorded:
            return " ".join(candidate), True
    return " ".join(previous), False


def command(env: str, arm: str, learner: str, budget: str, n_seeds: int, settings: str, env_kwargs: str,
            threads: str = "1") -> str:
    parts = [f"python -m hrm_agent.bench learn --env {env} --seeds {n_seeds} --budget {budget}"]
    if threads != "1":  # one run at a time, with every thread it asked for
        parts.append(f"--jobs 1 --threads {threads}")
    parts.append(f"--learners {learner} --results analysis/results/ablation/{arm}.csv")
    parts += [f"--set hrm:{s}" for s in settings.split()]
    parts += [f"--env-kwarg {k}" for k in env_kwargs.split()]
    return " ".join(parts)


def summarise(arm: str, rows: list[dict[str, str]]) -> dict[str, str]:
    first = rows[0]
    today, confirmed = settings_today(first["env"], first["variant"], first["settings"], first["env_kwargs"],
                           first.get("defaults", ""))
    success = [x for r in rows if (x := number(r["final_success"])) is not None]
    efficiency = [x for r in rows if (x := number(r["path_efficiency"])) is not None]
    if len(success) == 1:  # one seed: the evaluation episodes' standard error
        shown = f"{success[0]:.2f} ± {number(rows[0]['final_success_se']) or 0:.2f} (1 seed)"
    else:
        shown = format_mean_se(success)
    reached = sorted(int(x) for r in rows if (x := number(r["steps_to_90"])) is not None)
    minutes = [x / 60 for r in rows if (x := number(r["wall_clock_s"])) is not None]
    curve = [x for r in rows if (x := curve_mean(r)) is not None]
    threads = first.get("threads") or "1"
    wall_clock = format_mean_se(minutes, digits=1) if minutes else "–"
    if minutes and threads != "1":
        wall_clock += f" ({threads} threads, alone)"
    return {
        "env": first["env"], "arm": arm, "learner": first["variant"], "budget": first["budget"],
        "settings": first["settings"], "seeds": ", ".join(sorted((r["seed"] for r in rows), key=int)),
        "final_success": shown, "final_success_se": "",
        "path_efficiency": format_mean_se(efficiency) if efficiency else "–",
        "steps_to_90": f"{len(reached)}/{len(rows)}; median {reached[len(reached) // 2]:,}" if reached
        else f"not reached (0/{len(rows)})",
        "wall_clock_min": wall_clock,
        "curve_mean": format_mean_se(curve) if curve else "–",
        "command": command(first["env"], arm, first["variant"], first["budget"], len(rows), today, first["env_kwargs"],
                           threads),
        "confirmed": confirmed,
    }


def main() -> int:
    groups: dict[tuple[str, ...], list[dict[str, str]]] = defaultdict(list)
    reset_rows: dict[tuple[str, ...], list[dict[str, str]]] = defaultdict(list)
    for path in sorted(ARMS.glob("*.csv")):
        with path.open(newline="") as f:
            for r in csv.DictReader(f):
                threads = r.get("threads") or "1"
                key = (r["env"], path.stem, r["variant"], r["budget"], r["settings"], r["env_kwargs"], threads,
                       r.get("defaults", ""))
                groups[key].append(r)
                if r["variant"] == "reset":  # by arm without the fingerprint, which differs in carry_z
                    reset_rows[(r["env"], path.stem, r["budget"], r["settings"], r["env_kwargs"], threads)].append(r)
    if not groups:
        print(f"error: no results in {ARMS}", file=sys.stderr)
        return 2
    by_env: dict[str, list[dict[str, str]]] = defaultdict(list)
    comparisons: dict[str, list[str]] = defaultdict(list)
    for key, rows in groups.items():
        by_env[key[0]].append(summarise(key[1], rows))
        env, arm, variant, budget, settings, env_kwargs, threads, _ = key
        reset = reset_rows.get((env, arm, budget, settings, env_kwargs, threads))
        if variant == "carry" and reset:
            comparisons[key[0]].append(f"- {key[1]}: {compare_variants(rows, reset)}")
    for env, arms in by_env.items():
        arms.sort(key=lambda a: (a["budget"], a["arm"] != "default", a["arm"]))
        write_csv(RESULTS / f"ablation_{env}.csv", FIELDS, [{k: a[k] for k in FIELDS} for a in arms])
        lines = [
            f"# Learning ablation on {env}",
            "",
            "Greedy success on 256 held-out evaluation episodes (seeded 1,000,000 + seed + i) at the end of",
            "each run; one thread per run, two runs side by side on a 2-core CPU, except where the wall-clock",
            "says \"2 threads, alone\" (`--jobs 1 --threads 2`: one run with the machine to itself). Rows come from",
            "`analysis/results/ablation/{arm}.csv`; `python analysis/ablation_table.py` rewrites this file.",
            "Settings are over the defaults of the day the arm ran; each command below gives the same run",
            "with today's defaults (it spells out the earlier defaults where they differ). The last column",
            "averages each run's greedy success over all its evaluations during training (every 5,000",
            "steps): the area under its curve, less noisy than the final evaluation.",
            "",
            "| arm | learner | settings over the defaults | budget | seeds | greedy success | path efficiency "
            "| steps to 90 % | wall-clock (min) | mean success over the evaluations |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for a in arms:
            settings = ", ".join(f"`{s}`" for s in a["settings"].split()) or "(defaults)"
            lines.append(f"| {a['arm']} | {a['learner']} | {settings} | {int(a['budget']):,} | {a['seeds']} "
                         f"| {a['final_success']} | {a['path_efficiency']} | {a['steps_to_90']} "
                         f"| {a['wall_clock_min']} | {a['curve_mean']} |")
        if comparisons[env]:
            lines += ["", "Carry z against reset z where an arm has both:", "", *comparisons[env]]
        lines += ["", "Commands (* recorded by a package version whose configs had fewer fields, so its",
                  "fingerprint cannot confirm the command; the settings are the same):", ""]
        lines += [f"- {a['arm']}{'' if a['confirmed'] else ' *'}: `{a['command']}`" for a in arms]
        out = RESULTS / f"ablation_{env}.md"
        text = ("\n".join(lines) + "\n").encode()
        atomic_write(out, lambda f: f.write(text))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
