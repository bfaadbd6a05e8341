"""The Shannon scaling law under perturbation: the parameter set of the `shannon` notebook and the steps of its
argument that are not mechanisms: the extrapolation protocol and the evidence each claim reads (`basin_evidence`,
`aic_gap_evidence`, `extrapolation_evidence`, `exponent_evidence`, `damage_evidence`), shared by the notebook and
the controls (`caplab.controls.shannon`).

The mechanisms live in `caplab.science.perturbation_scan` (perturbed losses at every checkpoint, basins, the
quantization damage trend) and the laws and fits in `caplab.stats`.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from scipy import stats as st

from caplab.papers import _types as T
from caplab.params import Tier

INPUTS = {"N": "params_non_embedding", "D": "tokens"}
CLASSICAL = ("Kaplan", "Chinchilla")
# The perturbation-aware laws, fitted per setting on the same rows as the Shannon law: within one setting the
# perturbation's strength (bits P, noise sigma X) is a constant, so its exponent is not identified and is held
# (P = X = 1, the `unit` column): QiD's term is then k D^beta_q / N^alpha_q, Precision's C_T e^-1 D^gamma_D /
# N^gamma_N (the same form: per setting the two laws coincide) and the generic term d N^a D^b (signed exponents)
AWARE = {"QiD (Chinchilla + QiD)": {"fixed": {"gamma_q": 0.0}},
         "Precision (Chinchilla + PTQ)": {"fixed": {"gamma_post": 1.0}},
         "Chinchilla + perturbation term": {"fixed": {"g": 0.0}}}
INPUTS_AWARE = {**INPUTS, "P": "unit", "X": "unit"}
BASELINES = (*CLASSICAL, *AWARE)
WITHOUT_D = "Shannon without d D^delta"


@dataclasses.dataclass(frozen=True)
class Params:
    """shannon's parameters (the notebook's `parameters` cell; its defaults are the cpu tier's values)."""
    family: T.Family                 # tiny models trained here with checkpoints, or a hub family (Pythia)
    corpus_task: T.Task              # training text (a held-out 5 % measures every loss)
    shift_task: T.Task               # the SFT perturbation's data (a shifted distribution)
    block_size: T.Count
    eval_blocks: T.Count             # held-out blocks on which every loss is measured
    train_config: T.Train            # TrainConfig of the family; {} for a hub family
    checkpoints: T.Checkpoints       # log-spaced token counts {first, last, n}; {} for a hub family
    noise_sigmas: list[float]        # Gaussian weight noise, in units of each tensor's RMS
    perturbation_seeds: T.Seeds      # draws of each random perturbation (noise, SFT data order): at least 2
    quant_bits: list[T.Count]        # round-to-nearest, per-row absmax scales
    sft: T.Train                     # TrainConfig of the SFT perturbation
    extrapolation_checkpoint: int    # fit on checkpoints up to this index (0-based) of the smaller models
    fit_starts: T.Count
    fit_maxiter: T.Count             # L-BFGS-B iterations per start (FITTING.md: to convergence; smoke stops early)
    huber_delta: T.positive(float)
    bootstrap_samples: T.Count       # resamples for the claim intervals (settings; held-out rows)
    fit_bootstrap: T.Count           # per-fit parameter bootstrap: warm-started refits of each Shannon fit
    seed: int
    tier: Tier = "cpu"

    def __post_init__(self):
        if len(set(self.perturbation_seeds)) < 2 or len(set(self.perturbation_seeds)) < len(self.perturbation_seeds):
            raise ValueError(f"perturbation_seeds: give at least 2 distinct seeds (a random perturbation's own draw "
                             f"is part of its noise), got {self.perturbation_seeds}")
        first = warmup_tokens(self.train_config, self.block_size)
        if self.checkpoints and self.checkpoints.get("first", 0) <= first:
            raise ValueError(f"checkpoints.first = {self.checkpoints.get('first')} lies inside the warm-up "
                             f"({self.train_config.get('warmup_steps')} steps x {self.train_config.get('batch_size')} "
                             f"blocks x {self.block_size} tokens = {first} tokens): every checkpoint must follow it")


def warmup_tokens(train_config: dict, block_size: int) -> int:
    """Tokens seen during the learning-rate warm-up of a family trained here (0 for a hub family)."""
    return int(train_config.get("warmup_steps", 0)) * int(train_config.get("batch_size", 0)) * int(block_size)


def corpus_split(task, family: dict, seed: int = 0, held_out: float = 0.05):
    """(training text, held-out text) of the corpus: a family trained here holds out `held_out` of it (seeded); a
    hub family is already trained, so all of the corpus is held-out evaluation text (training part None)."""
    if family.get("kind") == "hub":
        return None, task
    return task.split(held_out, seed=seed)


def evaluation_blocks(held, tokenizer, block_size: int, n_blocks: int):
    """The first `n_blocks` blocks of the held-out text, or a ValueError naming the shortfall (a slice with fewer
    blocks than asked used to be taken silently: 16-34 blocks of WikiText-2 where 64 were asked)."""
    blocks = held.tokens(tokenizer, block_size=block_size)
    if len(blocks) < n_blocks:
        raise ValueError(f"the held-out text gives {len(blocks)} blocks of {block_size} tokens, fewer than "
                         f"eval_blocks = {n_blocks}: lower eval_blocks or block_size, or use more text")
    return blocks.head(n_blocks)


def with_setting(losses: pd.DataFrame) -> pd.DataFrame:
    """Name each row's perturbation setting: "none", "noise 0.3", "quant 2", ..."""
    return losses.assign(setting=losses.perturbation + np.where(losses.perturbation == "none", "",
                                                                " " + losses.level.map("{:g}".format)))


def extrapolation_protocol(losses: pd.DataFrame, checkpoint: int) -> tuple[pd.DataFrame, float]:
    """(rows, largest size): the smaller models up to checkpoint index `checkpoint` (0-based, over the distinct
    target token counts) are fitted, and the largest model after it is predicted (`fit_row` names the fitted rows)."""
    largest = losses.params_non_embedding.max()
    targets = np.sort(losses.target_tokens.unique())
    if not 0 <= checkpoint < len(targets) - 1:
        raise ValueError(f"extrapolation_checkpoint {checkpoint} must leave later checkpoints to predict: "
                         f"0 <= it < {len(targets) - 1}")
    cut = targets[checkpoint]
    rows = losses[((losses.params_non_embedding < largest) & (losses.target_tokens <= cut))
                  | ((losses.params_non_embedding == largest) & (losses.target_tokens > cut))]
    return rows.assign(fit_row=rows.params_non_embedding < largest), largest


def aic_gap(per_setting: pd.DataFrame, law: str = "Shannon", baselines=BASELINES) -> pd.Series:
    """Per perturbed setting, AIC(law) minus the best baseline's AIC (negative: `law` fits better)."""
    aic = per_setting.pivot(index="setting", columns="law", values="aic")
    perturbed = [s for s in aic.index if s != "none"]
    return (aic[law] - aic[list(baselines)].min(axis=1)).loc[perturbed]


def with_unit(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with the constant `unit` column the aware laws read as their perturbation strength (INPUTS_AWARE)."""
    return frame.assign(unit=1.0)


def relative_aic(per_setting: pd.DataFrame, law: str = "Shannon", baselines=BASELINES) -> pd.DataFrame:
    """Per setting, each law's AIC minus its own clean AIC, and `law`'s advantage over the best baseline minus that
    advantage on the clean setting (negative: the advantage is specific to perturbation)."""
    aic = per_setting.pivot(index="setting", columns="law", values="aic")
    if "none" not in aic.index:
        raise ValueError("relative_aic needs the clean setting 'none'")
    out = aic.sub(aic.loc["none"], axis=1)
    gap = aic[law] - aic[[b for b in baselines if b in aic]].min(axis=1)
    out[f"{law}_advantage_minus_clean"] = gap - gap.loc["none"]
    return out


def fitted_aic(draws: pd.DataFrame, frame: pd.DataFrame, law: str = "Shannon", fixed=("b",)) -> pd.DataFrame:
    """Per setting, the AIC of the fit in `caplab.science.law_fits.bootstrap_groups`' draws (replicate -1) on the
    setting's rows of `frame` (log residuals, k = the law's parameters less `fixed`): the in-sample row the
    likelihood-ratio test needs, without fitting the law a second time."""
    from caplab.stats import laws
    from caplab.stats.fitting import information_criteria
    chosen = laws.LAWS[law]
    k = len(chosen.param_names) - len(fixed)
    rows = []
    for _, fit in draws[draws.replicate == -1].iterrows():
        part = frame[frame.setting == fit.setting]
        x = {name: part[column].to_numpy(float) for name, column in INPUTS.items()}
        predicted = chosen.predict({p: fit[p] for p in chosen.param_names}, x)
        residual = np.log(part.loss.to_numpy(float)) - np.log(predicted)
        rows.append({"setting": fit.setting, "law": law, "k": k, "n": len(part),
                     "aic": information_criteria(residual, k)[0]})
    return pd.DataFrame(rows)


def nested_test(in_sample: pd.DataFrame, nested: str, full: str = "Shannon") -> pd.DataFrame:
    """Per setting, the likelihood-ratio test of `full` against `nested` fitted on the same rows: LR = n ln(RSS_nested
    / RSS_full) (the AIC difference plus 2 x the parameter difference), p from chi^2 with that many degrees of
    freedom."""
    from scipy import stats as st
    aic = in_sample.pivot(index="setting", columns="law", values="aic")
    k = in_sample.pivot(index="setting", columns="law", values="k")
    df = (k[full] - k[nested]).astype(float)
    lr = (aic[nested] - aic[full] + 2 * df).clip(lower=0.0)
    return pd.DataFrame({"lr": lr, "df": df, "p_value": st.chi2.sf(lr, df)}).rename_axis("setting").reset_index()


def d_term_test(in_sample: pd.DataFrame, level: float = 0.05) -> pd.DataFrame:
    """Per setting, the likelihood-ratio test of the d D^delta term: the Shannon law against the same law without
    it (`WITHOUT_D`, d = 0: two parameters fewer) on the same rows; `identified` where p < `level` (only there
    does the data say anything about delta)."""
    out = nested_test(in_sample, WITHOUT_D)
    out["identified"] = out.p_value < level
    return out


def exponents(fits: dict) -> pd.DataFrame:
    """One row per setting of Shannon-law fits: alpha, beta, gamma, delta, R^2, and delta - beta, gamma - alpha."""
    table = pd.DataFrame([{"setting": s, **{k: f.params[k] for k in ("alpha", "beta", "gamma", "delta")},
                           "r2": f.r2(), "converged": f.converged} for s, f in fits.items()])
    table["delta_minus_beta"] = table.delta - table.beta
    table["gamma_minus_alpha"] = table.gamma - table.alpha
    return table


def split_blocks(losses: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """(losses without the `block_losses` column, blocks: rows x evaluation blocks)."""
    if "block_losses" not in losses:
        raise ValueError("the scan has no per-block losses: run it with blocks=True")
    blocks = np.stack([np.asarray(b, dtype=float) for b in losses.block_losses])
    return losses.drop(columns="block_losses").reset_index(drop=True), blocks


def mean_over_draws(losses: pd.DataFrame) -> pd.DataFrame:
    """One row per (setting, model, checkpoint): the loss averaged over the perturbation's draws (what the laws
    fit), its standard error the draws' own spread combined with the evaluation error."""
    keys = ["setting", "perturbation", "level", "model", "params_non_embedding", "target_tokens", "tokens"]
    grouped = losses.groupby(keys, sort=False)
    out = grouped.agg(loss=("loss", "mean"), eval_se=("loss_se", "mean"), draws=("loss", "size"),
                      draw_sd=("loss", "std")).reset_index()
    out["loss_se"] = np.sqrt(out.eval_se ** 2 + out.draw_sd.fillna(0) ** 2 / out.draws)
    return out.drop(columns="eval_se")


def basin_evidence(settings: pd.DataFrame, clean: str = "none") -> dict:
    """The basin claim's evidence from `caplab.science.basin_test.basin_test`'s settings table: basin_settings
    (perturbed settings discovered, false-discovery rate controlled), perturbed_settings (how many were tested),
    clean_basin (1 if the clean setting's own series read as a basin: the control), and the most significant
    perturbed setting's deepest series minus the same clean series (value, lo, hi)."""
    perturbed = settings[settings.setting != clean]
    if perturbed.empty or (settings.setting == clean).sum() != 1:
        raise ValueError("basin_evidence needs the clean setting and at least one perturbed setting")
    top = perturbed.sort_values("p_value", kind="stable").iloc[0]
    return {"basin_settings": int(perturbed.basin.sum()), "perturbed_settings": len(perturbed),
            "clean_basin": int(settings.loc[settings.setting == clean, "basin"].iloc[0]),
            "basin_deepest_minus_clean": (float(top.deepest_minus_clean), float(top.deepest_minus_clean_lo),
                                          float(top.deepest_minus_clean_hi))}


def carry_forward(held: pd.DataFrame, fitted: pd.DataFrame, checkpoint: int) -> pd.Series:
    """The carry-forward prediction of each held-out row: the largest model's own loss, in the same setting, at
    the last fitted checkpoint (index `checkpoint`), held flat (no law: what a practitioner reads off the curve)."""
    targets = np.sort(fitted.target_tokens.unique())
    cut = targets[checkpoint]
    largest = fitted.params_non_embedding.max()
    last = fitted[(fitted.params_non_embedding == largest) & (fitted.target_tokens == cut)].set_index("setting").loss
    return held.setting.map(last).rename("carry_forward")


def _pointwise_loglik(residual: np.ndarray) -> np.ndarray:
    """Per-point Gaussian log-likelihood at the profiled variance RSS/n (constants dropped): their sum times -2 is
    the n ln(RSS/n) of `information_criteria`."""
    var = float(np.mean(residual ** 2))
    return -0.5 * np.log(var) - residual ** 2 / (2 * var)


def aic_gap_evidence(per_setting: pd.DataFrame, points: pd.DataFrame, frame: pd.DataFrame, law: str = "Shannon",
                     baselines=BASELINES, cluster: str = "model", level: float = 0.95) -> dict:
    """AIC(law) - AIC(best baseline) per setting, with an interval from the fits themselves: the gap is a sum of
    per-point log-likelihood differences (Vuong) plus the parameter penalty, and its variance is estimated from the
    sums within clusters (the points of one model share its misfit: the model is the unit), t interval with
    clusters - 1 degrees of freedom. Three readings: aic_gap_clean, aic_gap_perturbed (mean over perturbed
    settings) and aic_gap_perturbed_minus_clean (the advantage specific to perturbation); the clusters are paired
    across settings, so their correlation is in the interval."""
    aic = per_setting.pivot(index="setting", columns="law", values="aic")
    k = per_setting.pivot(index="setting", columns="law", values="k")
    if "none" not in aic.index:
        raise ValueError("aic_gap_evidence needs the clean setting 'none' as the control")
    perturbed = [s for s in aic.index if s != "none"]
    if not perturbed:
        raise ValueError("aic_gap_evidence needs at least one perturbed setting")
    units = frame[cluster]
    contributions, penalty = {}, {}
    for setting in aic.index:
        best = aic.loc[setting, list(baselines)].astype(float).idxmin()
        rows = points[points.setting == setting]
        mine, theirs = rows[rows.law == law], rows[rows.law == best]
        g = -2 * (_pointwise_loglik(mine.residual.to_numpy()) - _pointwise_loglik(theirs.residual.to_numpy()))
        contributions[setting] = pd.Series(g, index=units.loc[mine.row].to_numpy()).groupby(level=0).sum()
        penalty[setting] = 2.0 * float(k.loc[setting, law] - k.loc[setting, best])
    clusters = pd.DataFrame(contributions).fillna(0.0)
    if len(clusters) < 2:
        raise ValueError(f"aic_gap_evidence needs at least two {cluster} clusters")
    t = float(st.t.ppf(0.5 + level / 2, len(clusters) - 1))

    def reading(weights: dict):
        z = sum(w * clusters[s] for s, w in weights.items())
        value = float(z.sum()) + sum(w * penalty[s] for s, w in weights.items())
        half = t * float(np.sqrt(len(z) * z.var(ddof=1)))
        return value, value - half, value + half

    share = {s: 1.0 / len(perturbed) for s in perturbed}
    return {"aic_gap_clean": reading({"none": 1.0}), "aic_gap_perturbed": reading(share),
            "aic_gap_perturbed_minus_clean": reading({**share, "none": -1.0})}


def extrapolation_evidence(per_setting: pd.DataFrame, held: pd.DataFrame, law: str = "Shannon",
                           baselines=BASELINES, *, n: int, rng: np.random.Generator,
                           level: float = 0.95) -> dict:
    """The extrapolation claim's evidence. Positive control: extrapolation_r2_clean_best, the best law's R^2 on the
    clean setting's held-out rows (if no law extrapolates clean data, a failure under perturbation says nothing).
    On the perturbed settings' held-out rows pooled: extrapolation_r2_<law> and
    extrapolation_r2_<law>_minus_best_baseline, with a paired percentile bootstrap over held-out rows (one index
    row for every law; the best baseline chosen within each resample). With a `carry_forward` column in `held`
    (`carry_forward`): extrapolation_log_rmse_<law>_minus_carry_forward, the law's RMSE of log loss minus that of
    carrying the largest model's last fitted loss forward (negative: the law predicts the later checkpoints better
    than a flat line), same paired bootstrap."""
    clean = per_setting[per_setting.setting == "none"]
    if clean.empty or "r2_extrapolation" not in clean:
        raise ValueError("extrapolation_evidence needs the clean setting's extrapolation")
    rows = held[held.setting != "none"]
    laws = [law, *baselines]
    wide = {name: rows[rows.law == name] for name in laws}
    y = np.log(wide[law].observed.to_numpy(float))
    pred = np.stack([np.log(wide[name].predicted.to_numpy(float)) for name in laws])

    def r2(index):
        obs = y[index]
        tot = np.sum((obs - obs.mean(axis=-1, keepdims=True)) ** 2, axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):      # a resample of one repeated row: no R^2 (dropped)
            return 1 - np.sum((obs[None] - pred[:, index]) ** 2, axis=-1) / tot

    from caplab.stats.resampling import percentile_interval, resample_indices
    point = r2(np.arange(len(y)))
    indices = resample_indices(len(y), n, rng)
    boots = np.stack([r2(i) for i in indices])       # (n, laws)
    ok = np.isfinite(boots).all(axis=1)
    diff = boots[ok, 0] - boots[ok, 1:].max(axis=1)
    out = {"extrapolation_r2_clean_best": float(clean.r2_extrapolation.max()),
           f"extrapolation_r2_{law.lower()}": (float(point[0]), *percentile_interval(boots[ok, 0], level)),
           f"extrapolation_r2_{law.lower()}_minus_best_baseline":
               (float(point[0] - point[1:].max()), *percentile_interval(diff, level))}
    if "carry_forward" in wide[law]:
        flat = np.log(wide[law].carry_forward.to_numpy(float))

        def rmse_gap(index):
            return (np.sqrt(np.mean((y[index] - pred[0, index]) ** 2, axis=-1))
                    - np.sqrt(np.mean((y[index] - flat[index]) ** 2, axis=-1)))

        out[f"extrapolation_log_rmse_{law.lower()}_minus_carry_forward"] = (
            float(rmse_gap(np.arange(len(y)))), *percentile_interval(rmse_gap(indices), level))
    return out


def d_term_share(params: dict, frame: pd.DataFrame) -> float:
    """The share of the Shannon loss that its d D^delta term carries at the largest D of `frame`: the mean over
    that checkpoint's models of 1 - L(d = 0) / L. Where it is small, delta is not identified."""
    from caplab.stats import laws
    top = frame[frame.tokens == frame.tokens.max()]
    x = {"N": top.params_non_embedding.to_numpy(float), "D": top.tokens.to_numpy(float)}
    full = laws.SHANNON.predict(params, x)
    without = laws.SHANNON.predict({**params, "d": 1e-300}, x)
    return float(np.mean(1 - without / full))


def exponent_evidence(draws: pd.DataFrame, frame: pd.DataFrame, d_test: pd.DataFrame | None = None,
                      level: float = 0.95) -> tuple[dict, pd.DataFrame]:
    """delta - beta and gamma - alpha with per-fit intervals, from `caplab.science.law_fits.bootstrap_groups` of
    the Shannon law by setting (replicate -1: the fit; 0..n-1: warm-started refits on resamples of its points);
    replicate b of the perturbed median takes every setting's b-th refit. `d_test` (`d_term_test`): the judged
    readings use only the perturbed settings where the d D^delta term is identified (all perturbed settings if none
    is, then only reported). Readings: d_term_identified_settings (how many perturbed settings' d-term passes the
    likelihood-ratio test), shannon_delta_minus_beta (median over those settings), shannon_delta_minus_beta_clean,
    shannon_delta_minus_beta_perturbed_minus_clean, shannon_gamma_minus_alpha, and d_term_share_perturbed /
    _clean (the d D^delta term's share of the fitted loss at the largest D, `d_term_share`). Also the per-setting
    table with each fit's own interval, share and test."""
    from caplab.stats.resampling import percentile_interval
    draws = draws.assign(delta_minus_beta=draws.delta - draws.beta, gamma_minus_alpha=draws.gamma - draws.alpha)
    fits = draws[draws.replicate == -1].set_index("setting")
    reps = draws[draws.replicate >= 0]
    if "none" not in fits.index:
        raise ValueError("exponent_evidence needs the clean setting 'none' as the control")
    perturbed = [s for s in fits.index if s != "none"]
    if not perturbed:
        raise ValueError("exponent_evidence needs at least one perturbed setting")
    names = ("delta_minus_beta", "gamma_minus_alpha")
    wide = {name: reps.pivot(index="replicate", columns="setting", values=name) for name in names}
    if len(wide[names[0]]) < 2:
        raise ValueError("exponent_evidence needs at least 2 bootstrap refits per setting")
    rows = []
    for setting, fit in fits.iterrows():
        params = {k: fit[k] for k in ("a", "b", "c", "d", "e", "alpha", "beta", "gamma", "delta")}
        rows.append({"setting": setting, **{k: params[k] for k in ("alpha", "beta", "gamma", "delta")},
                     **{name: fit[name] for name in names},
                     **{f"{name}_{end}": v for name in names
                        for end, v in zip(("lower", "upper"), percentile_interval(wide[name][setting], level))},
                     "d_term_share": d_term_share(params, frame[frame.setting == setting]),
                     "r2": fit.r2, "converged": bool(fit.converged)})
    table = pd.DataFrame(rows).set_index("setting")
    if d_test is not None:
        test = d_test.set_index("setting")
        missing = [s for s in table.index if s not in test.index]
        if missing:
            raise ValueError(f"exponent_evidence: the d-term test lacks setting(s) {missing}")
        table = table.join(test[["lr", "p_value", "identified"]].rename(columns={"lr": "d_term_lr",
                                                                               "p_value": "d_term_p",
                                                                               "identified": "d_term_identified"}))
        judged = [s for s in perturbed if bool(table.loc[s, "d_term_identified"])]
    else:
        judged = []
    chosen = judged or perturbed

    def reading(point, replicates):
        # the percentile interval of few refits can miss the point estimate itself: widen it to hold the point
        lo, hi = percentile_interval(np.asarray(replicates, dtype=float), level)
        return float(point), min(lo, float(point)), max(hi, float(point))

    out = {"d_term_identified_settings": len(judged)}
    dmb = float(np.median(table.loc[chosen, "delta_minus_beta"]))
    dmb_reps = wide["delta_minus_beta"][chosen].median(axis=1).to_numpy()
    clean_point, clean_reps = float(table.loc["none", "delta_minus_beta"]), wide["delta_minus_beta"]["none"].to_numpy()
    out["shannon_delta_minus_beta"] = reading(dmb, dmb_reps)
    out["shannon_delta_minus_beta_clean"] = reading(clean_point, clean_reps)
    out["shannon_delta_minus_beta_perturbed_minus_clean"] = reading(dmb - clean_point, dmb_reps - clean_reps)
    out["shannon_gamma_minus_alpha"] = reading(float(np.median(table.loc[chosen, "gamma_minus_alpha"])),
                                               wide["gamma_minus_alpha"][chosen].median(axis=1).to_numpy())
    out["d_term_share_perturbed"] = float(np.median(table.loc[perturbed, "d_term_share"]))
    out["d_term_share_clean"] = float(table.loc["none", "d_term_share"])
    return out, table.reset_index()


def damage_evidence(losses: pd.DataFrame, bits: int = 2) -> dict:
    """The quantization claim's evidence: the mean over models of each model's slope of the `bits`-bit damage
    against log tokens, t interval over models (`perturbation_scan.damage_slopes`), and the same slope per model
    divided by that model's clean loss drop per e-fold of tokens (reported)."""
    from caplab.science.perturbation_scan import damage_slopes
    trend = damage_slopes(losses, "quant", bits)
    return {f"quant{bits}_damage_slope_log_tokens": (trend["slope"], trend["lo"], trend["hi"]),
            f"quant{bits}_damage_slope_per_clean_drop": trend["normalised"], "trend": trend}
