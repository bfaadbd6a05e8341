"""Controls of the budget claims: the notebook's tidy tables simulated (one row per training seed, test question and
arm of the equal-cost grid, with `correct`, `formatted` and the run's SFT start scored before DPO, `start_correct`,
plus the base model's per-question scores with the first-step guesser) and pushed through
`caplab.papers.budget.claim_evidence` and the registry's rules.

The design is the cpu tier's: budgets 30, 100, 300, 1,000 with `small_budget` 300; shares 0, 0.1, 0.5, 1; three
training seeds; 500 test questions (2- and 3-step chains), the same under every seed. Noise, set from the cpu
tier's runs: every question has a difficulty shared by all arms and seeds (logit scale, sd 4, each arm's offset
chosen so that its mean accuracy is the world's), so that two SFT arms near 0.8 disagree on about 13 % of questions
(the pilot: 8-13 %); a run's SFT start and its final model share one uniform draw per question, and DPO redraws 8 %
of answers at its arm's accuracy (the pilot's DPO changed 2-6 % of answers); the test answers are drawn so that the
majority answer is right on about 15 % of questions and the first-step guesser on 19 %, as on the cpu tier's test
set (0.148, 0.188); the base model never answers in the format (accuracy 0).
Seeds: each training seed shifts an SFT start's accuracy by a normal effect, shared within the seed by every arm
with the same SFT count (they start from the same cached SFT run, with the same per-question draws), whose sd
depends on that count as in the cpu run: 0.06 below 100 examples (`SEED_SD_FEW`: which few examples a seed draws
matters), 0.01 from 100 on (`SEED_SD_MANY`: SFT has saturated, seeds agree); DPO adds its own of sd 0.017
(`DPO_SEED_SD`; a DPO run on the base, share 0, one of sd 0.04, `SEED_SD`). With the fresh per-question draws of
each seed this gives between-seed sds of about 0.06 and 0.015-0.02: the 3-seed cold cpu run (seeds 0, 1, 2)
measured 0.038-0.086 (root mean square 0.059) for the arms with fewer than 100 SFT examples and 0.003-0.037 for the
others, and 0.002-0.029 (root mean square 0.019) for DPO's own gain.
Bootstrap: 200 draws per simulated run (the notebook uses 1,000; the same statistic). With the seeds resampled
(a two-stage bootstrap, an earlier design) the null worlds read 5.0 % (mix_wins_large) and 6.0 % (small_sft_fixes)
false positives; `claim_evidence` gives the seed part a t interval over seeds (`caplab.papers.budget._Boot`). The
one-seed design, with seed effects of sd 0.04 for every SFT start (`simulate(..., seeds=1)`) and intervals over questions only, reads 18 %
(mix_wins_large) and 31.5 % (small_sft_fixes) false positives: one seed takes a seed's luck for an allocation
effect. Each arm's own t interval on 2 degrees of freedom left 3 % power for sft_wins_small and mix_wins_large;
the moderated seed variances (`caplab.stats.moderation`) give 51 % and 11 %, with false positives still at most
1.5 % under these unequal seed variances.

The paper world (`paper_world`): SFT alone rises and saturates, 0.8 (1 - exp(-n / 25)) at n examples (0.56 at 30,
0.78 at 100, 0.80 at 300 and 1,000; the pilot: 0.62, 0.78, 0.81, 0.78); DPO on an SFT start adds up to 0.08
(0.08 m / (m + 500) for m pairs); DPO on the base reaches 0.36 at 1,000 pairs (linear in pairs) with the format
4 points more often, so that the best <= 10 % SFT arm is far above it (the paper's +15-20 points on GSM8K). Each
claim's null world changes only the arms its claim compares.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit

from caplab.controls import Control
from caplab.papers import budget as allocation

BUDGETS = (30, 100, 300, 1000)
SMALL_BUDGET = 300
SHARES = (0.0, 0.1, 0.5, 1.0)
QUESTIONS = 500
N_BOOT = 200
MAJORITY_SHARE = 0.148
FIRST_STEP_SHARE = 0.188
DIFFICULTY_SD = 4.0
DPO_REDRAW = 0.08
SEEDS = 3
SEED_SD = 0.04
SEED_SD_FEW, FEW = 0.06, 100
SEED_SD_MANY = 0.01
DPO_SEED_SD = 0.017
PLAN = allocation.grid(BUDGETS, SHARES, [1.0])


def sft_accuracy(n: int) -> float:
    return 0.8 * (1 - np.exp(-n / 25)) if n > 0 else 0.0


_Z, _W = np.polynomial.hermite_e.hermegauss(61)
_W = _W / _W.sum()
_GRID = np.linspace(-40, 40, 4001)
_MEANS = (_W[None, :] * expit(_GRID[:, None] + DIFFICULTY_SD * _Z[None, :])).sum(1)     # increasing in the offset


def _offset(p: np.ndarray) -> np.ndarray:
    """The logit offset whose accuracy, averaged over question difficulties (normal, sd DIFFICULTY_SD), is p."""
    return np.interp(np.clip(p, 1e-4, 1 - 1e-4), _MEANS, _GRID)


def paper_world() -> tuple[dict, dict, dict]:
    """True accuracy, format rate and SFT-start accuracy per arm (budget, share) in the paper's world."""
    acc, fmt, start = {}, {}, {}
    for row in PLAN.itertuples():
        arm = (row.budget, row.share)
        start[arm] = sft_accuracy(row.n_sft)
        if row.n_sft == 0:
            acc[arm] = 0.36 * min(1.0, row.n_pft / 1000)
            fmt[arm] = acc[arm] + 0.04
        else:
            acc[arm] = start[arm] + 0.08 * row.n_pft / (row.n_pft + 500)
            fmt[arm] = 0.97
    return acc, fmt, start


def simulate(rng, acc: dict, fmt: dict, start: dict, n: int = QUESTIONS, seeds: int = SEEDS):
    """(long, base): the notebook's grid frame (every arm under `seeds` training seeds, on the same questions) and
    the base model's scores for one draw. Within a seed, every arm with the same SFT count starts from one SFT
    model (one seed effect and one set of per-question draws, as in `run_grid`, where it is the same cached run)."""
    others = (1 - MAJORITY_SHARE) / 12
    answers = rng.choice(13, size=n, p=[MAJORITY_SHARE] + [others] * 12).astype(str)
    difficulty = rng.normal(0, DIFFICULTY_SD, n)
    arms = list(zip(PLAN.budget, PLAN.share))
    n_sft, n_pft = PLAN.n_sft.to_numpy(), PLAN.n_pft.to_numpy()
    starts, which = np.unique(n_sft, return_inverse=True)                  # one SFT start per distinct count
    start_sd = np.where(starts < FEW, SEED_SD_FEW, SEED_SD_MANY)
    sft_effect = np.where(n_sft > 0, rng.normal(0, start_sd, (seeds, len(starts)))[:, which], 0)   # (seed, arm)
    dpo_effect = np.where(n_pft > 0, rng.normal(0, np.where(n_sft > 0, DPO_SEED_SD, SEED_SD), (seeds, len(PLAN))), 0)
    p = np.array([acc[a] for a in arms])[None, :] + sft_effect + dpo_effect
    p0 = np.array([start[a] for a in arms])[None, :] + sft_effect
    f = np.array([fmt[a] for a in arms])[None, :, None]
    p, p0 = (np.clip(x, 1e-4, 1 - 1e-4)[:, :, None] for x in (p, p0))
    shape = (seeds, len(PLAN), n)
    u = rng.random((seeds, len(starts), n))[:, which]
    redraw = (rng.random(shape) < DPO_REDRAW) & (n_pft[None, :, None] > 0)
    correct = np.where(redraw, rng.random(shape) < p, u < expit(_offset(p) + difficulty))
    start_correct = np.where(n_sft[None, :, None] == 0, False, u < expit(_offset(p0) + difficulty))
    start_correct = np.where(n_pft[None, :, None] == 0, correct, start_correct)
    formatted = correct | (rng.random(shape) < np.maximum(0.0, f - p) / (1 - p))
    rows = PLAN.loc[np.tile(PLAN.index.repeat(n), seeds)].reset_index(drop=True)
    long = rows.assign(question=np.tile(np.arange(n), seeds * len(PLAN)), answer=np.tile(answers, seeds * len(PLAN)),
                       correct=correct.ravel(), formatted=formatted.ravel(), start_correct=start_correct.ravel(),
                       seed=np.repeat(np.arange(seeds), len(PLAN) * n))
    base = pd.DataFrame({"question": np.arange(n), "answer": answers, "correct": False, "formatted": False,
                         "first_step": rng.random(n) < FIRST_STEP_SHARE})
    return long, base


def _evidence(rng, acc, fmt, start):
    long, base = simulate(rng, acc, fmt, start)
    return allocation.claim_evidence(long, small_budget=SMALL_BUDGET, small_share=0.1, ratio=1.0, n_boot=N_BOOT,
                                     seed=int(rng.integers(2**31)), base=base)


def sft_wins_small(rng, planted: bool):
    acc, fmt, start = paper_world()
    if not planted:                      # every split of a small budget as good as SFT alone
        for b in (30, 100):
            for s in SHARES:
                acc[(b, s)], fmt[(b, s)] = acc[(b, 1.0)], fmt[(b, 1.0)]
    return _evidence(rng, acc, fmt, start)


def mix_wins_large(rng, planted: bool):
    acc, fmt, start = paper_world()
    if not planted:                      # DPO acts and SFT has plateaued, but no mix beats SFT alone
        for s in SHARES:
            if 0 < s < 1:
                acc[(1000, s)] = min(acc[(1000, s)], acc[(1000, 1.0)])
    return _evidence(rng, acc, fmt, start)


def cold_start(rng, planted: bool):
    acc, fmt, start = paper_world()
    if not planted:                      # DPO on the base as accurate as a little SFT first, format at 0.5
        level = acc[(1000, 0.1)]
        for s in (0.0, 0.1):
            acc[(1000, s)] = level
        fmt[(1000, 0.0)] = 0.5
    return _evidence(rng, acc, fmt, start)


def small_sft_fixes(rng, planted: bool):
    acc, fmt, start = paper_world()
    if not planted:                      # a little SFT first does not help: as good as DPO on the base (0.36,
        acc[(1000, 0.1)], fmt[(1000, 0.1)] = 0.36, 0.40    # above both guessers)
    return _evidence(rng, acc, fmt, start)


CONTROLS = [
    Control("budget.sft_wins_small",
            null_world="at budgets 30 and 100 every SFT share as accurate as SFT alone (0.56 and 0.78, above both "
                       "guessers: majority 0.148, first step 0.188); 500 questions x 3 training seeds paired across "
                       "arms",
            planted_effect="the paper world: SFT alone on top below 300 (0.56 at 30, 0.78 at 100; share 0.5 0.36 "
                           "and 0.70; DPO adds at most 0.08)",
            simulate=sft_wins_small),
    Control("budget.mix_wins_large",
            null_world="DPO lifts its SFT start (+0.05 at share 0.1, +0.04 at 0.5) and SFT alone has plateaued "
                       "(0.800 -> 0.800), but no mix at 1,000 beats SFT alone (capped at its 0.80)",
            planted_effect="the paper world: at 1,000 the mixes at shares 0.1 and 0.5 beat SFT alone by 0.04 "
                           "(0.84 against 0.80), SFT plateaued",
            simulate=mix_wins_large),
    Control("budget.cold_start",
            null_world="DPO on the base as accurate as the share-0.1 arm (0.84) with the format half the time",
            planted_effect="the paper world: DPO on the base 0.36 with the format 40 % of the time; the "
                           "share-0.1 arm 0.84",
            simulate=cold_start),
    Control("budget.small_sft_fixes",
            null_world="the share-0.1 arm as accurate as DPO on the base (0.36, above both guessers)",
            planted_effect="the paper world: the share-0.1 arm +0.48 above DPO on the base (the paper: +15-20 "
                           "points on GSM8K; the analogue's SFT elicits more)",
            simulate=small_sft_fixes),
]
