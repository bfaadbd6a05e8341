"""Controls of the densing claims: simulated worlds at the level of the notebook's tidy tables (the model table and
the per-item scores), pushed through the same functions (`caplab.papers.densing`) and the registry's rules.

Bootstrap refits are skipped here (`refit=False`; the notebook refits): refitting widens the intervals, and every
rule needs a whole interval on one side, so the false-positive rates measured here bound the notebook's from above
and the power is the optimistic side. Item noise: 150 items per benchmark with shared item difficulty (the models
are paired on items), Bernoulli correctness, noisy per-item losses.
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from caplab.controls import Control
from caplab.papers import densing as exp
from caplab.science import densing

LOSS = {"a": 10.0, "alpha": 0.3, "b": 20.0, "beta": 0.25}
SIG = {"c": 0.8, "gamma": -8.0, "l": 1.1, "d": 0.05}
D0, N_T = 1e6, 1e5
P = exp.Params(D0=int(D0), sigmoid_held_out=2, sigmoid_includes_reference=True, n_boot=40, n_perm=200, starts=8)


def family_rows() -> list[dict]:
    rows = [{"model": f"ref{n:.0f}@{d:.0f}", "role": "reference", "params": n, "tokens": d}
            for n in np.geomspace(1e4, 1e6, 4) for d in (2.5e5, 5e5, 1e6, 2e6)]
    rows += [{"model": f"sig{n:.0f}", "role": "sigmoid", "params": n, "tokens": D0}
             for n in np.geomspace(2e4, 2e6, 5)]
    return rows


def simulate_items(models: pd.DataFrame, true_loss, true_score, rng, n_items: int = 150) -> pd.DataFrame:
    """Per-item results for every model: shared item difficulty (paired), Bernoulli correctness, noisy losses."""
    frames = []
    for b, bench in enumerate(("choice", "chain")):
        u = rng.normal(0, 1.0, n_items)                 # item difficulty, the same for every model
        v = rng.normal(0, 0.2, n_items)                 # item loss offset
        s = np.clip(true_score, 1e-4, 1 - 1e-4)
        correct = rng.random((len(models), n_items)) < expit(logit(s)[:, None] + u[None, :])
        loss = np.maximum(0.01, true_loss[:, None] + v[None, :] + rng.normal(0, 0.05, (len(models), n_items)))
        frames.append(pd.DataFrame({"model": np.repeat(models.model.to_numpy(), n_items),
                                    "item": np.tile(np.arange(n_items) + b * n_items, len(models)),
                                    "benchmark": bench, "loss_sum": (20 * loss).ravel(), "n_tokens": 20,
                                    "correct": correct.ravel()}))
    return pd.concat(frames, ignore_index=True)


def world(rng, target_densities: dict, sources: dict | None = None, flat: bool = False):
    """Models (families + targets at N_T whose true density is given) and their item scores. `flat`: the score does
    not depend on the loss at all (every model's true score 0.4)."""
    rows = family_rows()
    for name, rho in target_densities.items():
        rows.append({"model": name, "role": "target", "params": N_T, "tokens": D0, "source": (sources or {}).get(name),
                     "check": "reference" if name == "ref" else None, "growth": True})
    models = pd.DataFrame(rows)
    for column, default in (("date", None), ("t", np.nan), ("check", None), ("growth", False), ("source", None)):
        if column not in models:
            models[column] = default
    models["growth"] = models.growth.fillna(False).astype(bool)
    effective = models.params.to_numpy(float) * np.array([target_densities.get(m, 1.0) for m in models.model])
    tokens = np.where(models.role == "target", D0, models.tokens)
    true_loss = densing.loss_at(LOSS, effective, tokens)
    true_score = np.full(len(models), 0.4) if flat else densing.score_at(SIG, true_loss)
    return models, simulate_items(models, true_loss, true_score, rng)


# -- compression ----------------------------------------------------------------------------------------------------
SOURCES = {"pruned1": "src1", "pruned2": "src2"}


def _targets(ratio: float) -> dict:
    return {"src1": 1.0, "src2": 2.0, "pruned1": 1.0 * ratio, "pruned2": 2.0 * ratio}


@lru_cache(maxsize=2)
def _fits(ratio: float):
    """The two steps fitted once per world (the fits do not see the targets): the families' items are redrawn in
    every draw but these fits are reused, exact at fixed families and conservative otherwise (the families' noise is
    common to both arms)."""
    models, scores = world(np.random.default_rng(1), _targets(ratio), SOURCES)
    return models, exp.fit_steps(models, *exp.Matrices(models, scores).aggregate(), P)


def compression(rng, planted: bool):
    ratio = 0.5 if planted else 1.0
    models, fits = _fits(ratio)
    _, scores = world(rng, _targets(ratio), SOURCES)
    est = exp.estimate(models, scores, P, fits=fits)
    boot = exp.item_bootstrap(models, est, dataclasses.replace(P, seed=int(rng.integers(2**31))), refit=False)
    return exp.claim_evidence(est, boot, None, P)


# -- two steps ------------------------------------------------------------------------------------------------------
def two_steps(rng, planted: bool):
    models, scores = world(rng, {"ref": 1.0}, flat=not planted)
    p = dataclasses.replace(P, seed=int(rng.integers(2**31)))
    est = exp.estimate(models, scores, p)
    boot = exp.item_bootstrap(models, est, p, refit=False)
    return exp.claim_evidence(est, boot, None, P)


# -- growth ---------------------------------------------------------------------------------------------------------
def growth(rng, planted: bool, n: int = 7, noise: float = 0.3):
    rate = 0.0073 if planted else 0.0
    t = np.linspace(0, 400, n).round()
    log_rho = rate * t + rng.normal(0, noise, n)
    table = pd.DataFrame({"model": [f"m{j}" for j in range(n)], "role": "target", "growth": True, "t": t,
                          "density": np.exp(log_rho), "log_density": log_rho, "score": 0.5, "held_out": False})
    table["pretrained"] = [f"org/m{j}" for j in range(n)]       # released models with real dates
    g = exp.growth(table, dataclasses.replace(P, seed=int(rng.integers(2**31)), n_boot=20))
    return exp.claim_evidence({"table": table, "metrics": {}}, pd.DataFrame(), g, P)


CONTROLS = [
    Control("densing.compression_lowers_density",
            null_world="pruned targets as dense as their sources (150 items per benchmark, paired on items)",
            planted_effect="pruning halves the density (the paper: pruned and distilled models below their "
                           "sources)",
            simulate=compression, planted_draws=50),
    Control("densing.two_step_estimates",
            null_world="benchmark scores that do not depend on the loss (every model's true score 0.4)",
            planted_effect="both laws hold and the reference-recipe model has density 1",
            simulate=two_steps, planted_draws=40),
    Control("densing.exponential_growth",
            null_world="no growth: ln density scattered (sd 0.3) around a constant over 7 release dates",
            planted_effect="the paper's rate A = 0.0073 per day (doubling in ~95 days) with the same scatter",
            simulate=growth),
]
