"""Results files: CSV rows written atomically, appended under a file lock, identified by a fingerprint.

A ``bench learn`` results file (``analysis/results/bench_learn.csv`` and the ablation arms) keeps one
row per finished run (:data:`FIELDS`). A row is identified by :data:`KEY_FIELDS` and its torch threads
(:func:`row_key`); ``defaults`` is the :func:`fingerprint` of the env's parameters and the learner's
resolved config, so rows recorded under other package defaults are never taken for a run of today.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import io
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hrm_agent.checkpoint import atomic_write
from hrm_agent.runs import UsageError

FIELDS = [
    "env", "env_kwargs", "variant", "seed", "budget", "settings", "defaults", "total_steps", "final_success",
    "final_success_se", "path_efficiency", "path_efficiency_se", "mean_ep_length", "steps_to_90",
    "wall_clock_s", "threads", "run", "curve", "minutes_to_90",
]
KEY_FIELDS = ("env", "env_kwargs", "variant", "seed", "budget", "settings", "defaults")

# Config fields added after results were recorded, with the value that does what runs did before
# them: left out of the fingerprint at that value, so older rows still match.
FINGERPRINT_OFF = {"her_ratio": 0.0}
# Config fields that choose what a run writes, never what it learns: left out of the fingerprint at any
# value, so a run that also saved its model at every evaluation is the same run as one that did not.
FINGERPRINT_OUTPUT_ONLY = ("save_eval_models",)
# the same for fields of a nested section: the HRM's ``model``, the baselines' ``policy``
FINGERPRINT_NESTED_OFF = {"model": {"readout": "query", "stay_on_blocked": False, "core": "hrm"},
                          "policy": {"view": "grid"}}
# A config's default budget does not change a run (bench learn passes its own): hashed as this constant
# (the default budget of every learner when fingerprints began), so changing a default budget keeps rows.
FINGERPRINT_TOTAL_STEPS = 60_000


def write_csv(path: str | Path, fields: Sequence[str], rows: Sequence[dict[str, Any]]) -> Path:
    """Write ``rows`` as CSV, atomically (floats with 6 significant digits, NaN as empty)."""

    def cell(value: Any) -> Any:
        if isinstance(value, (float, np.floating)):
            return "" if not np.isfinite(value) else f"{value:.6g}"
        return value

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: cell(r[k]) for k in fields} for r in rows)
    atomic_write(path, lambda f: f.write(text.getvalue().encode()))
    return Path(path)


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file with a header; none when it does not exist."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def fingerprint(env_id: str, env_kwargs: dict[str, Any], learner_config: dict[str, Any]) -> str:
    """Short hash of everything a run's outcome depends on besides seed and budget: the env's
    parameters with their current defaults and the learner's resolved config. A row recorded under
    other package defaults has another fingerprint, so it is never taken for this run."""
    import gymnasium as gym

    entry = gym.spec(env_id).entry_point
    if isinstance(entry, str):
        module, _, name = entry.partition(":")
        entry = getattr(__import__(module, fromlist=[name]), name)
    params = {p.name: p.default for p in inspect.signature(entry).parameters.values()
              if p.default is not inspect.Parameter.empty}
    if "carry_z" in learner_config:  # an HRM config: retired options hashed at the value every run had
        from hrm_agent.hyperparams import RETIRED

        learner_config = {**RETIRED, **learner_config}
    learner_config = {k: v for k, v in learner_config.items()
                      if k not in FINGERPRINT_OUTPUT_ONLY and not (k in FINGERPRINT_OFF and v == FINGERPRINT_OFF[k])}
    if "total_steps" in learner_config:  # the run's budget (--total-steps, a key field) replaces it
        learner_config["total_steps"] = FINGERPRINT_TOTAL_STEPS
    for section, off in FINGERPRINT_NESTED_OFF.items():
        if isinstance(learner_config.get(section), dict):
            learner_config[section] = {k: v for k, v in learner_config[section].items()
                                       if not (k in off and v == off[k])}
    text = json.dumps({"env": env_id, "env_params": {**params, **env_kwargs}, "learner": learner_config},
                      sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def learning_settings(settings: Sequence[str]) -> list[str]:
    """``--set`` items less those of :data:`FINGERPRINT_OUTPUT_ONLY`: the settings that identify a run."""
    return [s for s in settings if s.partition("=")[0].strip() not in FINGERPRINT_OUTPUT_ONLY]


def kwargs_label(env_kwargs: dict[str, Any]) -> str:
    """``key=value`` items of ``gym.make`` keywords, sorted: the ``env_kwargs`` cell of a row."""
    return " ".join(f"{k}={v}" for k, v in sorted(env_kwargs.items()))


def row_key(row: dict[str, str]) -> tuple[str, ...]:
    """A results row's identity: its KEY_FIELDS and the torch threads it ran with (rows without: 1)."""
    return (*(row[k] for k in KEY_FIELDS), row.get("threads") or "1")


def run_key(env_id: str, env_kwargs: str, variant: str, seed: int, budget: int, settings: list[str],
            defaults: str) -> tuple[str, ...]:
    return (env_id, env_kwargs, variant, str(seed), str(budget), " ".join(settings), defaults)


def read_results(path: Path) -> list[dict[str, str]]:
    """The rows of a ``bench learn`` results file (none when it does not exist); UsageError for a file
    that is not one or cannot be read."""
    if not path.exists():
        return []
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            # rows from before the "defaults" fingerprint have none: they match no new run
            missing = [k for k in KEY_FIELDS if k != "defaults" and k not in (reader.fieldnames or [])]
            if missing:
                raise UsageError(f"{path} is not a bench learn results file (no column {missing[0]})")
            return [{"defaults": "", **row} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UsageError(f"cannot read {path}: {err}") from None


def write_results(path: Path, rows: list[dict[str, Any]]) -> None:
    write_csv(path, FIELDS, [{k: ("" if r.get(k) is None else r[k]) for k in FIELDS} for r in rows])


class ResultsFile:
    """A results file that several commands (threads here, other processes) append rows to.

    :meth:`append` re-reads the file under an exclusive file lock (``.{name}.lock`` beside it) and
    writes it back with the new row, so rows another command finished meanwhile are kept.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = read_results(path)
        self._lock = threading.Lock()

    def append(self, row: dict[str, Any]) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path.with_name(f".{self.path.name}.lock"), "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            new = {k: ("" if row.get(k) is None else str(row[k])) for k in FIELDS}
            self.rows = read_results(self.path) + [new]
            write_results(self.path, self.rows)
