"""KappaTune (condition numbers and forgetting): the parameter set of the `kappa` notebook.

The mechanisms live in `caplab.science.kappa` (condition numbers, PEFT-compatible selection, the entropy Monte
Carlo, the fine-tuning arms) and `caplab.science.forgetting` (trajectories, the format-only floor, forgetting at a
matched fit, paired comparison of arms); the claim metrics are the paired differences `ARM_METRICS` names
(`forgetting_evidence`).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from caplab.papers import _types as T
from caplab.params import Tier
from caplab.science import forgetting
from caplab.science.kappa import ARMS

REFERENCE = ARMS["lowest"]
# comparison arm -> the metric its paired difference (lowest-kappa minus that arm) is recorded as; the seeds it is
# paired over are recorded as "pairs_" + the metric's name without "forgetting_"
ARM_METRICS = {ARMS["full"]: "forgetting_low_minus_full", ARMS["lora"]: "forgetting_low_minus_lora",
               ARMS["high_matched"]: "forgetting_low_minus_high", ARMS["random_matched"]: "forgetting_low_minus_random",
               ARMS["high_whole"]: "forgetting_low_minus_high_whole",
               ARMS["kappatune_lora"]: "forgetting_low_minus_kappatune_lora"}
# module choice under one parametrisation: KappaTune-LoRA minus LoRA on all linears (same budget and lr)
MODULE_CHOICE = ("forgetting_kappatune_lora_minus_lora", ARMS["kappatune_lora"], ARMS["lora"])


@dataclasses.dataclass(frozen=True)
class Params:
    """kappa's parameters (the notebook's `parameters` cell; its defaults are the cpu tier's values)."""
    base_model: T.Model              # fine-tuned: a tiny shape pre-trained here on the control task, or `pretrained`
    control_task: T.Task             # the old knowledge whose loss measures forgetting
    new_task: T.Task                 # the new knowledge fine-tuned in
    block_size: T.Count              # tokens per block of the control corpus
    control_eval_blocks: T.Count     # held-out control blocks on which forgetting is measured
    pretrain: T.OptionalTrain        # TrainConfig of the pre-training; {} for a pretrained base
    finetune: T.Train                # TrainConfig of every fine-tuning arm (its lr comes from lr_tensors/lr_lora)
    k_tensors: T.Count               # tensors per selective arm, passed to the selector as an explicit count
    seeds: T.Seeds                   # fine-tuning seeds: data order, and the random arm's draw
    lr_tensors: T.positive(float)    # whole-tensor arms (selective and full)
    lr_lora: T.positive(float)       # LoRA arms (the paper: 4x the full-tensor rate, 2e-4 vs 5e-5)
    lora_lr_sweep: list[T.positive(float)]  # further lrs of LoRA on all linears ([]: none)
    lora_sweep_seeds: T.Count        # the sweep runs on the first this many seeds
    target_fit_fraction: T.positive(float) | None  # matched fit = this x the format-only floor (None: loosest common)
    eval_every_tokens: T.Count
    fit_sample: T.Count              # rows of the new task's training set on which its fit is measured
    max_dim_size_to_analyze: T.Count
    mc_matrices: T.Count             # Monte Carlo of the entropy claim
    mc_dim: T.Count
    tier: Tier = "cpu"


def pairs_name(metric: str) -> str:
    """The name under which the seed count of a paired difference is recorded."""
    return "pairs_" + metric.removeprefix("forgetting_")


def forgetting_evidence(forgot: pd.DataFrame, alpha: float = 0.05) -> dict:
    """The forgetting claims' metrics from the `forgetting_at_fit` table (arm, seed, forgetting, target_fit_b):
    for every arm of `ARM_METRICS`, forgetting(lowest-kappa) - forgetting(arm), its mean over the seeds where both
    reached the target, with the t interval of the paired differences (`forgetting.compare_arms`), and the number
    of those seeds (`pairs_name`); the same for `MODULE_CHOICE`. An arm not in the table gives no metric; one that
    reached it in fewer than 2 seeds gives None with its pair count. Name -> Metric fields (value, lo, hi, note)."""
    target = f"; target fit {forgot.target_fit_b.iloc[0]:.4f}" if "target_fit_b" in forgot else ""
    out = {}

    def add(metric, row):
        finite = row.n >= 2 and np.isfinite([row.mean_diff, row.lo, row.hi]).all()
        out[metric] = {"value": row.mean_diff if finite else None, "lo": row.lo if finite else None,
                       "hi": row.hi if finite else None,
                       "note": f"paired over {row.n} seeds that reached the target, t interval {1 - alpha:.0%}, "
                               f"p = {row.p_value:.3g}{target}"}
        out[pairs_name(metric)] = {"value": int(row.n), "note": "seeds the paired difference runs over"}

    for row in forgetting.compare_arms(forgot, reference=REFERENCE, alpha=alpha).itertuples():
        if row.other in ARM_METRICS:
            add(ARM_METRICS[row.other], row)
    metric, reference, other = MODULE_CHOICE
    if {reference, other} <= set(forgot.arm):
        comparison = forgetting.compare_arms(forgot[forgot.arm.isin([reference, other])], reference=reference,
                                             alpha=alpha)
        add(metric, next(comparison.itertuples()))
    return out
