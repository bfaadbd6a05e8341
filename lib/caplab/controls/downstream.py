"""Controls of the downstream claims: the chain's per-question rows (every choice's log-probability at every model
and checkpoint) simulated with 600 questions, 4 choices, 6 models x 4 checkpoints (the cpu tier follows about 1,300
seen-fact questions: the power measured here is a lower bound, and the false-positive rate of the interval rules does
not grow with more questions), pushed through the notebook's functions (`capability.downstream_chain`,
`capability.sample_correlations`, `capability.mass_covariation`, `papers.ceilings.downstream_evidence`) and the
registry's rules. Bootstraps use 200 resamples.

A question's choices get log-probabilities alpha + trend x z + noise, z the standardised log compute of the point
(the same points for every question). The worlds differ in which choices carry a trend."""
from __future__ import annotations

import numpy as np
import pandas as pd

from caplab.controls import Control
from caplab.papers import ceilings as exp
from caplab.science import capability

N_BOOT = 200
N_Q, N_C = 600, 4
PARAMS = np.array([3312, 6592, 12768, 38176, 84912, 150080])   # the cpu tier: 6 sizes, 4 log-spaced checkpoints
TOKENS = np.geomspace(1.5e5, 1.8e6, 4)
LOG_COMPUTE = np.log10(6 * np.repeat(PARAMS, len(TOKENS)) * np.tile(TOKENS, len(PARAMS)))
Z = (LOG_COMPUTE - LOG_COMPUTE.mean()) / LOG_COMPUTE.std()
N_P = len(Z)


def chain_rows(logp: np.ndarray, answer: np.ndarray) -> pd.DataFrame:
    """Tidy rows (question, log_compute, logprob_0..3, answer) from a question x point x choice array."""
    rows = pd.DataFrame({"question": np.repeat(np.arange(N_Q), N_P), "log_compute": np.tile(LOG_COMPUTE, N_Q),
                         "answer": np.repeat(answer, N_P)})
    for j in range(N_C):
        rows[f"logprob_{j}"] = logp[:, :, j].ravel()
    return rows


def world(rng, *, correct_trend, wrong_trend, shared_trend, wrong_noise: float, noise: float = 0.35):
    """logp[q, p, j] = alpha[q, j] + (shared + own trend of the choice) x z[p] + noise; `correct_trend` and
    `wrong_trend` are (question x choice) arrays or scalars added to the correct / incorrect choices' trend,
    `shared_trend` (per question) is added to every choice (format learning)."""
    answer = rng.integers(0, N_C, N_Q)
    is_correct = np.eye(N_C, dtype=bool)[answer]                                     # question x choice
    trend = np.where(is_correct, correct_trend, wrong_trend) + np.asarray(shared_trend).reshape(-1, 1)
    scale = np.where(is_correct, noise, wrong_noise)
    alpha = rng.normal(-8.0, 1.0, (N_Q, N_C))
    logp = alpha[:, None, :] + trend[:, None, :] * Z[None, :, None] \
        + scale[:, None, :] * rng.normal(size=(N_Q, N_P, N_C))
    chain = capability.downstream_chain(chain_rows(logp, answer))
    corr = capability.sample_correlations(chain, methods=("spearman",))          # the evidence reads Spearman only
    return exp.downstream_evidence(corr, capability.mass_covariation(chain, methods=("spearman",)), n_boot=N_BOOT,
                                   rng=rng)


def planted_world(rng):
    """The paper's picture: log p_vocab(correct) rises with compute and correlates above 0.75 for ~90 % of the
    questions; the incorrect choices' mass also moves with compute (a shared format trend plus a drift of each
    choice's own, sd 0.5), so that after renormalising over the choices only ~40 % do (over 8 draws: 0.94 and 0.39;
    the incorrect mass then moves, in both senses, for ~0.49 of the questions)."""
    return world(rng, correct_trend=0.35, wrong_trend=rng.normal(0.0, 0.5, (N_Q, N_C)),
                 shared_trend=np.abs(rng.normal(0.35, 0.2, N_Q)), wrong_noise=0.35)


def degrades(rng, planted: bool):
    if planted:
        return planted_world(rng)
    # null: only the correct choice moves (the incorrect choices' log-probabilities are fixed per question), so the
    # renormalisation over choices is monotone in log p_vocab(correct) and the chain can only lose correlation at
    # accuracy's 0/1 steps
    return world(rng, correct_trend=np.abs(rng.normal(1.0, 0.35, (N_Q, 1))), wrong_trend=0.0, shared_trend=0.0,
                 wrong_noise=0.0)


def mass_moves(rng, planted: bool):
    if planted:
        return planted_world(rng)
    # null: only the correct answer is learned: the correct choice's log-probability rises with compute, the
    # incorrect choices' have no trend (noise on every choice), so their mass does not follow the correct mass
    learn = np.abs(rng.normal(1.0, 0.35, (N_Q, 1)))
    return world(rng, correct_trend=learn, wrong_trend=0.0, shared_trend=0.0, wrong_noise=0.35)


CONTROLS = [
    Control("downstream.correlation_degrades",
            null_world="only the correct choice's log-probability moves with compute (the incorrect choices' fixed): "
                       "renormalisation is monotone, so the largest drop cannot be there (accuracy's 0/1 steps lose "
                       "the most); 600 questions x 20 points",
            planted_effect="the paper's chain: ~90 % of questions above 0.75 for log p_vocab(correct), ~40 % after "
                           "renormalising (the incorrect choices' mass moves at choice-specific rates)",
            simulate=degrades),
    Control("downstream.incorrect_mass_moves",
            null_world="only the correct answer is learned: the incorrect choices' log-probabilities have no trend "
                       "(noise on every choice), so their mass does not follow the correct mass",
            planted_effect="the incorrect choices' mass moves at choice-specific rates besides the shared format "
                           "trend (the paper's chain: ~90 % above 0.75 for log-likelihood, ~40 % after "
                           "renormalising)",
            simulate=mass_moves),
]
