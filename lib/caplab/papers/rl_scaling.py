"""The RL scaling analysis of Tan et al. 2025 (arXiv 2509.25300) on tidy learning curves.

Input: one row per (model, evaluation) with N (parameters), the held-out error L = 1 - pass@1, and the x-axes
compute and prompts_seen. Steps:
- `per_size_fits`: log10 L = -k log10 X + E0 for each size and each X (the toolkit's RL_LOGLINEAR law, Huber on
  log residuals, multi-start, bootstrap intervals), with R^2 in log space (the paper's space);
- `k_law_comparison`: k(N) saturating (K_max N / (N + N0)) against a power law and against a line in log N, the
  same data and loss, compared by AIC and BIC, with bootstrap intervals on K_max and N0;
- `error_at_common_x`: each size's fitted log10 L at one X (inside every size's range when they overlap), and its
  OLS slope on log10 N (negative: bigger models reach a lower error at equal compute or data);
- `reuse_effect`: final error at a reuse factor minus at tau = 1, paired bootstrap over test prompts, and
  `improvement`: whether RL lowered the error at all (else reuse cannot be judged);
- `aic_margin`: how far the best k(N) law is ahead of the runner-up.
Points with error 0 (log undefined) and the step-0 evaluation (X = 0) are excluded, and counted.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from caplab.papers import _types as T
from caplab.params import Tier
from caplab.science import rl
from caplab.stats import laws
from caplab.stats.fit_compare import compare
from caplab.stats.fitting import bootstrap, fit_law
from caplab.stats.regression import slope
from caplab.stats.resampling import bootstrap_interval

K_LAWS = (laws.K_SATURATING_K, laws.K_POWER_K, laws.K_LOG_LINEAR_K)


@dataclasses.dataclass(frozen=True)
class Params:
    """rl_scaling's parameters (the notebook's `parameters` cell; its defaults are the cpu tier's values). The
    paper's GRPO settings (Tan et al. 2025, code: 8 rollouts, 512 prompts per generation as 4 updates of 128,
    lr 1e-6, KL 0.001, clip 0.2) are GRPOSettings' defaults; `grpo` overrides them per tier."""
    models: list[T.Model]            # the sizes: tiny shapes pre-trained here, or `pretrained` ids
    corpus_task: T.OptionalTask      # pre-training text (single-step facts); {} for pretrained models
    block_size: T.Count
    pretrain: T.OptionalTrain        # TrainConfig of the pre-training; {} for pretrained models
    warm_task: T.OptionalTask        # SFT examples that teach the answer format before RL; {} for none
    warm_sft: T.SFT                  # SFTSettings of that warm-up
    rl_task: T.Task                  # RL prompts (with verifiable answers)
    test_task: T.Task                # held-out prompts for pass@1
    grpo: T.GRPO
    reuse_model: int                 # index into `models` of the reuse sweep's model
    reuse_steps: T.Count             # GRPO steps of each reuse run
    reuse_taus: list[float]          # reuse factors tau (epochs over the unique prompts)
    reuse_seeds: list[int]
    n_boot: T.Count
    seed: int
    tier: Tier = "cpu"


def usable(curves: pd.DataFrame, x: str) -> pd.DataFrame:
    """Rows a log-log fit can use: X > 0 and 0 < error."""
    return curves[(curves[x] > 0) & (curves.error > 0)].copy()


def per_size_fits(curves: pd.DataFrame, xs=("compute", "prompts_seen"), n_boot: int = 200,
                  seed: int = 0) -> pd.DataFrame:
    """One row per (model, x): N, k, its interval, E0, R^2 (log space), points used and excluded."""
    rows = []
    for x in xs:
        for model, group in curves.groupby("model", sort=False):
            points = usable(group, x)
            if len(points) < 3:
                rows.append({"model": model, "N": group.N.iloc[0], "x": x, "points": len(points),
                             "excluded": len(group) - len(points)})
                continue
            fit = fit_law(laws.RL_LOGLINEAR, points, inputs={"X": x}, target="error", starts=20, seed=seed,
                          warn=False)
            boot = bootstrap(fit, n=n_boot, seed=seed)
            rows.append({"model": model, "N": group.N.iloc[0], "x": x, "k": fit.params["k"],
                         "k_lo": boot.intervals.loc["k", "lower"], "k_hi": boot.intervals.loc["k", "upper"],
                         "E0": fit.params["E0"], "r2": fit.r2(), "converged": fit.converged,
                         "points": len(points), "excluded": len(group) - len(points)})
    # every column even when no size could be fitted (a gpu run with few evaluations), so that readers of the
    # table see NaN rather than a missing column
    return pd.DataFrame(rows).reindex(columns=["model", "N", "x", "k", "k_lo", "k_hi", "E0", "r2", "converged",
                                               "points", "excluded"])


def k_law_comparison(fits: pd.DataFrame, x: str, n_boot: int = 200, seed: int = 0):
    """(comparison table, saturating-law bootstrap fit) for k(N) over the sizes fitted against `x`."""
    ks = fits[(fits.x == x)].dropna(subset=["k"])
    if len(ks) < 3:
        raise ValueError(f"k(N) needs at least 3 sizes with a fitted k against {x}, got {len(ks)}")
    table = compare(K_LAWS, ks, inputs={"N": "N"}, target="k", starts=30, seed=seed, delta=np.inf, warn=False)
    saturating = fit_law(laws.K_SATURATING_K, ks, inputs={"N": "N"}, target="k", starts=30, seed=seed,
                         delta=np.inf, warn=False)
    return table, bootstrap(saturating, n=n_boot, seed=seed)


def error_at_common_x(curves: pd.DataFrame, fits: pd.DataFrame, x: str) -> dict:
    """Each size's fitted log10 error at one X, and the OLS slope of it on log10 N with a 95 % interval. X is the
    geometric middle of the X range every size covers when they overlap (interpolation); otherwise the middle of
    all sizes' points (then some sizes are extrapolated along their own law, and `inside_all_ranges` is False)."""
    points = usable(curves, x)
    ranges = points.groupby("model")[x].agg(["min", "max"])
    lo, hi = ranges["min"].max(), ranges["max"].min()
    inside = bool(lo < hi)
    common = float(np.sqrt(lo * hi)) if inside else float(np.exp(np.log(points[x]).mean()))
    rows = fits[(fits.x == x)].dropna(subset=["k"])
    if len(rows) < 3:
        raise ValueError(f"need at least 3 sizes with a fitted law against {x}, got {len(rows)}")
    log_error = rows.E0 - rows.k * np.log10(common)
    fit = slope(pd.DataFrame({"log10_error": log_error.to_numpy(), "log10_N": np.log10(rows.N.to_numpy(float))}),
                "log10_error", "log10_N")
    return {"x": x, "common_x": common, "inside_all_ranges": inside, "slope": fit["slope"],
            "lo": fit["lo"], "hi": fit["hi"],
            "table": pd.DataFrame({"model": rows.model, "N": rows.N, "log10_error": log_error})}


def reuse_effect(final: pd.DataFrame, tau: float, reference: float = 1.0, n_boot: int = 1000,
                 seed: int = 0) -> tuple[float, float, float]:
    """Error at reuse factor `tau` minus at `reference`, paired over test prompts (and averaged over seeds):
    `final` has one row per (tau, seed, prompt) with `correct` (the mean over the prompt's samples)."""
    table = final.groupby(["tau", "prompt"]).correct.mean().unstack("tau")
    if tau not in table.columns or reference not in table.columns:
        raise ValueError(f"need final evaluations at tau = {tau} and {reference}; have {list(table.columns)}")
    diff = (1 - table[tau]) - (1 - table[reference])
    return bootstrap_interval(diff.to_numpy(), n=n_boot, rng=np.random.default_rng(seed))


def improvement(final: pd.DataFrame, tau: float, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Error before RL minus after, at reuse factor `tau`, paired bootstrap over test prompts: did RL learn at all
    (without that, "reuse does not hurt" says nothing)."""
    rows = final[final.tau == tau].groupby("prompt")[["initial", "correct"]].mean()
    if rows.empty:
        raise ValueError(f"no final evaluation at tau = {tau}")
    gain = (rows.correct - rows.initial).to_numpy()
    return bootstrap_interval(gain, n=n_boot, rng=np.random.default_rng(seed))


def aic_margin(table: pd.DataFrame) -> float:
    """AIC of the runner-up minus the best law's: below about 2 the laws are not told apart."""
    aic = np.sort(table.aic.to_numpy())
    return float(aic[1] - aic[0]) if len(aic) > 1 else float("inf")


def reuse_plan(total_prompts: int, taus) -> pd.DataFrame:
    """Pool sizes for a fixed total of prompts: unique = total / tau (at least 1)."""
    rows = [{"tau": float(t), "unique_prompts": max(1, int(round(total_prompts / t)))} for t in taus]
    if any(t < 1 for t in taus):
        raise ValueError(f"reuse factors must be >= 1, got {list(taus)}")
    return pd.DataFrame(rows)


def fitted_error(row, grid) -> np.ndarray:
    """A size's fitted law (a row of `per_size_fits` with k and E0) on the X values `grid`."""
    return laws.RL_LOGLINEAR.predict({"k": row.k, "E0": row.E0}, {"X": np.asarray(grid, dtype=float)})


def reuse_sweep(start, pool: pd.DataFrame, test: pd.DataFrame, grpo: dict, *, steps: int, taus, seeds,
                prompts_per_update: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The data-reuse sweep: for each reuse factor tau a fixed total of prompts (`steps` x `prompts_per_update`)
    drawn from the first total / tau prompts of `pool`, GRPO from `start` per seed. Returns (plan, curves, finals)
    with `tau` and `seed` columns."""
    plan = reuse_plan(steps * prompts_per_update, taus)
    curves, finals = [], []
    for row in plan.itertuples():
        for s in seeds:
            subset = pool.head(row.unique_prompts)
            run = rl.grpo(start, subset.prompt.tolist(), subset.answer.tolist(), test.prompt.tolist(),
                          test.answer.tolist(), rl.GRPOSettings.from_dict({**grpo, "steps": steps, "seed": s}))
            curves.append(run.curve.assign(tau=row.tau, seed=s))
            finals.append(run.final.assign(tau=row.tau, seed=s))
    return plan, pd.concat(curves, ignore_index=True), pd.concat(finals, ignore_index=True)
