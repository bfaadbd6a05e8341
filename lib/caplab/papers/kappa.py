"""KappaTune (condition numbers and forgetting): the parameter set of the `kappa` notebook.

The mechanisms live in `caplab.science.kappa` (condition numbers, PEFT-compatible selection, the entropy Monte
Carlo, the fine-tuning arms) and `caplab.science.forgetting` (trajectories, forgetting at a matched fit, paired
comparison of arms); the claim metrics are the paired differences `ARM_METRICS` names
(`forgetting_evidence`).
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from caplab.papers import _types as T
from caplab.params import Tier
from caplab.science import forgetting

# comparison arm -> the metric its paired difference (lowest-kappa minus that arm) is recorded as
ARM_METRICS = {"full": "forgetting_low_minus_full", "lora-all-linear": "forgetting_low_minus_lora",
               "highest-kappa": "forgetting_low_minus_high", "random": "forgetting_low_minus_random"}


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
    k_tensors: T.Count               # tensors per selective arm (PEFT default: top_p 0.2 of the candidates)
    seeds: T.Seeds                   # fine-tuning seeds; the random arm draws its tensors with seeds[0]
    lr_tensors: T.positive(float)    # whole-tensor arms (selective and full)
    lr_lora: T.positive(float)       # LoRA arm (the paper: 4x the full-tensor rate, 2e-4 vs 5e-5)
    eval_every_tokens: T.Count
    fit_sample: T.Count              # rows of the new task's training set on which its fit is measured
    max_dim_size_to_analyze: T.Count
    mc_matrices: T.Count             # Monte Carlo of the entropy claim
    mc_dim: T.Count
    tier: Tier = "cpu"


def forgetting_evidence(forgot: pd.DataFrame, reference: str = "lowest-kappa", alpha: float = 0.05) -> dict:
    """The forgetting claims' metrics from the `forgetting_at_fit` table (arm, seed, forgetting, target_fit_b):
    for every other arm, `ARM_METRICS[arm]` = forgetting(reference) - forgetting(arm), its mean over seeds with the
    t interval of the paired differences (`forgetting.compare_arms`); and `forgetting_seeds`, the fewest seeds any
    comparison is paired over. Name -> Metric fields (value, lo, hi, note)."""
    comparison = forgetting.compare_arms(forgot, reference=reference, alpha=alpha)
    target = f"; target fit {forgot.target_fit_b.iloc[0]:.4f}" if "target_fit_b" in forgot else ""
    out = {ARM_METRICS[row.other]: {"value": row.mean_diff, "lo": row.lo, "hi": row.hi,
                                    "note": f"paired over {row.n} seeds, t interval {1 - alpha:.0%}, "
                                            f"p = {row.p_value:.3g}{target}"}
           for row in comparison.itertuples() if row.other in ARM_METRICS}
    out["forgetting_seeds"] = {"value": int(comparison.n.min()) if len(comparison) else 0,
                               "note": "seeds the paired arm comparisons run over (the fewest)"}
    return out
