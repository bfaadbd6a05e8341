"""Law fits per group of a tidy table, cached like training runs: the key is the rows' content, the laws by name,
the fit options and the computing layers' source version, so a rerun reads its fits back (a warm rerun of a
notebook with dozens of multi-start fits and bootstraps costs seconds, not minutes) and any change to the data,
the options or the fitting code refits.

`compare_groups`: `caplab.stats.fit_compare.compare_grouped` (in-sample table, held-out predictions, per-point
residuals), the training rows named by a boolean column. `bootstrap_groups`: per group, one fit of a law and
`n` warm-started refits on resamples of its points (`caplab.stats.fitting.bootstrap`), as one tidy table of
parameter draws (replicate -1 is the fit itself). `cache=False` computes without the cache (simulated worlds).
"""
from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pandas as pd

from caplab.stats import laws as law_registry
from caplab.stats.fit_compare import compare_grouped
from caplab.stats.fitting import ConvergenceWarning, bootstrap, fit_law
from caplab.substrate.cache import default_cache


def frame_digest(frame: pd.DataFrame) -> str:
    """A content digest of a frame (values, column names and order; not its index)."""
    digest = hashlib.sha256(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame.reset_index(drop=True), index=False).to_numpy().tobytes())
    return digest.hexdigest()[:24]


def _laws(names):
    unknown = [n for n in names if n not in law_registry.LAWS]
    if unknown:
        raise ValueError(f"unknown law(s) {unknown}; known: {sorted(law_registry.LAWS)}")
    return [law_registry.LAWS[n] for n in names]


def _cached(step, args, compute, cache):
    if cache is False:
        return compute()
    cache = cache if cache is not None else default_cache()
    return cache.get_or_compute(step, args, compute)


def compare_groups(frame: pd.DataFrame, laws: list[str], *, by: list[str], inputs: dict, train: str | None = None,
                   options: dict | None = None, cache=None, **fit_kwargs):
    """(table, held, points) of `compare_grouped` for the laws named `laws` (`caplab.stats.laws.LAWS`); `train`:
    a boolean column of `frame` naming the training rows of the extrapolation (None: in-sample only)."""
    columns = sorted({*by, *inputs.values(), "loss", *([train] if train else [])})
    missing = [c for c in columns if c not in frame]
    if missing:
        raise ValueError(f"compare_groups: the frame lacks column(s) {missing}")
    chosen = _laws(laws)
    rule = None if train is None else (lambda f: f[train].to_numpy(bool))

    def compute():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return compare_grouped(chosen, frame, by=by, inputs=inputs, train=rule, options=options, points=True,
                                   **fit_kwargs)

    args = {"frame": frame_digest(frame[columns]), "laws": list(laws), "by": list(by), "inputs": dict(inputs),
            "train": train, "options": options or {}, "fit": fit_kwargs}
    table, held, points = _cached("law-comparison", args, compute, cache)
    return table, held, points


def bootstrap_groups(frame: pd.DataFrame, law: str, *, by: str, inputs: dict, n: int, seed: int = 0,
                     fixed: dict | None = None, cache=None, **fit_kwargs) -> pd.DataFrame:
    """Per group of `by`: the fit of `law` (replicate -1) and `n` warm-started refits on resamples of the group's
    points (replicates 0..n-1, resample seed `seed` + the group's position), one row each with every parameter,
    the fit's r2 and converged (on the fit's row)."""
    chosen, = _laws([law])
    columns = sorted({by, *inputs.values(), "loss"})

    def compute():
        rows = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for i, (group, part) in enumerate(frame.groupby(by, sort=False)):
                fit = fit_law(chosen, part, inputs=inputs, fixed=fixed, **fit_kwargs)
                rows.append({by: group, "replicate": -1, **fit.params, "r2": fit.r2(), "converged": fit.converged})
                if n >= 2:
                    draws = bootstrap(fit, n=n, seed=seed + i).bootstrap_info["samples"]
                    for r, sample in enumerate(draws.to_dict("records")):
                        rows.append({by: group, "replicate": r, **fit.fixed, **sample, "r2": np.nan,
                                     "converged": np.nan})
        return pd.DataFrame(rows)

    args = {"frame": frame_digest(frame[columns]), "law": law, "by": by, "inputs": dict(inputs), "n": n,
            "seed": seed, "fixed": fixed or {}, "fit": fit_kwargs}
    return _cached("law-bootstrap", args, compute, cache)
