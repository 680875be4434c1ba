"""The paper's latent questions and the re-planning test, asked of the committed agents.

    python analysis/paper_questions.py [--zoo analysis/agents] [--env ENV_ID] [--episodes 128] [--seeds K]
        [--out analysis/results/paper] [--matched [analysis/agents/matched]]

For every env of the zoo's manifest (``analysis/agents/manifest.csv``, see
``analysis/zoo.py``), with every agent listed for it (or those of seeds
``0 .. K-1``):

- **Latents, by the HRM-Agent authors' protocol**: each agent plays the first
  ``--episodes`` episodes of the test set with its latents recorded at every
  position; pooled by variant, the convergence figures (steps split by a change
  that touched the shortest path, and by any change) and the divergence figure,
  each by three measures: the MSE over all positions, the authors' squared
  distance of the query token, and the MSE at the cells the Q head reads
  (``hrm_agent.analysis``) -> ``{out}/{env}/latents/``, and a table of the
  start distances and the divergence at steps 10 and 20 -> ``{out}/{env}/latents.md``.
- **The re-planning test**: each agent and the BFS oracle play the same
  episodes without the env's own changes, once with a door closed on the
  shortest path after step 3, once with the goal moved off it, and once with
  neither (the control): success after the intervention beside the same
  episodes without it, extra steps over the new shortest path, and the
  iterations the latent took to settle at the step that first saw the change
  beside the other steps -> ``{out}/{env}/replanning.csv`` and ``.md`` (the
  latter also pooled by variant: the mean over its agents and their range).

With ``--matched``, the same questions at matched competence: the zoo's reset-z
agents beside the carry-z agents of ``analysis/agents/matched/`` (each a carry-z
run's model at the first evaluation to reach reset z's test success, ``python
analysis/zoo.py match``) -> ``{out}/{env}/matched/``: a latent difference that
stays there is not a competence difference.

Everything comes from the committed agents: the command runs in minutes, with
no training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent
INTERVENTION_STEP = 3
REPLANNING_FIELDS = [
    "env", "agent", "variant", "seed", "intervention", "episodes", "applied", "success_after", "success_without",
    "extra_steps", "settle_z_H", "settle_z_H_other", "settle_z_L", "settle_z_L_other",
]


def zoo_agents(zoo: Path, env: str | None, seeds: int | None = None) -> dict[str, list[tuple[dict[str, str], Path]]]:
    """The manifest's agents by env (of seeds ``0 .. seeds-1`` if given): ``(row, file)`` pairs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("analysis_zoo", ROOT / "zoo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    by_env: dict[str, list[tuple[dict[str, str], Path]]] = {}
    for row in module.read_manifest(zoo):
        if (env is None or row["env"] == env) and (seeds is None or int(row["seed"]) < seeds):
            by_env.setdefault(row["env"], []).append((row, zoo / row["file"]))
    return by_env


def agent_name(row: dict[str, str], matched: bool) -> str:
    """An agent's name in the tables: its file's stem, with ``@step`` for a matched carry-z agent."""
    name = row["file"].removesuffix(".pt")
    return f"{name}@{int(row['env_steps']):,}" if matched and row["variant"] != "reset" else name


def latent_figures(agents: list[Any], episodes: int, out: Path) -> list[Path]:
    """Record every agent's latents on the test set's first ``episodes``; write the pooled figures to
    ``out/latents/`` and their summary table to ``out/latents.md``."""
    from hrm_agent import analysis
    from hrm_agent.checkpoint import atomic_write
    from hrm_agent.evaluate import TEST_SEED, evaluate

    sets = [evaluate(agent, episodes, seed=TEST_SEED, record_latents=True).latents for agent in agents]
    paths, lines = [], [
        "Latents on the test set (`python analysis/paper_questions.py`), pooled over each variant's agents, each "
        "episode's first step left out; mean [95 % interval over steps]. Start: d(z^0, z^NT), how far a step "
        "starts from where it ends, split by whether the change that came with its observation touched the "
        "shortest path (path) or any wall or door (any). Divergence: d(z^NT of step 1, z^NT of step t).", "",
        "| measure | level | variant | start, unchanged (path) | start, changed (path) | start, changed (any) | "
        "divergence at step 10 | at step 20 |", "|---|---|---|---|---|---|---|---|"]

    def fmt(row: dict[str, Any] | None) -> str:
        if row is None or not np.isfinite(row["mean"]):
            return "–"
        interval = f" [{row['ci_low']:.3g}, {row['ci_high']:.3g}]" if np.isfinite(row["ci_low"]) else ""
        return f"{row['mean']:.3g}{interval} (n = {row['n']})"

    for measure in analysis.MEASURES:
        start = {}
        for split in analysis.SPLITS:
            paths += analysis.write_convergence(sets, out / "latents", split=split, measure=measure)
            for r in analysis.convergence_table(sets, split=split, measure=measure):
                if r["iteration"] == 0:
                    start[(split, r["level"], r["variant"], r["changed"])] = r
        paths += analysis.write_divergence(sets, out / "latents", measure=measure)
        divergence = {(r["level"], r["variant"], r["step"]): r for r in analysis.divergence_table(sets, measure)}
        for level in analysis.LEVELS:
            for variant in sorted({s.variant for s in sets}):
                cells = [start.get(("path", level, variant, False)), start.get(("path", level, variant, True)),
                         start.get(("any", level, variant, True)), divergence.get((level, variant, 10)),
                         divergence.get((level, variant, 20))]
                lines.append(f"| {measure} | {level} | {variant} | " + " | ".join(map(fmt, cells)) + " |")
    text = "\n".join(lines) + "\n"
    atomic_write(out / "latents.md", lambda f: f.write(text.encode()))
    print(text)
    return [*paths, out / "latents.md"]


def replanning_rows(env_id: str, agents: list[tuple[str, Any]], episodes: int) -> list[dict[str, Any]]:
    """One row per agent (the oracle included) and intervention; seeds of the test set, no env changes."""
    from envs.interventions import static_kwargs
    from hrm_agent.analysis import settling_table
    from hrm_agent.evaluate import TEST_SEED, evaluate

    rows = []
    for name, agent in agents:
        is_hrm = hasattr(agent, "online")
        control = evaluate(agent, episodes, seed=TEST_SEED, env_kwargs=static_kwargs(agent.env_kwargs))
        for kind in ("door", "goal"):
            result = evaluate(agent, episodes, seed=TEST_SEED, intervention=kind,
                              intervention_step=INTERVENTION_STEP, record_latents=is_hrm)
            applied = result.intervened
            row = {"env": env_id, "agent": name, "variant": getattr(agent, "variant", "oracle"),
                   "seed": getattr(agent, "seed", ""), "intervention": kind, "episodes": episodes,
                   "applied": int(applied.sum()), "success_after": float(result.success[applied].mean()),
                   "success_without": float(control.success[applied].mean()),
                   "extra_steps": float(result.extra_steps.mean()) if len(result.extra_steps) else float("nan")}
            if is_hrm:
                settle = {(r["level"], r["steps"]): r["mean"] for r in settling_table([result.latents])}
                for level in ("z_H", "z_L"):
                    row[f"settle_{level}"] = settle[(level, "intervention")]
                    row[f"settle_{level}_other"] = settle[(level, "other")]
            rows.append(row)
    return rows


def replanning_table(rows: list[dict[str, Any]]) -> str:
    def cell(value: Any, digits: int = 2) -> str:
        return "–" if value in (None, "") or (isinstance(value, float) and not np.isfinite(value)) else \
            f"{value:.{digits}f}"

    lines = [f"Re-planning test: the intervention after step {INTERVENTION_STEP} of each test episode still running "
             "(`python analysis/paper_questions.py`), no other change; success of the episodes it applied to, "
             "beside the same episodes without it; settling: recurrent iterations until the latent stays within "
             "10 % of the way from the initial state to its final value, at the step that first sees the change "
             "(other steps).", "",
             "| agent | intervention | applied | success after | without | extra steps | settle z_H | settle z_L |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        settle = [f"{cell(r.get(f'settle_{lv}'))} ({cell(r.get(f'settle_{lv}_other'))})"
                  if r.get(f"settle_{lv}") is not None else "–" for lv in ("z_H", "z_L")]
        lines.append(f"| {r['agent']} | {r['intervention']} | {r['applied']}/{r['episodes']} | "
                     f"{cell(r['success_after'])} | {cell(r['success_without'])} | {cell(r['extra_steps'])} | "
                     f"{settle[0]} | {settle[1]} |")
    lines += ["", "Pooled by variant: the mean over its agents [lowest, highest agent].", "",
              "| variant | agents | intervention | success after | without | kept (after / without) |",
              "|---|---|---|---|---|---|"]
    for (variant, kind), group in pooled(rows).items():
        after, without = (np.array([r[key] for r in group]) for key in ("success_after", "success_without"))
        kept = after.sum() / without.sum() if without.sum() > 0 else float("nan")
        lines.append(f"| {variant} | {len(group)} | {kind} | {cell(after.mean())} [{cell(after.min())}, "
                     f"{cell(after.max())}] | {cell(without.mean())} [{cell(without.min())}, {cell(without.max())}] "
                     f"| {cell(kept)} |")
    return "\n".join(lines) + "\n"


def pooled(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The rows grouped by (variant, intervention), in the order they first appear."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["variant"], r["intervention"]), []).append(r)
    return groups


def main(argv: list[str] | None = None) -> int:
    from hrm_agent.experiments.cli import add_seeds

    parser = argparse.ArgumentParser(prog="python analysis/paper_questions.py", description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=ROOT / "agents", help="the agents' folder (default analysis/agents)")
    parser.add_argument("--env", default=None, help="only this env's agents")
    parser.add_argument("--episodes", type=int, default=128, help="test episodes per agent (default 128)")
    add_seeds(parser, "each variant's agents", default_text="all")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "paper", help="output folder")
    parser.add_argument("--matched", type=Path, nargs="?", const=ROOT / "agents" / "matched", default=None,
                        help="the zoo's reset-z agents beside the carry-z agents of this folder (default "
                             "analysis/agents/matched), to {out}/{env}/matched/")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be at least 1")
    if args.seeds is not None and args.seeds < 1:
        parser.error("--seeds must be at least 1")

    from envs.oracle import BFSOracle
    from hrm_agent.agent import HRMAgent
    from hrm_agent.experiments.store import write_csv
    from hrm_agent.runs import UsageError
    from hrm_agent.baselines.sb3 import EvalPolicy
    from hrm_agent.checkpoint import CheckpointError, atomic_write

    try:
        by_env = zoo_agents(args.zoo, args.env, args.seeds)
        if args.matched is not None:
            carry = zoo_agents(args.matched, args.env, args.seeds)
            by_env = {env: [(row, path) for row, path in listed if row["variant"] == "reset"] + carry[env]
                      for env, listed in by_env.items() if env in carry}
        if not by_env:
            where = args.zoo if args.matched is None else f"{args.zoo} and {args.matched}"
            raise UsageError(f"no agents{' for ' + args.env if args.env else ''} in {where}")
        for env_id, listed in by_env.items():
            agents = [(agent_name(row, args.matched is not None), HRMAgent.load(path, device="cpu"))
                      for row, path in listed]
            out = args.out / env_id / ("matched" if args.matched is not None else "")
            paths = latent_figures([agent for _, agent in agents], args.episodes, out)
            oracle = EvalPolicy(BFSOracle(0), env_id, {}, "oracle")
            rows = replanning_rows(env_id, [*agents, ("BFS oracle", oracle)], args.episodes)
            paths.append(write_csv(out / "replanning.csv", REPLANNING_FIELDS,
                                   [{k: r.get(k, "") for k in REPLANNING_FIELDS} for r in rows]))
            text = replanning_table(rows)
            atomic_write(out / "replanning.md", lambda f: f.write(text.encode()))
            print(f"{env_id}: {len(agents)} agents\n{text}")
            print("wrote " + ", ".join(str(p) for p in [*paths, out / "replanning.md"]))
    except (UsageError, CheckpointError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
