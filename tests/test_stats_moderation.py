"""Empirical-Bayes moderation of many small-sample variances (Smyth 2004): the prior is recovered from planted
variances, and it pools only as much as the variances allow."""
import numpy as np
import pytest

from caplab.stats.moderation import variance_prior


def _sample_variances(rng, true_variances, df):
    return true_variances * rng.chisquare(df, true_variances.shape) / df


def test_recovers_a_planted_scaled_inverse_chi_square_prior():
    rng = np.random.default_rng(0)
    d0, s0 = 6.0, 0.04 ** 2
    true = d0 * s0 / rng.chisquare(d0, 20000)                 # scaled inverse chi-square(d0, s0^2)
    d0_hat, s0_hat = variance_prior(_sample_variances(rng, true, 2), 2)
    assert d0_hat == pytest.approx(d0, rel=0.15)
    assert s0_hat == pytest.approx(s0, rel=0.05)


def test_equal_variances_pool_fully_and_unequal_ones_barely():
    rng = np.random.default_rng(1)
    equal, _ = variance_prior(_sample_variances(rng, np.full(5000, 0.01), 2), 2)
    spread = np.exp(rng.normal(np.log(0.01), 2.0, 5000))     # true variances over two orders of magnitude
    unequal, _ = variance_prior(_sample_variances(rng, spread, 2), 2)
    assert equal > 50 and unequal < 1.5           # log-variance sd 2: trigamma(d0 / 2) = 4, d0 = 1.1


def test_refuses_too_few_or_zero_variances():
    with pytest.raises(ValueError, match="at least 3"):
        variance_prior([0.1, 0.2], 2)
    with pytest.raises(ValueError, match="positive"):
        variance_prior([0.1, 0.2, 0.0], 2)
