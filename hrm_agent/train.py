"""Train an HRM agent: ``python -m hrm_agent.train --env DynamicMaze-v0 --carry-z``.

Hyperparameters are resolved as: the env's tuned defaults in
``hrm_agent/hyperparams.yaml`` <- ``--preset NAME`` <- ``--config FILE.yaml`` <- ``--set key=value``
(repeatable; ``model.hidden_size=128`` reaches into the model) <- the flags.
Carry z is the default variant.

A run writes ``runs/{env}__{variant}__{seed}__{timestamp}/`` (or ``--run-dir``):
``config.yaml`` (resolved), TensorBoard events and ``progress.csv``,
``checkpoints/last.pt``, ``final_model.pt`` and ``summary.json``. Ctrl-C
checkpoints and exits; ``--resume RUN_DIR`` continues from the last
checkpoint. Watch with ``tensorboard --logdir runs``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym

from hrm_agent.agent import HRMAgent
from hrm_agent.callbacks import print_result
from hrm_agent.loop import TrainingDiverged
from hrm_agent.checkpoint import FINAL_MODEL, LAST_CHECKPOINT
from hrm_agent.hyperparams import preset_names, resolve_config
from hrm_agent.runs import (  # noqa: F401  (json_safe: kept importable from here)
    EXIT_INTERRUPTED,
    RunFault,
    UsageError,
    check_config,
    check_env_id,
    check_writable,
    default_run_dir,
    json_safe,
    one_line_errors,
    package_versions,
    parse_env_kwargs,
    run_fault,
    set_torch_threads,
    summary_record,
    write_json,
    write_yaml,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hrm_agent.train",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--env", help="registered Gymnasium env id (required unless --resume)")
    variant = p.add_mutually_exclusive_group()
    variant.add_argument("--carry-z", dest="carry_z", action="store_true", default=None,
                         help="carry the latent across env steps (default)")
    variant.add_argument("--reset-z", dest="carry_z", action="store_false",
                         help="start every env step from the fixed initial latent")
    p.add_argument("--seed", type=int, default=None, help="seed (default 0)")
    p.add_argument("--total-steps", type=int, default=None, help="env steps (default: the env's tuned budget)")
    p.add_argument("--n-envs", type=int, default=None, help="environments stepped together")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default auto: CUDA when present")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--run-dir", type=Path, default=None, help="output folder (default runs/{env}__{variant}__{seed}__{time})")
    p.add_argument("--preset", default=None, metavar="NAME",
                   help=f"named hyperparameter preset applied over the env's defaults ({', '.join(preset_names())}; "
                        "paper: the HRM-Agent authors' settings, a GPU recipe)")
    p.add_argument("--config", type=Path, default=None, help="YAML file of hyperparameters")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one hyperparameter, e.g. --set learning_rate=3e-4 --set model.hidden_size=32")
    p.add_argument("--env-kwarg", dest="env_kwargs", action="append", default=[], metavar="KEY=VALUE",
                   help="gym.make keyword, e.g. --env-kwarg size=9")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def resolved_record(agent: HRMAgent, device: str) -> dict[str, Any]:
    return {
        "env": agent.env_id,
        "env_kwargs": agent.env_kwargs,
        "seed": agent.seed,
        "variant": agent.variant,
        "device": device,
        "agent": agent.config.model_dump(),
        "model": agent.model_config.model_dump(),
        "versions": package_versions(),
    }


def summarise(agent: HRMAgent) -> dict[str, Any]:
    """What a results table needs: final greedy eval, steps to first reach 90 %, wall-clock."""
    return summary_record(agent.env_id, agent.variant, agent.seed, agent.num_timesteps, agent.wall_time,
                          agent.eval_history)


def overrides_from(args: argparse.Namespace) -> list[str]:
    """``--set`` items plus the flags that are hyperparameters."""
    return list(args.overrides) + ([f"n_envs={args.n_envs}"] if args.n_envs is not None else [])


def make_agent(args: argparse.Namespace) -> tuple[HRMAgent, int]:
    """The agent to train and the env steps still to run; raises UsageError/ConfigError/CheckpointError."""
    if args.resume is not None:
        checkpoint_path = args.resume / LAST_CHECKPOINT
        if not checkpoint_path.is_file():
            raise UsageError(f"nothing to resume: {checkpoint_path} does not exist")
        check_writable(args.resume, "--resume", directory=True)
        agent = HRMAgent.load_checkpoint(checkpoint_path, device=args.device, run_dir=args.resume)
        requested = []
        if args.env is not None and args.env != agent.env_id:
            requested.append(f"env is {agent.env_id} in the checkpoint, {args.env} here")
        if args.preset is not None:
            requested.append("--preset applies to a new run (a resumed run keeps its checkpoint's config)")
        if args.seed is not None and args.seed != agent.seed:
            requested.append(f"seed is {agent.seed} in the checkpoint, {args.seed} here")
        if args.env_kwargs and {**agent.env_kwargs, **parse_env_kwargs(args.env_kwargs)} != agent.env_kwargs:
            requested.append("env kwargs differ")
        have = agent.config.model_dump()
        wanted = resolve_config(agent.env_id, args.config, overrides_from(args), args.carry_z, base=have).model_dump()
        requested += [f"{k} is {have[k]} in the checkpoint, {wanted[k]} here"
                      for k in have if wanted[k] != have[k] and k != "total_steps"]  # the budget may be extended
        if requested:
            raise UsageError("resuming with a config that does not match the checkpoint: " + "; ".join(requested))
        total = args.total_steps if args.total_steps is not None else agent.total_timesteps
        if total < 1:
            raise UsageError(f"--total-steps must be positive, got {total}")
        agent.config = agent.config.model_copy(update={"total_steps": total})
        return agent, max(total - agent.num_timesteps, 0)

    if args.env is None:
        raise UsageError("--env is required (or --resume RUN_DIR)")
    check_env_id(args.env)
    config = resolve_config(args.env, args.config, overrides_from(args), args.carry_z, preset=args.preset)
    env_kwargs = parse_env_kwargs(args.env_kwargs)
    check_config(args.env, env_kwargs, config)
    seed = 0 if args.seed is None else args.seed
    total = config.total_steps if args.total_steps is None else args.total_steps
    if total < 1:
        raise UsageError(f"--total-steps must be positive, got {total}")
    config = config.model_copy(update={"total_steps": total})  # config.yaml records the budget actually run
    run_dir = args.run_dir
    if run_dir is not None and run_dir.is_dir() and any(run_dir.iterdir()):
        raise UsageError(f"run directory {run_dir} already exists and is not empty; "
                         f"continue it with --resume {run_dir} or pick another --run-dir")
    if run_dir is None:
        check_writable(Path("runs"), "the run directory's folder", directory=True)
    else:
        check_writable(run_dir, "--run-dir", directory=True)
    agent = HRMAgent(args.env, config, seed=seed, device=args.device, env_kwargs=env_kwargs, run_dir=run_dir)
    if run_dir is None:  # claimed only once the agent exists, so a user mistake leaves no empty folder
        agent.run_dir = default_run_dir(args.env, agent.variant, seed)
    return agent, total


def start(args: argparse.Namespace) -> tuple[HRMAgent, int]:
    """The agent of a run, its directory and ``config.yaml`` written, and the env steps still to run.

    Raises UsageError, ConfigError, CheckpointError, OSError (an output that cannot be written), or the
    ValueError/TypeError/gymnasium error of an env that rejects its kwargs: the user mistakes ``main``
    turns into exit code 2. A new run's directory is removed again when it cannot be set up.
    """
    set_torch_threads(args.threads)
    created = args.resume is None and (args.run_dir is None or not args.run_dir.exists())
    agent, remaining = make_agent(args)
    run_dir = agent.run_dir
    assert run_dir is not None
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        # a resume rewrites it only to record an extended budget (everything else must match the checkpoint)
        write_yaml(run_dir / "config.yaml", resolved_record(agent, str(agent.device)))
    except OSError:
        if created and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise
    print(f"run dir: {run_dir}  ({agent.env_id}, {agent.variant} z, seed {agent.seed}, "
          f"{agent.num_timesteps}/{agent.num_timesteps + remaining} steps, device {agent.device})", flush=True)
    return agent, remaining


def finish(agent: HRMAgent, remaining: int, progress_bar: bool = True,
           callback: Callable[[HRMAgent], bool | None] | None = None) -> dict[str, Any] | None:
    """Train the remaining steps and write ``summary.json``; returns it (None when Ctrl-C stopped training).

    ``callback(agent)`` runs after every vector step (see :meth:`HRMAgent.learn`). Raises TrainingDiverged.
    """
    agent.learn(remaining, callback=callback, progress_bar=progress_bar)
    if agent.interrupted:
        return None
    summary = summarise(agent)
    assert agent.run_dir is not None
    write_json(agent.run_dir / "summary.json", summary)
    return summary


def run(args: argparse.Namespace, callback: Callable[[HRMAgent], bool | None] | None = None,
        ) -> tuple[HRMAgent, dict[str, Any] | None]:
    """What ``python -m hrm_agent.train`` does, with the errors raised (:func:`start`, :func:`finish`)."""
    agent, remaining = start(args)
    return agent, finish(agent, remaining, progress_bar=not args.no_progress, callback=callback)


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        agent, remaining = start(args)
    except (ValueError, TypeError, gym.error.Error) as err:  # e.g. an env kwarg the env rejects
        raise UsageError(str(err).strip().splitlines()[0]) from None
    try:
        summary = finish(agent, remaining, progress_bar=not args.no_progress)
    except TrainingDiverged as err:
        raise RunFault(str(err)) from None
    except OSError as err:  # disk full, the run directory made read-only, ...
        assert agent.run_dir is not None
        how = (f"continue from its last checkpoint with: python -m hrm_agent.train --resume {agent.run_dir}"
               if (agent.run_dir / LAST_CHECKPOINT).is_file() else "it wrote no checkpoint: start it again")
        raise run_fault(err, agent.num_timesteps, how) from None
    run_dir = agent.run_dir
    if summary is None:
        print(f"interrupted at step {agent.num_timesteps}; checkpoint saved. "
              f"Continue with: python -m hrm_agent.train --resume {run_dir}")
        return EXIT_INTERRUPTED
    print_result(summary, run_dir / FINAL_MODEL,
                 f"  replay bytes/transition: {agent.replay.bytes_per_transition if agent.replay else 0}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
