"""The bootstrap, one of it: resamples of independent units (settings, questions, students, matrices) as index
rows, percentile intervals, and the interval of a summary statistic. Every bootstrap in caplab draws its indices
here, so that paired comparisons (one index row applied to every arm) are paired by construction."""
from __future__ import annotations

from typing import Callable

import numpy as np


def resample_indices(n_items: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` resamples with replacement of `n_items` units, as an (n, n_items) array of indices."""
    if n_items < 1 or n < 1:
        raise ValueError(f"need at least one unit and one resample, got {n_items} units and n={n}")
    return rng.integers(0, n_items, size=(n, n_items))


def percentile_interval(draws, level: float = 0.95, *, ignore_nan: bool = False) -> tuple[float, float]:
    """(lower, upper) percentile interval of bootstrap draws."""
    if not 0 < level < 1:
        raise ValueError(f"need 0 < level < 1, got {level}")
    tail = round((1 - level) / 2, 12)       # 0.025 exactly, not 0.025000000000000022
    quantile = np.nanquantile if ignore_nan else np.quantile
    lo, hi = quantile(np.asarray(draws, dtype=float), [tail, 1 - tail])
    return float(lo), float(hi)


def bootstrap_draws(n_items: int, statistic: Callable[[np.ndarray], float], *, n: int,
                    rng: np.random.Generator) -> np.ndarray:
    """`statistic(indices)` on each of `n` resamples of `n_items` units (for statistics of several aligned arrays
    or frames: pass a closure that indexes them all with the same indices)."""
    return np.array([statistic(rows) for rows in resample_indices(n_items, n, rng)], dtype=float)


def bootstrap_interval(values, statistic=np.mean, *, n: int, rng: np.random.Generator,
                       level: float = 0.95) -> tuple[float, float, float]:
    """(statistic of the values, lower, upper): a percentile interval from `n` resamples with replacement drawn
    from `rng` (pass one generator through a notebook so that its draws stay reproducible in order).
    `statistic` must accept `axis=1`, as np.mean and np.median do."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"bootstrap_interval needs a non-empty 1-D array, got shape {values.shape}")
    if n < 2 or not 0 < level < 1:
        raise ValueError(f"need n >= 2 and 0 < level < 1, got n={n}, level={level}")
    boots = statistic(values[resample_indices(len(values), n, rng)], axis=1)
    return (float(statistic(values)), *percentile_interval(boots, level))
