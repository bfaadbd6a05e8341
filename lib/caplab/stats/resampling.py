"""Bootstrap intervals of a summary statistic over independent units (settings, questions, students)."""
from __future__ import annotations

import numpy as np


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
    boots = statistic(rng.choice(values, size=(n, len(values))), axis=1)
    tail = round((1 - level) / 2, 12)       # 0.025 exactly, not 0.025000000000000022
    return float(statistic(values)), float(np.quantile(boots, tail)), float(np.quantile(boots, 1 - tail))
