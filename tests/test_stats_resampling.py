"""Bootstrap intervals over units."""
import numpy as np
import pytest

from caplab.stats.resampling import bootstrap_interval


def test_bootstrap_interval_matches_the_direct_computation():
    values = np.random.default_rng(1).normal(2.0, 1.0, 50)
    point, lo, hi = bootstrap_interval(values, np.median, n=500, rng=np.random.default_rng(0))
    rng = np.random.default_rng(0)
    boots = np.median(rng.choice(values, size=(500, 50)), axis=1)
    assert point == np.median(values)
    assert (lo, hi) == (np.quantile(boots, 0.025), np.quantile(boots, 0.975))
    assert lo < 2.0 < hi
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_interval([], n=10, rng=rng)
