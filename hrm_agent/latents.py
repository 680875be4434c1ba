"""Latent recordings: the HRM state after every recurrent iteration of every evaluated step.

Written by ``python -m hrm_agent.evaluate RUN_DIR --episodes 100 --save-latents``
(default ``RUN_DIR/latents.npz``), read by :func:`load`; the analysis in
:mod:`hrm_agent.analysis` and ``analysis/`` reads only these files.

Notation as in :mod:`hrm_agent.model`: one environment step is one forward pass
of ``M*N*T`` iterations (``M = segments``, ``N = H_cycles``, ``T = L_cycles``;
every iteration of every segment is recorded); ``z^i`` is the state
after iteration ``i``; ``S = seq_len + 1`` positions (query token first), ``D``
the hidden size. The recorded iterations come from the network's own trace
(``HRMQNetwork.forward(..., trace=True)``, collected by :mod:`hrm_agent.recording`)
of the very forward pass that chose the action, so the last one, ``z^{MNT}``,
is the state the agent's carry came from (all of it with ``carry: full``; its
query-position vectors with ``carry: token``).

File format ``hrm-agent-latents``, version 1: a compressed NumPy ``.npz`` (no
pickled objects; ``numpy.load`` opens it as well). ``n`` recorded steps, ``E``
episodes; rows are ordered by episode, then step.

================  =======================  ==================================================
entry             shape, dtype             meaning
================  =======================  ==================================================
format            () str                   ``"hrm-agent-latents"``
version           () int64                 ``1``
metadata          () str                   JSON object, see below
z_H, z_L          (n, M*N*T, P, D) float16 entry ``[t, i-1]``: the state after iteration ``i``
                                           at every position (``P = S``) or at the query
                                           position only (``P = 1``, metadata ``positions``)
H_init, L_init    (D,) float32             the fixed initial state, ``z^0`` of every forward
                                           pass with reset z and of each episode's first step
obs               (n, H, W) uint8          the observation the forward pass read
action            (n,) int64               the greedy action taken
reward            (n,) float32             the reward that action received
changed           (n,) bool                ``info["changed"]`` that came with ``obs``: the walls
                                           or doors changed in the env step that produced it
                                           (False on an episode's first observation)
path_changed      (n,) bool, optional      ``info["path_changed"]`` that came with ``obs``: the
                                           change touched the agent's shortest path (files
                                           recorded before this entry lack it)
agent_pos         (n, 2) int64             ``info["agent_pos"]`` (x, y) that came with ``obs``
step              (n,) int64               step index within the episode, from 0
episode           (n,) int64               episode id ``0 .. E-1`` (seeded ``eval_seed + id``)
episode_success   (E,) bool                the episode reached the goal
episode_length    (E,) int64               steps it took (its number of rows)
read_positions    (n, A) int64, optional   the positions (query first) the Q head read at the step:
                                           the cells each action leads to (``readout: neighbors``)
                                           or the query position (``A = 1``); files recorded
                                           before this entry lack it
intervention_step (E,) int64, optional     recorded by ``evaluate --intervention``: the step
                                           after which the episode's grid was changed (its row
                                           ``step == intervention_step`` is the first to see
                                           it), -1 where the intervention was not applied
================  =======================  ==================================================

``metadata``: ``variant`` (``"carry"``/``"reset"``), ``env_id``, ``env_kwargs``,
``seed`` (the agent's training seed), ``eval_seed``, ``H_cycles``, ``L_cycles``,
``segments`` (1 when absent), ``carry`` (``"full"``/``"token"``; ``"full"`` when absent),
``intervention`` (``"goal"``/``"door"``, with ``intervention_step``),
``positions`` (``"all"``/``"query"``; ``"all"`` when absent), ``hidden_size``, ``total_seq_len``,
``forward_dtype``, ``hrm_agent_version``,
``created`` (UTC, ISO 8601) and, from the command line, ``source`` (the run
directory or model file evaluated) and ``run`` (its name).

Size (measured): with the default ``DynamicMaze-v0`` config (hidden 32, 2 x 2
cycles, 82 positions) one step holds 42 KB of float16 latents, which compress
to about 29 KB. 100 episodes of an untrained agent (4,219 steps; nearly every
episode runs to the 44-step limit, so this is the upper bound) gave a 122 MB
file; an agent that reaches the goal by the shortest path (9.4 steps per
episode on average) would write about 27 MB. The size grows linearly with
steps, ``M*N*T``, ``P`` and ``D``. Recording the query position only
(``positions="query"``, ``--latent-positions query``: the HRM's read-out token and what
``carry: token`` carries, the HRM-Agent authors' last token) divides the
latents by ``S``: 2 x ``M*N*T`` x ``D`` float16 values per step, 512 bytes with
the default config and 4 KB with the ``paper`` preset's 8 segments and hidden 64.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hrm_agent.checkpoint import atomic_write
from hrm_agent.runs import UsageError

FORMAT = "hrm-agent-latents"
VERSION = 1
DEFAULT_NAME = "latents.npz"
LEVELS = ("z_H", "z_L")
_STEP_ENTRIES = {  # per-step entries besides the latents: name -> (dtype kinds, trailing shape)
    "action": ("iu", ()),
    "reward": ("f", ()),
    "changed": ("b", ()),
    "agent_pos": ("iu", (2,)),
    "step": ("iu", ()),
    "episode": ("iu", ()),
}
_ARRAY_ENTRIES = (
    "z_H", "z_L", "H_init", "L_init", "obs", "action", "reward", "changed", "agent_pos", "step", "episode",
    "episode_success", "episode_length",
)
_OPTIONAL_ENTRIES = ("path_changed", "intervention_step", "read_positions")
_METADATA_KEYS = ("variant", "env_id", "H_cycles", "L_cycles", "hidden_size", "total_seq_len")


@dataclass
class Latents:
    """One latent recording (see the module docstring for every field's shape and meaning)."""

    z_H: np.ndarray
    z_L: np.ndarray
    H_init: np.ndarray
    L_init: np.ndarray
    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    changed: np.ndarray
    agent_pos: np.ndarray
    step: np.ndarray
    episode: np.ndarray
    episode_success: np.ndarray
    episode_length: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    path_changed: np.ndarray | None = None
    intervention_step: np.ndarray | None = None
    read_positions: np.ndarray | None = None

    @property
    def variant(self) -> str:
        """``"carry"`` or ``"reset"``."""
        return self.metadata["variant"]

    @property
    def n_steps(self) -> int:
        return int(self.z_H.shape[0])

    @property
    def n_episodes(self) -> int:
        return int(self.episode_success.shape[0])

    @property
    def iterations(self) -> int:
        """``M*N*T``, recorded iterations per step."""
        return int(self.z_H.shape[1])

    @property
    def positions(self) -> str:
        """``"all"`` (every position recorded) or ``"query"`` (the query position only)."""
        return self.metadata.get("positions", "all")

    @property
    def success(self) -> np.ndarray:
        """(n,) bool: whether each step's episode reached the goal."""
        return self.episode_success[self.episode]

    def initial_state(self, level: str) -> np.ndarray:
        """``z^0`` of every step, (n, P, D) float16: the state its forward pass started from.

        The initial state (``H_init``/``L_init`` at every position) on each episode's first
        step and at every step with reset z; otherwise what was carried of the previous step's
        final state: all of it (``carry: full``) or its query-position vector at every position
        (``carry: token``).
        """
        z = getattr(self, level)
        init = (self.H_init if level == "z_H" else self.L_init).astype(z.dtype)
        start = np.broadcast_to(init, (self.n_steps, *z.shape[2:])).copy()
        if self.variant == "carry":
            continued = np.flatnonzero(self.step > 0)
            final = z[continued - 1, -1]
            start[continued] = final[:, :1] if self.metadata.get("carry", "full") == "token" else final
        return start

    def arrays(self) -> dict[str, np.ndarray]:
        """The file's entries except format, version and metadata."""
        entries = {name: getattr(self, name) for name in _ARRAY_ENTRIES}
        for name in _OPTIONAL_ENTRIES:
            if getattr(self, name) is not None:
                entries[name] = getattr(self, name)
        return entries


# ------------------------------------------------------------------ file I/O


def save(path: str | Path, latents: Latents) -> Path:
    """Write ``latents`` to ``path`` (a compressed ``.npz``) atomically; returns the path."""
    path = Path(path)
    _check(latents, str(path))
    entries = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION, dtype=np.int64),
        "metadata": np.array(json.dumps(latents.metadata, sort_keys=True)),
        **latents.arrays(),
    }
    atomic_write(path, lambda f: np.savez_compressed(f, **entries))
    return path


def load(path: str | Path) -> Latents:
    """Read a file written by :func:`save`.

    Raises ``UsageError`` with a one-line reason for a missing, truncated, corrupt or foreign
    file, another format version, or entries whose shapes do not fit together.

    Example (``runs/<run>`` a training run, evaluated with
    ``python -m hrm_agent.evaluate runs/<run> --save-latents``)::

        from hrm_agent import latents

        rec = latents.load("runs/<run>/latents.npz")
        print(rec.variant, rec.n_steps, rec.n_episodes, rec.iterations)  # "carry"/"reset", n, E, M*N*T
        final = rec.z_H[:, -1]                 # (n, S, D): z_H^{MNT} of every step, where the carry comes from
        start = rec.initial_state("z_H")       # (n, S, D): z^0, where each step's forward pass started
        moved = rec.z_L[rec.changed]           # the steps whose walls or doors had just changed
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no such latents file: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            if "format" not in names or str(npz["format"]) != FORMAT:
                raise UsageError(f"{path} is not an hrm-agent latents file")
            version = int(npz["version"]) if "version" in names else None
            if version != VERSION:
                raise UsageError(
                    f"{path} has latents format version {version}, this hrm-agent reads version {VERSION}"
                )
            missing = [name for name in ("metadata", *_ARRAY_ENTRIES) if name not in names]
            if missing:
                raise UsageError(f"{path} lacks the entries {', '.join(missing)}")
            metadata = json.loads(str(npz["metadata"]))
            arrays = {name: npz[name] for name in _ARRAY_ENTRIES}  # reads (and CRC-checks) every entry
            for name in _OPTIONAL_ENTRIES:
                if name in names:
                    arrays[name] = npz[name]
    except UsageError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, KeyError, TypeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UsageError(f"{path} is truncated, corrupt or not an .npz file ({reason})") from None
    except Exception as err:  # zlib.error and friends from a damaged member
        raise UsageError(f"{path} is truncated or corrupt ({type(err).__name__})") from None
    if not isinstance(metadata, dict):
        raise UsageError(f"{path}: metadata is not a JSON object")
    latents = Latents(**arrays, metadata=metadata)
    _check(latents, str(path))
    return latents


def _check(latents: Latents, name: str) -> None:
    """Raise ``UsageError`` unless the entries' shapes and the metadata fit together."""

    def fail(reason: str) -> None:
        raise UsageError(f"{name}: {reason}")

    meta = latents.metadata
    missing = [key for key in _METADATA_KEYS if key not in meta]
    if missing:
        fail(f"metadata lacks {', '.join(missing)}")
    if meta["variant"] not in ("carry", "reset"):
        fail(f"variant must be 'carry' or 'reset', got {meta['variant']!r}")
    z_H, z_L = latents.z_H, latents.z_L
    iterations = meta.get("segments", 1) * meta["H_cycles"] * meta["L_cycles"]
    positions = meta.get("positions", "all")
    if positions not in ("all", "query"):
        fail(f"positions must be 'all' or 'query', got {positions!r}")
    expected = (iterations, meta["total_seq_len"] if positions == "all" else 1, meta["hidden_size"])
    if z_H.ndim != 4 or z_H.shape[1:] != expected:
        fail(f"z_H has shape {z_H.shape}, expected (n, {', '.join(map(str, expected))}) (n, M*N*T, P, D)")
    if z_L.shape != z_H.shape:
        fail(f"z_L has shape {z_L.shape}, z_H {z_H.shape}")
    if not (np.issubdtype(z_H.dtype, np.floating) and np.issubdtype(z_L.dtype, np.floating)):
        fail("z_H and z_L must be floating point")
    n, D = z_H.shape[0], expected[2]
    for init in ("H_init", "L_init"):
        if getattr(latents, init).shape != (D,):
            fail(f"{init} has shape {getattr(latents, init).shape}, expected ({D},)")
    if latents.obs.ndim != 3 or latents.obs.shape[0] != n:
        fail(f"obs has shape {latents.obs.shape}, expected ({n}, H, W)")
    for entry, (kinds, trailing) in _STEP_ENTRIES.items():
        value = getattr(latents, entry)
        if value.shape != (n, *trailing) or value.dtype.kind not in kinds:
            shape = ", ".join(map(str, (n, *trailing)))
            fail(f"{entry} has shape {value.shape} and dtype {value.dtype}, expected ({shape}) of kind {kinds!r}")
    if latents.path_changed is not None:
        if latents.path_changed.shape != (n,) or latents.path_changed.dtype.kind != "b":
            fail(f"path_changed has shape {latents.path_changed.shape} and dtype {latents.path_changed.dtype}, "
                 f"expected ({n},) bool")
        if np.any(latents.path_changed & ~latents.changed):
            fail("path_changed is set on a step where changed is not")
    read = latents.read_positions
    if read is not None and (read.ndim != 2 or read.shape[0] != n or read.dtype.kind not in "iu"
                             or (n and (read.min() < 0 or read.max() >= meta["total_seq_len"]))):
        fail(f"read_positions has shape {read.shape} and dtype {read.dtype}, expected ({n}, A) integers in "
             f"[0, {meta['total_seq_len']})")
    E = latents.episode_success.shape
    if len(E) != 1 or latents.episode_length.shape != E:
        fail(f"episode_success {latents.episode_success.shape} and episode_length {latents.episode_length.shape} "
             "must both be (E,)")
    if latents.intervention_step is not None:
        steps = latents.intervention_step
        if steps.shape != E or steps.dtype.kind not in "iu":
            fail(f"intervention_step has shape {steps.shape} and dtype {steps.dtype}, expected ({E[0]},) integers")
        if np.any((steps >= latents.episode_length) | (steps < -1)):
            fail("intervention_step must be -1 or a step that the episode went on after")
    if n and (latents.episode.min() < 0 or latents.episode.max() >= E[0]):
        fail(f"episode ids must lie in [0, {E[0]})")
    if not np.array_equal(np.bincount(latents.episode, minlength=E[0]), latents.episode_length):
        fail("episode_length does not match the rows recorded per episode")
    if n and np.any(np.diff(latents.episode) < 0):
        fail("rows must be ordered by episode")
    first_row = np.cumsum(latents.episode_length) - latents.episode_length
    if not np.array_equal(latents.step, np.arange(n) - first_row[latents.episode]):
        fail("each episode's rows must hold its steps 0, 1, 2, ... in order")
