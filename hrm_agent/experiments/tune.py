"""Ray Tune for the sweep (``python -m hrm_agent.sweep``): starting Ray, checking what a trial asks for,
one line per event, and the run of a grid of trial configs."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hrm_agent.runs import UsageError

INSTALL_HINT = "the sweep runs on Ray Tune, which is not installed: pip install -e '.[sweep]' (or pip install 'ray[tune]')"


def import_ray() -> Any:
    try:
        import ray
        from ray import tune  # noqa: F401
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return ray


def start_ray(ray: Any, address: str | None) -> str:
    """Connect to ``address``, or start Ray embedded on this machine; returns a description for the log."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address:
            ray.init(address=address, **options)
            where = f"Ray cluster at {address}"
        else:  # embedded: this machine's CPUs, a small object store (trials exchange only metrics)
            ray.init(num_cpus=os.cpu_count(), object_store_memory=128 * 1024**2, **options)
            where = "Ray on this machine"
    except Exception as err:  # ConnectionError, ValueError on a malformed address, ...
        raise UsageError(f"cannot start Ray{f' at {address}' if address else ''}: "
                         f"{str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}") from None
    cpus = ray.cluster_resources().get("CPU", 0)
    return f"{where} ({cpus:g} CPUs)"


def local_resources() -> dict[str, float]:
    """The CPUs and GPUs Ray would find on this machine, counted without starting it."""
    import torch

    return {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}


def check_resources(have: dict[str, float], cpus_per_trial: float, gpus_per_trial: float) -> None:
    """On this machine (``have``: its ``CPU`` and ``GPU`` counts), a trial that asks for more than there is
    would wait for ever: say so instead."""
    for name, want in (("CPU", cpus_per_trial), ("GPU", gpus_per_trial)):
        if want > have.get(name, 0):
            raise UsageError(f"--{name.lower()}s-per-trial {want:g}: this machine has {have.get(name, 0):g} {name}s")


def eval_metrics(record: dict[str, Any]) -> dict[str, Any]:
    """A greedy-evaluation record of ``eval_history`` as the metrics reported to Tune."""
    metrics: dict[str, Any] = {"timesteps": record["step"]}
    for key in ("success_rate", "path_efficiency", "mean_ep_length"):
        value = record.get(key)
        metrics[f"eval/{key}"] = float("nan") if value is None else float(value)
    return metrics


def make_printer(tune: Any, total: int, error_file: Callable[[dict[str, Any]], Path]) -> Any:
    """A Tune callback that prints one line per greedy evaluation, finished trial and failed trial
    (the failure's line from ``error_file(trial config)``)."""

    class Printer(tune.Callback):
        def __init__(self) -> None:
            self.ended = 0

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            if "eval/success_rate" in result:
                print(f"  {trial.config['trial']['name']}: step {result['timesteps']:,} greedy success "
                      f"{result['eval/success_rate']:.2f}", flush=True)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.ended += 1
            print(f"[{self.ended}/{total}] finished {trial.config['trial']['name']}", flush=True)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.ended += 1
            error = error_file(trial.config["trial"])
            message = error.read_text().strip() if error.is_file() else "see Ray's error file"
            print(f"[{self.ended}/{total}] FAILED {trial.config['trial']['name']}: {message}", flush=True)

    return Printer()


def fit(trainable: Callable[[dict[str, Any]], None], configs: list[dict[str, Any]], storage: Path,
        cpus: float, gpus: float, max_failures: int, error_file: Callable[[dict[str, Any]], Path]) -> None:
    """Run ``trainable`` once per config (``{"trial": config}``, each named by its ``name``) on the Ray
    started before, ``cpus`` and ``gpus`` per trial, Tune's files under ``storage``. A trial killed from
    outside (out of memory, a lost node) gets its error written to ``error_file(config)``."""
    from ray import tune

    from hrm_agent.checkpoint import atomic_write

    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)  # the printer reports errors in one line each
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": cpus, "gpu": gpus}),
        param_space={"trial": tune.grid_search(configs)},
        tune_config=tune.TuneConfig(
            trial_name_creator=lambda trial: trial.config["trial"]["name"],
            trial_dirname_creator=lambda trial: trial.config["trial"]["name"][:120],
        ),
        run_config=tune.RunConfig(
            name=f"{storage.name}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str(storage),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=max_failures),
            callbacks=[make_printer(tune, len(configs), error_file)],
        ),
    )
    for result in tuner.fit():
        path = error_file(result.config["trial"])
        if result.error is not None and not path.is_file():
            message = str(result.error).strip().splitlines()[-1] if str(result.error).strip() else ""
            atomic_write(path, lambda f: f.write(f"{type(result.error).__name__}: {message}\n".encode()))
