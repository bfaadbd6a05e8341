"""Capabilities across a model family: knowledge multiple choice, arithmetic, trends with scale, the downstream chain.

`knowledge_rows` scores multiple-choice questions at one checkpoint (one row per question, with every choice's
summed log-probability, lm-evaluation-harness style); `skill_summary` measures held-out corpus loss and arithmetic
(greedy exact match and the answer's loss). `trend` regresses a measure on log parameters (OLS, robust standard
errors). `downstream_chain` turns per-question log-probabilities into Schaeffer et al.'s chain
log p_vocab(correct) -> p_vocab(correct) -> p_choices(correct) -> Brier -> accuracy, and `sample_correlations`
correlates each question's score with log compute across the family.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from caplab.stats.regression import slope
from caplab.substrate.data import TokenDataset
from caplab.substrate.evaluate import greedy_exact_match, mean_loss, score_multiple_choice

CHAIN = ("log_p_vocab", "p_vocab", "p_choices", "neg_brier", "accuracy")


def knowledge_rows(model, tokenizer, row, *, questions: pd.DataFrame, batch_size: int = 32) -> list[dict]:
    """One dict per question: question index, every choice's log-probability, the answer, correct."""
    scored = score_multiple_choice(model, tokenizer, questions, batch_size)
    scored.insert(0, "question", np.arange(len(scored)))
    return scored.drop(columns=[c for c in scored.columns if c.startswith("n_tokens_")]).to_dict("records")


def skill_summary(model, tokenizer, row, *, corpus: TokenDataset, arithmetic: TokenDataset, prompts: list[str],
                  answers: list[str], batch_size: int = 64) -> dict:
    """Held-out corpus loss, arithmetic answer loss (teacher forced), and greedy exact match on arithmetic."""
    exact = greedy_exact_match(model, tokenizer, prompts, answers, batch_size=batch_size)
    return {"corpus_loss": mean_loss(model, corpus, batch_size), "arith_answer_loss": mean_loss(model, arithmetic,
                                                                                                 batch_size),
            "arith_accuracy": float(exact.correct.mean()), "arith_n": len(exact)}


def trend(frame: pd.DataFrame, y: str, x: str = "log_params", alpha: float = 0.05) -> dict:
    """Slope of `y` on `x` (OLS, HC1 standard errors) with its interval and p-value."""
    if frame[x].nunique() < 2:
        raise ValueError(f"a trend needs at least two distinct {x} values")
    return slope(frame, y, x, robust=True, alpha=alpha)


def downstream_chain(rows: pd.DataFrame) -> pd.DataFrame:
    """Add the chain's scores to per-question rows holding `logprob_0..k-1` and `answer`: log p_vocab of the correct
    choice, p_vocab, p_choices (renormalised over the choices), minus the Brier score (higher is better), accuracy,
    and the probability mass (vocabulary-level) on the incorrect choices."""
    columns = sorted((c for c in rows.columns if c.startswith("logprob_") and c[8:].isdigit()), key=lambda c: int(c[8:]))
    if not columns or "answer" not in rows:
        raise ValueError("rows need logprob_0..k-1 and answer columns")
    logp = rows[columns].to_numpy(float)
    answer = rows.answer.to_numpy(int)
    pick = np.arange(len(rows))
    p_choices = np.exp(logp - logp.max(axis=1, keepdims=True))
    p_choices /= p_choices.sum(axis=1, keepdims=True)
    onehot = np.eye(len(columns))[answer]
    out = rows.copy()
    out["log_p_vocab"] = logp[pick, answer]
    out["p_vocab"] = np.exp(out.log_p_vocab)
    out["p_choices"] = p_choices[pick, answer]
    out["neg_brier"] = -((p_choices - onehot) ** 2).sum(axis=1)
    out["accuracy"] = (logp.argmax(axis=1) == answer).astype(float)
    out["p_vocab_incorrect"] = np.exp(logp).sum(axis=1) - out.p_vocab
    return out


def sample_correlations(chain: pd.DataFrame, x: str = "log_compute", scores=CHAIN + ("p_vocab_incorrect",),
                        sample: str = "question") -> pd.DataFrame:
    """Per sample and score: Pearson, Spearman and Kendall correlation of the score with `x` across the family's
    points (NaN where the score does not vary)."""
    rows = []
    for key, group in chain.groupby(sample):
        for score in scores:
            values = group[score].to_numpy(float)
            if np.ptp(values) == 0 or group[x].nunique() < 3:
                rho = dict(pearson=np.nan, spearman=np.nan, kendall=np.nan)
            else:
                rho = dict(pearson=stats.pearsonr(group[x], values)[0],
                           spearman=stats.spearmanr(group[x], values)[0],
                           kendall=stats.kendalltau(group[x], values)[0])
            rows.append({sample: key, "score": score, **rho})
    return pd.DataFrame(rows)


def answer_accuracy_metric(logits, batch) -> dict:
    """Teacher-forced exact match on the scored (label != -100) positions of each row, for attention-swap sweeps."""
    predicted = logits[:, :-1].argmax(-1)
    labels = batch["labels"][:, 1:]
    scored = labels != -100
    right = ((predicted == labels) | ~scored).all(dim=1)
    return {"accuracy": float(right.float().mean())}


def token_accuracy_metric(logits, batch) -> dict:
    """Teacher-forced next-token accuracy over the scored (label != -100) positions, for attention-swap sweeps."""
    predicted = logits[:, :-1].argmax(-1)
    labels = batch["labels"][:, 1:]
    scored = labels != -100
    return {"accuracy": float(((predicted == labels) & scored).sum() / scored.sum())}
