"""What every training CLI here shares: env-id checks, run-directory naming and the files a run writes.

``python -m hrm_agent.train`` (the HRM agent) and ``python -m hrm_agent.baselines``
(stable-baselines3 DQN, PPO, RecurrentPPO) both write
``runs/{env}__{variant}__{seed}__{timestamp}/`` with ``config.yaml`` and a
``summary.json`` of the same schema (:func:`summary_record`), so the results
tables and learning-curve figures read either.
"""

from __future__ import annotations

import difflib
import json
import math
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml

from hrm_agent.checkpoint import atomic_write
from hrm_agent.hyperparams import ConfigError, parse_override

EXIT_USAGE = 2
OUR_ENVS = ("DynamicMaze-v0", "FourRooms-v0")


class UsageError(Exception):
    """A user mistake: printed as one line, exit code 2."""


def check_env_id(env_id: str) -> None:
    """Raise UsageError naming the registered ids when ``env_id`` is unknown."""
    try:
        gym.spec(env_id)
        return
    except (gym.error.Error, ModuleNotFoundError, ImportError):
        pass
    ids = sorted(gym.registry)
    ours = [i for i in OUR_ENVS if i in gym.registry]
    close = difflib.get_close_matches(env_id.split(":")[-1], ids, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise UsageError(
        f"unknown env id {env_id!r}{hint}; registered: {', '.join(ours)} and {len(ids) - len(ours)} more "
        "(list them with: python -c 'import gymnasium; gymnasium.pprint_registry()')"
    )


def check_env(env_id: str, env_kwargs: dict[str, Any]) -> None:
    """Raise UsageError unless ``env_id`` is registered and ``gym.make`` accepts ``env_kwargs``."""
    check_env_id(env_id)
    try:
        gym.make(env_id, **env_kwargs).close()
    except (ValueError, TypeError, gym.error.Error) as err:
        raise UsageError(f"{env_id}: {str(err).splitlines()[0]}") from None


def set_torch_threads(threads: int | None) -> None:
    """Apply ``--threads`` (None: torch's default); raise UsageError below 1."""
    if threads is None:
        return
    if threads < 1:
        raise UsageError("--threads must be at least 1")
    import torch

    torch.set_num_threads(threads)


def parse_env_kwargs(items: list[str]) -> dict[str, Any]:
    """``["size=9", ...]`` (``--env-kwarg`` values) -> ``{"size": 9, ...}`` (values parsed as YAML)."""
    kwargs = {}
    for item in items:
        try:
            path, value = parse_override(item)
        except ConfigError as err:
            raise UsageError(str(err).replace("override", "--env-kwarg")) from None
        kwargs[".".join(path)] = value
    return kwargs


def run_name(env_id: str, variant: str, seed: int) -> str:
    """CleanRL-style ``{env}__{variant}__{seed}__{timestamp}``."""
    name = env_id.split(":")[-1].replace("/", "-")
    return f"{name}__{variant}__{seed}__{time.strftime('%Y%m%d-%H%M%S')}"


def default_run_dir(env_id: str, variant: str, seed: int, root: Path = Path("runs")) -> Path:
    """CleanRL-style ``runs/{env}__{variant}__{seed}__{timestamp}``, created empty and claimed for this run.

    Two runs started in the same second get distinct directories (``-2``, ``-3``, ... appended).
    """
    base = root / run_name(env_id, variant, seed)
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir()  # atomic: only one process creates it
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free run directory name next to {base}")


def package_versions(*extra: str) -> dict[str, str]:
    """Versions of the packages a run depends on (plus the distributions named in ``extra``), for config.yaml."""
    from importlib.metadata import PackageNotFoundError, version

    import minigrid
    import torch

    from hrm_agent import __version__

    versions = {"hrm_agent": __version__, "torch": str(torch.__version__),
                "gymnasium": gym.__version__, "minigrid": minigrid.__version__}
    for name in extra:
        try:
            versions[name.replace("-", "_")] = version(name)
        except PackageNotFoundError:
            versions[name.replace("-", "_")] = "not installed"
    return versions


def summary_record(
    env_id: str,
    variant: str,
    seed: int,
    total_steps: int,
    wall_clock_s: float,
    eval_history: list[dict[str, float]],
) -> dict[str, Any]:
    """A run's ``summary.json``: final greedy eval, env steps to first reach 90 % success, wall-clock."""
    import torch

    first_90 = next((h["step"] for h in eval_history if h["success_rate"] >= 0.9), None)
    return {
        "env": env_id,
        "variant": variant,
        "seed": seed,
        "total_steps": total_steps,
        "wall_clock_s": round(wall_clock_s, 1),
        "threads": torch.get_num_threads(),
        "final_eval": eval_history[-1] if eval_history else None,
        "steps_to_90": first_90,
        "eval_history": eval_history,
    }


def json_safe(value: Any) -> Any:
    """NaN/inf (e.g. path efficiency with no successful episode) become ``null`` so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, lambda f: f.write(yaml.safe_dump(data, sort_keys=False).encode()))


def write_json(path: Path, data: Any) -> None:
    """Strict JSON (see :func:`json_safe`), indented, written atomically."""
    atomic_write(path, lambda f: f.write(json.dumps(json_safe(data), indent=2).encode()))
