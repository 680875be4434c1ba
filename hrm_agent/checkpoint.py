"""The one file format for models and checkpoints, written atomically.

A file is a ``torch.save`` of a dict with ``format == "hrm-agent"``, a
``version`` and a ``kind``: ``"model"`` (what ``HRMAgent.save`` writes: config
and weights, enough to act) or ``"checkpoint"`` (also target network,
optimiser, counters, RNG states, environment and latent state, and optionally
the replay buffer: enough to resume training).

Writes go to a temporary file in the same folder, are flushed to disk and then
renamed over the destination, so a kill at any moment leaves either the old
file or the new one, never a half-written one. A write that fails (disk full,
a read-only or missing folder) leaves the old file and no temporary one, and
raises :class:`OutputError` naming the destination.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "hrm-agent"
VERSION = 1
# where a run directory keeps its final model and the checkpoint it resumes from
FINAL_MODEL = "final_model.pt"
LAST_CHECKPOINT = Path("checkpoints") / "last.pt"


class CheckpointError(ValueError):
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
