"""The committed trained agents (``analysis/agents/``): add finished runs, check that every one plays.

    python analysis/zoo.py add runs/DynamicMaze-v0__carry__0__<time> ...   # copy in, play the test set
    python analysis/zoo.py match runs/DynamicMaze-v0__carry__3__<time>      # carry z at reset z's success
    python analysis/zoo.py check [--zoo analysis/agents/matched]             # load every agent, play a few episodes
    python analysis/zoo.py list

Like rl-baselines3-zoo's trained agents: anyone can re-run every analysis of the
results on them in minutes, without training. An agent is the file
``HRMAgent.save`` writes (its resolved config and the online network's weights,
tens of KB), named ``{env}__{variant}__{seed}.pt`` (variant ``carry-full``,
``carry-token`` or ``reset``), loadable with ``HRMAgent.load``. Adding one plays it
on the test set (``analysis/test_set.py``, results in
``analysis/results/test_set_agents.csv``, with the run's validation steps to 90 %)
and writes its row of
``analysis/agents/manifest.csv``: env, variant, seed, env steps trained,
test-set success, training minutes, the commit it was added at, the command that
trains it again (the train flags and every ``--set`` where its config differs from
the defaults of the commit it is added at), the file and its SHA-256 prefix.

**Matched competence.** ``match`` takes a carry-z run trained with
``--set save_eval_models=true`` (its model at every evaluation, ``models/step_N.pt``;
the run may still be training) and adds to ``analysis/agents/matched/`` the model of
the first evaluation whose validation success reaches the mean test success of the
zoo's reset-z agents on that env (so the choice stands as the run trains on), played
on the test set like any agent: carry z and reset z at equal success, so that a
latent difference between them is not a competence difference. Its manifest row's
``env_steps`` is the step of that evaluation.
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
MATCHED = ZOO / "matched"
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


def test_set_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("analysis_test_set", ROOT / "test_set.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def add(run_dir: Path, zoo: Path, test_results: Path, commit: str) -> dict[str, Any]:
    """Copy ``run_dir``'s final model into ``zoo``, play it on the test set, return its manifest row."""
    from hrm_agent.checkpoint import FINAL_MODEL

    model_file = run_dir / FINAL_MODEL
    if not model_file.is_file():
        raise UsageError(f"{run_dir} has no {FINAL_MODEL} (not a finished HRM training run)")
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read {run_dir}: {err}") from None
    return add_model(model_file, int(summary["total_steps"]), round(float(summary["wall_clock_s"]) / 60, 1),
                     zoo, test_results, commit, trained_by=run_dir)


def add_model(model_file: Path, env_steps: int, minutes: float | str, zoo: Path, test_results: Path, commit: str,
              label: str | None = None, trained_by: Path | None = None) -> dict[str, Any]:
    """Copy the agent of ``model_file`` into ``zoo``, play it on the test set (as ``label``; its training record
    from the run directory ``trained_by``), return its row."""
    from hrm_agent.agent import HRMAgent
    from hrm_agent.checkpoint import CheckpointError

    try:
        agent = HRMAgent.load(model_file, device="cpu")
    except (CheckpointError, OSError, ValueError) as err:
        raise UsageError(f"cannot read {model_file}: {err}") from None
    name = f"{agent.env_id}__{variant_name(agent.config)}__{agent.seed}.pt"
    target = zoo / name
    agent.save(target)  # the model file: resolved config and online weights only

    test_set = test_set_module()
    if test_set.main([str(target), "--results", str(test_results), *(["--label", label] if label else []),
                      *(["--trained-by", str(trained_by)] if trained_by else [])]) != 0:
        raise UsageError(f"could not play {target} on the test set")
    fingerprint = test_set.fingerprint(target)
    (row,) = [r for r in read_csv(test_results)
              if r["fingerprint"] == fingerprint and int(r["episodes"]) == test_set.TEST_EPISODES
              and r["label"] == (label or test_set.label(agent.config))]
    return {
        "env": agent.env_id, "variant": variant_name(agent.config), "seed": agent.seed,
        "env_steps": env_steps, "test_success": float(row["success"]), "minutes": minutes, "commit": commit,
        "command": train_command(agent, int(agent.config.total_steps)),
        "file": name, "sha256": fingerprint,
    }


def eval_history(run_dir: Path) -> list[dict[str, Any]]:
    """A run's validation evaluations: its ``summary.json``'s, or while it trains its last checkpoint's."""
    from hrm_agent.checkpoint import LAST_CHECKPOINT, load_file

    summary = run_dir / "summary.json"
    if summary.is_file():
        return json.loads(summary.read_text())["eval_history"]
    return list(load_file(run_dir / LAST_CHECKPOINT, "checkpoint")["eval_history"])


def first_reaching(history: list[dict[str, Any]], steps: set[int], target: float) -> dict[str, Any]:
    """The earliest evaluation whose validation success reaches ``target``; its model must be among ``steps``."""
    history = sorted(history, key=lambda h: int(h["step"]))
    reached = [h for h in history if h["success_rate"] >= target]
    if not reached:
        best = max(history, key=lambda h: h["success_rate"], default={"success_rate": float("nan"), "step": 0})
        raise UsageError(f"no evaluation has reached reset z's success {target:.3f} yet (best "
                         f"{best['success_rate']:.3f} at step {int(best['step']):,}): let the run train on")
    if int(reached[0]["step"]) not in steps:
        raise UsageError(f"the first evaluation to reach {target:.3f} (step {int(reached[0]['step']):,}) has no "
                         "saved model")
    return reached[0]


def match(run_dir: Path, zoo: Path, matched: Path, test_results: Path, commit: str,
          target: float | None = None) -> dict[str, Any]:
    """Add the model of ``run_dir`` (carry z) at the zoo's reset-z test success (or ``target``) to
    ``matched``; its row."""
    import numpy as np

    from hrm_agent.agent import HRMAgent
    from hrm_agent.callbacks import EVAL_MODELS
    from hrm_agent.checkpoint import CheckpointError

    models = {int(p.stem.removeprefix("step_")): p for p in (run_dir / EVAL_MODELS).glob("step_*.pt")}
    if not models:
        raise UsageError(f"{run_dir} has no {EVAL_MODELS}/step_N.pt (train it with --set save_eval_models=true)")
    try:
        history = eval_history(run_dir)
        agent = HRMAgent.load(models[max(models)], device="cpu")
    except (CheckpointError, OSError, ValueError, KeyError) as err:
        raise UsageError(f"cannot read {run_dir}: {err}") from None
    if not agent.config.carry_z:
        raise UsageError(f"{run_dir} is a reset-z run: match a carry-z run to reset z's success")
    reset = [float(r["test_success"]) for r in read_manifest(zoo) if r["env"] == agent.env_id and r["variant"] == "reset"]
    if target is None:
        if not reset:
            raise UsageError(f"no reset-z agents of {agent.env_id} in {zoo / 'manifest.csv'} to match")
        target = float(np.mean(reset))
    chosen = first_reaching(history, set(models), target)
    minutes = round(float(chosen["wall_clock_s"]) / 60, 1) if "wall_clock_s" in chosen else ""
    row = add_model(models[int(chosen["step"])], int(chosen["step"]), minutes, matched, test_results, commit,
                    label=f"{test_set_module().label(agent.config)} at reset z's success")
    print(f"{run_dir}: step {chosen['step']:,}, validation success {chosen['success_rate']:.3f} (target {target:.3f}; "
          f"the mean test success of {len(reset)} reset-z agent(s): {np.mean(reset) if reset else float('nan'):.3f})")
    return row


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
    adding = argparse.ArgumentParser(add_help=False)
    adding.add_argument("--test-results", type=Path, default=TEST_RESULTS,
                        help="the test-set results file the agents' rows go to")
    adding.add_argument("--commit", default=None, help="the commit the runs were trained at (default: HEAD)")
    p_add = sub.add_parser("add", parents=[adding], help="copy finished runs' final models in and play them on the test set")
    p_add.add_argument("runs", nargs="+", type=Path, help="HRM run directories with a final_model.pt")
    p_match = sub.add_parser("match", parents=[adding],
                             help="add carry-z runs' models at reset z's test success to --matched")
    p_match.add_argument("runs", nargs="+", type=Path, help="carry-z run directories with models/step_N.pt")
    p_match.add_argument("--target", type=float, default=None,
                         help="the validation success to reach (default: the mean test success of the zoo's "
                              "reset-z agents on the env)")
    p_match.add_argument("--matched", type=Path, default=MATCHED,
                         help=f"the matched agents' folder (default {MATCHED.relative_to(ROOT.parent)})")
    p_check = sub.add_parser("check", help="load every agent and play a few test episodes")
    p_check.add_argument("--episodes", type=int, default=4, help="test episodes per agent (default 4)")
    sub.add_parser("list", help="print the manifest")
    args = parser.parse_args(argv)
    if getattr(args, "target", None) is not None and not 0.0 <= args.target <= 1.0:
        parser.error("--target must be a success rate between 0 and 1")
    try:
        if args.action in ("add", "match"):
            folder = args.zoo if args.action == "add" else args.matched
            rows = {r["file"]: r for r in read_manifest(folder)}
            for run_dir in args.runs:
                commit = args.commit or current_commit()
                row = add(run_dir, folder, args.test_results, commit) if args.action == "add" else \
                    match(run_dir, args.zoo, folder, args.test_results, commit, args.target)
                rows[row["file"]] = row
                write_manifest(folder, list(rows.values()))
                print(f"added {folder / row['file']}: test success {row['test_success']:.3f}")
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
