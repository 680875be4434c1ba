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
- ``analysis/results/ablation_{env}.csv``: the same numbers, one row per arm.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

from hrm_agent.analysis import format_mean_se, mean_se, number, write_csv
from hrm_agent.checkpoint import atomic_write

RESULTS = Path(__file__).resolve().parent / "results"
ARMS = RESULTS / "ablation"
FIELDS = [
    "env", "arm", "learner", "budget", "settings", "seeds", "final_success", "final_success_se", "path_efficiency",
    "steps_to_90", "wall_clock_min", "command",
]


def command(env: str, arm: str, learner: str, budget: str, n_seeds: int, settings: str, env_kwargs: str) -> str:
    parts = [f"python -m hrm_agent.bench learn --env {env} --seeds {n_seeds} --budget {budget}",
             f"--learners {learner} --results analysis/results/ablation/{arm}.csv"]
    parts += [f"--set hrm:{s}" for s in settings.split()]
    parts += [f"--env-kwarg {k}" for k in env_kwargs.split()]
    return " ".join(parts)


def summarise(arm: str, rows: list[dict[str, str]]) -> dict[str, str]:
    first = rows[0]
    success = [x for r in rows if (x := number(r["final_success"])) is not None]
    efficiency = [x for r in rows if (x := number(r["path_efficiency"])) is not None]
    if len(success) == 1:  # one seed: the evaluation episodes' standard error
        shown = f"{success[0]:.2f} ± {number(rows[0]['final_success_se']) or 0:.2f} (1 seed)"
    else:
        shown = format_mean_se(success)
    reached = sorted(int(x) for r in rows if (x := number(r["steps_to_90"])) is not None)
    minutes = [x / 60 for r in rows if (x := number(r["wall_clock_s"])) is not None]
    return {
        "env": first["env"], "arm": arm, "learner": first["variant"], "budget": first["budget"],
        "settings": first["settings"], "seeds": ", ".join(sorted((r["seed"] for r in rows), key=int)),
        "final_success": shown, "final_success_se": "",
        "path_efficiency": format_mean_se(efficiency) if efficiency else "–",
        "steps_to_90": f"{len(reached)}/{len(rows)}; median {reached[len(reached) // 2]:,}" if reached
        else f"not reached (0/{len(rows)})",
        "wall_clock_min": format_mean_se(minutes, digits=1) if minutes else "–",
        "command": command(first["env"], arm, first["variant"], first["budget"], len(rows), first["settings"],
                           first["env_kwargs"]),
    }


def main() -> int:
    groups: dict[tuple[str, ...], list[dict[str, str]]] = defaultdict(list)
    for path in sorted(ARMS.glob("*.csv")):
        with path.open(newline="") as f:
            for r in csv.DictReader(f):
                key = (r["env"], path.stem, r["variant"], r["budget"], r["settings"], r["env_kwargs"])
                groups[key].append(r)
    if not groups:
        print(f"error: no results in {ARMS}", file=sys.stderr)
        return 2
    by_env: dict[str, list[dict[str, str]]] = defaultdict(list)
    for key, rows in groups.items():
        by_env[key[0]].append(summarise(key[1], rows))
    for env, arms in by_env.items():
        arms.sort(key=lambda a: (a["budget"], a["arm"] != "default", a["arm"]))
        write_csv(RESULTS / f"ablation_{env}.csv", FIELDS, arms)
        lines = [
            f"# Learning ablation on {env}",
            "",
            "Greedy success on 256 held-out evaluation episodes (seeded 1,000,000 + seed + i) at the end of",
            "each run; one thread per run, two runs side by side on a 2-core CPU. Rows come from",
            "`analysis/results/ablation/{arm}.csv`; `python analysis/ablation_table.py` rewrites this file.",
            "",
            "| arm | learner | settings over the defaults | budget | seeds | greedy success | path efficiency "
            "| steps to 90 % | wall-clock (min) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for a in arms:
            settings = ", ".join(f"`{s}`" for s in a["settings"].split()) or "(defaults)"
            lines.append(f"| {a['arm']} | {a['learner']} | {settings} | {int(a['budget']):,} | {a['seeds']} "
                         f"| {a['final_success']} | {a['path_efficiency']} | {a['steps_to_90']} "
                         f"| {a['wall_clock_min']} |")
        lines += ["", "Commands:", ""] + [f"- {a['arm']}: `{a['command']}`" for a in arms]
        out = RESULTS / f"ablation_{env}.md"
        text = ("\n".join(lines) + "\n").encode()
        atomic_write(out, lambda f: f.write(text))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
