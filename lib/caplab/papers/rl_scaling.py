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
- `aic_margin`: how far the best k(N) law is ahead of the runner-up;
- `start_evidence`: where RL starts (held-out pass@1 at step 0, TRL's share of rollout groups with zero reward
  variance at the first generation) and the evaluation's standard error;
- `reuse_evidence`: RL's gain at tau = 1 and the share of it lost at tau = 25 and tau = 100;
- `leakage_evidence`: how many held-out questions the pre-training text and the SFT / RL pools hold (the design
  says none; counted, not assumed), and `problem_space`, how many distinct questions the task can ask.
The runs behind the curves (`warm_starts`, `size_curves`, `reuse_sweep`) are cached steps run on every core at once
(`caplab.substrate.sweep.parallel`: each size, or each reuse factor, in its own single-thread process).
Points with error 0 (log undefined) and the step-0 evaluation (X = 0) are excluded, and counted.
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd

from caplab.papers import _types as T
from caplab.papers.budget import pretraining_texts  # noqa: F401  (shared with budget: worked chains minus the test)
from caplab.params import Tier
from caplab.science import posttrain, rl
from caplab.stats import laws
from caplab.stats.fit_compare import compare
from caplab.stats.fitting import bootstrap, fit_law
from caplab.stats.regression import slope
from caplab.stats.resampling import bootstrap_interval, percentile_interval, resample_indices
from caplab.substrate.family import non_embedding_params
from caplab.substrate.models import get_model, param_counts
from caplab.substrate.sweep import parallel
from caplab.substrate.tasks import Task
from caplab.substrate.train import prepare_base

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
    warm_steps: list[int]            # per size, the warm-up's optimizer steps (overriding warm_sft's); [] for none
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


def warm_settings(warm_sft: dict, warm_steps, n_models: int, seed: int = 0) -> list:
    """Each size's SFT warm-up settings: `warm_sft` with `fixed_steps` = that size's entry of `warm_steps` (one per
    model; a bigger model forms the skill in fewer steps, and RL needs a solid start, issue 15's pilots), or
    `warm_sft` as it is for every size when `warm_steps` is empty."""
    from caplab.science.posttrain import SFTSettings

    if warm_steps and len(warm_steps) != n_models:
        raise ValueError(f"warm_steps needs one entry per model ({n_models}), got {list(warm_steps)}")
    if any(int(s) < 1 for s in warm_steps):
        raise ValueError(f"warm_steps must be >= 1, got {list(warm_steps)}")
    steps = list(warm_steps) or [None] * n_models
    return [SFTSettings.from_dict({"seed": seed, **warm_sft, **({"fixed_steps": int(s)} if s else {})})
            for s in steps]


def _cost(spec: dict) -> int:
    """A run's relative training cost for scheduling the costliest first: a tiny shape's non-embedding parameters
    (the family sweep's count), 1 for a model that is already trained (a GPU runs the sizes in turn anyway)."""
    return 1 if "pretrained" in spec or "path" in spec else non_embedding_params(spec)


def warm_starts(models: list[dict], texts, block_size: int, pretrain: dict, warm_pool: pd.DataFrame,
                warm: list) -> tuple[list[dict], pd.DataFrame]:
    """Each size's RL start: the shape pre-trained on `texts` (tokenized once per vocabulary; none for pretrained
    models), then SFT-warmed on `warm_pool` (prompt, completion) with its own settings from `warm`. Both steps are
    cached; the sizes run at once. Returns (start specs, sizes: model, N, N_total)."""
    corpora, chains = {}, []
    for spec, settings in zip(models, warm):
        corpus = None
        if texts is not None:
            tokenizer = get_model(spec)[1]
            key = tuple(sorted(tokenizer.get_vocab().items()))
            if key not in corpora:
                corpora[key] = Task("pretraining", texts=texts).tokens(tokenizer, block_size=block_size)
            corpus = corpora[key]
        chains.append(lambda spec=spec, corpus=corpus, settings=settings: posttrain.sft(
            prepare_base(spec, corpus, pretrain), warm_pool.prompt.tolist(), warm_pool.completion.tolist(), settings))
    starts = parallel(chains, costs=[_cost(m) for m in models])
    sizes = []
    for start in starts:
        counts = param_counts(get_model(start)[0])
        sizes.append({"model": f"N={counts['non_embedding']:,}", "N": counts["non_embedding"],
                      "N_total": counts["total"]})
    return starts, pd.DataFrame(sizes)


def size_curves(starts: list[dict], sizes: pd.DataFrame, pool: pd.DataFrame, test: pd.DataFrame,
                settings) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """GRPO from each size's start on `pool` (prompt, answer), evaluated on `test`; the sizes run at once. Returns
    (curves, finals, start points: pass@1 at step 0 with its SE and the first generation's zero-variance share)."""
    runs = parallel([lambda start=start: rl.grpo(start, pool.prompt.tolist(), pool.answer.tolist(),
                                                 test.prompt.tolist(), test.answer.tolist(), settings)
                     for start in starts], costs=list(sizes.N))
    curves, finals, points = [], [], []
    for run, size in zip(runs, sizes.itertuples()):
        curve = run.curve                               # read from the run's files once
        curves.append(curve.assign(model=size.model, N=size.N))
        finals.append(run.final.assign(model=size.model, N=size.N))
        points.append({"model": size.model, "N": size.N, "pass1": 1 - curve.error.iloc[0], "se": curve.error_se.iloc[0],
                       "zero_std": run.zero_std_share(first=settings.updates_per_generation)})
    return pd.concat(curves, ignore_index=True), pd.concat(finals, ignore_index=True), pd.DataFrame(points)


def usable(curves: pd.DataFrame, x: str) -> pd.DataFrame:
    """Rows a log-log fit can use: X > 0 and 0 < error."""
    return curves[(curves[x] > 0) & (curves.error > 0)].copy()


def per_size_fits(curves: pd.DataFrame, xs=("compute", "prompts_seen"), n_boot: int = 200,
                  seed: int = 0, starts: int = 20) -> pd.DataFrame:
    """One row per (model, x): N, k, its interval (a bootstrap over the curve's points; none with n_boot = 0), E0,
    R^2 (log space), points used and excluded. The objective (Huber of residuals linear in k and E0) is convex, so
    one start reaches the same optimum as many (the controls use starts = 1)."""
    rows = []
    for x in xs:
        for model, group in curves.groupby("model", sort=False):
            points = usable(group, x)
            if len(points) < 3:
                rows.append({"model": model, "N": group.N.iloc[0], "x": x, "points": len(points),
                             "excluded": len(group) - len(points)})
                continue
            fit = fit_law(laws.RL_LOGLINEAR, points, inputs={"X": x}, target="error", starts=starts, seed=seed,
                          warn=False)
            k_lo = k_hi = np.nan
            if n_boot:
                boot = bootstrap(fit, n=n_boot, seed=seed)
                k_lo, k_hi = boot.intervals.loc["k", "lower"], boot.intervals.loc["k", "upper"]
            rows.append({"model": model, "N": group.N.iloc[0], "x": x, "k": fit.params["k"], "k_lo": k_lo, "k_hi": k_hi,
                         "E0": fit.params["E0"], "r2": fit.r2(), "converged": fit.converged,
                         "points": len(points), "excluded": len(group) - len(points)})
    # every column even when no size could be fitted (a gpu run with few evaluations), so that readers of the
    # table see NaN rather than a missing column
    return pd.DataFrame(rows).reindex(columns=["model", "N", "x", "k", "k_lo", "k_hi", "E0", "r2", "converged",
                                               "points", "excluded"])


def k_law_comparison(fits: pd.DataFrame, x: str, n_boot: int = 200, seed: int = 0, starts: int = 30):
    """(comparison table, saturating-law fit, bootstrapped unless n_boot = 0) for k(N) over the sizes fitted
    against `x`."""
    ks = fits[(fits.x == x)].dropna(subset=["k"])
    table = k_law_table(fits, x, seed=seed, starts=starts)
    saturating = fit_law(laws.K_SATURATING_K, ks, inputs={"N": "N"}, target="k", starts=starts, seed=seed,
                         delta=np.inf, warn=False)
    return table, (bootstrap(saturating, n=n_boot, seed=seed) if n_boot else saturating)


def k_law_table(fits: pd.DataFrame, x: str, seed: int = 0, starts: int = 30) -> pd.DataFrame:
    """The three k(N) laws fitted to the same sizes with the same loss and starts, compared by AIC and BIC."""
    ks = fits[(fits.x == x)].dropna(subset=["k"])
    if len(ks) < 3:
        raise ValueError(f"k(N) needs at least 3 sizes with a fitted k against {x}, got {len(ks)}")
    return compare(K_LAWS, ks, inputs={"N": "N"}, target="k", starts=starts, seed=seed, delta=np.inf, warn=False)


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


def reuse_relative_loss(final: pd.DataFrame, tau: float, reference: float = 1.0, n_boot: int = 1000,
                        seed: int = 0) -> tuple[float, float, float]:
    """The share of RL's gain at `reference` that reuse factor `tau` loses: (error at tau - error at reference) /
    (error before RL - error at reference), paired bootstrap over test prompts (the ratio of means on every
    resample; averaged over seeds). 0: reuse costs nothing; 0.5: half the gain lost; read only where the gain at
    the reference is measurably positive (`improvement`). The gain in the denominator is floored at one prompt's
    worth (1 / prompts), so that the number stays defined (and large) where RL gained nothing."""
    table = final.groupby(["tau", "prompt"])[["initial", "correct"]].mean().unstack("tau")
    if tau not in table["correct"].columns or reference not in table["correct"].columns:
        raise ValueError(f"need final evaluations at tau = {tau} and {reference}")
    loss = (table["correct"][reference] - table["correct"][tau]).to_numpy()
    gain = (table["correct"][reference] - table["initial"][reference]).to_numpy()
    rows = resample_indices(len(loss), n_boot, np.random.default_rng(seed))
    floor = 1.0 / len(gain)
    draws = loss[rows].mean(1) / np.maximum(gain[rows].mean(1), floor)
    return (float(loss.mean() / max(gain.mean(), floor)), *percentile_interval(draws))


def learning(finals: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per size, the held-out error before RL minus after, paired bootstrap over test prompts: did RL learn at all
    (by more than the evaluation noise)? `finals`: one row per (model, prompt) with `initial` and `correct`."""
    rows = []
    for model, group in finals.groupby("model", sort=False):
        gain = (group.correct - group.initial).to_numpy(float)
        value, lo, hi = bootstrap_interval(gain, n=n_boot, rng=np.random.default_rng(seed))
        rows.append({"model": model, "error_drop": value, "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


def r2_references(curves: pd.DataFrame, fits: pd.DataFrame, n_items: int, xs=("compute", "prompts_seen"),
                  n_sim: int = 400, seed: int = 0) -> dict[str, float]:
    """What the worst per-size R^2 reads at this evaluation noise, from simulated curves at the same X points with
    binomial noise of `n_items` samples per evaluation (test prompts x samples; one noise draw per evaluation, used
    for every X), fitted by least squares in log space (an upper bound on the robust fit's R^2):
    - noise_only: its 95th percentile when the error is flat at each curve's mean (no learning at all);
    - attainable: its 20th percentile when each size's fitted law is true (a true power law reads above this in
      80 % of replications: below 0.9, the experiment cannot show R^2 > 0.9)."""
    rng = np.random.default_rng(seed)
    worst_null, worst_law = np.full(n_sim, np.inf), np.full(n_sim, np.inf)
    for model, group in curves.groupby("model", sort=False):
        keep = group.error > 0
        for x in xs:
            keep &= group[x] > 0
        group = group[keep]
        if len(group) < 3:
            continue
        z = rng.standard_normal((n_sim, len(group)))
        for x in xs:
            row = fits[(fits.model == model) & (fits.x == x)].dropna(subset=["k"])
            if row.empty:
                continue
            log_x = np.log10(group[x].to_numpy(float))
            law = np.clip(fitted_error(row.iloc[0], group[x].to_numpy(float)), 1e-3, 1 - 1e-3)
            flat = np.full(len(group), float(group.error.mean()))
            for mean, worst in ((flat, worst_null), (law, worst_law)):
                sd = np.sqrt(mean * (1 - mean) / n_items)
                y = np.log10(np.clip(mean + sd * z, 1.0 / (2 * n_items), 1.0))
                np.minimum(worst, _ols_r2(log_x, y), out=worst)
    if not np.isfinite(worst_law).all():
        return {"noise_only": np.nan, "attainable": np.nan}
    return {"noise_only": float(np.quantile(worst_null, 0.95)), "attainable": float(np.quantile(worst_law, 0.2))}


def _ols_r2(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """R^2 of the least-squares line of each row of y on x."""
    xc = x - x.mean()
    yc = y - y.mean(1, keepdims=True)
    beta = yc @ xc / (xc @ xc)
    resid = yc - beta[:, None] * xc[None, :]
    return 1 - (resid ** 2).sum(1) / (yc ** 2).sum(1)


def learning_evidence(finals: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict:
    """rl_error_drop_min: the smallest, over sizes, of the error before RL minus after (paired over test prompts;
    bounds: the smallest bounds, each size's 95 % interval): did RL learn at every size?"""
    drops = learning(finals, n_boot=n_boot, seed=seed)
    if drops.empty:
        return {}
    return {"rl_error_drop_min": (float(drops.error_drop.min()), float(drops.lo.min()), float(drops.hi.min()))}


def fit_evidence(curves: pd.DataFrame, fits: pd.DataFrame, n_items: int, seed: int = 0) -> dict:
    """rl_fit_r2_min (the worst per-size R^2, log space) and its references rl_fit_r2_noise_only and
    rl_fit_r2_attainable (`r2_references`)."""
    if "r2" not in fits or not fits.r2.notna().any():
        return {}
    refs = r2_references(curves, fits, n_items, xs=tuple(fits.dropna(subset=["k"]).x.unique()), seed=seed)
    return {"rl_fit_r2_min": float(fits.r2.min()), "rl_fit_r2_noise_only": refs["noise_only"],
            "rl_fit_r2_attainable": refs["attainable"]}


def slope_evidence(curves: pd.DataFrame, fits: pd.DataFrame) -> dict:
    """error_vs_n_slope_compute / _data: d log10 L / d log10 N at a common X (`error_at_common_x`), an OLS over
    sizes (the unit: the model) with its 95 % interval."""
    out = {}
    for x, name in (("compute", "error_vs_n_slope_compute"), ("prompts_seen", "error_vs_n_slope_data")):
        try:
            common = error_at_common_x(curves, fits, x)
        except ValueError:
            continue
        out[name] = (common["slope"], common["lo"], common["hi"])
    return out


def k_evidence(fits: pd.DataFrame, seed: int = 0, starts: int = 30) -> dict:
    """k(N) against compute: k_sizes (sizes with a fitted k) and k_size_decades (log10 N_max / N_min), the design;
    with at least 3 sizes, k_spearman_n, k_aic_saturating_minus_best_other and k_law_aic_margin (`k_law_table`)."""
    from scipy.stats import spearmanr

    ks = fits[fits.x == "compute"].dropna(subset=["k"])
    out = {"k_sizes": len(ks), "k_size_decades": float(np.log10(ks.N.max() / ks.N.min())) if len(ks) else 0.0}
    if len(ks) >= 3:
        table = k_law_table(fits, "compute", seed=seed, starts=starts)
        out["k_spearman_n"] = float(spearmanr(ks.N, ks.k).statistic)
        out["k_aic_saturating_minus_best_other"] = float(table.aic[K_LAWS[0].name]
                                                         - table.drop(index=K_LAWS[0].name).aic.min())
        out["k_law_aic_margin"] = aic_margin(table)
    return out


def claim_evidence(curves: pd.DataFrame, finals: pd.DataFrame, fits: pd.DataFrame, *, n_items: int,
                   n_boot: int = 1000, seed: int = 0, k_starts: int = 30, answers=None) -> dict:
    """Every number the curve claims are judged on (name -> value or (value, lo, hi)): `learning_evidence`,
    `fit_evidence`, `slope_evidence`, `k_evidence`, and with the test `answers` the no-skill reference
    rl_error_majority_answer (the error of always giving the most common answer)."""
    out = {**learning_evidence(finals, n_boot, seed), **fit_evidence(curves, fits, n_items, seed),
           **slope_evidence(curves, fits), **k_evidence(fits, seed, k_starts)}
    if answers is not None:
        out["rl_error_majority_answer"] = 1.0 - float(pd.Series(list(answers)).value_counts(normalize=True).iloc[0])
    return out


def start_evidence(starts: pd.DataFrame, curves: pd.DataFrame) -> dict:
    """Where RL starts, per size (`starts`: one row per size with `pass1` at step 0 and `zero_std`, TRL's
    `frac_reward_zero_std` over the first generation): rl_start_pass1_min / _max, rl_start_zero_std_max, and
    rl_eval_se_max, the largest standard error of one evaluation (over test prompts) on the curves."""
    out = {"rl_start_pass1_min": float(starts.pass1.min()), "rl_start_pass1_max": float(starts.pass1.max()),
           "rl_start_zero_std_max": float(starts.zero_std.max())}
    if "error_se" in curves:
        out["rl_eval_se_max"] = float(curves.error_se.max())
    return out


def reuse_evidence(finals: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict:
    """The reuse sweep's numbers (paired bootstrap over test prompts): reuse_tau1_gain (pass@1 after RL minus
    before at tau = 1), and for tau = 25 and tau = 100 where run, reuse_relative_loss_tau<t> (`reuse_relative_loss`)
    and reuse_error_tau<t>_minus_tau1 (`reuse_effect`)."""
    taus = set(finals.tau.unique())
    if 1.0 not in taus:
        return {}
    out = {"reuse_tau1_gain": improvement(finals, 1.0, n_boot=n_boot, seed=seed)}
    for tau in (25.0, 100.0):
        if tau in taus:
            out[f"reuse_relative_loss_tau{tau:.0f}"] = reuse_relative_loss(finals, tau, n_boot=n_boot, seed=seed)
            out[f"reuse_error_tau{tau:.0f}_minus_tau1"] = reuse_effect(finals, tau, n_boot=n_boot, seed=seed)
    return out


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
    drawn from the first total / tau prompts of `pool`, GRPO from `start` per seed, evaluated before and at the
    end (and at the run's own log-spaced `eval_steps` up to `steps`, where it has them: then the tau = 1 run is the
    same run as a curve's that draws each prompt once, and comes from the cache); the arms run at once. Returns
    (plan, curves, finals) with `tau` and `seed` columns."""
    plan = reuse_plan(steps * prompts_per_update, taus)
    grpo = {**grpo, "eval_steps": sorted({s for s in grpo.get("eval_steps", ()) if s <= steps} | {steps})}
    arms = [(row.tau, row.unique_prompts, s) for row in plan.itertuples() for s in seeds]

    def run(n, s):
        subset = pool.head(n)
        return rl.grpo(start, subset.prompt.tolist(), subset.answer.tolist(), test.prompt.tolist(),
                       test.answer.tolist(), rl.GRPOSettings.from_dict({**grpo, "steps": steps, "seed": s}))

    runs = parallel([lambda n=n, s=s: run(n, s) for _, n, s in arms])
    curves = [r.curve.assign(tau=tau, seed=s) for r, (tau, _, s) in zip(runs, arms)]
    finals = [r.final.assign(tau=tau, seed=s) for r, (tau, _, s) in zip(runs, arms)]
    return plan, pd.concat(curves, ignore_index=True), pd.concat(finals, ignore_index=True)


_QUESTION = re.compile(r"\d+(?:[+-]\d+)+")


def questions_in(texts) -> set[str]:
    """The chain questions ("4+7-2") that texts ask or work: the first chain of digits and signs of each text (every
    worked form and every "Question: ..." prompt starts with its question)."""
    found = (_QUESTION.search(t) for t in texts)
    return {m.group(0) for m in found if m}


def leakage_evidence(test_prompts, pretraining=None, **pools) -> dict:
    """How many held-out questions leak into training: `test_questions_in_pretraining` (questions of the
    pre-training texts `pretraining`, when given) and `test_questions_in_<name>` for each pool of prompts (SFT, RL).
    Empty for prompts that are not chain questions (the gpu tier's GSM8K: its split is the dataset's own)."""
    held = questions_in(test_prompts)
    if not held:
        return {}
    out = {}
    if pretraining is not None:
        out["test_questions_in_pretraining"] = len(held & questions_in(pretraining))
    for name, prompts in pools.items():
        out[f"test_questions_in_{name}"] = len(held & questions_in(prompts))
    return out


def problem_space(task: dict) -> int | None:
    """How many distinct questions a `chain_problems` task can ask: m (m+1)^k with k operations when results stay in
    0..m-1 (each step has m + 1 operations whatever the running value), m (2m)^k when they wrap; summed over the
    task's operation counts. None for other kinds."""
    if task.get("kind") != "chain_problems":
        return None
    m, wrap = int(task.get("modulus", 10)), bool(task.get("wrap", False))
    ops = task.get("n_ops", (1, 3))
    lo, hi = (ops, ops) if isinstance(ops, int) else ops
    return int(sum(m * ((2 * m) if wrap else (m + 1)) ** k for k in range(lo, hi + 1)))
