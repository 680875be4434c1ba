"""Train a stable-baselines3 baseline: ``python -m hrm_agent.baselines --algo dqn --env DynamicMaze-v0``.

``--algo`` is ``dqn`` or ``ppo`` (stable-baselines3) or ``recurrent-ppo``
(sb3-contrib's RecurrentPPO with an LSTM policy). Hyperparameters resolve as
the HRM agent's do: the algorithm's tuned defaults for the env (the
``baselines:`` section of ``hrm_agent/hyperparams.yaml``) <- ``--config FILE.yaml``
<- ``--set key=value`` (repeatable; ``policy.features_dim=32`` reaches into
the policy).

A run writes ``runs/{env}__{algo}__{seed}__{timestamp}/`` (or ``--run-dir``), as
``python -m hrm_agent.train`` does: ``config.yaml``, TensorBoard events and
``progress.csv`` (stable-baselines3's keys, plus the periodic greedy
evaluation's ``eval/success_rate``, ``eval/mean_ep_length``,
``eval/path_efficiency``), ``checkpoints/last.zip``, ``final_model.zip`` (load
with the algorithm's ``load``) and ``summary.json`` (same schema as the HRM
agent's, with ``variant`` = the algorithm). Ctrl-C writes a checkpoint and exits.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import gymnasium as gym

from hrm_agent.baselines.config import ALGOS, BaselineConfig, resolve_baseline_config
from hrm_agent.runs import (
    EXIT_INTERRUPTED,
    UsageError,
    check_config,
    check_env_id,
    check_writable,
    default_run_dir,
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
    p = argparse.ArgumentParser(prog="python -m hrm_agent.baselines", description=__doc__.split("\n\n")[0])
    p.add_argument("--algo", required=True, choices=ALGOS, help="the baseline to train")
    p.add_argument("--env", required=True, help="registered Gymnasium env id")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--total-steps", type=int, default=None, help="env steps (default: the tuned budget)")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="output folder (default runs/{env}__{algo}__{seed}__{time})")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default auto: CUDA when present")
    p.add_argument("--config", type=Path, default=None, help="YAML file of hyperparameters")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one hyperparameter, e.g. --set learning_rate=3e-4 --set policy.features_dim=32")
    p.add_argument("--env-kwarg", dest="env_kwargs", action="append", default=[], metavar="KEY=VALUE",
                   help="gym.make keyword, e.g. --env-kwarg size=9")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def resolved_record(algo: str, env_id: str, env_kwargs: dict[str, Any], seed: int, device: str,
                    config: BaselineConfig, model: Any) -> dict[str, Any]:
    """``config.yaml``: the fields the HRM runs' file has (``agent`` = the resolved baseline config)."""
    from hrm_agent.baselines.sb3 import count_parameters

    return {
        "env": env_id,
        "env_kwargs": env_kwargs,
        "seed": seed,
        "variant": algo,
        "device": device,
        "agent": {"algo": algo, **config.model_dump()},
        "model": {"class": type(model).__name__, "policy": type(model.policy).__name__,
                  "parameters": count_parameters(model)},
        "versions": package_versions("stable-baselines3", "sb3-contrib"),
    }


def hparams(algo: str, env_id: str, seed: int, config: BaselineConfig) -> dict[str, Any]:
    flat: dict[str, Any] = {"env": env_id, "seed": seed, "algo": algo}
    for key, value in {**config.model_dump(exclude={"policy"}), **config.policy.model_dump()}.items():
        flat[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def prepare(args: argparse.Namespace) -> tuple[BaselineConfig, dict[str, Any], int]:
    """Resolved and checked config (:func:`hrm_agent.runs.check_config`), env kwargs and budget, the
    output folder checked for writing; raises UsageError/ConfigError. Creates nothing."""
    check_env_id(args.env)
    env_kwargs = parse_env_kwargs(args.env_kwargs)
    config = resolve_baseline_config(args.algo, args.env, args.config, args.overrides)
    check_config(args.env, env_kwargs, config)
    total = config.total_steps if args.total_steps is None else args.total_steps
    if total < 1:
        raise UsageError(f"--total-steps must be positive, got {total}")
    if args.run_dir is None:
        check_writable(Path("runs"), "the run directory's folder", directory=True)
    else:
        if args.run_dir.is_dir() and any(args.run_dir.iterdir()):
            raise UsageError(f"run directory {args.run_dir} already exists and is not empty; pick another --run-dir")
        check_writable(args.run_dir, "--run-dir", directory=True)
    return config, env_kwargs, total


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from hrm_agent.baselines.sb3 import (
        FINAL_MODEL,
        RunCallback,
        make_model,
        save_model,
        timed_learn,
    )

    set_torch_threads(args.threads)
    config, env_kwargs, total = prepare(args)
    try:
        model = make_model(args.algo, args.env, config, seed=args.seed, env_kwargs=env_kwargs, device=args.device)
    except (ValueError, TypeError, gym.error.Error) as err:  # e.g. an env kwarg the env rejects
        raise UsageError(str(err).strip().splitlines()[0]) from None

    from hrm_agent.callbacks import print_result
    from hrm_agent.logger import make_logger

    # claimed only once the model exists, so a user mistake leaves no folder behind
    run_dir = args.run_dir or default_run_dir(args.env, args.algo, args.seed)
    created = not run_dir.exists() or not any(run_dir.iterdir())
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_yaml(run_dir / "config.yaml",
                   resolved_record(args.algo, args.env, env_kwargs, args.seed, str(model.device), config, model))
        model.set_logger(make_logger(run_dir))
    except OSError:
        if created and run_dir.is_dir() and not any(p.is_file() for p in run_dir.rglob("*")):
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    callback = RunCallback(config, args.env, env_kwargs, args.seed, args.algo, total, run_dir=run_dir,
                           hparams=hparams(args.algo, args.env, args.seed, config),
                           progress_bar=not args.no_progress)
    print(f"run dir: {run_dir}  ({args.env}, {args.algo}, seed {args.seed}, {total} steps, device {model.device})")

    try:
        with callback.ctrl_c:  # Ctrl-C: stop after the current step, checkpoint, exit 130
            wall = timed_learn(model, total, callback)
            if callback.stop_requested:
                callback.save_checkpoint()
                print(f"interrupted at step {model.num_timesteps}; checkpoint saved to {run_dir / 'checkpoints'}")
                return EXIT_INTERRUPTED
            callback.finish()
            callback.save_checkpoint()
            save_model(model, run_dir / FINAL_MODEL)
            summary = summary_record(args.env, args.algo, args.seed, model.num_timesteps, wall, callback.eval_history)
            write_json(run_dir / "summary.json", summary)
    except OSError as err:  # disk full, the run directory made read-only, ...
        raise run_fault(err, model.num_timesteps, "a baselines run does not resume: start it again "
                                                  "with another --run-dir") from None
    print_result(summary, run_dir / FINAL_MODEL)
    return 0
