"""Tabulate the re-planning tests: the JSON files of ``python -m hrm_agent.evaluate --intervention``.

    python analysis/intervention_table.py [JSON...] [--out analysis/results/intervention.md]

Each JSON file (``--json PATH`` of one ``evaluate --intervention goal|door`` run;
default: every ``analysis/results/intervention/*.json``) becomes one row: env,
variant, intervention, episodes it was applied to, greedy success after it beside
the same episodes without it, extra steps over the new shortest path, and the
iterations the latent took to settle at the step that first saw it beside the
other steps (``z_H`` / ``z_L``). Writes the table as Markdown and its numbers as
CSV (``--out`` with ``.csv``), with the command that gave each row.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "analysis" / "results"
DEFAULT_IN = RESULTS / "intervention"
FIELDS = ["env", "variant", "run", "intervention", "intervention_step", "episodes", "seed", "applied",
          "success_after", "success_after_se", "success_without", "success_without_se", "extra_steps",
          "extra_steps_se", "settle_z_H", "settle_z_H_other", "settle_z_L", "settle_z_L_other", "command"]


def shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def pm(mean: float | None, se: float | None, digits: int = 2) -> str:
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" if se is None else f"{mean:.{digits}f} ± {se:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python analysis/intervention_table.py", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, metavar="JSON",
                        help=f"evaluate --json files (default: {DEFAULT_IN}/*.json)")
    parser.add_argument("--out", type=Path, default=RESULTS / "intervention.md", help="Markdown table to write")
    args = parser.parse_args(argv)

    from hrm_agent.experiments.store import write_csv
    from hrm_agent.checkpoint import atomic_write

    files = args.files or sorted(DEFAULT_IN.glob("*.json"))
    if not files:
        print(f"error: no JSON files given or in {DEFAULT_IN}", file=sys.stderr)
        return 2
    rows = []
    for path in files:
        try:
            report = json.loads(path.read_text())
            if "intervention" not in report:
                raise ValueError("not an evaluate --intervention report")
        except (OSError, ValueError) as err:
            print(f"error: {path}: {err}", file=sys.stderr)
            return 2
        report["command"] = (f"python -m hrm_agent.evaluate {report['run']} --episodes {report['episodes']} "
                             f"--seed {report['seed']} --intervention {report['intervention']} "
                             f"--intervention-step {report['intervention_step']} --json {shown(path)}")
        rows.append({k: report.get(k) for k in FIELDS})
    rows.sort(key=lambda r: (r["env"], r["intervention"], r["variant"], r["run"]))
    lines = [
        "# Re-planning tests",
        "",
        "After `intervention_step` steps of every episode still running, the goal moved off the agent's",
        "shortest path (`goal`) or a door closed on it (`door`); no other change in the episode. Greedy",
        "success of the episodes it was applied to, beside the same episodes without it; steps after it",
        "over the new shortest path (episodes that reached the goal); iterations until the latent stays",
        "within 10 % of the way from the initial state to its final value, at the step that first saw",
        "the change and at the other steps. `python analysis/intervention_table.py` rewrites this file.",
        "",
        "| env | variant | intervention | run | applied | success after | success without | extra steps "
        "| settle z_H: after / other | settle z_L: after / other |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['env']} | {r['variant']} z | {r['intervention']} after step {r['intervention_step']} "
            f"| {Path(str(r['run'])).name} | {int(r['applied'])} of {r['episodes']} "
            f"| {pm(r['success_after'], r['success_after_se'])} | {pm(r['success_without'], r['success_without_se'])} "
            f"| {pm(r['extra_steps'], r['extra_steps_se'], 1)} "
            f"| {pm(r['settle_z_H'], None)} / {pm(r['settle_z_H_other'], None)} "
            f"| {pm(r['settle_z_L'], None)} / {pm(r['settle_z_L_other'], None)} |")
    lines += ["", "Commands:", ""] + [f"- `{r['command']}`" for r in rows]
    text = ("\n".join(lines) + "\n").encode()
    atomic_write(args.out, lambda f: f.write(text))
    csv_path = write_csv(args.out.with_suffix(".csv"), FIELDS, rows)
    print(f"wrote {args.out}, {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
