"""What every command here shares: checks before any work, one way to end on an error, run directories
and the files a run writes.

``python -m hrm_agent.train`` (the HRM agent) and ``python -m hrm_agent.baselines``
(stable-baselines3 DQN, PPO, RecurrentPPO) both write
``runs/{env}__{variant}__{seed}__{timestamp}/`` with ``config.yaml`` and a
``summary.json`` of the same schema (:func:`summary_record`), so the results
tables and learning-curve figures read either.

Every command checks its whole resolved configuration (:func:`check_config`) and
its output paths (:func:`check_writable`) before it starts work, and its
``main`` is wrapped by :func:`one_line_errors`: a user mistake, an unreadable
input or an unwritable output ends with one ``error: ...`` line and exit code 2;
a write that fails during a run (:class:`RunFault`) with one line saying how to
continue and exit code 1.
"""

from __future__ import annotations

import csv
import difflib
import functools
import json
import math
import os
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import yaml

from hrm_agent.checkpoint import OutputError, atomic_write
from hrm_agent.errors import UsageError
from hrm_agent.hyperparams import ConfigError, format_validation_error, parse_override

EXIT_USAGE = 2
EXIT_FAULT = 1
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C, checkpointed (a shell's 128 + SIGINT)
OUR_ENVS = ("DynamicMaze-v0", "FourRooms-v0")
LOG_INTERVAL = 1_000  # env steps between rollout/train log rows


class RunFault(Exception):
    """A fault during a run (a write refused: disk full, a folder made read-only): printed as one line
    that says how to continue, exit code 1."""


def error_line(err: BaseException) -> str:
    """The one line that reports ``err``: an :class:`OutputError` as ``cannot write PATH: reason``, another
    ``OSError`` as ``PATH: reason``."""
    if isinstance(err, OSError) and not isinstance(err, OutputError) and err.strerror:
        return f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def one_line_errors(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a command's ``main``: a :class:`UsageError` (``ConfigError`` and ``CheckpointError`` are kinds of it) or ``OSError``
    (an output that cannot be written) becomes one ``error: ...`` line on stderr and exit code 2, a
    :class:`RunFault` one line and exit code 1."""

    @functools.wraps(main)
    def wrapped(*args: Any, **kwargs: Any) -> int:
        try:
            return main(*args, **kwargs)
        except RunFault as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_FAULT
        except (UsageError, OSError) as err:
            print(f"error: {error_line(err)}", file=sys.stderr)
            return EXIT_USAGE

    return wrapped


def run_fault(err: BaseException, step: int, how: str) -> RunFault:
    """The :class:`RunFault` of ``err`` (an ``OSError`` during a run, stopped at ``step``): its line, then
    ``how`` to continue (e.g. the command that resumes the run from its last checkpoint)."""
    return RunFault(f"{error_line(err)}; the run stopped at step {step:,}; {how}")


def check_writable(path: str | Path, option: str, directory: bool = False) -> None:
    """Raise UsageError unless ``path`` can be written: a file (or, with ``directory``, a folder), created
    with any missing parent folders. Checked by creating and removing a file in the nearest existing
    folder, so a read-only file system, a missing permission or a parent that is a file all show here,
    before any work."""
    path = Path(path)
    if directory and path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} is a file, not a directory")
    if not directory and path.is_dir():
        raise UsageError(f"{option} {path} is a directory, not a file")
    existing = path if directory else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{option} {path}: {existing} is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UsageError(f"{option} {path}: cannot write in {existing}: {err.strerror or err}") from None


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


def check_env(env_id: str, env_kwargs: dict[str, Any]) -> tuple[gym.Space, gym.Space]:
    """Raise UsageError unless ``env_id`` is registered and ``gym.make`` accepts ``env_kwargs``;
    returns the env's observation and action spaces."""
    check_env_id(env_id)
    try:
        env = gym.make(env_id, **env_kwargs)
    except (ValueError, TypeError, gym.error.Error) as err:
        raise UsageError(f"{env_id}: {str(err).splitlines()[0]}") from None
    spaces = env.observation_space, env.action_space
    env.close()
    return spaces


def hrm_model_config(observation_space: gym.Space, action_space: gym.Space, config: Any) -> tuple[Any, Any]:
    """The ``Tokenizer`` and ``HRMConfig`` of an HRM agent with ``config`` (an ``AgentConfig``) on an env
    with these spaces; ConfigError when the env does not suit the agent or the model fields are invalid."""
    from pydantic import ValidationError

    from hrm_agent.config import HRMConfig
    from hrm_agent.rollout import Tokenizer

    if not isinstance(action_space, gym.spaces.Discrete):
        raise ConfigError(f"the HRM agent needs a Discrete action space, got {action_space}")
    try:
        tokenizer = Tokenizer(observation_space, config.crop_border)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    try:
        model = HRMConfig(**{**tokenizer.model_fields(), "num_actions": int(action_space.n), **config.model})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, prefix="model")) from None
    return tokenizer, model


def check_config(env_id: str, env_kwargs: dict[str, Any], config: Any) -> Any:
    """The one check of a whole resolved configuration, made before any work by every command that
    trains (train, baselines, bench learn/train/model, sweep).

    ``config`` is an ``AgentConfig`` (the HRM agent) or a baselines ``BaselineConfig``. Checks that
    ``env_id`` is registered and accepts ``env_kwargs``, that its spaces suit the learner (a 2-D token
    grid, discrete actions) and, for the HRM agent, that the model fields with the env's token grid make
    a valid ``HRMConfig`` (returned; None for a baseline). Raises UsageError or ConfigError, one line each.
    """
    observation_space, action_space = check_env(env_id, env_kwargs)
    from hrm_agent.hyperparams import AgentConfig

    if isinstance(config, AgentConfig):
        return hrm_model_config(observation_space, action_space, config)[1]
    from hrm_agent.rollout import Tokenizer

    if not isinstance(action_space, gym.spaces.Discrete):
        raise ConfigError(f"the baselines need a Discrete action space, got {action_space}")
    try:
        Tokenizer(observation_space, config.policy.crop_border)
    except ValueError as err:
        raise ConfigError(str(err).replace("the HRM agent needs", "the baselines need")) from None
    return None


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


PROGRESS_CSV = "progress.csv"
STEP_COLUMN = "time/total_timesteps"
EVENTS_GLOB = "events.out.tfevents.*"


def truncate_logs(run_dir: Path, step: int) -> None:
    """End a run's logs at ``step`` (the step of the checkpoint it resumes from) before it logs on.

    A run stopped between checkpoints (killed, crashed, a disk that filled) has logged rows and
    TensorBoard events past its last checkpoint; the resumed run logs those steps again. Dropping the
    rows of ``progress.csv`` whose ``time/total_timesteps`` is past ``step`` (and any row cut short) and
    the events of every ``events.out.tfevents.*`` file whose step is past it makes the logs read as one
    uninterrupted run, for TensorBoard and every other reader. Files are rewritten atomically, and only
    when something is dropped.
    """
    csv_path = run_dir / PROGRESS_CSV
    if csv_path.is_file():
        lines = csv_path.read_text().splitlines(keepends=True)
        header = next(csv.reader(lines[:1]), [])
        if STEP_COLUMN in header:
            column = header.index(STEP_COLUMN)
            kept = lines[:1] + [line for line in lines[1:] if line.endswith("\n")
                                and not _past(next(csv.reader([line]), []), column, step)]
            if len(kept) != len(lines):
                atomic_write(csv_path, lambda f: f.write("".join(kept).encode()))
    for path in sorted(run_dir.glob(EVENTS_GLOB)):
        data = path.read_bytes()
        records = b"".join(record for record, event_step in _event_records(data) if event_step <= step)
        if len(records) != len(data):
            atomic_write(path, lambda f: f.write(records))


def _past(values: list[str], column: int, step: int) -> bool:
    try:
        return float(values[column]) > step
    except (IndexError, ValueError):
        return False


def _event_records(data: bytes) -> list[tuple[bytes, int]]:
    """The records of a TensorBoard event file (TFRecord framing: length, its CRC, the ``Event`` proto,
    its CRC), each whole with its event's step; a record cut short at the end is left out."""
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto.event_pb2 import Event

    records, pos = [], 0
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        end = pos + 12 + length + 4
        if end > len(data):
            break
        try:
            event_step = Event.FromString(data[pos + 12:end - 4]).step
        except DecodeError:
            break
        records.append((data[pos:end], event_step))
        pos = end
    return records


def package_versions(*extra: str) -> dict[str, str]:
    """Versions of the packages a run depends on (plus the distributions named in ``extra``), for config.yaml."""
    from importlib.metadata import PackageNotFoundError, version

    import minigrid
    import torch

    from hrm_agent.version import __version__

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
    """A run's ``summary.json``: final greedy eval, env steps and wall-clock minutes to first reach 90 %
    success (the minutes as the evaluation that reached it recorded them: None for a history without them),
    wall-clock."""
    import torch

    first = next((h for h in eval_history if h["success_rate"] >= 0.9), None)
    minutes = None if first is None or first.get("wall_clock_s") is None else round(first["wall_clock_s"] / 60, 2)
    return {
        "env": env_id,
        "variant": variant,
        "seed": seed,
        "total_steps": total_steps,
        "wall_clock_s": round(wall_clock_s, 1),
        "threads": torch.get_num_threads(),
        "final_eval": eval_history[-1] if eval_history else None,
        "steps_to_90": None if first is None else first["step"],
        "minutes_to_90": minutes,
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
