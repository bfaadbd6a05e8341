"""Empirical-Bayes moderation of many small-sample variances: where every arm of an experiment has its variance
from a few replicates (3 training seeds: 2 degrees of freedom each), its own estimate says little, and pooling
them all assumes they are equal. The moderated estimate borrows from the others only as much as their spread
allows (Smyth 2004, "Linear models and empirical Bayes methods for assessing differential expression in
microarray experiments", the `squeezeVar` / `fitFDist` of R's limma)."""
from __future__ import annotations

import numpy as np


def variance_prior(variances, df: float) -> tuple[float, float]:
    """(d0, s0^2): the scaled inverse chi-square prior of many sample variances with `df` degrees of freedom each,
    by the method of moments on their logarithms (Smyth 2004, "Linear models and empirical Bayes methods for
    assessing differential expression", the `fitFDist` of limma): a moderated variance is then
    (d0 s0^2 + df s^2) / (d0 + df) on d0 + df degrees of freedom. d0 is large where the variances differ no more
    than their sampling noise (pooling is safe) and near 0 where they truly differ (each arm keeps its own); it is
    inf where they differ less than sampling noise predicts. Needs at least 3 positive variances."""
    from scipy.optimize import brentq
    from scipy.special import digamma, polygamma

    s2 = np.asarray(variances, float)
    if s2.size < 3 or not (s2 > 0).all():
        raise ValueError(f"need at least 3 positive sample variances, got {s2.tolist()}")
    e = np.log(s2) - digamma(df / 2) + np.log(df / 2)
    excess = e.var(ddof=1) - float(polygamma(1, df / 2))
    if excess <= 0:
        return np.inf, float(np.exp(e.mean()))
    half = brentq(lambda x: float(polygamma(1, x)) - excess, 1e-8, 1e8)   # trigamma is decreasing
    return 2 * half, float(np.exp(e.mean() + digamma(half) - np.log(half)))
