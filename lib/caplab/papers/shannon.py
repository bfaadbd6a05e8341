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
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from caplab.papers import _types as T
from caplab.params import Tier

INPUTS = {"N": "params_non_embedding", "D": "tokens"}


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
    quant_bits: list[T.Count]        # round-to-nearest, per-row absmax scales
    sft: T.Train                     # TrainConfig of the SFT perturbation
    extrapolation_checkpoint: int    # fit on checkpoints up to this index (0-based) of the smaller models
    fit_starts: T.Count
    huber_delta: T.positive(float)
    bootstrap_samples: T.Count       # resamples for the claim intervals (settings; held-out rows)
    fit_bootstrap: T.Count           # per-fit parameter bootstrap: warm-started refits of each Shannon fit
    seed: int
    tier: Tier = "cpu"


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
    target token counts) are fitted, and the largest model after it is predicted."""
    largest = losses.params_non_embedding.max()
    targets = np.sort(losses.target_tokens.unique())
    if not 0 <= checkpoint < len(targets) - 1:
        raise ValueError(f"extrapolation_checkpoint {checkpoint} must leave later checkpoints to predict: "
                         f"0 <= it < {len(targets) - 1}")
    cut = targets[checkpoint]
    rows = losses[((losses.params_non_embedding < largest) & (losses.target_tokens <= cut))
                  | ((losses.params_non_embedding == largest) & (losses.target_tokens > cut))]
    return rows, largest


def aic_gap(per_setting: pd.DataFrame, law: str = "Shannon", baselines=("Kaplan", "Chinchilla")) -> pd.Series:
    """Per perturbed setting, AIC(law) minus the best baseline's AIC (negative: `law` fits better)."""
    aic = per_setting.pivot(index="setting", columns="law", values="aic")
    perturbed = [s for s in aic.index if s != "none"]
    return (aic[law] - aic[list(baselines)].min(axis=1)).loc[perturbed]


def exponents(fits: dict) -> pd.DataFrame:
    """One row per setting of Shannon-law fits: alpha, beta, gamma, delta, R^2, and delta - beta, gamma - alpha."""
    table = pd.DataFrame([{"setting": s, **{k: f.params[k] for k in ("alpha", "beta", "gamma", "delta")},
                           "r2": f.r2(), "converged": f.converged} for s, f in fits.items()])
    table["delta_minus_beta"] = table.delta - table.beta
    table["gamma_minus_alpha"] = table.gamma - table.alpha
    return table


def basin_evidence(found: pd.DataFrame, q: float = 0.05, level: float = 0.95) -> dict:
    """Basins read with the false-discovery rate controlled (Benjamini-Hochberg at `q` over the perturbed series,
    and separately over the clean series, of the `basins` table with its `p_value`), against the clean control:
    perturbed_basins and clean_basins (discoveries; perturbed_series and clean_series, how many were tested), and basin_rate_perturbed_minus_clean, the difference of the
    discovery rates with Newcombe's hybrid score interval (Wilson intervals of each rate)."""
    out, rates = {}, {}
    for name, rows in (("perturbed", found[found.perturbation != "none"]), ("clean", found[found.perturbation == "none"])):
        if len(rows) == 0:
            raise ValueError(f"no {name} series to read basins from")
        hits = int(multipletests(rows.p_value.to_numpy(float), alpha=q, method="fdr_bh")[0].sum())
        lo, hi = proportion_confint(hits, len(rows), alpha=1 - level, method="wilson")
        out[f"{name}_basins"] = hits
        rates[name] = (hits / len(rows), float(lo), float(hi), len(rows))
    (p1, l1, u1, n1), (p2, l2, u2, n2) = rates["perturbed"], rates["clean"]
    diff = p1 - p2
    out["basin_rate_perturbed_minus_clean"] = (diff, diff - float(np.hypot(p1 - l1, u2 - p2)),
                                               diff + float(np.hypot(u1 - p1, p2 - l2)))
    out["perturbed_series"], out["clean_series"] = n1, n2
    out["basin_excess_over_clean"] = out["perturbed_basins"] - p2 * n1
    return out


def _pointwise_loglik(residual: np.ndarray) -> np.ndarray:
    """Per-point Gaussian log-likelihood at the profiled variance RSS/n (constants dropped): their sum times -2 is
    the n ln(RSS/n) of `information_criteria`."""
    var = float(np.mean(residual ** 2))
    return -0.5 * np.log(var) - residual ** 2 / (2 * var)


def aic_gap_evidence(per_setting: pd.DataFrame, points: pd.DataFrame, frame: pd.DataFrame, law: str = "Shannon",
                     baselines=("Kaplan", "Chinchilla"), cluster: str = "model", level: float = 0.95) -> dict:
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
                           baselines=("Kaplan", "Chinchilla"), *, n: int, rng: np.random.Generator,
                           level: float = 0.95) -> dict:
    """The extrapolation claim's evidence. Positive control: extrapolation_r2_clean_best, the best law's R^2 on the
    clean setting's held-out rows (if no law extrapolates clean data, a failure under perturbation says nothing).
    On the perturbed settings' held-out rows pooled: extrapolation_r2_<law> and
    extrapolation_r2_<law>_minus_best_baseline, with a paired percentile bootstrap over held-out rows (one index
    row for every law; the best baseline chosen within each resample)."""
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
        return 1 - np.sum((obs[None] - pred[:, index]) ** 2, axis=-1) / tot

    from caplab.stats.resampling import percentile_interval, resample_indices
    point = r2(np.arange(len(y)))
    boots = np.stack([r2(i) for i in resample_indices(len(y), n, rng)])       # (n, laws)
    ok = np.isfinite(boots).all(axis=1)
    diff = boots[ok, 0] - boots[ok, 1:].max(axis=1)
    return {"extrapolation_r2_clean_best": float(clean.r2_extrapolation.max()),
            f"extrapolation_r2_{law.lower()}": (float(point[0]), *percentile_interval(boots[ok, 0], level)),
            f"extrapolation_r2_{law.lower()}_minus_best_baseline":
                (float(point[0] - point[1:].max()), *percentile_interval(diff, level))}


def exponent_evidence(fits: dict, *, n: int, seed: int, level: float = 0.95) -> tuple[dict, pd.DataFrame]:
    """delta - beta and gamma - alpha with per-fit intervals: each setting's Shannon fit is refitted on `n`
    resamples of its own points (warm-started, `caplab.stats.fitting.bootstrap`); replicate b of the perturbed
    median takes every setting's b-th refit. Readings: shannon_delta_minus_beta (median over perturbed settings),
    shannon_delta_minus_beta_clean, shannon_delta_minus_beta_perturbed_minus_clean, shannon_gamma_minus_alpha.
    Also the per-setting table with each fit's own interval."""
    from caplab.stats.fitting import bootstrap
    from caplab.stats.resampling import percentile_interval
    derived = {"delta_minus_beta": lambda p: p["delta"] - p["beta"], "gamma_minus_alpha": lambda p: p["gamma"] - p["alpha"]}
    draws, rows = {}, []
    for i, (setting, fit) in enumerate(fits.items()):
        booted = bootstrap(fit, n=n, seed=seed + i, level=level, derived=derived)
        draws[setting] = booted.bootstrap_info["samples"]
        rows.append({"setting": setting, **{k: fit.params[k] for k in ("alpha", "beta", "gamma", "delta")},
                     **{name: booted.derived[name] for name in derived},
                     **{f"{name}_{end}": booted.intervals.loc[name, end] for name in derived
                        for end in ("lower", "upper")},
                     "r2": fit.r2(), "converged": fit.converged})
    if "none" not in draws:
        raise ValueError("exponent_evidence needs the clean setting 'none' as the control")
    perturbed = [s for s in draws if s != "none"]
    table = pd.DataFrame(rows).set_index("setting")

    def pooled(name):
        point = float(np.median(table.loc[perturbed, name]))
        reps = np.median(np.stack([draws[s][name].to_numpy() for s in perturbed]), axis=0)
        return point, reps

    def reading(point, reps):
        # the percentile interval of few refits can miss the point estimate itself: widen it to hold the point
        lo, hi = percentile_interval(reps, level)
        return point, min(lo, point), max(hi, point)

    out = {}
    dmb, dmb_reps = pooled("delta_minus_beta")
    clean_point, clean_reps = float(table.loc["none", "delta_minus_beta"]), draws["none"]["delta_minus_beta"].to_numpy()
    out["shannon_delta_minus_beta"] = reading(dmb, dmb_reps)
    out["shannon_delta_minus_beta_clean"] = reading(clean_point, clean_reps)
    out["shannon_delta_minus_beta_perturbed_minus_clean"] = reading(dmb - clean_point, dmb_reps - clean_reps)
    gma, gma_reps = pooled("gamma_minus_alpha")
    out["shannon_gamma_minus_alpha"] = reading(gma, gma_reps)
    return out, table.reset_index()


def damage_evidence(losses: pd.DataFrame, bits: int = 2) -> dict:
    """The quantization claim's evidence: the mean over models of each model's slope of the `bits`-bit damage
    against log tokens, t interval over models (`perturbation_scan.damage_slopes`)."""
    from caplab.science.perturbation_scan import damage_slopes
    trend = damage_slopes(losses, "quant", bits)
    return {f"quant{bits}_damage_slope_log_tokens": (trend["slope"], trend["lo"], trend["hi"]), "trend": trend}
