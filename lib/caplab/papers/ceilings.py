"""Capability ceilings (with the downstream chain): the parameter set of the `ceilings` notebook and the claim
evidence its steps read.

The mechanisms live in `caplab.science.capability` (knowledge multiple choice, arithmetic, trends with scale, the
downstream chain, per-question correlations) and `caplab.science.attention_swap`.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from caplab.papers import _types as T
from caplab.params import Tier


@dataclasses.dataclass(frozen=True)
class Params:
    """ceilings' parameters (the notebook's `parameters` cell; its defaults are the cpu tier's values)."""
    corpus_task: T.Task              # the training corpus (facts seen with Zipfian frequency, arithmetic, filler)
    knowledge_task: T.Questions      # multiple-choice questions about the facts
    arithmetic_eval: T.Task          # held-out arithmetic problems
    family: T.Family                 # tiny models trained here with checkpoints, or a hub family
    train_config: T.Train            # TrainConfig of the family; {} for a hub family
    checkpoints: T.Checkpoints       # {first, last, n}; {} for a hub family
    block_size: T.Count
    eval_blocks: T.Count
    swap_lams: list[float]           # shares of donor attention in the graded swap
    n_boot: T.Count
    seed: int
    tier: Tier = "cpu"


def swap_retention(swaps: pd.DataFrame, metric: str = "accuracy") -> tuple[float, float, float | None]:
    """(own, swapped, retained): the recipient's metric without a swap (lambda 0) and under the full swap of every
    layer (lambda 1), and the share it keeps (None when it had nothing to lose)."""
    every = swaps[swaps.layer_set == "all"]
    own = float(every[every.lam == 0][metric].iloc[0])
    swapped = float(every[every.lam == 1][metric].iloc[0])
    return own, swapped, (swapped / own if own > 0 else None)


def correlation_shares(corr: pd.DataFrame, high: float = 0.75, moving: float = 0.5):
    """Per question, from the per-question Spearman correlations with log compute: (drop, moving, wide).
    `drop` is 1 where log p_vocab(correct) correlates above `high` and accuracy does not (an undefined accuracy
    correlation, no variation, counts as not above), minus the reverse; `moving` is 1 where the incorrect choices'
    mass correlates beyond `moving` in absolute value; `wide` is the question x score table."""
    wide = corr.pivot(index="question", columns="score", values="spearman")
    above = (wide > high).astype(float)
    drop = (above["log_p_vocab"] - above["accuracy"]).to_numpy()
    moves = (wide["p_vocab_incorrect"].abs() > moving).astype(float).to_numpy()
    return drop, moves, wide
