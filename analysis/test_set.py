"""Evaluate trained agents on the test set and tabulate them: the figures the results report.

    python analysis/test_set.py runs/A runs/B ... --results analysis/results/test_set.csv
    python analysis/test_set.py --results analysis/results/test_set.csv          # table only

The test set (SPEC §5b) is ``hrm_agent.evaluate.TEST_EPISODES`` (1,024) greedy
episodes per env seeded ``TEST_SEED + i`` (10,000,000 + i): never used to choose
anything, the same episodes for every learner and seed, so comparisons are paired
episode by episode. The evaluations during training (episodes ``1,000,000 + seed +
i``) are the validation set: curves and the choice of levers.

A source is an HRM run directory or model file (``HRMAgent.load``), a
stable-baselines3 run directory of ``python -m hrm_agent.baselines`` (its
``final_model.zip``), or ``oracle:ENV_ID`` (the BFS oracle). Each is played once
and kept as one row of the results file, with every episode's outcome; a source
already there (same model file contents, same label) is not played again, so the
command accumulates results across sessions. ``--label`` names the group a source
belongs to (default: ``carry z (token)``, ``carry z (full)``, ``reset z``, the SB3
algorithm, ``oracle``). A model file copied out of its run (the zoo's) does not know
its training; ``--trained-by RUN_DIR`` names the run directory it came from, whose
budget, validation steps to 90 % and wall-clock then fill its row (also of a row
already there).

Writes ``{results stem}.md`` beside the results file, per env: each group's test
success as the mean over seeds with its 95 % interval over seeds (t) and, beside it,
the episode-level 95 % interval (the sampling error of 1,024 episodes with the agents
held fixed); path efficiency; the validation-set steps to first reach 90 %. Then
every pair of groups on the env: the difference of their mean test success with a
bootstrap interval over seeds and the paired episode-level interval.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hrm_agent.checkpoint import atomic_write
from hrm_agent.evaluate import TEST_EPISODES, TEST_SEED, evaluate
from hrm_agent.experiments.stats import Z_95, bootstrap_difference, number, t_interval
from hrm_agent.experiments.store import read_csv, write_csv
from hrm_agent.runs import UsageError

FIELDS = [
    "env", "label", "variant", "seed", "episodes", "test_seed", "success", "path_efficiency", "mean_ep_length",
    "train_steps", "steps_to_90", "wall_clock_s", "fingerprint", "source", "outcomes",
]


def fingerprint(path: Path) -> str:
    """First 12 hex digits of the file's SHA-256 (a model is identified by its contents)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def load_source(source: str) -> tuple[Any, dict[str, Any]]:
    """The policy of ``source`` (anything :func:`evaluate` plays) and its row's identifying fields."""
    if source.startswith("oracle:"):
        from envs.oracle import BFSOracle
        from hrm_agent.baselines.sb3 import EvalPolicy

        env_id = source.split(":", 1)[1]
        return EvalPolicy(BFSOracle(0), env_id, {}, "oracle"), {
            "env": env_id, "variant": "oracle", "seed": 0, "fingerprint": "oracle", "label": "oracle"}
    path = Path(source)
    sb3_model = path / "final_model.zip"
    if sb3_model.is_file():
        from hrm_agent.baselines.sb3 import EvalPolicy, algorithm_class

        config = yaml.safe_load((path / "config.yaml").read_text())
        cls, _ = algorithm_class(config["variant"])
        model = cls.load(sb3_model, device="cpu")
        policy = EvalPolicy(model, config["env"], config.get("env_kwargs") or {}, config["variant"])
        return policy, {"env": config["env"], "variant": config["variant"], "seed": config["seed"],
                        "fingerprint": fingerprint(sb3_model), "label": config["variant"]}
    from hrm_agent.agent import HRMAgent
    from hrm_agent.checkpoint import FINAL_MODEL, LAST_CHECKPOINT
    from hrm_agent.checkpoint import CheckpointError

    try:
        agent = HRMAgent.load(path, device="cpu")
    except (CheckpointError, ValueError) as err:
        raise UsageError(str(err)) from None
    model_file = path / FINAL_MODEL if (path / FINAL_MODEL).is_file() else path / LAST_CHECKPOINT
    model_file = model_file if path.is_dir() else path
    return agent, {"env": agent.env_id, "variant": agent.variant, "seed": agent.seed,
                   "fingerprint": fingerprint(model_file), "label": label(agent.config)}


def label(config: Any) -> str:
    """An HRM agent's default group: ``carry z (full)``, ``carry z (token)`` or ``reset z``, after the core's
    name where it is not the HRM (``TRM carry z (full)``)."""
    from hrm_agent.experiments.tables import CORE_LABELS

    variant = f"carry z ({config.carry})" if config.carry_z else "reset z"
    core = config.model.get("core", "hrm")
    return variant if core == "hrm" else f"{CORE_LABELS[core]} {variant}"


def training_record(source: str) -> dict[str, Any]:
    """Budget, validation steps to 90 % and wall-clock from a run directory's ``summary.json`` (or blanks)."""
    import json

    summary = Path(source) / "summary.json"
    if not summary.is_file():
        return {"train_steps": "", "steps_to_90": "", "wall_clock_s": ""}
    data = json.loads(summary.read_text())
    return {"train_steps": data.get("total_steps", ""), "steps_to_90": data.get("steps_to_90") or "",
            "wall_clock_s": data.get("wall_clock_s", "")}


def play(source: str, policy: Any, row: dict[str, Any], episodes: int, trained_by: str | None = None
         ) -> dict[str, Any]:
    """One results row: ``policy`` (of ``source``, identified by ``row``, trained by the run directory
    ``trained_by``, default ``source``) played on the first ``episodes`` episodes of the test set."""
    result = evaluate(policy, episodes, seed=TEST_SEED)
    summary = result.summary()
    return {**row, **training_record(trained_by or source), "episodes": episodes,
            "test_seed": TEST_SEED, "success": summary["success_rate"], "path_efficiency": summary["path_efficiency"],
            "mean_ep_length": summary["mean_ep_length"], "source": source,
            "outcomes": np.packbits(result.success.astype(np.uint8)).tobytes().hex()}


def outcomes(row: dict[str, Any]) -> np.ndarray:
    """(episodes,) float 0/1: each test episode's success."""
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(row["outcomes"]), dtype=np.uint8))
    return bits[: int(row["episodes"])].astype(float)


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown report: per env, each group's test figures, then every pair of groups."""
    lines = [f"Test set: {TEST_EPISODES:,} greedy episodes per env seeded {TEST_SEED:,} + i, the same for every "
             "agent (`python analysis/test_set.py`). Success: mean over seeds, 95 % interval over seeds (t), "
             "and the episode-level 95 % interval (the 1,024 episodes' sampling error, agents held fixed). "
             "Steps to 90 %: on the validation set during training.", ""]
    by_env: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:  # a quick look at fewer episodes is its own group
        partial = int(r["episodes"]) != TEST_EPISODES
        by_env[r["env"]][r["label"] + (f" (first {r['episodes']} episodes)" if partial else "")].append(r)
    for env in sorted(by_env):
        groups = {label: sorted(g, key=lambda r: int(r["seed"])) for label, g in sorted(by_env[env].items())}
        lines += [f"### {env}", "", "| agents | seeds | test success | ± over seeds | ± episodes | per seed | "
                  "path efficiency | steps to 90 % (validation) |", "|---|---|---|---|---|---|---|---|"]
        for label, group in groups.items():
            success = np.array([float(r["success"]) for r in group])
            mean, half = t_interval(success)
            per_episode = np.stack([outcomes(r) for r in group])  # (seeds, episodes)
            episode_half = Z_95 * np.sqrt((per_episode.var(axis=1, ddof=1) / per_episode.shape[1]).sum()) / len(group)
            eff = [number(r["path_efficiency"]) for r in group]
            eff_mean = np.mean([e for e in eff if e is not None]) if any(e is not None for e in eff) else float("nan")
            reached = [int(float(r["steps_to_90"])) for r in group if number(r["steps_to_90"]) is not None]
            to_90 = "–" if not any(r["train_steps"] for r in group) else (
                f"{len(reached)}/{len(group)}" + (f", median {int(np.median(reached)):,}" if reached else ""))
            seeds = ", ".join(r["seed"] for r in group)
            lines.append(f"| {label} | {seeds} | {mean:.3f} | {'–' if np.isnan(half) else f'± {half:.3f}'} | "
                         f"± {episode_half:.3f} | {' '.join(f'{s:.3f}' for s in success)} | {eff_mean:.3f} | "
                         f"{to_90} |")
        labels = [label for label in groups if label != "oracle"]
        played = {label: int(groups[label][0]["episodes"]) for label in labels}
        # paired over episodes: only groups played on the same test episodes are compared
        pairs = [(a, b) for i, a in enumerate(labels) for b in labels[i + 1:] if played[a] == played[b]]
        if pairs:
            lines += ["", "| difference | test success | 95 % over seeds (bootstrap) | 95 % over episodes (paired) |",
                      "|---|---|---|---|"]
        for a, b in pairs:
            sa = [float(r["success"]) for r in groups[a]]
            sb = [float(r["success"]) for r in groups[b]]
            diff, low, high = bootstrap_difference(sa, sb)
            d_episode = np.stack([outcomes(r) for r in groups[a]]).mean(0) - np.stack(
                [outcomes(r) for r in groups[b]]).mean(0)
            half = Z_95 * d_episode.std(ddof=1) / np.sqrt(len(d_episode))
            over_seeds = "–" if np.isnan(low) else f"[{low:+.3f}, {high:+.3f}]"
            lines.append(f"| {a} − {b} | {diff:+.3f} | {over_seeds} | [{diff - half:+.3f}, {diff + half:+.3f}] |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python analysis/test_set.py", description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="*", help="HRM run directories or model files, SB3 run directories, "
                                                   "oracle:ENV_ID")
    parser.add_argument("--results", type=Path, required=True, help="results CSV (appended to; meant to be committed)")
    parser.add_argument("--label", help="the group the sources belong to in the table (default: by variant)")
    parser.add_argument("--episodes", type=int, default=TEST_EPISODES,
                        help=f"the first N test episodes (default {TEST_EPISODES}; fewer only for a quick look)")
    parser.add_argument("--trained-by", metavar="RUN_DIR",
                        help="the training run directory of the one model-file source (its budget, validation "
                             "steps to 90 %% and wall-clock go in the row)")
    args = parser.parse_args(argv)
    if not 1 <= args.episodes <= TEST_EPISODES:
        parser.error(f"--episodes must be between 1 and {TEST_EPISODES}")
    if args.trained_by and len(args.sources) != 1:
        parser.error("--trained-by names the run of exactly one source")
    try:
        if args.trained_by and not (Path(args.trained_by) / "summary.json").is_file():
            raise UsageError(f"{args.trained_by} has no summary.json (not a finished training run)")
        rows = read_csv(args.results)
        done = {(r["fingerprint"], r["label"], r["episodes"]): r for r in rows}
        for source in args.sources:
            if not source.startswith("oracle:") and not Path(source).exists():
                raise UsageError(f"no such run directory or model file: {source}")
            policy, row = load_source(source)
            row["label"] = args.label or row["label"]
            key = (row["fingerprint"], row["label"], str(args.episodes))
            if key in done:
                if args.trained_by:
                    done[key].update(training_record(args.trained_by))
                    write_csv(args.results, FIELDS, rows)
                print(f"{source}: already in {args.results}" + (
                    f" (training record from {args.trained_by})" if args.trained_by else ""))
                continue
            row = play(source, policy, row, args.episodes, args.trained_by)
            rows.append(row)
            done[key] = row
            write_csv(args.results, FIELDS, rows)
            print(f"{source}: {row['env']} {row['label']} seed {row['seed']}: test success {row['success']:.3f}")
        if not rows:
            raise UsageError(f"no results in {args.results}; give run directories or model files to play")
        report = table(read_csv(args.results))
        md = args.results.with_suffix(".md")
        atomic_write(md, lambda f: f.write(report.encode()))
    except (UsageError, OSError, KeyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report)
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
