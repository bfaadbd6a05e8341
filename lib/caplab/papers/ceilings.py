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
from caplab.stats.resampling import percentile_interval, resample_indices


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


Interval = tuple[float, float, float]          # (value, lo, hi)


def _percentile(value: float, draws: np.ndarray) -> Interval:
    return (float(value), *percentile_interval(draws[np.isfinite(draws)]))


def panel(frame: pd.DataFrame, value: str, unit: str, x: str = "log_params") -> tuple[np.ndarray, np.ndarray]:
    """(x per column, unit x column matrix of `value`): a balanced panel, one row per unit (question or problem),
    one column per model, columns in increasing `x`."""
    wide = frame.pivot_table(index=unit, columns=x, values=value, aggfunc="mean")
    if wide.isna().any().any():
        raise ValueError(f"{value}: not every {unit} was scored by every model")
    return wide.columns.to_numpy(float), wide.to_numpy(float)


def cluster_slope(xs: np.ndarray, matrix: np.ndarray, idx: np.ndarray) -> Interval:
    """The OLS slope of the panel's values on x (every unit at every x) with a percentile interval from resampling
    whole units (rows of `idx`): clustered by unit. On a balanced panel the pooled slope is the mean of the units'
    own slopes."""
    if len(np.unique(xs)) < 2:
        raise ValueError("a slope needs at least two distinct x values")
    w = (xs - xs.mean()) / ((xs - xs.mean()) ** 2).sum()
    per_unit = matrix @ w
    return _percentile(per_unit.mean(), per_unit[idx].mean(axis=1))


def paired_mean(diff: np.ndarray, idx: np.ndarray) -> Interval:
    """A mean of per-unit paired differences with its percentile interval over resampled units."""
    return _percentile(diff.mean(), diff[idx].mean(axis=1))


def knowledge_evidence(final: pd.DataFrame, guessers: pd.DataFrame, *, n_boot: int,
                       rng: np.random.Generator) -> dict[str, Interval]:
    """The knowledge claims' evidence from one row per question and model at the last checkpoint (`question`,
    `log_params`, `accuracy`, `log_p_vocab`) and the prior-only guessers (`capability.prior_guessers`). One set of
    resampled questions serves every interval: the slopes are clustered by question, and the largest model is
    compared with each guesser paired over the same questions."""
    xs, acc = panel(final, "accuracy", "question")
    _, loss = panel(final.assign(answer_loss=-final.log_p_vocab), "answer_loss", "question")
    g = guessers.set_index("question").loc[np.sort(final.question.unique())]
    idx = resample_indices(len(acc), n_boot, rng)
    largest = acc[:, -1]
    chance, prior, answers = (g[c].to_numpy(float) for c in ("chance", "corpus_prior", "answer_prior"))
    return {"knowledge_accuracy_slope": cluster_slope(xs, acc, idx),
            "knowledge_answer_loss_slope": cluster_slope(xs, loss, idx),
            "knowledge_accuracy_largest": paired_mean(largest, idx),
            "knowledge_chance": paired_mean(chance, idx),
            "knowledge_prior_corpus": paired_mean(prior, idx),
            "knowledge_prior_answers": paired_mean(answers, idx),
            "knowledge_largest_minus_chance": paired_mean(largest - chance, idx),
            "knowledge_largest_minus_prior": paired_mean(largest - prior, idx)}


def arithmetic_evidence(final: pd.DataFrame, lookup: np.ndarray, *, n_boot: int,
                        rng: np.random.Generator) -> dict[str, Interval]:
    """The arithmetic claim's evidence from one row per problem and model at the last checkpoint (`problem`,
    `log_params`, `arith_correct`, `arith_loss_sum`, `arith_n_tokens`) and the lookup-table baseline per problem
    (`capability.lookup_baseline`): slopes clustered by problem; the best model's exact match, and its paired
    difference from the lookup table, with the choice of the best model redone in every resample."""
    xs, correct = panel(final, "arith_correct", "problem")
    _, loss = panel(final.assign(arith_loss=final.arith_loss_sum / final.arith_n_tokens.clip(lower=1)),
                    "arith_loss", "problem")
    lookup = np.asarray(lookup, dtype=float)
    if len(lookup) != len(correct):
        raise ValueError(f"{len(correct)} problems but {len(lookup)} lookup baselines")
    idx = resample_indices(len(correct), n_boot, rng)
    best = correct[idx].mean(axis=1).max(axis=1)
    return {"arith_accuracy_slope": cluster_slope(xs, correct, idx),
            "arith_answer_loss_slope": cluster_slope(xs, loss, idx),
            "arith_accuracy_best": _percentile(correct.mean(0).max(), best),
            "arith_lookup_baseline": paired_mean(lookup, idx),
            "arith_best_minus_lookup": _percentile(correct.mean(0).max() - lookup.mean(),
                                                   best - lookup[idx].mean(axis=1))}


def swap_evidence(own: pd.DataFrame, swapped: pd.DataFrame, floor: pd.DataFrame, *, n_boot: int,
                  rng: np.random.Generator) -> dict[str, Interval]:
    """The swap claim's evidence from per-sequence next-token hits (`hits`, `scored`; `capability.sequence_hits`,
    `capability.bigram_floor`) of the recipient on its own, under the full swap (every layer, lambda 1), and of the
    bigram floor, on the same held-out sequences: accuracies, the recipient's margin over the floor, and the share
    of that margin the swap keeps, (swapped - floor) / (own - floor), resampling sequences."""
    scored = own.scored.to_numpy(float)
    if not (np.array_equal(scored, swapped.scored.to_numpy(float)) and np.array_equal(scored, floor.scored)):
        raise ValueError("own, swapped and floor hits must be counted on the same scored positions")
    o, s, f = (t.hits.to_numpy(float) for t in (own, swapped, floor))
    idx = resample_indices(len(o), n_boot, rng)
    total = scored[idx].sum(1)
    margin = (o - f)[idx].sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        retained = np.where(margin > 0, (s - f)[idx].sum(1) / margin, np.nan)
    # where the recipient does not beat the floor the ratio is still given (the guard on own - floor says it cannot
    # be read); resamples in which it does not are left out of the interval
    ratio = (s - f).sum() / (o - f).sum() if (o - f).sum() != 0 else np.nan
    return {"swap_recipient_accuracy": _percentile(o.sum() / scored.sum(), o[idx].sum(1) / total),
            "swap_swapped_accuracy": _percentile(s.sum() / scored.sum(), s[idx].sum(1) / total),
            "swap_bigram_floor": _percentile(f.sum() / scored.sum(), f[idx].sum(1) / total),
            "swap_own_minus_floor": _percentile((o - f).sum() / scored.sum(), margin / total),
            "swap_retained_above_floor": (float(ratio), *percentile_interval(retained, ignore_nan=True))
            if np.isfinite(retained).any() else (float(ratio), np.nan, np.nan)}


def swap_retention(swaps: pd.DataFrame, metric: str = "accuracy") -> tuple[float, float, float | None]:
    """(own, swapped, retained): the recipient's metric without a swap (lambda 0) and under the full swap of every
    layer (lambda 1), and the share it keeps (None when it had nothing to lose)."""
    every = swaps[swaps.layer_set == "all"]
    own = float(every[every.lam == 0][metric].iloc[0])
    swapped = float(every[every.lam == 1][metric].iloc[0])
    return own, swapped, (swapped / own if own > 0 else None)


def downstream_evidence(corr: pd.DataFrame, *, n_boot: int, rng: np.random.Generator, high: float = 0.75,
                        moving: float = 0.5) -> dict[str, Interval | float]:
    """The downstream claims' evidence from the per-question Spearman correlations with log compute
    (`capability.sample_correlations`), resampling questions (one set of resamples, paired across steps).

    Correlation shares: the share of questions whose score correlates above `high`; a step's drop is that share for
    log p_vocab(correct) minus the step's, over the questions where both correlations are defined (a score that never
    varies has no correlation: such questions are left out and their share is reported, not counted as "not
    above"; `corr_questions_defined` counts those left, and a drop over no question reads 0).

    Incorrect mass: a question's incorrect choices move when their vocabulary-level mass correlates with log compute
    beyond `moving` in absolute value AND so does their mass relative to the correct choice's (log-odds of the
    incorrect choices after renormalising over the choices): format learning moves every choice together and leaves
    the relative mass still; learning the correct answer alone leaves the incorrect mass still."""
    wide = corr.pivot(index="question", columns="score", values="spearman")
    idx = resample_indices(len(wide), n_boot, rng)
    base = wide["log_p_vocab"].to_numpy(float)
    out: dict[str, Interval | float] = {}
    defined = []
    for step, name in (("p_choices", "choices"), ("accuracy", "accuracy")):
        other = wide[step].to_numpy(float)
        both = np.isfinite(base) & np.isfinite(other)
        defined.append(int(both.sum()))
        diff = np.where(both, (base > high).astype(float) - (other > high), 0.0)
        draws = diff[idx].sum(1) / both[idx].sum(1).clip(min=1)
        out[f"corr_share_drop_loglik_to_{name}"] = _percentile(diff.sum() / max(both.sum(), 1), draws)
        out[f"corr_share_undefined_{name}"] = float(1 - np.isfinite(other).mean())
    out["corr_questions_defined"] = float(min(defined))
    for step in ("log_p_vocab", "p_choices", "accuracy"):
        values = wide[step].to_numpy(float)
        out[f"corr_share_{step}"] = float((values[np.isfinite(values)] > high).mean()) if np.isfinite(values).any() \
            else float("nan")
    vocab = np.abs(wide["p_vocab_incorrect"].to_numpy(float)) > moving
    relative = np.abs(wide["log_odds_incorrect"].to_numpy(float)) > moving
    out["incorrect_mass_share_moving"] = paired_mean(vocab.astype(float), idx)
    out["incorrect_mass_share_moving_relative"] = paired_mean((vocab & relative).astype(float), idx)
    return out


NOTES = {
    "knowledge_accuracy_slope": "per decade of parameters, last checkpoint; interval resampling questions",
    "knowledge_answer_loss_slope": "correct choice's loss (nats) per decade of parameters; resampling questions",
    "knowledge_accuracy_largest": "largest model, last checkpoint",
    "knowledge_chance": "uniform guess over the choices",
    "knowledge_prior_corpus": "prior-only guesser: the choice the training corpus mentions most",
    "knowledge_prior_answers": "prior-only guesser: the majority answer of the other questions",
    "knowledge_largest_minus_chance": "paired over the same questions",
    "knowledge_largest_minus_prior": "largest model minus the corpus-prior guesser, paired over the same questions",
    "arith_accuracy_slope": "exact match per decade of parameters; one row per problem and model, resampling problems",
    "arith_answer_loss_slope": "answer loss (nats per token) per decade of parameters; resampling problems",
    "arith_accuracy_best": "best model at the last checkpoint (the best is re-chosen in every resample)",
    "arith_lookup_baseline": "a lookup table of the training problems (majority answer where unseen)",
    "arith_best_minus_lookup": "best model minus the lookup table, paired over the same problems",
    "swap_recipient_accuracy": "teacher-forced next-token accuracy, held-out corpus, no swap",
    "swap_swapped_accuracy": "full swap: every layer, lambda 1",
    "swap_bigram_floor": "a bigram model of the training tokens, same positions",
    "swap_own_minus_floor": "recipient minus the bigram floor; resampling sequences",
    "swap_retained_above_floor": "(swapped - floor) / (own - floor); resampling sequences",
    "corr_share_drop_loglik_to_choices": "share of questions with Spearman > 0.75, log p_vocab minus p_choices "
                                         "(questions with both correlations defined)",
    "corr_share_drop_loglik_to_accuracy": "share of questions with Spearman > 0.75, log p_vocab minus accuracy "
                                          "(questions with both correlations defined)",
    "corr_share_undefined_choices": "share of questions whose p_choices never varies (no correlation)",
    "corr_share_undefined_accuracy": "share of questions whose accuracy never varies (no correlation)",
    "corr_questions_defined": "questions whose correlations are defined for log p_vocab and the step (the fewer of "
                              "p_choices and accuracy)",
    "incorrect_mass_share_moving": "|Spearman| > 0.5 for the incorrect choices' vocabulary-level mass alone",
    "incorrect_mass_share_moving_relative": "|Spearman| > 0.5 for the incorrect mass both at the vocabulary level "
                                            "and relative to the correct choice's",
}


def record(report, evidence: dict, figure: str | None = None) -> None:
    """Record every evidence item (a value or (value, lo, hi); an interval that could not be formed is dropped)."""
    for name, item in evidence.items():
        value, lo, hi = item if isinstance(item, tuple) else (item, None, None)
        if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
            lo = hi = None
        report.record(name, value, lo=lo, hi=hi, figure=figure, note=NOTES.get(name, ""))
