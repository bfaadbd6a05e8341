"""Controls of the budget claims: the notebook's tidy tables simulated (one row per test question and arm of the
equal-cost grid, with `correct` and `formatted`, plus the base model's per-question scores) and pushed through
`caplab.papers.budget.claim_evidence` and the registry's rules.

The grid is the cpu tier's (budgets 100, 300, 1,000, 3,000; shares 0, 0.05, 0.1, 0.25, 0.5, 0.75, 1) on 300 test
questions. Noise: every question has a difficulty shared by all arms (the arms are paired on questions; logit
scale, sd 1), Bernoulli correctness; the test answers are drawn so that the majority answer is right on about
16 % of questions, as on the cpu tier (0.163); the base model never answers in the format (accuracy 0). Bootstrap:
200 question resamples per draw (the notebook uses 1,000; the percentile interval is the same statistic).

The paper world (`paper_world`): SFT alone rises and plateaus, 0.6 - 0.45 exp(-n / 250) at n examples (0.30 at
100, 0.46 at 300, 0.59 at 1,000, 0.60 at 3,000); DPO on an SFT start adds up to 0.08 (0.08 m / (m + 500) for m
pairs); DPO on the base reaches 0.36 at 3,000 pairs (linear in pairs) with the format 4 points more often, so that
the best <= 10 % SFT arm is about +0.17 above it (the paper's +15-20 points on GSM8K). Each claim's null world
changes only the arms its claim compares.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from caplab.controls import Control
from caplab.papers import budget as allocation

BUDGETS = (100, 300, 1000, 3000)
SHARES = (0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0)
QUESTIONS = 300
N_BOOT = 200
MAJORITY_SHARE = 0.163
PLAN = allocation.grid(BUDGETS, SHARES, [1.0])


def sft_accuracy(n: int) -> float:
    return 0.6 - 0.45 * np.exp(-n / 250) if n > 0 else 0.0


def paper_world() -> tuple[dict, dict]:
    """True accuracy and format rate per arm (budget, share) in the paper's world."""
    acc, fmt = {}, {}
    for row in PLAN.itertuples():
        if row.n_sft == 0:
            a = 0.36 * min(1.0, row.n_pft / 3000)
            f = a + 0.04
        else:
            a = sft_accuracy(row.n_sft) + 0.08 * row.n_pft / (row.n_pft + 500)
            f = 0.97
        acc[(row.budget, row.share)], fmt[(row.budget, row.share)] = a, f
    return acc, fmt


def simulate(rng, acc: dict, fmt: dict, n: int = QUESTIONS):
    """(long, base): the notebook's grid frame and the base model's scores for one draw."""
    others = (1 - MAJORITY_SHARE) / 12
    answers = rng.choice(13, size=n, p=[MAJORITY_SHARE] + [others] * 12).astype(str)
    difficulty = rng.normal(0, 1.5, n)
    p = np.clip([acc[(b, s)] for b, s in zip(PLAN.budget, PLAN.share)], 1e-4, 1 - 1e-4)[:, None]
    f = np.array([fmt[(b, s)] for b, s in zip(PLAN.budget, PLAN.share)])[:, None]
    correct = rng.random((len(PLAN), n)) < expit(logit(p) + difficulty[None, :])
    formatted = correct | (rng.random((len(PLAN), n)) < np.maximum(0.0, f - p) / (1 - p))
    arms = PLAN.loc[PLAN.index.repeat(n)].reset_index(drop=True)
    long = arms.assign(question=np.tile(np.arange(n), len(PLAN)), answer=np.tile(answers, len(PLAN)),
                       correct=correct.ravel(), formatted=formatted.ravel())
    base = pd.DataFrame({"question": np.arange(n), "answer": answers, "correct": False, "formatted": False})
    return long, base


def _evidence(rng, acc, fmt):
    long, base = simulate(rng, acc, fmt)
    return allocation.claim_evidence(long, small_budget=1000, small_share=0.1, ratio=1.0, n_boot=N_BOOT,
                                     seed=int(rng.integers(2**31)), base=base)


def sft_wins_small(rng, planted: bool):
    acc, fmt = paper_world()
    if not planted:                      # every split of a small budget as good as SFT alone
        for b in (100, 300):
            for s in SHARES:
                acc[(b, s)], fmt[(b, s)] = acc[(b, 1.0)], fmt[(b, 1.0)]
    return _evidence(rng, acc, fmt)


def mix_wins_large(rng, planted: bool):
    acc, fmt = paper_world()
    if not planted:                      # DPO acts and SFT has plateaued, but no mix beats SFT alone
        for s in SHARES:
            if 0 < s < 1:
                acc[(3000, s)] = min(acc[(3000, s)], acc[(3000, 1.0)])
    return _evidence(rng, acc, fmt)


def cold_start(rng, planted: bool):
    acc, fmt = paper_world()
    if not planted:                      # DPO on the base as accurate as a little SFT first, format at 0.5
        level = acc[(3000, 0.05)]
        for s in (0.0, 0.05, 0.1):
            acc[(3000, s)] = level
        fmt[(3000, 0.0)] = 0.5
    return _evidence(rng, acc, fmt)


def small_sft_fixes(rng, planted: bool):
    acc, fmt = paper_world()
    if not planted:                      # a little SFT first does not help: as good as DPO on the base
        for s in (0.05, 0.1):
            acc[(3000, s)], fmt[(3000, s)] = acc[(3000, 0.0)], fmt[(3000, 0.0)]
    return _evidence(rng, acc, fmt)


CONTROLS = [
    Control("budget.sft_wins_small",
            null_world="at budgets 100 and 300 every SFT share as accurate as SFT alone (0.30 and 0.46, above the "
                       "majority answer 0.163); 300 questions paired across arms",
            planted_effect="the paper world: SFT alone on top below 1,000 (its curve is steep there: 0.30 at 100, "
                           "0.46 at 300; DPO adds at most 0.08)",
            simulate=sft_wins_small),
    Control("budget.mix_wins_large",
            null_world="DPO lifts its SFT start (+0.07 at share 0.1) and SFT alone has plateaued (0.59 -> 0.60), "
                       "but no mix at 3,000 beats SFT alone (capped at its 0.60)",
            planted_effect="the paper world: at 3,000 the mixes beat SFT alone by up to 0.06 (share 0.5), SFT "
                           "plateaued",
            simulate=mix_wins_large),
    Control("budget.cold_start",
            null_world="DPO on the base as accurate as the <= 10 % SFT arms (0.36) with the format half the time",
            planted_effect="the paper world: DPO on the base 0.36 with the format 40 % of the time; the best "
                           "<= 10 % SFT arm 0.53",
            simulate=cold_start),
    Control("budget.small_sft_fixes",
            null_world="the <= 10 % SFT arms as accurate as DPO on the base (0.36, above the majority answer)",
            planted_effect="the paper world: the best <= 10 % SFT arm +0.17 above DPO on the base (the paper: "
                           "+15-20 points on GSM8K)",
            simulate=small_sft_fixes),
]
