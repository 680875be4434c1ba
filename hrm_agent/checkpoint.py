"""The one file format for models and checkpoints, written atomically.

A file is a ``torch.save`` of a dict with ``format == "hrm-agent"``, a
``version`` and a ``kind``: ``"model"`` (what ``HRMAgent.save`` writes: config
and weights, enough to act) or ``"checkpoint"`` (also target network,
optimiser, counters, RNG states, environment and latent state, and optionally
the replay buffer: enough to resume training). The functions at the end of
this file write and read an agent's files (:func:`training_state`,
:func:`restore_training`: resuming).

Writes go to a temporary file in the same folder, are flushed to disk and then
renamed over the destination, so a kill at any moment leaves either the old
file or the new one, never a half-written one. A write that fails (disk full,
a read-only or missing folder) leaves the old file and no temporary one, and
raises :class:`OutputError` naming the destination.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import torch

from hrm_agent.errors import UsageError

FORMAT = "hrm-agent"
VERSION = 1
# where a run directory keeps its final model and the checkpoint it resumes from
FINAL_MODEL = "final_model.pt"
LAST_CHECKPOINT = Path("checkpoints") / "last.pt"


class CheckpointError(UsageError, ValueError):
    """A model/checkpoint file is missing, corrupt, foreign or of another version."""


class OutputError(OSError):
    """A file or folder this package writes could not be written: ``cannot write PATH: reason``.

    ``errno`` and ``strerror`` are those of the underlying ``OSError``; ``filename`` is the path that was
    to be written (the destination, not a temporary file beside it).
    """

    def __init__(self, path: str | Path, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause), str(path))

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


def os_error_in(err: BaseException) -> OSError | None:
    """The ``OSError`` behind ``err``: itself, or one it was raised from or while handling (``torch.save``
    turns a failed write into a ``RuntimeError`` raised while handling the ``OSError``); else None."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Any) -> None:
    """Call ``write(file_object)`` on a temp file beside ``path``, fsync, then rename it to ``path``.

    The file gets the permissions a plain ``open(path, "w")`` would give (``0o666`` less the umask).
    Raises :class:`OutputError` naming ``path`` when the file system refuses (disk full, read-only,
    a parent that is a file); ``path`` is then as it was and no temporary file is left.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise OutputError(path, err) from err
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            Path(tmp).unlink(missing_ok=True)
        except OSError:
            pass
        cause = os_error_in(err) if isinstance(err, Exception) else None
        if cause is not None and not isinstance(err, OutputError):
            raise OutputError(path, cause) from err
        raise


def save_file(path: str | Path, kind: str, payload: dict[str, Any]) -> None:
    """Atomically write ``payload`` as a ``kind`` file."""
    data = {"format": FORMAT, "version": VERSION, "kind": kind, **payload}
    atomic_write(path, lambda f: torch.save(data, f))


def load_file(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Read a file written by ``save_file``; raise ``CheckpointError`` with a one-line reason otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no such file: {path}")
    try:
        # Checkpoints hold numpy RNG states and pickled environments: only load files you trust.
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for a truncated/corrupt file
        raise CheckpointError(f"{path} is corrupt or not a torch file ({type(err).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an hrm-agent file")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path} has format version {data.get('version')}, this hrm-agent reads version {VERSION}")
    if kind is not None and data.get("kind") != kind:
        raise CheckpointError(f"{path} is a {data.get('kind')} file, expected a {kind} file")
    return data


# ---------------------------------------------------------------- an agent's files
# ``cls`` below is ``HRMAgent`` (passed in: this module does not import the agent).
def header(agent: Any) -> dict[str, Any]:
    """What every file of an agent starts with: env, seed, config, model config."""
    return {
        "env_id": agent.env_id,
        "env_kwargs": agent.env_kwargs,
        "seed": agent.seed,
        "config": agent.config.model_dump(),
        "model_config": agent.model_config.model_dump(),
    }


def load_model_file(path: str | Path) -> dict[str, Any]:
    """A model or checkpoint file's contents; ``path`` may be a run directory (its final model, else its
    last checkpoint). A stable-baselines3 model or run gets a one-line ``CheckpointError`` saying so."""
    path = Path(path)
    if path.is_dir():
        baseline_files = [name for name in ("final_model.zip", "checkpoints/last.zip") if (path / name).is_file()]
        if baseline_files and not (path / FINAL_MODEL).is_file() and not (path / LAST_CHECKPOINT).is_file():
            raise CheckpointError(
                f"{path} is a run of python -m hrm_agent.baselines (a stable-baselines3 model, "
                f"{baseline_files[0]}), not of the HRM agent: load it with the algorithm's load (e.g. "
                "stable_baselines3.DQN.load); bench learn and analysis/learning_table.py read its summary.json")
        path = path / FINAL_MODEL if (path / FINAL_MODEL).is_file() else path / LAST_CHECKPOINT
    elif path.suffix == ".zip" and path.is_file():
        raise CheckpointError(
            f"{path} is a stable-baselines3 model (python -m hrm_agent.baselines writes these), not an HRM "
            "agent's: load it with the algorithm's load (e.g. stable_baselines3.DQN.load)")
    return load_file(path)


def agent_from(cls: Any, data: dict[str, Any], device: Any, run_dir: Path | None) -> Any:
    """An agent rebuilt from a file's header, with its saved weights."""
    from hrm_agent.hyperparams import AgentConfig, without_retired

    try:
        config = AgentConfig(**without_retired(data["config"]))
    except ValueError as err:
        raise CheckpointError(f"cannot load this file's config: {str(err).splitlines()[0]}") from None
    agent = cls(data["env_id"], config, seed=data["seed"], device=device, env_kwargs=data["env_kwargs"],
                run_dir=run_dir)
    # fields a file lacks were added later; their defaults rebuild the model it was saved from
    current = agent.model_config.model_dump()
    from hrm_agent.config import without_retired as model_without_retired

    try:
        saved = model_without_retired(data["model_config"])
    except ValueError:
        saved = data["model_config"]  # a retired field at another value: reported as the mismatch below
    if any(current.get(key) != value for key, value in saved.items()):
        raise CheckpointError(
            f"the saved model config does not match the environment {data['env_id']} as it is made now"
        )
    agent.online.load_state_dict(data["model"])
    agent.target.load_state_dict(data.get("target", data["model"]))
    return agent


def training_state(agent: Any) -> dict[str, Any]:
    """A checkpoint's payload: everything ``learn`` needs to continue exactly (replay with ``checkpoint_replay``).

    The acting state holds the current observations as tokens and the latent carry z kept of the last
    forward pass (``carry.keep``); files written before hold raw observations and the next step's carry,
    which :func:`restore_training` still reads.
    """
    rollout = agent.rollout
    return {
        **header(agent),
        "model": agent.online.state_dict(),
        "target": agent.target.state_dict(),
        "optimizer": agent.optimizer.state_dict(),
        "counters": {name: getattr(agent, name) for name in COUNTERS},
        "eval_history": agent.eval_history,
        "rng": {"numpy": agent.rng.bit_generator.state, "torch": torch.get_rng_state()},
        "acting": None if rollout is None else {
            "envs": pickle.dumps(list(rollout.envs.envs)),
            "tokens": rollout.tokens,
            "z": rollout.z,
            "episode_start": rollout.episode_start,
            "episode_return": rollout.episode_return,
            "episode_length": rollout.episode_length,
            "ep_info": list(rollout.ep_info),
        },
        "replay": agent.replay.state_dict() if (agent.config.checkpoint_replay and agent.replay) else None,
    }


COUNTERS = ("num_timesteps", "total_timesteps", "n_updates", "n_episodes", "last_target_sync",
            "learning_starts_at", "wall_time")


def restore_training(agent: Any, data: dict[str, Any]) -> None:
    """Put a checkpoint's training state (:func:`training_state`) into an agent rebuilt by :func:`agent_from`."""
    import gymnasium as gym

    from hrm_agent import carry
    from hrm_agent.rollout import Rollout, make_replay
    from hrm_agent.model import HRMCarry

    agent.optimizer.load_state_dict(data["optimizer"])
    for name in COUNTERS:
        setattr(agent, name, data["counters"][name])
    agent.resumed_at = agent.num_timesteps
    agent.eval_history = list(data["eval_history"])
    agent.rng.bit_generator.state = data["rng"]["numpy"]
    torch.set_rng_state(data["rng"]["torch"])
    acting = data["acting"]
    if acting is not None:
        envs = gym.vector.SyncVectorEnv([partial(_same, env) for env in pickle.loads(acting["envs"])],
                                        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        c = agent.config
        if "tokens" in acting:
            tokens, z = acting["tokens"], acting["z"]
        else:  # written before observations were tokenised once and the kept latent stored
            tokens = agent.tokenizer(acting["obs"])
            start = HRMCarry(*(z.to(agent.device) for z in acting["carry"]))
            z = carry.keep(agent.online, start, c.carry_z, c.carry)
        agent.rollout = Rollout(envs, tokens, None if z is None else z.to(agent.device), acting["episode_start"],
                                acting["episode_return"], acting["episode_length"])
        agent.rollout.ep_info.extend(acting["ep_info"])
    if data["replay"] is not None:
        agent.replay = make_replay(agent)
        agent.replay.load_state_dict(data["replay"])
    elif agent.num_timesteps > 0:  # refill the empty buffer before learning again
        agent.learning_starts_at = max(agent.learning_starts_at, agent.num_timesteps + agent.config.learning_starts)


def resume(cls: Any, path: str | Path, device: Any = "auto", run_dir: str | Path | None = None) -> Any:
    """The agent of a checkpoint (a file, or a run directory's ``checkpoints/last.pt``), ready to ``learn`` on."""
    path = Path(path)
    if path.is_dir():
        run_dir = run_dir or path
        path = path / LAST_CHECKPOINT
    data = load_file(path, kind="checkpoint")
    agent = agent_from(cls, data, device, None if run_dir is None else Path(run_dir))
    restore_training(agent, data)
    return agent


def _same(env: Any) -> Any:
    return env
