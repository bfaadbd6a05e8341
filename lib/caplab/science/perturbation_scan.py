"""Losses of a model family under perturbation, at every checkpoint, and the shapes they make.

`scan` evaluates each checkpoint of a family (`caplab.substrate.family`) clean, under Gaussian weight noise, under
round-to-nearest quantization, and after a short SFT on a shifted task (the loss still measured on the original
task), into one tidy frame: one row per (model, checkpoint, perturbation, level) with the loss and its standard
error over evaluation blocks. `basins` finds U-shapes (an interior minimum that the series' end rises above by more
than its noise) along tokens or along parameters; `degradation_trend` regresses a perturbation's damage on log
tokens with a fixed effect per model (statsmodels OLS).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from caplab.science.perturb import apply_perturbation
from caplab.stats.regression import slope
from caplab.substrate.data import TokenDataset
from caplab.substrate.evaluate import mean_loss_with_se
from caplab.substrate.family import for_each_checkpoint
from caplab.substrate.train import TrainConfig, train


def measure_checkpoint(model, tokenizer, row, *, eval_data: TokenDataset, noise_sigmas=(), quant_bits=(),
                       sft_data: TokenDataset | None = None, sft: dict | None = None, seed: int = 0,
                       batch_size: int = 64) -> list[dict]:
    """The rows of one checkpoint: clean, each noise level, each bit width, then SFT (which trains `model`)."""
    rows = []

    def add(kind, level, measured):
        loss, se = mean_loss_with_se(measured, eval_data, batch_size)
        rows.append({"perturbation": kind, "level": float(level), "loss": loss, "loss_se": se})

    add("none", 0, model)
    for sigma in noise_sigmas:
        add("noise", sigma, apply_perturbation(model, {"kind": "noise", "sigma": sigma, "seed": seed}))
    for bits in quant_bits:
        add("quant", bits, apply_perturbation(model, {"kind": "quant", "bits": bits}))
    if sft:
        if sft_data is None:
            raise ValueError("an SFT perturbation needs sft_data")
        config = TrainConfig.from_dict({**sft, "seed": seed})
        train(model, sft_data, config)
        add("sft", config.steps or config.max_tokens, model)
    return rows


def scan(family: pd.DataFrame, eval_data: TokenDataset, *, noise_sigmas=(), quant_bits=(),
         sft_data: TokenDataset | None = None, sft: dict | None = None, seed: int = 0, batch_size: int = 64,
         cache=None) -> pd.DataFrame:
    """`measure_checkpoint` at every checkpoint of `family` (cached per checkpoint and arguments)."""
    if not set(quant_bits) <= set(range(2, 17)):
        raise ValueError(f"quant_bits must be integers in 2..16, got {list(quant_bits)}")
    if any(s <= 0 for s in noise_sigmas):
        raise ValueError(f"noise sigmas must be positive, got {list(noise_sigmas)}")
    args = {"eval_data": eval_data, "noise_sigmas": list(noise_sigmas), "quant_bits": list(quant_bits),
            "sft_data": sft_data, "sft": sft, "seed": seed, "batch_size": batch_size}
    return for_each_checkpoint(family, measure_checkpoint, args=args, name="perturbation-scan", cache=cache)


def basins(frame: pd.DataFrame, along: str = "tokens", margin_se: float = 2.0) -> pd.DataFrame:
    """One row per series (perturbation, level, and the other axis held fixed) sorted along `along`
    ("tokens": loss against checkpoints of one model; "params": against models at one checkpoint).
    A basin: the minimum is interior, and the series' last point lies above it by more than `margin_se`
    combined standard errors. `rise` is that excess loss."""
    if along not in ("tokens", "params"):
        raise ValueError(f"along must be 'tokens' or 'params', got {along!r}")
    x, fixed = ("tokens", "model") if along == "tokens" else ("params_non_embedding", "target_tokens")
    rows = []
    for (kind, level, held), series in frame.groupby(["perturbation", "level", fixed], sort=False):
        series = series.sort_values(x)
        loss, se = series.loss.to_numpy(), series.loss_se.fillna(0).to_numpy()
        i = int(np.argmin(loss))
        rise = float(loss[-1] - loss[i])
        noise = margin_se * float(np.hypot(se[-1], se[i]))
        rows.append({"perturbation": kind, "level": level, fixed: held, "n_points": len(series),
                     "argmin": float(series[x].iloc[i]), "interior_min": 0 < i < len(series) - 1,
                     "rise": rise, "noise": noise, "basin": bool(0 < i < len(series) - 1 and rise > noise)})
    return pd.DataFrame(rows)


def degradation_trend(frame: pd.DataFrame, perturbation: str, level: float, alpha: float = 0.05) -> dict:
    """Slope of (perturbed - clean loss) against log tokens, one intercept per model (OLS), with its interval."""
    clean = frame[frame.perturbation == "none"].set_index(["model", "target_tokens"]).loss
    hit = frame[(frame.perturbation == perturbation) & (frame.level == level)].copy()
    if hit.empty:
        raise ValueError(f"no rows for perturbation {perturbation!r} at level {level}")
    hit["damage"] = hit.loss.to_numpy() - clean.loc[list(zip(hit.model, hit.target_tokens))].to_numpy()
    hit["log_tokens"] = np.log(hit.tokens.astype(float))
    return slope(hit, "damage", "log_tokens", groups="model", alpha=alpha)
