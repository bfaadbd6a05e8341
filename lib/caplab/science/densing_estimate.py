"""The densing paper's estimation (Xiao et al. 2024, arXiv 2412.04315), from the tidy tables of
`caplab.science.densing_experiment` (the model table and the per-item scores) to the claims' evidence:

    est = estimate(models, scores, p)              # the two fits, the targets' densities, the claim metrics
    boot = item_bootstrap(models, est, p)          # items resampled within benchmarks, fits redone
    g = growth(est["table"], p)                    # the density envelope and its growth rate
    sens = sensitivity(models, scores, p)          # the growth rate under other references, D0, benchmarks
    evidence = claim_evidence(est, boot, g, p)     # what each claim's rule reads

Undefined densities (the inversion's floor and ceiling, see `caplab.science.densing`) are NaN with their status in
point estimates, and their limits inside bootstrap resamples, so that percentiles stay order statistics.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from caplab.science import densing
from caplab.science.densing_experiment import Params
from caplab.science.law_fits import frame_digest
from caplab.stats.fitting import fit_law
from caplab.substrate.cache import default_cache


class Matrices:
    """Item-level results as arrays [model x item] for fast aggregation under resampling weights."""

    def __init__(self, models: pd.DataFrame, scores: pd.DataFrame, benchmarks: list[str] | None = None):
        if benchmarks is not None:
            scores = scores[scores.benchmark.isin(benchmarks)]
        self.models = list(models.model)
        pivot = lambda col: scores.pivot(index="model", columns="item", values=col).loc[self.models]  # noqa: E731
        self.loss_sum = pivot("loss_sum").to_numpy(float)
        self.n_tokens = pivot("n_tokens").to_numpy(float)
        self.correct = pivot("correct").to_numpy(float)
        bench = scores.drop_duplicates("item").set_index("item").benchmark
        self.benchmark = bench.loc[pivot("correct").columns].to_numpy()
        self.groups = [np.flatnonzero(self.benchmark == b) for b in sorted(set(self.benchmark))]

    def aggregate(self, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(loss, score) per model: the mean over benchmarks of the per-token loss and of the accuracy."""
        w = np.ones(self.correct.shape[1]) if weights is None else weights
        loss = np.mean([(self.loss_sum[:, g] @ w[g]) / (self.n_tokens[:, g] @ w[g]) for g in self.groups], axis=0)
        score = np.mean([(self.correct[:, g] @ w[g]) / w[g].sum() for g in self.groups], axis=0)
        return loss, score

    def resample(self, rng: np.random.Generator) -> np.ndarray:
        """Bootstrap weights: items drawn with replacement within each benchmark (paired across models)."""
        w = np.zeros(self.correct.shape[1])
        for g in self.groups:
            w[g] = np.bincount(rng.integers(0, len(g), len(g)), minlength=len(g))
        return w


# -- estimation --------------------------------------------------------------------------------------------------
def held_out_mask(models: pd.DataFrame, n: int) -> np.ndarray:
    """The `n` largest models of the step-2 family."""
    sig = models[models.role == "sigmoid"]
    largest = sig.sort_values("params").model.tail(n) if n else []
    return models.model.isin(largest).to_numpy()


def fit_steps(models, loss, score, p: Params, *, start: dict | None = None):
    """(step-1 Fit, step-2 Fit) on the given per-model loss and score. `start`: refit from these parameters only
    (one start each, as a bootstrap refit does), else `p.starts` random starts."""
    ref = (models.role == "reference").to_numpy()
    frame = models.assign(loss=loss, score=score)
    sig_rows = (((ref & p.sigmoid_includes_reference) | (models.role == "sigmoid").to_numpy())
                & ~held_out_mask(models, p.sigmoid_held_out))
    if start is None:
        loss_fit = densing.fit_loss(frame[ref], params="params", tokens="tokens", starts=p.starts, seed=p.seed)
        sig_fit = densing.fit_sigmoid(frame[sig_rows], starts=p.starts, seed=p.seed)
    else:
        loss_fit = fit_law(densing.LOSS_LAW, frame[ref], inputs={"N": "params", "D": "tokens"}, target="loss",
                           starts=[start["loss"]], warn=False)
        sig_fit = fit_law(densing.SIGMOID, frame[sig_rows], inputs={"L": "loss"}, target="score",
                          starts=[start["sigmoid"]], warn=False)
    return loss_fit, sig_fit


def log_density(params, score, loss_params, sig_params, D0, *, limits: bool) -> tuple[np.ndarray, np.ndarray]:
    """(ln density, status) of every model (`params`: their parameter counts); undefined rows NaN, or their limits
    (-inf below the floor, +inf above the ceiling or beyond the loss limit) when `limits`."""
    loss_hat, status = densing.loss_from_score(sig_params, score)
    n_hat, status_n = densing.size_from_loss(loss_params, loss_hat, D0)
    status = np.where(status == densing.OK, status_n, status)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.log(np.where(status == densing.OK, n_hat, np.nan) / params)
    if limits:
        value = np.where(status == densing.BELOW_FLOOR, -np.inf, np.where(status == densing.OK, value, np.inf))
    return value, status


@dataclasses.dataclass(frozen=True)
class Layout:
    """What `claim_metrics` reads from the model table, found once per table (a bootstrap's resamples share it)."""

    params: np.ndarray
    targets: np.ndarray            # row indices of the targets
    target_names: tuple[str, ...]
    held: np.ndarray               # mask: step 2's held-out models
    fit_rows: np.ndarray           # mask: step 2's fitted models
    pairs: tuple[tuple[int, int], ...]   # (pruned, source) row indices
    checks: dict                   # check name -> row index
    same_tokens: bool              # contamination check and reference recipe trained on the same tokens

    @classmethod
    def of(cls, models: pd.DataFrame, p: Params) -> "Layout":
        at = {name: i for i, name in enumerate(models.model)}
        is_target = (models.role == "target").to_numpy()
        held = held_out_mask(models, p.sigmoid_held_out)
        fit_rows = (((models.role == "reference").to_numpy() & p.sigmoid_includes_reference)
                    | (models.role == "sigmoid").to_numpy()) & ~held
        targets = models[is_target]
        pairs = tuple((at[r.model], at[r.source]) for r in targets.itertuples()
                      if isinstance(getattr(r, "source", None), str))
        checks = ({c: at[m] for c, m in zip(targets.check, targets.model) if isinstance(c, str)}
                  if "check" in models else {})
        tokens = models.tokens.to_numpy()
        same = ("contamination" in checks and "reference" in checks
                and tokens[checks["contamination"]] == tokens[checks["reference"]])
        return cls(models.params.to_numpy(float), np.flatnonzero(is_target), tuple(targets.model), held,
                   fit_rows, pairs, checks, bool(same))


def claim_metrics(models, loss, score, loss_params, sig_params, p: Params, *, limits: bool,
                  layout: Layout | None = None) -> dict[str, float]:
    """The numbers the claims read, from per-model loss and score and the two fits. `layout`: `Layout.of(models,
    p)`, passed by a caller that evaluates many resamples of the same table."""
    lay = layout or Layout.of(models, p)
    loss, score = np.asarray(loss, dtype=float), np.asarray(score, dtype=float)
    logd, _ = log_density(lay.params, score, loss_params, sig_params, p.D0, limits=limits)
    out: dict[str, float] = {f"log_density[{name}]": value
                             for name, value in zip(lay.target_names, logd[lay.targets])}
    held = lay.held
    if held.any():
        predicted = densing.score_at(sig_params, loss[held])
        out["heldout_error_minus_constant"] = float(np.mean(np.abs(predicted - score[held])
                                                            - np.abs(score[lay.fit_rows].mean() - score[held])))
        out["heldout_abs_error"] = float(np.mean(np.abs(predicted - score[held])))
    if lay.pairs:
        with np.errstate(invalid="ignore"):       # both at the same limit: the pair cannot be compared
            diffs = np.array([logd[a] - logd[b] for a, b in lay.pairs])
        out["pruned_minus_source_log_density"] = float(np.mean(diffs[~np.isnan(diffs)])) if (
            ~np.isnan(diffs)).any() else math.nan
    checks = lay.checks
    if "contamination" in checks and "contamination_clean" in checks:
        out["contaminated_minus_clean_score"] = float(score[checks["contamination"]]
                                                      - score[checks["contamination_clean"]])
        with np.errstate(invalid="ignore"):
            out["contaminated_minus_clean_log_density"] = float(logd[checks["contamination"]]
                                                                - logd[checks["contamination_clean"]])
    if "reference" in checks:
        out["reference_recipe_log_density"] = float(logd[checks["reference"]])
        if lay.same_tokens:
            with np.errstate(invalid="ignore"):
                out["contaminated_minus_reference_log_density"] = float(logd[checks["contamination"]]
                                                                        - logd[checks["reference"]])
    return out


def estimate(models: pd.DataFrame, scores: pd.DataFrame, p: Params, *, benchmarks=None, D0=None,
             fits=None) -> dict:
    """Point estimates: per-model loss and score, both fits, the target densities (NaN + status where undefined)
    and the claim metrics. `fits`: (step-1 Fit, step-2 Fit) already made on the same families (the fits never see
    the targets), e.g. when only the targets change."""
    p = dataclasses.replace(p, D0=D0) if D0 is not None else p
    m = Matrices(models, scores, benchmarks)
    loss, score = m.aggregate()
    loss_fit, sig_fit = fits if fits is not None else fit_steps(models, loss, score, p)
    inverted = densing.effective_size(score, loss_fit.params, sig_fit.params, p.D0)
    logd = np.log(inverted.n_hat.to_numpy() / models.params.to_numpy(float))
    table = models.assign(loss=loss, score=score, loss_hat=inverted.loss_hat.to_numpy(),
                          n_hat=inverted.n_hat.to_numpy(), log_density=logd, density=np.exp(logd),
                          status=inverted.status.to_numpy(), held_out=held_out_mask(models, p.sigmoid_held_out))
    table.loc[table.role != "target", ["loss_hat", "n_hat", "log_density", "density", "status"]] = [
        np.nan, np.nan, np.nan, np.nan, None]
    return {"table": table, "loss_fit": loss_fit, "sigmoid_fit": sig_fit, "matrices": m, "D0": p.D0,
            "metrics": claim_metrics(models, loss, score, loss_fit.params, sig_fit.params, p, limits=True)}


def item_bootstrap(models: pd.DataFrame, est: dict, p: Params, *, refit: bool = True) -> pd.DataFrame:
    """Resample test items (within benchmarks, the same items for every model), recompute every model's loss and
    score, refit both steps (one start from the point fit) when `refit`, and recompute the claim metrics with the
    inversion's limits. One row per resample."""
    m, rng = est["matrices"], np.random.default_rng(p.seed)
    start = {"loss": est["loss_fit"].params, "sigmoid": est["sigmoid_fit"].params}
    layout, rows = Layout.of(models, p), []
    for _ in range(p.n_boot):
        loss, score = m.aggregate(m.resample(rng))
        if refit:
            loss_fit, sig_fit = fit_steps(models, loss, score, p, start=start)
            lp, sp = loss_fit.params, sig_fit.params
        else:
            lp, sp = start["loss"], start["sigmoid"]
        rows.append(claim_metrics(models, loss, score, lp, sp, p, limits=True, layout=layout))
    return pd.DataFrame(rows)


def interval(samples: pd.Series, level: float = 0.95) -> tuple[float | None, float | None]:
    """Percentile interval by order statistics (valid with the +-inf limits of undefined densities). Resamples
    where the quantity cannot be formed (NaN: two densities at the same limit) are left out; (None, None) when
    none can."""
    values = np.asarray(samples, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return None, None
    tail = (1 - level) / 2
    return (float(np.quantile(values, tail, method="inverted_cdf")),
            float(np.quantile(values, 1 - tail, method="inverted_cdf")))


LIMIT = 1e6      # an undefined ln density recorded at its limit (ln 0 or ln inf) as a finite stand-in


def recordable(value) -> float | None:
    """A metric value for the report: +-inf (a density at its limit) as +-LIMIT, NaN as None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(np.clip(value, -LIMIT, LIMIT))


# -- growth -----------------------------------------------------------------------------------------------------
def growth(table: pd.DataFrame, p: Params) -> dict:
    """The envelope of the growth targets (defined densities), the law ln rho_max = A t + B on it with bootstrap
    intervals (when it has >= 3 dates), and the permutation control over every growth target."""
    pool = table[(table.role == "target") & table.growth.astype(bool)]
    defined = pool[np.isfinite(pool.density)]
    env = densing.envelope(defined, date="t") if len(defined) else defined
    out = {"pool": pool, "envelope": env, "n_defined": len(defined), "n_pool": len(pool), "fit": None}
    slope, p_value = densing.growth_permutation_p(defined.t, defined.density, n_perm=p.n_perm, seed=p.seed)
    out.update(slope_all=slope, permutation_p=p_value)
    if env.t.nunique() >= 3:
        out["fit"] = densing.fit_growth(env, date="t", n_boot=p.n_boot, seed=p.seed)
        out["A"] = out["fit"].params["A"]
        out["A_lo"], out["A_hi"] = out["fit"].intervals.loc["A", ["lower", "upper"]]
    elif env.t.nunique() == 2:
        out["A"] = densing.envelope_slope(env.t, np.log(env.density))
        out["A_lo"] = out["A_hi"] = None
    else:
        out["A"] = out["A_lo"] = out["A_hi"] = None
    return out


# -- sensitivity ---------------------------------------------------------------------------------------------------
def with_reference(models: pd.DataFrame, family: str) -> pd.DataFrame:
    """`models` with the chosen reference family in the "reference" role: "primary" (as built) or "alt" (the
    second family takes the role, the first becomes "reference_unused"; step 2 then sees the second family too,
    when it includes the reference)."""
    if family == "primary":
        return models
    if family != "alt" or not (models.role == "reference_alt").any():
        raise ValueError(f"reference family must be 'primary' or 'alt' (with reference_alt models), got {family!r}")
    roles = {"reference": "reference_unused", "reference_alt": "reference"}
    return models.assign(role=[roles.get(r, r) for r in models.role])


def sensitivity(models: pd.DataFrame, scores: pd.DataFrame, p: Params, *, cache=None) -> pd.DataFrame:
    """The growth rate A (envelope law) and the reference-recipe density when the reference family, D0 and the
    benchmark subset change: one row per variant (both steps refitted for a subset or a family; D0 only changes the
    inversion). Cached like training runs (key: both frames' contents, the parameters, the source version; about
    50 s of refits on two cores at the cpu tier); `cache=False` computes without the cache."""
    if cache is False:
        return _sensitivity(models, scores, p)
    cache = cache if cache is not None else default_cache()
    args = {"models": frame_digest(models.astype(str)), "scores": frame_digest(scores.astype(str)),
            "params": dataclasses.asdict(p)}
    return cache.get_or_compute("densing-sensitivity", args, lambda: _sensitivity(models, scores, p))


def _sensitivity(models: pd.DataFrame, scores: pd.DataFrame, p: Params) -> pd.DataFrame:
    rows = []
    subsets = [None] + [[b] for b in sorted(scores.benchmark.unique())] if scores.benchmark.nunique() > 1 else [None]
    families = ["primary"] + (["alt"] if (models.role == "reference_alt").any() else [])
    for family in families:
        chosen = with_reference(models, family)
        for subset in subsets:
            for d0 in p.D0_sensitivity:
                key = {"reference": family, "benchmarks": "+".join(subset or ["all"]), "D0": d0}
                try:
                    est = estimate(chosen, scores, p, benchmarks=subset, D0=d0)
                except (ValueError, RuntimeError) as err:      # a subset too flat to fit: say so, do not hide it
                    rows.append({**key, "error": str(err)})
                    continue
                g = growth(est["table"], dataclasses.replace(p, n_perm=min(p.n_perm, 500),
                                                              n_boot=min(p.n_boot, 100)))
                rows.append({**key, "A": g["A"], "A_lo": g.get("A_lo"), "A_hi": g.get("A_hi"),
                             "doubling_days": densing.doubling_time(g["A"]) if g["A"] else None,
                             "envelope_points": len(g["envelope"]), "defined": g["n_defined"], "of": g["n_pool"],
                             "permutation_p": g["permutation_p"],
                             "reference_recipe_log_density": est["metrics"].get("reference_recipe_log_density"),
                             "error": None})
    return pd.DataFrame(rows)


def sensitivity_by_factor(sens: pd.DataFrame, p: Params) -> pd.DataFrame:
    """For each factor (reference family, D0, benchmark subset): the growth rate A over its variants with the
    other two at the main setting (primary family, all benchmarks, D0 = p.D0): A_spread = max A - min A over the
    variants where A is defined, `undefined` counts those where it is not (fewer than 3 envelope dates with defined
    densities, or a failed fit). Then the same spread in every setting of the other two factors where at least two
    variants are defined: `paired_settings` of them, the largest spread `A_spread_max` and the largest ratio of the
    variants' rates `A_ratio_max`."""
    main = {"reference": "primary", "benchmarks": "all", "D0": p.D0}
    a_all = pd.to_numeric(sens.get("A", pd.Series(math.nan, index=sens.index)), errors="coerce")
    sens = sens.assign(A=a_all)
    rows = []
    for factor in main:
        others = [k for k in main if k != factor]
        variants = sens[np.logical_and.reduce([sens[k] == main[k] for k in others])]
        a = variants.A
        ok = a.notna()
        spreads, ratios = [], []
        for _, cell in sens.groupby(others):
            defined = cell.A.dropna()
            if len(defined) >= 2:
                spreads.append(float(defined.max() - defined.min()))
                ratios.append(float(defined.max() / defined.min()) if defined.min() > 0 else math.nan)
        rows.append({"factor": factor, "variants": len(variants), "undefined": int((~ok).sum()),
                     "A_values": ", ".join(f"{v}: {x:.4g}" if pd.notna(x) else
                                           f"{v}: undefined ({d} of {n} defined)"
                                           for v, x, d, n in zip(variants[factor], a, variants.get("defined", a),
                                                                 variants.get("of", a))),
                     "A_min": float(a[ok].min()) if ok.any() else math.nan,
                     "A_max": float(a[ok].max()) if ok.any() else math.nan,
                     "A_spread": float(a[ok].max() - a[ok].min()) if ok.sum() > 1 else math.nan,
                     "paired_settings": len(spreads), "A_spread_max": max(spreads) if spreads else math.nan,
                     "A_ratio_max": max(ratios) if ratios else math.nan})
    return pd.DataFrame(rows)


# -- evidence for the claims -----------------------------------------------------------------------------------
def real_release_dates(table: pd.DataFrame) -> bool:
    """True when every growth target is a released model (a hub id): its date is its release date. Targets built
    here by known interventions carry dates the design chose, so a growth over them is planted, not observed."""
    pool = table[(table.role == "target") & table.get("growth", pd.Series(False, index=table.index)).fillna(False)
                 .astype(bool)]
    if not len(pool) or "pretrained" not in pool:
        return False
    return bool(pool.pretrained.notna().all())


def claim_evidence(est: dict, boot: pd.DataFrame, g: dict | None, p: Params) -> dict[str, dict]:
    """The metrics the registry's rules read, as `Report.record` keyword arguments (name, value, lo, hi, note),
    from the point estimates, the item bootstrap and the growth analysis. The notebook records them and the
    claim tests push simulated worlds through this same function."""
    table, metrics = est["table"], est["metrics"]
    out: dict[str, dict] = {}

    def with_interval(name, note=""):
        if name in metrics:
            lo, hi = interval(boot[name]) if name in boot else (None, None)
            out[name] = {"name": name, "value": recordable(metrics[name]), "lo": recordable(lo),
                         "hi": recordable(hi), "note": note}

    held = table.held_out.to_numpy(bool)
    fit_roles = ["reference", "sigmoid"] if p.sigmoid_includes_reference else ["sigmoid"]
    fit_set = table[table.role.isin(fit_roles) & ~held]
    out["sigmoid_fit_score_span"] = {"name": "sigmoid_fit_score_span",
                                     "value": float(fit_set.score.max() - fit_set.score.min()),
                                     "note": "score range of the step-2 fit set: below 0.1 the sigmoid is not "
                                             "identified"}
    with_interval("heldout_error_minus_constant",
                  f"held-out |error| {metrics.get('heldout_abs_error', math.nan):.3f} in score units, minus the "
                  f"fit set's mean score's")
    with_interval("reference_recipe_log_density", "ln density of the reference-recipe model at D0: known answer 0")
    with_interval("pruned_minus_source_log_density", "mean over (pruned, source) pairs; negative: less dense")
    with_interval("contaminated_minus_reference_log_density", "known answer: positive (contamination inflates)")
    with_interval("contaminated_minus_clean_log_density",
                  f"against the dose-matched clean twin ({p.contamination_copies} copies of fresh items): what the "
                  f"test items themselves inflate; known answer positive")
    with_interval("contaminated_minus_clean_score",
                  "the same on the benchmark score: at equal parameters density rises with score, so this paired "
                  "difference has the density difference's sign without the fits' extrapolation near the ceiling")
    targets = table[table.role == "target"].set_index("model")
    if "source" in targets:
        pairs = targets[targets.source.notna()]
        defined = sum(bool(np.isfinite(r.log_density) and np.isfinite(targets.log_density[r.source]))
                      for r in pairs.itertuples())
        out["compression_pairs_defined"] = {"name": "compression_pairs_defined", "value": int(defined),
                                            "note": f"of {len(pairs)} (pruned, source) pairs"}
    if g is not None:
        out["growth_models_defined"] = {"name": "growth_models_defined", "value": int(g["n_defined"]),
                                        "note": f"of {g['n_pool']} growth targets"}
        out["growth_dates_real"] = {"name": "growth_dates_real", "value": real_release_dates(table),
                                    "note": "every growth target is a released model (hub id) with its real date; "
                                            "models built here carry dates the design chose"}
        if g["A"] is not None and not math.isnan(g["A"]):
            out["growth_rate_per_day"] = {
                "name": "growth_rate_per_day", "value": float(g["A"]), "lo": g.get("A_lo"), "hi": g.get("A_hi"),
                "note": f"envelope of {len(g['envelope'])} points; doubling {densing.doubling_time(g['A']):.0f} "
                        f"days; paper: A ~ 0.0073/day (comparison only)"}
        if not math.isnan(g["permutation_p"]):
            out["growth_permutation_p"] = {
                "name": "growth_permutation_p", "value": float(g["permutation_p"]),
                "note": f"slope of ln density on date over all defined growth targets {g['slope_all']:.4g}/day, "
                        f"{p.n_perm} permutations"}
    return out
