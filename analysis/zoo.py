"""The committed trained agents (``analysis/agents/``): add finished runs, check that every one plays.

    python analysis/zoo.py add runs/DynamicMaze-v0__carry__0__<time> ...   # copy in, play the test set
    python analysis/zoo.py check                                             # load every agent, play a few episodes
    python analysis/zoo.py list

Like rl-baselines3-zoo's trained agents: anyone can re-run every analysis of the
results on them in minutes, without training. An agent is the file
``HRMAgent.save`` writes (its resolved config and the online network's weights,
tens of KB), named ``{env}__{variant}__{seed}.pt`` (variant ``carry-full``,
``carry-token`` or ``reset``), loadable with ``HRMAgent.load``. Adding one plays it
on the test set (``analysis/test_set.py``, results in
``analysis/results/test_set_agents.csv``) and writes its row of
``analysis/agents/manifest.csv``: env, variant, seed, env steps trained,
test-set success, training minutes, the commit it was added at, the command that
trains it again (the train flags and every ``--set`` where its config differs from
the defaults of the commit it is added at), the file and its SHA-256 prefix.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from hrm_agent.experiments.store import read_csv, write_csv
from hrm_agent.runs import UsageError

ROOT = Path(__file__).resolve().parent
ZOO = ROOT / "agents"
TEST_RESULTS = ROOT / "results" / "test_set_agents.csv"
FIELDS = ["env", "variant", "seed", "env_steps", "test_success", "minutes", "commit", "command", "file", "sha256"]


def variant_name(config: Any) -> str:
    """``carry-full``, ``carry-token`` or ``reset`` of an ``AgentConfig``."""
    return f"carry-{config.carry}" if config.carry_z else "reset"


def train_command(agent: Any, total_steps: int) -> str:
    """The ``python -m hrm_agent.train`` command that trains ``agent``'s config under the current defaults."""
    from hrm_agent.hyperparams import resolve_config

    config = agent.config
    defaults = resolve_config(agent.env_id, carry_z=config.carry_z).model_dump()
    wanted = config.model_dump()
    sets = []
    for key, value in wanted.items():
        if key == "model":
            sets += [f"model.{k}={json.dumps(v)}" for k, v in sorted(value.items()) if defaults["model"].get(k) != v]
        elif key not in ("total_steps", "carry_z") and defaults[key] != value:
            sets.append(f"{key}={json.dumps(value) if not isinstance(value, str) else value}")
    parts = ["python -m hrm_agent.train", f"--env {agent.env_id}", "--carry-z" if config.carry_z else "--reset-z",
             f"--seed {agent.seed}"]
    if total_steps != defaults["total_steps"]:
        parts.append(f"--total-steps {total_steps}")
    parts += [f"--set {item}" for item in sets]
    parts += [f"--env-kwarg {k}={json.dumps(v)}" for k, v in sorted(agent.env_kwargs.items())]
    return " ".join(parts)


def current_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def read_manifest(zoo: Path) -> list[dict[str, str]]:
    return read_csv(zoo / "manifest.csv")


def write_manifest(zoo: Path, rows: list[dict[str, Any]]) -> None:
    key = {"DynamicMaze-v0": 0, "FourRooms-v0": 1}
    rows = sorted(rows, key=lambda r: (key.get(r["env"], 2), r["env"], r["variant"], int(r["seed"])))
    write_csv(zoo / "manifest.csv", FIELDS, rows)


def add(run_dir: Path, zoo: Path, test_results: Path, commit: str) -> dict[str, Any]:
    """Copy ``run_dir``'s final model into ``zoo``, play it on the test set, return its manifest row."""
    import importlib.util

    from hrm_agent.agent import HRMAgent
    from hrm_agent.checkpoint import FINAL_MODEL
    from hrm_agent.checkpoint import CheckpointError

    model_file = run_dir / FINAL_MODEL
    if not model_file.is_file():
        raise UsageError(f"{run_dir} has no {FINAL_MODEL} (not a finished HRM training run)")
    try:
        agent = HRMAgent.load(model_file, device="cpu")
        summary = json.loads((run_dir / "summary.json").read_text())
    except (CheckpointError, OSError, ValueError) as err:
        raise UsageError(f"cannot read {run_dir}: {err}") from None
    name = f"{agent.env_id}__{variant_name(agent.config)}__{agent.seed}.pt"
    target = zoo / name
    agent.save(target)  # the model file: resolved config and online weights only

    spec = importlib.util.spec_from_file_location("analysis_test_set", ROOT / "test_set.py")
    test_set = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_set)
    if test_set.main([str(target), "--results", str(test_results)]) != 0:
        raise UsageError(f"could not play {target} on the test set")
    fingerprint = test_set.fingerprint(target)
    (row,) = [r for r in read_csv(test_results)
              if r["fingerprint"] == fingerprint and int(r["episodes"]) == test_set.TEST_EPISODES]
    return {
        "env": agent.env_id, "variant": variant_name(agent.config), "seed": agent.seed,
        "env_steps": summary["total_steps"], "test_success": float(row["success"]),
        "minutes": round(float(summary["wall_clock_s"]) / 60, 1), "commit": commit,
        "command": train_command(agent, int(summary["total_steps"])),
        "file": name, "sha256": fingerprint,
    }


def check(zoo: Path, episodes: int) -> list[str]:
    """Load every agent of the manifest, check its file's hash, play ``episodes`` test episodes; lines to print."""
    from hrm_agent.agent import HRMAgent
    from hrm_agent.evaluate import TEST_SEED, evaluate

    rows = read_manifest(zoo)
    if not rows:
        raise UsageError(f"no agents in {zoo / 'manifest.csv'}")
    import hashlib

    lines = []
    for row in rows:
        path = zoo / row["file"]
        if not path.is_file():
            raise UsageError(f"{path} is listed in the manifest but missing")
        if hashlib.sha256(path.read_bytes()).hexdigest()[:12] != row["sha256"]:
            raise UsageError(f"{path} does not match its manifest hash {row['sha256']}")
        agent = HRMAgent.load(path, device="cpu")
        if (agent.env_id, variant_name(agent.config), str(agent.seed)) != (row["env"], row["variant"], row["seed"]):
            raise UsageError(f"{path} holds {agent.env_id} {variant_name(agent.config)} seed {agent.seed}, "
                           "not what its manifest row says")
        result = evaluate(agent, episodes, seed=TEST_SEED)
        lines.append(f"{row['file']}: {int(result.success.sum())}/{episodes} test episodes reached the goal "
                     f"(manifest: {float(row['test_success']):.3f} on the whole test set)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python analysis/zoo.py", description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=ZOO, help=f"the agents' folder (default {ZOO.relative_to(ROOT.parent)})")
    sub = parser.add_subparsers(dest="action", required=True)
    p_add = sub.add_parser("add", help="copy finished runs' final models in and play them on the test set")
    p_add.add_argument("runs", nargs="+", type=Path, help="HRM run directories with a final_model.pt")
    p_add.add_argument("--test-results", type=Path, default=TEST_RESULTS,
                       help="the test-set results file the agents' rows go to")
    p_add.add_argument("--commit", default=None, help="the commit the runs were trained at (default: HEAD)")
    p_check = sub.add_parser("check", help="load every agent and play a few test episodes")
    p_check.add_argument("--episodes", type=int, default=4, help="test episodes per agent (default 4)")
    sub.add_parser("list", help="print the manifest")
    args = parser.parse_args(argv)
    try:
        if args.action == "add":
            rows = {r["file"]: r for r in read_manifest(args.zoo)}
            for run_dir in args.runs:
                row = add(run_dir, args.zoo, args.test_results, args.commit or current_commit())
                rows[row["file"]] = row
                write_manifest(args.zoo, list(rows.values()))
                print(f"added {args.zoo / row['file']}: test success {row['test_success']:.3f}")
        elif args.action == "check":
            if args.episodes < 1:
                parser.error("--episodes must be at least 1")
            print("\n".join(check(args.zoo, args.episodes)))
        else:
            for row in read_manifest(args.zoo):
                print(f"{row['file']}: {row['env_steps']} steps, test success {row['test_success']}, "
                      f"{row['minutes']} min, commit {row['commit']}")
    except (UsageError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
