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
from caplab.stats.resampling import bootstrap_interval, resample_indices
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


class _Boot:
    """Arm means over the same test questions and over `n_boot` resamples of those questions (one set of resamples
    for every comparison, so that differences are paired). `matrix`: question x arm scores (arms as columns)."""

    def __init__(self, matrix: pd.DataFrame, n_boot: int, seed: int):
        if matrix.isna().any().any():
            raise ValueError("every arm must be scored on the same test questions")
        values = matrix.to_numpy(float)
        rows = resample_indices(len(values), n_boot, np.random.default_rng(seed))
        counts = np.zeros((n_boot, len(values)))
        np.add.at(counts, (np.arange(n_boot)[:, None], rows), 1.0)
        self.columns = list(matrix.columns)
        self.point = values.mean(0)
        self.draws = counts @ values / len(values)

    def has(self, column) -> bool:
        return column in self.columns

    def compare(self, a, b, level: float = 0.95) -> tuple[float, float, float]:
        """The best of arms `a` minus the best of arms `b` (each a list of columns), with an interval that holds
        whichever arms are best: percentile intervals of every pairwise difference a_i - b_j at the Bonferroni
        level 1 - (1 - level) / (|a| |b|), combined as [max_i min_j lo_ij, max_i min_j hi_ij] (re-choosing the best
        arm on each resample instead would read the selection's own noise as an effect)."""
        ia, ib = [self.columns.index(c) for c in a], [self.columns.index(c) for c in b]
        if not ia or not ib:
            raise ValueError("no arm to compare")
        pairs = len(ia) * len(ib)
        tail = (1 - level) / (2 * pairs)
        diffs = self.draws[:, ia][:, :, None] - self.draws[:, ib][:, None, :]
        lo, hi = np.quantile(diffs, [tail, 1 - tail], axis=0)
        point = self.point[ia][:, None] - self.point[ib][None, :]
        return float(point.min(1).max()), float(lo.min(1).max()), float(hi.min(1).max())


def _lowest(values: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """The smallest of several differences (the claim must hold at each): [min lo, min hi] covers it whenever
    each interval covers its own."""
    return tuple(float(min(v[i] for v in values)) for i in range(3))


def _highest(values: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    return tuple(float(max(v[i] for v in values)) for i in range(3))


def majority_baseline(answers) -> float:
    """Accuracy of always giving the most common test answer: the chance level a model must beat."""
    return float(pd.Series(list(answers)).value_counts(normalize=True).iloc[0])


def majority_correct(answers) -> np.ndarray:
    """Per test question, whether always giving the most common test answer is right (the majority-answer
    guesser, scored per question so that arms can be compared with it paired)."""
    answers = pd.Series(list(answers)).astype(str)
    return (answers == answers.value_counts().index[0]).to_numpy(float)


def scores_matrix(long: pd.DataFrame, ratio: float, base: pd.DataFrame | None = None,
                  column: str = "correct") -> pd.DataFrame:
    """question x arm, arms (budget, share) at `ratio`; with `base` (the base model's scores: question, answer,
    correct), also the arms ("base", 0) and ("majority", 0): the base model and the majority-answer guesser."""
    rows = long[long.ratio == ratio]
    matrix = rows.groupby(["question", "budget", "share"])[column].mean().unstack(["budget", "share"])
    matrix.columns = [(int(b), float(s)) for b, s in matrix.columns]
    if base is not None:
        base = base.set_index("question").reindex(matrix.index)
        matrix[("base", 0.0)] = base[column].to_numpy(float)
        if column == "correct":
            matrix[("majority", 0.0)] = majority_correct(base.answer)
    return matrix


def _sft_start(arms: pd.DataFrame, n_sft: int):
    """The arm that is this run's SFT start: the base model for n_sft = 0, else the SFT-only run on the same
    examples (share 1 at the budget n_sft, trained identically), or None where the grid has no such run."""
    if n_sft == 0:
        return ("base", 0.0)
    hit = arms[(arms.share == 1.0) & (arms.n_sft == n_sft)]
    return (int(n_sft), 1.0) if len(hit) else None


def claim_evidence(long: pd.DataFrame, small_budget: float = 1000, small_share: float = 0.1, ratio: float = 1.0,
                   n_boot: int = 1000, seed: int = 0, base: pd.DataFrame | None = None
                   ) -> dict[str, tuple[float, float, float]]:
    """Numbers the claims are judged on, at the cost ratio `ratio`, each (value, lo, hi): differences of accuracy
    over the same test questions with paired bootstrap intervals (one set of question resamples for all). "The best
    of a set" of arms is read with simultaneous (Bonferroni) intervals over the arms (`_Boot.compare`); "at every
    budget" is the smallest difference, with the smallest bounds.
    - sft_only_minus_best_mix_small: the smallest, over budgets below `small_budget`, of SFT alone (share 1) minus
      the best other share (SFT must win at each small budget);
    - best_mix_minus_sft_only_large: at the largest budget, the best share strictly between 0 and 1 minus share 1;
    - cold_start_minus_small_sft: at the largest budget, share 0 (DPO on the base) minus the best share in
      (0, small_share]; small_sft_gain: its negative (the gain from at most `small_share` SFT);
    - cold_start_format_rate: at the largest budget, share 0's rate of answers in the "#### answer" format;
    - sft_only_last_step_gain: SFT alone at the largest budget minus at the one before (has SFT plateaued?).
    With `base` (the base model's per-question scores: question, answer, correct), the recorded baselines:
    - small_budgets_best_minus_majority: the smallest, over budgets below `small_budget`, of the best arm minus the
      majority-answer guesser (did any allocation learn the task there?);
    - small_sft_minus_majority: the best share in (0, small_share] at the largest budget minus the majority answer;
    - dpo_gain_large: at the largest budget, the best DPO run minus its own SFT start (the base model for share 0,
      the SFT-only run on the same examples where the grid has it): does DPO act at all?"""
    out: dict[str, tuple[float, float, float]] = {}
    rows = long.loc[long.ratio == ratio, ["budget", "share", "n_sft", "n_pft"]].drop_duplicates()
    budgets = sorted(rows.budget.unique())
    boot = _Boot(scores_matrix(long, ratio, base), n_boot, seed)
    shares = {b: sorted(group.share.unique()) for b, group in rows.groupby("budget")}
    majority = [("majority", 0.0)]
    small = [b for b in budgets if b < small_budget and 1.0 in shares[b] and len(shares[b]) > 1]
    if small:
        out["sft_only_minus_best_mix_small"] = _lowest(
            [boot.compare([(b, 1.0)], [(b, s) for s in shares[b] if s < 1.0]) for b in small])
        if boot.has(majority[0]):
            out["small_budgets_best_minus_majority"] = _lowest(
                [boot.compare([(b, s) for s in shares[b]], majority) for b in small])
    top = budgets[-1]
    mixed = [(top, s) for s in shares[top] if 0 < s < 1]
    if mixed and 1.0 in shares[top]:
        out["best_mix_minus_sft_only_large"] = boot.compare(mixed, [(top, 1.0)])
    if len(budgets) > 1 and 1.0 in shares[top] and 1.0 in shares[budgets[-2]]:
        out["sft_only_last_step_gain"] = boot.compare([(top, 1.0)], [(budgets[-2], 1.0)])
    small_sft = [(top, s) for s in shares[top] if 0 < s <= small_share]
    if 0.0 in shares[top] and small_sft:
        gap = boot.compare([(top, 0.0)], small_sft)
        out["cold_start_minus_small_sft"] = gap
        out["small_sft_gain"] = boot.compare(small_sft, [(top, 0.0)])
        formatted = scores_matrix(long, ratio, column="formatted")[(top, 0.0)]
        out["cold_start_format_rate"] = bootstrap_interval(formatted.to_numpy(float), n=n_boot,
                                                           rng=np.random.default_rng(seed))
        if boot.has(majority[0]):
            out["small_sft_minus_majority"] = boot.compare(small_sft, majority)
    if boot.has(("base", 0.0)):
        runs = rows[(rows.budget == top) & (rows.n_pft > 0)]
        pairs = [((top, r.share), _sft_start(rows, int(r.n_sft))) for r in runs.itertuples()]
        pairs = [(arm, start) for arm, start in pairs if start is not None and boot.has(start)]
        if pairs:       # the best DPO gain, each pair at the Bonferroni level over the pairs
            out["dpo_gain_large"] = _highest([boot.compare([arm], [start], level=1 - 0.05 / len(pairs))
                                              for arm, start in pairs])
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
