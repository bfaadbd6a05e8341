"""Splitting an annotation budget between SFT and preference finetuning (Raghavendra et al. 2025).

A budget B is spent as c_SFT N_SFT + c_PFT N_PFT = B with c_SFT = 1: the SFT share s buys N_SFT = s B solved
examples and the rest buys N_PFT = (1 - s) B / ratio preference pairs, ratio = c_PFT / c_SFT. `grid` lists the runs,
`run_grid` trains each (SFT on the SFT share, then DPO on the rest from that model, whose reference it is) and
scores it by greedy exact match on held-out questions; `claim_evidence` turns the tidy result into the numbers
the claims are judged on, each difference with a paired bootstrap interval over test questions.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Callable

import numpy as np
import pandas as pd

from caplab.papers import _types as T
from caplab.params import Tier
from caplab.stats.resampling import bootstrap_draws, bootstrap_interval, percentile_interval
from caplab.substrate import runlog


@dataclasses.dataclass(frozen=True)
class Params:
    """budget's parameters (the notebook's `parameters` cell; its defaults are the cpu tier's values). The
    paper's own settings (Raghavendra et al. 2025, code) are the defaults of SFTSettings and DPOSettings: 2 epochs,
    SFT lr 5e-5, DPO lr 5e-6, beta 1.0, batch 16; `sft` and `dpo` override them per tier."""
    model: T.Model                   # the base model: a tiny shape pre-trained here, or a `pretrained` id
    corpus_task: T.OptionalTask      # its pre-training text (never the answer format); {} for a pretrained base
    block_size: T.Count
    pretrain: T.OptionalTrain        # TrainConfig of the pre-training; {} for a pretrained base
    sft_task: T.Task                 # solved examples (question -> step-by-step solution)
    preference_task: T.Preferences   # preference pairs (chosen, rejected)
    test_task: T.Task                # held-out questions, kept out of both pools
    budgets: list[T.Count]           # annotation budgets (examples)
    shares: list[float]              # SFT share of each budget
    cost_ratios: list[float]         # c_PFT / c_SFT
    ratio_budgets: list[T.Count]     # budgets run under the ratios other than 1
    sft: T.SFT
    dpo: T.DPO
    max_new_tokens: T.Count
    n_boot: T.Count
    seed: int
    tier: Tier = "cpu"


def counts(budget: int, share: float, ratio: float) -> tuple[int, int]:
    """(N_SFT, N_PFT) for a budget, an SFT share and a cost ratio c_PFT / c_SFT."""
    if budget < 1 or not 0 <= share <= 1 or ratio <= 0:
        raise ValueError(f"need budget >= 1, 0 <= share <= 1 and ratio > 0; got {budget}, {share}, {ratio}")
    n_sft = int(round(share * budget))
    return n_sft, int(round((budget - n_sft) / ratio))


def grid(budgets, shares, ratios, ratio_budgets=None) -> pd.DataFrame:
    """One row per (ratio, budget, share) with n_sft and n_pft. Ratios other than 1 run on `ratio_budgets` (all
    budgets when None); share 1 spends nothing on preferences, so it is the same run under every ratio."""
    rows = []
    for ratio, budget, share in itertools.product(ratios, budgets, shares):
        if ratio != 1 and ratio_budgets is not None and budget not in ratio_budgets:
            continue
        n_sft, n_pft = counts(budget, share, ratio)
        rows.append({"ratio": float(ratio), "budget": int(budget), "share": float(share), "n_sft": n_sft,
                     "n_pft": n_pft})
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise ValueError("the grid is empty: give budgets, shares and ratios")
    return frame


def run_grid(plan: pd.DataFrame, base: dict, train_sft: Callable[[dict, int], dict],
             train_dpo: Callable[[dict, int], dict], score: Callable[[dict], pd.DataFrame],
             log: Callable[[str], None] = runlog.progress) -> pd.DataFrame:
    """Every run of `plan`: `train_sft(base, n_sft)` -> spec, `train_dpo(spec, n_pft)` -> spec, `score(spec)` ->
    one row per test question (question, correct, formatted). Returns the long frame: plan columns x questions."""
    frames = []
    for i, row in enumerate(plan.itertuples(index=False), 1):
        spec = train_sft(base, row.n_sft)
        spec = train_dpo(spec, row.n_pft)
        scored = score(spec)
        for name, value in row._asdict().items():
            scored[name] = value
        frames.append(scored)
        log(f"run {i}/{len(plan)}: ratio {row.ratio:g} budget {row.budget} share {row.share:g} "
            f"(SFT {row.n_sft}, DPO {row.n_pft}): accuracy {scored.correct.mean():.3f}")
    return pd.concat(frames, ignore_index=True)


def accuracy_table(long: pd.DataFrame) -> pd.DataFrame:
    """Accuracy and format rate per (ratio, budget, share), with a Wilson 95 % interval on accuracy."""
    from statsmodels.stats.proportion import proportion_confint

    table = (long.groupby(["ratio", "budget", "share", "n_sft", "n_pft"])
             .agg(correct=("correct", "sum"), n=("correct", "size"), formatted=("formatted", "mean"))
             .reset_index())
    table["accuracy"] = table.correct / table.n
    table["lo"], table["hi"] = proportion_confint(table.correct, table.n, alpha=0.05, method="wilson")
    return table


def _paired(long: pd.DataFrame, pick_a: Callable[[pd.DataFrame], pd.Series],
            pick_b: Callable[[pd.DataFrame], pd.Series], n_boot: int, seed: int) -> tuple[float, float, float]:
    """mean(a) - mean(b) over questions, where a and b are per-question scores chosen (on each resample, so the
    choice of the best arm is bootstrapped too) by `pick_a` / `pick_b` from a question x arm matrix."""
    point = float(pick_a(long).mean() - pick_b(long).mean())

    def difference(rows):
        sample = long.iloc[rows]
        return pick_a(sample).mean() - pick_b(sample).mean()

    draws = bootstrap_draws(len(long), difference, n=n_boot, rng=np.random.default_rng(seed))
    return (point, *percentile_interval(draws))


def _matrix(long: pd.DataFrame, ratio: float, budget: int, column: str = "correct") -> pd.DataFrame:
    rows = long[(long.ratio == ratio) & (long.budget == budget)]
    return rows.pivot_table(index="question", columns="share", values=column, aggfunc="mean")


def _best(shares):
    def pick(matrix):
        cols = [s for s in matrix.columns if shares(s)]
        return matrix[cols[int(np.argmax(matrix[cols].mean().to_numpy()))]]
    return pick


def majority_baseline(answers) -> float:
    """Accuracy of always giving the most common test answer: the chance level a model must beat."""
    return float(pd.Series(list(answers)).value_counts(normalize=True).iloc[0])


def learned_margin(long: pd.DataFrame, budgets, chance: float, ratio: float = 1.0) -> tuple[float, float, float]:
    """Over the given budgets and every share, the best Wilson 95 % lower bound of accuracy minus `chance`
    (positive: some allocation measurably learned the task there), as (value, lo, hi) of the best arm."""
    table = accuracy_table(long[(long.ratio == ratio) & long.budget.isin(list(budgets))])
    best = table.loc[table.lo.idxmax()]
    return float(best.lo - chance), float(best.lo - chance), float(best.hi - chance)


def claim_evidence(long: pd.DataFrame, small_budget: float = 1000, small_share: float = 0.1, ratio: float = 1.0,
                   n_boot: int = 1000, seed: int = 0, chance: float | None = None
                   ) -> dict[str, tuple[float, float, float]]:
    """Numbers the claims are judged on, at the equal-cost ratio, each (value, lo, hi):
    - sft_only_minus_best_mix_small: at every budget below `small_budget`, accuracy of SFT alone (share 1) minus
      the best other share; the smallest of these differences (SFT must win at each small budget);
    - best_mix_minus_sft_only_large: at the largest budget, the best share strictly between 0 and 1 minus share 1;
    - cold_start_minus_small_sft: at the largest budget, share 0 (DPO on the base) minus the best share in
      (0, small_share];
    - cold_start_format_rate: at the largest budget, share 0's rate of answers in the "#### answer" format;
    - small_sft_gain: the negative of cold_start_minus_small_sft (the gain from at most `small_share` SFT);
    - small_budgets_learned (with `chance`): the best lower accuracy bound at the small budgets minus chance."""
    out: dict[str, tuple[float, float, float]] = {}
    budgets = sorted(long[long.ratio == ratio].budget.unique())
    small = [b for b in budgets if b < small_budget]
    if small:
        diffs = [_paired(_matrix(long, ratio, b), lambda m: m[1.0], _best(lambda s: s < 1.0), n_boot, seed)
                 for b in small]
        out["sft_only_minus_best_mix_small"] = min(diffs, key=lambda d: d[0])
        if chance is not None:
            out["small_budgets_learned"] = learned_margin(long, small, chance, ratio)
    large = _matrix(long, ratio, budgets[-1])
    mixed = [s for s in large.columns if 0 < s < 1]
    if mixed and 1.0 in large.columns:
        out["best_mix_minus_sft_only_large"] = _paired(large, _best(lambda s: 0 < s < 1), lambda m: m[1.0],
                                                       n_boot, seed)
    if 0.0 in large.columns and any(0 < s <= small_share for s in large.columns):
        gap = _paired(large, lambda m: m[0.0], _best(lambda s: 0 < s <= small_share), n_boot, seed)
        out["cold_start_minus_small_sft"] = gap
        out["small_sft_gain"] = (-gap[0], -gap[2], -gap[1])
        formatted = _matrix(long, ratio, budgets[-1], "formatted")[0.0]
        out["cold_start_format_rate"] = bootstrap_interval(formatted, n=n_boot, rng=np.random.default_rng(seed))
    return out


def best_share(table: pd.DataFrame) -> pd.DataFrame:
    """The share with the highest accuracy per (ratio, budget)."""
    index = table.groupby(["ratio", "budget"]).accuracy.idxmax()
    return table.loc[index, ["ratio", "budget", "share", "n_sft", "n_pft", "accuracy", "lo", "hi"]]


def check_pools(plan: pd.DataFrame, n_sft_pool: int, n_pft_pool: int) -> None:
    """Raise before any training when the grid asks for more examples than a pool holds."""
    if plan.n_sft.max() > n_sft_pool or plan.n_pft.max() > n_pft_pool:
        raise ValueError(f"the grid needs {plan.n_sft.max()} SFT examples and {plan.n_pft.max()} preference pairs; "
                         f"the pools hold {n_sft_pool} and {n_pft_pool}: enlarge the tasks or lower the budgets")
