"""The Shannon scaling law under perturbation: the parameter set of the `shannon` notebook and the steps of its
argument that are not mechanisms: the extrapolation protocol and the per-setting summaries the claims read.

The mechanisms live in `caplab.science.perturbation_scan` (perturbed losses at every checkpoint, basins, the
quantization damage trend) and the laws and fits in `caplab.stats`.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

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
    bootstrap_samples: T.Count       # resamples of the perturbation settings for the claim intervals
    seed: int
    tier: Tier = "cpu"


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
