"""Bootstrap intervals over units; teacher effects against evaluation noise."""
import numpy as np
import pandas as pd
import pytest

from caplab.science.distill import teacher_effects
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


def test_teacher_effects_compare_against_noise():
    pairs = pd.DataFrame({"student_params": [1] * 3 + [2] * 3, "teacher_params": [10, 20, 40] * 2,
                          "loss": [1.0, 0.8, 1.2, 1.0, 1.001, 1.002], "loss_se": [0.01] * 6})
    out = teacher_effects(pairs).set_index("student_params")
    assert out.teacher_effect.to_dict() == {1: True, 2: False}
    assert out.loc[1, "rise_to_largest"] == pytest.approx(0.4)
    assert out.loc[1, "rise_noise"] == pytest.approx(2 * np.hypot(0.01, 0.01))
