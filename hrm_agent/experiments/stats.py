"""Statistics over seeds and episodes: mean ± standard error, t and normal intervals, the bootstrap."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

Z_95 = 1.959964  # two-sided 95 % normal quantile
# two-sided 95 % t quantiles by degrees of freedom (n - 1 seeds)
T_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def number(value: Any) -> float | None:
    """``value`` as a finite float (a CSV cell, a JSON value), else None."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) else None


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample sd / sqrt(n)); NaN where undefined (n < 1, n < 2)."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    m = float(np.mean(values))
    return m, (float(np.std(values, ddof=1) / np.sqrt(n)) if n > 1 else float("nan"))


def format_mean_se(values: Sequence[float], digits: int = 2) -> str:
    """``"m ± se"`` over seeds for a results table (``"m"`` for one value, ``"–"`` for none)."""
    if not len(values):
        return "–"
    m, se = mean_se(values)
    return f"{m:.{digits}f}" if np.isnan(se) else f"{m:.{digits}f} ± {se:.{digits}f}"


def mean_ci(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Mean over axis 0 and its 95 % normal interval ``(mean, low, high, n)``; NaN bounds when n < 2."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    if n == 0:
        nan = np.full(values.shape[1:], np.nan)
        return nan, nan, nan, 0
    mean = values.mean(axis=0)
    half = Z_95 * values.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full_like(mean, np.nan)
    return mean, mean - half, mean + half, n


def t_interval(values: np.ndarray) -> tuple[float, float]:
    """The mean over seeds and the half-width of its 95 % t interval (NaN below 2 seeds)."""
    n = len(values)
    mean = float(values.mean())
    if n < 2:
        return mean, float("nan")
    return mean, T_95.get(n - 1, Z_95) * float(values.std(ddof=1)) / np.sqrt(n)


def bootstrap_difference(a: Sequence[float], b: Sequence[float], resamples: int = 10_000,
                         seed: int = 0) -> tuple[float, float, float]:
    """``mean(a) - mean(b)`` and its 95 % percentile bootstrap interval, resampling each group (the
    seeds of two variants) with replacement, ``resamples`` times from a generator seeded ``seed``;
    NaN bounds when a group has fewer than 2 values, all NaN when one is empty."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not len(a) or not len(b):
        return float("nan"), float("nan"), float("nan")
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return diff, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    boot = (rng.choice(a, (resamples, len(a))).mean(axis=1) - rng.choice(b, (resamples, len(b))).mean(axis=1))
    low, high = np.percentile(boot, [2.5, 97.5])
    return diff, float(low), float(high)
