"""Losses of a model family under perturbation, at every checkpoint, and the shapes they make.

`scan` evaluates each checkpoint of a family (`caplab.substrate.family`) clean, under Gaussian weight noise, under
round-to-nearest quantization, and after a short SFT on a shifted task (the loss still measured on the original
task), into one tidy frame: one row per (model, checkpoint, perturbation, level) with the loss and its standard
error over evaluation blocks. `basins` finds U-shapes (an interior minimum that the series' end rises above by more
than its noise) along tokens or along parameters, each with a p-value against "the series is monotone";
`degradation_trend` regresses a perturbation's damage on log tokens with a fixed effect per model (statsmodels OLS);
`damage_slopes` fits one slope per model and tests the slopes across models (the model is the independent unit).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from caplab.science.perturb import apply_perturbation
from caplab.stats.regression import slope
from caplab.substrate.data import TokenDataset
from caplab.substrate.evaluate import example_losses
from caplab.substrate.family import for_each_checkpoint
from caplab.substrate.train import TrainConfig, train


def measure_checkpoint(model, tokenizer, row, *, eval_data: TokenDataset, noise_sigmas=(), quant_bits=(),
                       sft_data: TokenDataset | None = None, sft: dict | None = None, seed: int = 0,
                       batch_size: int = 64, draws=None, blocks: bool = False) -> list[dict]:
    """The rows of one checkpoint: clean, each noise level, each bit width, then SFT (on a copy of `model`).
    `draws`: the seeds of the random perturbations (noise draws, SFT data orders), one row per (setting, draw);
    default `[seed]`. A row's `draw` is its seed (the deterministic settings, clean and quantized, have one row with
    the first seed). `blocks`: each row also carries `block_losses`, the mean loss of every evaluation block (for
    bootstraps over blocks paired across settings)."""
    import copy
    draws = [seed] if draws is None else [int(d) for d in draws]
    rows = []

    def add(kind, level, measured, draw):
        per_row = example_losses(measured, eval_data, batch_size)
        loss = float(per_row.loss_sum.sum() / per_row.n_tokens.sum())
        se = float(per_row.loss.std(ddof=1) / len(per_row) ** 0.5) if len(per_row) > 1 else float("nan")
        rows.append({"perturbation": kind, "level": float(level), "draw": draw, "loss": loss, "loss_se": se,
                     **({"block_losses": per_row.loss.tolist()} if blocks else {})})

    add("none", 0, model, draws[0])
    for sigma in noise_sigmas:
        for draw in draws:
            add("noise", sigma, apply_perturbation(model, {"kind": "noise", "sigma": sigma, "seed": draw}), draw)
    for bits in quant_bits:
        add("quant", bits, apply_perturbation(model, {"kind": "quant", "bits": bits}), draws[0])
    if sft:
        if sft_data is None:
            raise ValueError("an SFT perturbation needs sft_data")
        for i, draw in enumerate(draws):
            config = TrainConfig.from_dict({**sft, "seed": draw})
            tuned = model if i == len(draws) - 1 else copy.deepcopy(model)
            train(tuned, sft_data, config)
            add("sft", config.steps or config.max_tokens, tuned, draw)
    return rows


def scan(family: pd.DataFrame, eval_data: TokenDataset, *, noise_sigmas=(), quant_bits=(),
         sft_data: TokenDataset | None = None, sft: dict | None = None, seed: int = 0, batch_size: int = 64,
         cache=None, draws=None, blocks: bool = False) -> pd.DataFrame:
    """`measure_checkpoint` at every checkpoint of `family` (cached per checkpoint and arguments)."""
    if not set(quant_bits) <= set(range(2, 17)):
        raise ValueError(f"quant_bits must be integers in 2..16, got {list(quant_bits)}")
    if any(s <= 0 for s in noise_sigmas):
        raise ValueError(f"noise sigmas must be positive, got {list(noise_sigmas)}")
    if draws is not None and (not len(draws) or len(set(draws)) < len(draws)):
        raise ValueError(f"draws must be distinct seeds, at least one, got {list(draws)}")
    args = {"eval_data": eval_data, "noise_sigmas": list(noise_sigmas), "quant_bits": list(quant_bits),
            "sft_data": sft_data, "sft": sft, "seed": seed, "batch_size": batch_size}
    if draws is not None or blocks:            # new keys only when used: older cached entries keep their keys
        args.update(draws=None if draws is None else [int(d) for d in draws], blocks=blocks)
    # one process over every checkpoint: on the stand-in hub, one cached thunk per checkpoint on `sweep.parallel`'s
    # two single-thread workers took 79 s against 34 s here (each child loads its model; measured quiet)
    return for_each_checkpoint(family, measure_checkpoint, args=args, name="perturbation-scan", cache=cache)


def monotone_p_value(loss, se) -> float:
    """p-value of "this series is monotone" against a U (it falls from its first point and its last point rises
    above an earlier one). Two statistics, each the largest standardised difference: the rise max_i (y_last - y_i) /
    hypot(se_last, se_i) and the fall max_i (y_first - y_i) / hypot(se_first, se_i). Under a non-increasing mean
    the rise is stochastically smaller than under a flat mean (and the fall under a non-decreasing one), so a flat
    mean with the series' own standard errors is the least favourable null; there each standardised difference is
    standard normal, and the union bound gives p = min(1, (n - 1) P(Z >= max)) (conservative, no simulation). The
    U's p-value is the larger of the two (an intersection-union test, valid for either monotone direction).
    Independent Gaussian errors are assumed: errors that the standard errors do not contain (a perturbation's own
    random draw) make it anti-conservative."""
    loss, se = np.asarray(loss, dtype=float), np.maximum(np.asarray(se, dtype=float), 1e-12)
    if len(loss) < 3:
        return 1.0
    rise = np.max((loss[-1] - loss[:-1]) / np.hypot(se[-1], se[:-1]))
    fall = np.max((loss[0] - loss[1:]) / np.hypot(se[0], se[1:]))
    bound = lambda z: min(1.0, (len(loss) - 1) * 0.5 * math.erfc(z / math.sqrt(2)))
    return max(bound(rise), bound(fall))


def basins(frame: pd.DataFrame, along: str = "tokens", margin_se: float = 2.0) -> pd.DataFrame:
    """One row per series (perturbation, level, and the other axis held fixed) sorted along `along`
    ("tokens": loss against checkpoints of one model; "params": against models at one checkpoint).
    A basin: the minimum is interior, and the series' last point lies above it by more than `margin_se`
    combined standard errors. `rise` is that excess loss; `p_value` tests "the series is monotone"
    (`monotone_p_value`): read basins over many series through it, with the false-discovery rate controlled
    (`caplab.papers.shannon.basin_evidence`)."""
    if along not in ("tokens", "params"):
        raise ValueError(f"along must be 'tokens' or 'params', got {along!r}")
    x, fixed = ("tokens", "model") if along == "tokens" else ("params_non_embedding", "target_tokens")
    keys = ["perturbation", "level", fixed]
    ordered = frame.sort_values(keys + [x], kind="stable")
    losses, ses, xs = (ordered.loss.to_numpy(float), ordered.loss_se.fillna(0).to_numpy(float),
                       ordered[x].to_numpy(float))
    rows = []
    for (kind, level, held), index in ordered.reset_index(drop=True).groupby(keys, sort=False).indices.items():
        loss, se = losses[index], ses[index]
        i = int(np.argmin(loss))
        rise = float(loss[-1] - loss[i])
        noise = margin_se * float(np.hypot(se[-1], se[i]))
        rows.append({"perturbation": kind, "level": level, fixed: held, "n_points": len(index),
                     "argmin": float(xs[index][i]), "interior_min": 0 < i < len(index) - 1,
                     "rise": rise, "noise": noise, "basin": bool(0 < i < len(index) - 1 and rise > noise),
                     "p_value": monotone_p_value(loss, se)})
    return pd.DataFrame(rows)


def damage_rows(frame: pd.DataFrame, perturbation: str, level: float) -> pd.DataFrame:
    """The perturbed rows with their `damage` (perturbed minus clean loss of the same model and checkpoint) and
    `log_tokens`."""
    clean = frame[frame.perturbation == "none"].set_index(["model", "target_tokens"]).loss
    hit = frame[(frame.perturbation == perturbation) & (frame.level == level)].copy()
    if hit.empty:
        raise ValueError(f"no rows for perturbation {perturbation!r} at level {level}")
    hit["damage"] = hit.loss.to_numpy() - clean.loc[list(zip(hit.model, hit.target_tokens))].to_numpy()
    hit["log_tokens"] = np.log(hit.tokens.astype(float))
    return hit


def degradation_trend(frame: pd.DataFrame, perturbation: str, level: float, alpha: float = 0.05) -> dict:
    """Slope of (perturbed - clean loss) against log tokens, one intercept per model (OLS), with its interval."""
    hit = damage_rows(frame, perturbation, level)
    return slope(hit, "damage", "log_tokens", groups="model", alpha=alpha)


def damage_slopes(frame: pd.DataFrame, perturbation: str, level: float, alpha: float = 0.05) -> dict:
    """The damage (perturbed - clean loss) against log tokens, one least-squares slope per model; the mean slope
    with a t interval over models (df = models - 1). The checkpoints of one model share its weights' history and
    the evaluation blocks, so they are not independent points: the model is the unit. Also `slopes` by model, and
    `normalised`: (mean, lo, hi) of each model's damage slope divided by its clean loss drop per e-fold of tokens
    (the damage in units of what the extra training bought; `normalised_slopes` by model)."""
    from scipy import stats as st
    hit = damage_rows(frame, perturbation, level)
    slopes, normalised = {}, {}
    for model, rows in hit.groupby("model", sort=False):
        if rows.log_tokens.nunique() >= 2:
            slopes[model] = float(np.polyfit(rows.log_tokens, rows.damage, 1)[0])
            drop = -float(np.polyfit(rows.log_tokens, rows.loss - rows.damage, 1)[0])   # clean loss drop per e-fold
            normalised[model] = slopes[model] / drop if drop > 0 else float("nan")
    if len(slopes) < 2:
        raise ValueError("damage_slopes needs at least two models with two checkpoints each")

    def t_reading(values):
        values = np.asarray([v for v in values if np.isfinite(v)])
        if len(values) < 2:
            return float("nan"), float("nan"), float("nan"), float("nan")
        mean, se = float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))
        half = float(st.t.ppf(1 - alpha / 2, len(values) - 1)) * se
        p = float(2 * st.t.sf(abs(mean) / se, len(values) - 1)) if se > 0 else float(mean == 0)
        return mean, mean - half, mean + half, p

    mean, lo, hi, p = t_reading(slopes.values())
    n_mean, n_lo, n_hi, _ = t_reading(normalised.values())
    return {"slope": mean, "lo": lo, "hi": hi, "p_value": p, "n": len(slopes), "slopes": slopes,
            "normalised": (n_mean, n_lo, n_hi), "normalised_slopes": normalised}
