"""The latent analysis of SPEC §5: metrics, the tables behind each figure, the figures.

Reads only saved files: latent recordings (:mod:`hrm_agent.latents`). The
commands in ``analysis/`` (``convergence.py``, ``divergence.py``,
``make_figures.py``) and the notebook ``analysis/latents.ipynb`` are thin
wrappers around the ``write_*`` functions and tables here; the learning curves of
run directories, the statistics and the figure helpers are in
:mod:`hrm_agent.experiments`.

Notation: ``z^i`` is the state after recurrent iteration ``i`` of a forward
pass (``z^0`` the state it started from, ``z^{NT}`` the final one). Three
distances ``d`` (``measure``): ``"mse"``, the mean over all positions and hidden
units of the squared difference; ``"query"``, the HRM-Agent authors' measure:
the squared difference of the query-position vector (the HRM's read-out token and what
``carry: token`` carries; their last token) summed over the hidden units; ``"read"``,
the mean squared difference over the positions the Q head read at the step (with
``readout: neighbors`` the cells each action leads to: the state the Q-values come from).

- **Convergence**: ``d(z^i, z^{NT})`` against ``i = 0 .. NT`` for ``z_H`` and
  ``z_L``, in four conditions: variant (carry/reset) x whether the environment
  changed in the step that produced the observation. ``split="path"`` (the
  authors' protocol) counts a change only where it touched the agent's shortest
  path (``path_changed``); ``split="any"`` counts every change of a wall or
  door. Each episode's first step is left out by default: both variants start
  it from the initial state.
- **Divergence**: ``d(z^{NT}_{step 1}, z^{NT}_{step t})`` against the step
  ``t = 1, 2, ...`` of an episode, carry vs reset.
- **Settling** (the re-planning test, ``python -m hrm_agent.evaluate RUN
  --intervention goal|door``): the first iteration from which ``d(z^i, z^{NT})``
  stays within 10 % of ``d(init, z^{NT})``, at the step that first sees the
  intervention and at the other steps.

Bands are 95 % confidence intervals of the mean (``mean ± 1.96 · sd / sqrt(n)``)
over all steps pooled across episodes and runs; steps of one episode are not
independent, so read the bands as a guide to the noise, not a test.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hrm_agent.experiments.figures import VARIANT_COLOURS, new_figure, save_figure, variant_label
from hrm_agent.experiments.stats import mean_ci
from hrm_agent.experiments.store import write_csv
from hrm_agent.latents import DEFAULT_NAME, LEVELS, Latents, load
from hrm_agent.runs import UsageError

CONVERGENCE_FIELDS = ["level", "variant", "changed", "iteration", "mean", "ci_low", "ci_high", "n", "runs", "split",
                      "measure"]
DIVERGENCE_FIELDS = ["level", "variant", "step", "mean", "ci_low", "ci_high", "n", "runs", "measure"]
MEASURES = ("mse", "query", "read")  # see the module docstring
SETTLE_TOLERANCE = 0.1  # settling_iterations: within 10 % of the distance from the initial state
SPLITS = ("path", "any")
_CHUNK = 256  # steps per block when reducing latents (bounds float32 temporaries)


# ------------------------------------------------------------------ metrics


def mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise MSE: ``a``, ``b`` (n, ...) of the same shape -> (n,) float64."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    out = np.empty(a.shape[0])
    for start in range(0, a.shape[0], _CHUNK):
        d = a[start : start + _CHUNK].astype(np.float32) - b[start : start + _CHUNK].astype(np.float32)
        out[start : start + _CHUNK] = np.square(d).reshape(d.shape[0], -1).mean(axis=1)
    return out


def mse_to_final(states: np.ndarray) -> np.ndarray:
    """``states`` (n, I, ...) -> (n, I): ``MSE(states[:, i], states[:, -1])``; the last column is 0."""
    states = np.asarray(states)
    n, iterations = states.shape[:2]
    out = np.empty((n, iterations))
    for start in range(0, n, _CHUNK):
        block = states[start : start + _CHUNK].astype(np.float32)
        d = block - block[:, -1:]
        out[start : start + _CHUNK] = np.square(d).reshape(block.shape[0], iterations, -1).mean(axis=2)
    return out


def _check_measure(measure: str) -> None:
    if measure not in MEASURES:
        raise UsageError(f"measure must be one of {', '.join(MEASURES)}, got {measure!r}")


def distance(a: np.ndarray, b: np.ndarray, measure: str = "mse") -> np.ndarray:
    """Row-wise distance of states ``a``, ``b`` (n, P, D): :func:`mse`, or with ``"query"`` the squared
    difference of the query-position vectors (position 0) summed over the hidden units -> (n,) float64."""
    _check_measure(measure)
    if measure == "read":
        raise UsageError("the read measure takes the positions of each step: gather them with read_states")
    if measure == "mse":
        return mse(a, b)
    return mse(np.asarray(a)[:, 0], np.asarray(b)[:, 0]) * np.shape(a)[-1]


def distance_to_final(states: np.ndarray, measure: str = "mse") -> np.ndarray:
    """``states`` (n, I, P, D) -> (n, I): ``distance(states[:, i], states[:, -1])``; the last column is 0."""
    _check_measure(measure)
    if measure == "read":
        raise UsageError("the read measure takes the positions of each step: gather them with read_states")
    if measure == "mse":
        return mse_to_final(states)
    return mse_to_final(np.asarray(states)[:, :, 0]) * np.shape(states)[-1]


def read_states(latents: Latents, states: np.ndarray) -> np.ndarray:
    """``states`` (n, ..., S, D) of a recording's steps -> at the positions the Q head read at each step,
    (n, ..., A, D) (``read_positions``); UsageError for a recording without them or of one position."""
    if latents.read_positions is None or latents.positions != "all":
        raise UsageError(f"a recording of {latents.metadata.get('source', 'this run')} has no read positions "
                            "at every position (recorded by an older version, or --latent-positions query): "
                            "the read measure needs a recording of every position by this version")
    index = latents.read_positions.reshape(len(states), *(1,) * (states.ndim - 3), -1, 1)
    return np.take_along_axis(states, index, axis=-2)


def convergence_curves(latents: Latents, level: str, measure: str = "mse") -> np.ndarray:
    """(n, NT+1): ``d(z^i, z^{NT})`` for ``i = 0 .. NT`` at every recorded step (``z^0``: the start state).
    ``measure="read"``: the MSE over the positions the Q head read at that step."""
    z, start = getattr(latents, level), latents.initial_state(level)
    if measure == "read":
        z, start, measure = read_states(latents, z), read_states(latents, start), "mse"
    first = distance(start, z[:, -1], measure)
    return np.concatenate([first[:, None], distance_to_final(z, measure)], axis=1)


def divergence_curves(latents: Latents, level: str, measure: str = "mse") -> np.ndarray:
    """(n,): ``d(z^{NT}`` of its episode's first step, ``z^{NT}`` of this step``)``; 0 on first steps.
    ``measure="read"``: both at the positions the Q head read at this step."""
    final = getattr(latents, level)[:, -1]
    first_row = np.cumsum(latents.episode_length) - latents.episode_length
    first = final[first_row[latents.episode]]
    if measure == "read":
        return distance(read_states(latents, first), read_states(latents, final), "mse")
    return distance(first, final, measure)


def changed_steps(latents: Latents, split: str = "path") -> np.ndarray:
    """(n,) bool: the steps counted as "environment changed": the change touched the agent's shortest
    path (``split="path"``, needs a recording with ``path_changed``) or any wall or door changed (``"any"``)."""
    if split not in SPLITS:
        raise UsageError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "any":
        return latents.changed
    if latents.path_changed is None:
        raise UsageError(f"a recording of {latents.metadata.get('source', 'this run')} has no path_changed "
                            "(recorded by an older version): split by any change instead (--split any)")
    return latents.path_changed


def settling_iterations(latents: Latents, level: str, tol: float = SETTLE_TOLERANCE,
                        measure: str = "mse") -> np.ndarray:
    """(n,) int: for each step, the first iteration ``i`` (``0 .. M*N*T``) from which on the state stays
    within ``tol * d(init, z^{NT})`` of its final state ``z^{NT}``, ``init`` being the fixed initial state:
    the iterations the latent took to settle. One yardstick for both variants, the distance a forward
    pass from the initial state has to cover: 0 means the step started settled (carry z may), a reset-z
    step needs the iterations that cover all but ``tol`` of it."""
    curves = convergence_curves(latents, level, measure)
    final = getattr(latents, level)[:, -1]
    init = np.broadcast_to((latents.H_init if level == "z_H" else latents.L_init).astype(final.dtype), final.shape)
    if measure == "read":
        scale = mse(read_states(latents, init), read_states(latents, final))
    else:
        scale = distance(init, final, measure)
    within = curves <= tol * scale[:, None]
    settled_from = np.flip(np.logical_and.accumulate(np.flip(within, axis=1), axis=1), axis=1)
    return curves.shape[1] - settled_from.sum(axis=1)


def settling_table(sets: Sequence[Latents], tol: float = SETTLE_TOLERANCE,
                   measure: str = "mse") -> list[dict[str, Any]]:
    """Rows ``level, variant, steps, mean, ci_low, ci_high, n, runs``: :func:`settling_iterations` at the
    steps that first saw an intervention (``steps="intervention"``, recordings of ``evaluate
    --intervention``) and at every other step but an episode's first (``"other"``)."""
    _check_compatible(sets)
    rows = []
    for level in LEVELS:
        for variant in sorted({s.variant for s in sets}):
            group = [s for s in sets if s.variant == variant]
            values, first_seen = [], []
            for s in group:
                values.append(settling_iterations(s, level, tol, measure))
                steps = s.intervention_step if s.intervention_step is not None else np.full(s.n_episodes, -1)
                first_seen.append((steps[s.episode] >= 0) & (s.step == steps[s.episode]))
            values, first_seen = np.concatenate(values), np.concatenate(first_seen)
            later = np.concatenate([s.step > 0 for s in group]) & ~first_seen
            for name, keep in (("intervention", first_seen), ("other", later)):
                mean, low, high, n = mean_ci(values[keep].astype(float))
                rows.append({"level": level, "variant": variant, "steps": name, "mean": float(mean),
                             "ci_low": float(low), "ci_high": float(high), "n": n, "runs": len(group)})
    return rows


# ------------------------------------------------------------------ tables


def _check_compatible(sets: Sequence[Latents]) -> None:
    if not sets:
        raise UsageError("no latent recordings given")
    envs = sorted({s.metadata["env_id"] for s in sets})
    if len(envs) > 1:
        raise UsageError(f"latents from several environments ({', '.join(envs)}): analyse them separately")
    iterations = sorted({s.iterations for s in sets})
    if len(iterations) > 1:
        raise UsageError(f"latents with different numbers of iterations per step ({iterations}): "
                            "analyse them separately")


def convergence_table(
    sets: Sequence[Latents], include_first_step: bool = False, split: str = "path", measure: str = "mse"
) -> list[dict[str, Any]]:
    """Rows ``level, variant, changed, iteration, mean, ci_low, ci_high, n, runs, split, measure`` pooling
    all steps of all recordings of a variant (each episode's first step left out unless
    ``include_first_step``); ``changed`` as :func:`changed_steps` gives it for ``split``."""
    _check_compatible(sets)
    flags = [changed_steps(s, split) for s in sets]
    rows = []
    for level in LEVELS:
        for variant in sorted({s.variant for s in sets}):
            group = [(s, f) for s, f in zip(sets, flags) if s.variant == variant]
            curves = [convergence_curves(s, level, measure) for s, _ in group]
            for changed in (False, True):
                keep = [(f == changed) & (include_first_step | (s.step > 0)) for s, f in group]
                picked = [c[k] for c, k in zip(curves, keep)]
                mean, low, high, n = mean_ci(np.concatenate(picked))
                for i in range(group[0][0].iterations + 1):
                    rows.append({"level": level, "variant": variant, "changed": changed, "iteration": i,
                                 "mean": mean[i], "ci_low": low[i], "ci_high": high[i], "n": n, "runs": len(group),
                                 "split": split, "measure": measure})
    return rows


def divergence_table(sets: Sequence[Latents], measure: str = "mse") -> list[dict[str, Any]]:
    """Rows ``level, variant, step, mean, ci_low, ci_high, n, runs, measure``; ``step`` counts from 1;
    ``n`` is the number of episodes that lasted that long."""
    _check_compatible(sets)
    rows = []
    for level in LEVELS:
        for variant in sorted({s.variant for s in sets}):
            group = [s for s in sets if s.variant == variant]
            values = np.concatenate([divergence_curves(s, level, measure) for s in group])
            steps = np.concatenate([s.step for s in group])
            for t in range(int(steps.max(initial=-1)) + 1):
                mean, low, high, n = mean_ci(values[steps == t])
                rows.append({"level": level, "variant": variant, "step": t + 1, "mean": float(mean),
                             "ci_low": float(low), "ci_high": float(high), "n": n, "runs": len(group),
                             "measure": measure})
    return rows


# ------------------------------------------------------------------ inputs


def latents_path(source: str | Path) -> Path:
    """A run directory -> its ``latents.npz``; a file -> itself. Raises ``UsageError`` if missing."""
    source = Path(source)
    if source.is_dir():
        path = source / DEFAULT_NAME
        if not path.is_file():
            raise UsageError(f"{source} has no {DEFAULT_NAME} "
                                f"(record it with: python -m hrm_agent.evaluate {source} --save-latents)")
        return path
    if not source.is_file():
        raise UsageError(f"no such run directory or latents file: {source}")
    return source


def load_latents(sources: Sequence[str | Path]) -> list[Latents]:
    """The recordings of run directories or latents files (``UsageError`` on a bad file)."""
    return [load(latents_path(s)) for s in sources]


# ------------------------------------------------------------------ figures


def describe(sets: Sequence[Latents]) -> str:
    """A one-line title: env ids, and runs and episodes per variant."""
    envs = ", ".join(sorted({s.metadata["env_id"] for s in sets}))
    counts = []
    for variant in sorted({s.variant for s in sets}):
        group = [s for s in sets if s.variant == variant]
        counts.append(f"{variant}: {len(group)} run(s), {sum(s.n_episodes for s in group)} episodes")
    return f"{envs} ({', '.join(counts)})"


def _measure_label(rows: list[dict[str, Any]], a: str, b: str) -> str:
    """The y-axis label of a distance between ``a`` and ``b`` in ``rows``' measure."""
    if rows and rows[0].get("measure") == "query":
        return f"squared distance of the query token\n({a}, {b})"
    if rows and rows[0].get("measure") == "read":
        return f"MSE({a}, {b})\nat the cells the Q head reads"
    return f"MSE({a}, {b})"


def plot_convergence(rows: list[dict[str, Any]], title: str = "", L_cycles: int | None = None) -> Any:
    """One panel per level; a line per variant x changed with its 95 % band. Returns the Figure."""
    fig, axes = new_figure(len(LEVELS))
    path = bool(rows) and rows[0].get("split") == "path"
    labels = {True: "path changed" if path else "changed", False: "path unchanged" if path else "unchanged"}
    for ax, level in zip(axes[0], LEVELS):
        series: dict[tuple[str, bool], list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            if r["level"] == level:
                series[(r["variant"], r["changed"])].append(r)
        for (variant, changed), points in sorted(series.items()):
            i = [p["iteration"] for p in points]
            ax.plot(i, [p["mean"] for p in points], color=VARIANT_COLOURS.get(variant, "grey"),
                    linestyle="--" if changed else "-", marker="o", markersize=3,
                    label=f"{variant} z, {labels[changed]} (n={points[0]['n']})")
            ax.fill_between(i, [p["ci_low"] for p in points], [p["ci_high"] for p in points],
                            color=VARIANT_COLOURS.get(variant, "grey"), alpha=0.15, linewidth=0)
        if L_cycles:  # z_H changes only at the end of each H cycle
            last = max((r["iteration"] for r in rows), default=0)
            for x in range(L_cycles, last, L_cycles):
                ax.axvline(x, color="grey", linestyle=":", linewidth=0.8)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("iteration i (0 = start of the forward pass)")
        ax.set_ylabel(_measure_label(rows, f"{level}^i", f"{level}^NT"))
        ax.set_title(level)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Convergence within a forward pass — {title}" if title else "Convergence within a forward pass",
                 fontsize=10)
    return fig


def plot_divergence(rows: list[dict[str, Any]], title: str = "") -> Any:
    """One panel per level; a line per variant with its 95 % band. Returns the Figure."""
    fig, axes = new_figure(len(LEVELS))
    for ax, level in zip(axes[0], LEVELS):
        for variant in sorted({r["variant"] for r in rows}):
            points = [r for r in rows if r["level"] == level and r["variant"] == variant]
            t = [p["step"] for p in points]
            ax.plot(t, [p["mean"] for p in points], color=VARIANT_COLOURS.get(variant, "grey"), marker="o",
                    markersize=3, label=variant_label(variant))
            ax.fill_between(t, [p["ci_low"] for p in points], [p["ci_high"] for p in points],
                            color=VARIANT_COLOURS.get(variant, "grey"), alpha=0.15, linewidth=0)
        ax.set_xlabel("environment step t of the episode")
        ax.set_ylabel(_measure_label(rows, f"{level}^NT step 1", f"{level}^NT step t"))
        ax.set_title(level)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Divergence across environment steps — {title}" if title else "Divergence across environment steps",
                 fontsize=10)
    return fig


# ------------------------------------------------------------------ outputs


def figure_name(kind: str, split: str = "path", measure: str = "mse") -> str:
    """``convergence``/``divergence``, with ``_any-change``, ``_query`` and ``_read`` for the other views."""
    return kind + ("_any-change" if split == "any" else "") + (f"_{measure}" if measure != "mse" else "")


def write_convergence(
    sets: Sequence[Latents], out_dir: str | Path, include_first_step: bool = False, split: str = "path",
    measure: str = "mse",
) -> list[Path]:
    """``convergence.{png,svg,csv}`` in ``out_dir`` (named by :func:`figure_name` for other views)."""
    rows = convergence_table(sets, include_first_step, split, measure)
    L_cycles = sets[0].metadata.get("L_cycles")
    fig = plot_convergence(rows, describe(sets), L_cycles)
    name = figure_name("convergence", split, measure)
    csv_path = write_csv(Path(out_dir) / f"{name}.csv", CONVERGENCE_FIELDS, rows)
    return [*save_figure(fig, out_dir, name), csv_path]


def write_divergence(sets: Sequence[Latents], out_dir: str | Path, measure: str = "mse") -> list[Path]:
    """``divergence.{png,svg,csv}`` in ``out_dir`` (``divergence_query`` with the authors' measure)."""
    rows = divergence_table(sets, measure)
    fig = plot_divergence(rows, describe(sets))
    name = figure_name("divergence", measure=measure)
    csv_path = write_csv(Path(out_dir) / f"{name}.csv", DIVERGENCE_FIELDS, rows)
    return [*save_figure(fig, out_dir, name), csv_path]
