"""The one file format for models and checkpoints, written atomically.

A file is a ``torch.save`` of a dict with ``format == "hrm-agent"``, a
``version`` and a ``kind``: ``"model"`` (what ``HRMAgent.save`` writes: config
and weights, enough to act) or ``"checkpoint"`` (also target network,
optimiser, counters, RNG states, environment and latent state, and optionally
the replay buffer: enough to resume training).

Writes go to a temporary file in the same folder, are flushed to disk and then
renamed over the destination, so a kill at any moment leaves either the old
file or the new one, never a half-written one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "hrm-agent"
VERSION = 1


class CheckpointError(ValueError):
    """A model/checkpoint file is missing, corrupt, foreign or of another version."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Any) -> None:
    """Call ``write(file_object)`` on a temp file beside ``path``, fsync, then rename it to ``path``.

    The file gets the permissions a plain ``open(path, "w")`` would give (``0o666`` less the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
