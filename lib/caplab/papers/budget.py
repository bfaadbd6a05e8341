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
import json
import re
from typing import Callable

import numpy as np
import pandas as pd

from caplab.papers import _types as T
from caplab.params import Tier
from caplab.stats.moderation import variance_prior
from caplab.stats.resampling import bootstrap_interval, resample_indices
from caplab.substrate import chains, runlog
from caplab.substrate.sweep import parallel


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
    small_budget: T.Count            # budgets below it are 'small' (the paper: < 1,000; scaled where SFT saturates earlier)
    shares: list[float]              # SFT share of each budget
    cost_ratios: list[float]         # c_PFT / c_SFT
    ratio_budgets: list[T.Count]     # budgets run under the ratios other than 1
    sft: T.SFT                       # SFT settings; `fixed_steps` gives every arm the same optimisation
    dpo: T.DPO                       # DPO settings; lr and beta are overridden by the sweep's choice
    dpo_sweep_lrs: list[float]       # DPO's lr and beta are picked on held-out preference accuracy ...
    dpo_sweep_betas: list[float]
    dpo_sweep_start: T.Count         # ... from the SFT model on this many examples (seed 0)
    dpo_sweep_pairs: T.Count         # ... trained on this many pairs
    held_out_pairs: T.Count          # ... and scored on this many preference pairs outside every pool
    train_seeds: T.Seeds             # training seeds (which examples are drawn, and the trainers' seeds)
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


def draw(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """The first `n` rows of the seed-th shuffle of a pool, so that within a seed a smaller budget's examples are
    part of a larger one's, and every budget is drawn from the whole pool (a generated pool's own order drifts:
    `chains.problems` runs out of distinct short chains first, so its first rows hold more of them)."""
    if n > len(frame):
        raise ValueError(f"asked for {n} rows of a pool of {len(frame)}")
    order = np.random.default_rng(seed).permutation(len(frame))
    return frame.iloc[order[:n]].reset_index(drop=True)


def run_grid(plan: pd.DataFrame, base: dict, train_sft: Callable[[dict, int, int], dict],
             train_dpo: Callable[[dict, int, int], dict], score: Callable[[dict], pd.DataFrame],
             seeds=(0,), log: Callable[[str], None] = runlog.progress, prefetch: bool = False) -> pd.DataFrame:
    """Every run of `plan` under every seed: `train_sft(base, n_sft, seed)` -> the SFT start, `train_dpo(start,
    n_pft, seed)` -> the final model; `score(spec)` -> one row per test question (question, correct, formatted)
    for both, so that DPO's own gain is paired on the same questions (`start_correct`). Returns the long frame:
    seed x plan columns x questions. `prefetch`: the three callables are cached steps, so first run every
    distinct SFT start, then every DPO run, then every score side by side (`caplab.substrate.sweep.parallel`);
    the loop then reads them back."""
    if prefetch:        # the same calls, side by side on the machine's cores (each fills the cache), in three
        runs = [(seed, row) for seed in seeds for row in plan.itertuples(index=False)]     # waves: SFT, DPO, scores
        starts = {(seed, row.n_sft): (lambda s=seed, n=row.n_sft: train_sft(base, n, s)) for seed, row in runs}
        finals = {(seed, row.n_sft, row.n_pft): (lambda s=seed, r=row: train_dpo(train_sft(base, r.n_sft, s),
                                                                                 r.n_pft, s)) for seed, row in runs}
        parallel(list(starts.values()), costs=[n for _, n in starts])
        models = parallel(list(finals.values()), costs=[n for _, _, n in finals])
        starts = parallel(list(starts.values()))
        parallel([lambda m=m: score(m) for m in {json.dumps(m, sort_keys=True): m for m in starts + models}.values()])
    frames = []
    for seed in seeds:
        for i, row in enumerate(plan.itertuples(index=False), 1):
            start = train_sft(base, row.n_sft, seed)
            final = train_dpo(start, row.n_pft, seed)
            before = score(start)
            scored = score(final) if final != start else before.copy()
            scored["start_correct"] = before.set_index("question").correct.reindex(scored.question).to_numpy()
            for name, value in row._asdict().items():
                scored[name] = value
            scored["seed"] = seed
            frames.append(scored)
            log(f"seed {seed} run {i}/{len(plan)}: ratio {row.ratio:g} budget {row.budget} share {row.share:g} "
                f"(SFT {row.n_sft}, DPO {row.n_pft}): accuracy {before.correct.mean():.3f} -> "
                f"{scored.correct.mean():.3f}")
    return pd.concat(frames, ignore_index=True)


def _seeded(long: pd.DataFrame) -> pd.DataFrame:
    return long if "seed" in long else long.assign(seed=0)


def accuracy_table(long: pd.DataFrame) -> pd.DataFrame:
    """Per (ratio, budget, share): accuracy (mean over seeds), format rate, the SFT start's accuracy and DPO's
    own gain (final minus start; 0 where there was no DPO), with a 95 % interval on accuracy: over training seeds
    (t interval of the per-seed accuracies) where there are several, else Wilson over test questions."""
    from scipy import stats
    from statsmodels.stats.proportion import proportion_confint

    long = _seeded(long)
    if "start_correct" not in long:
        long = long.assign(start_correct=long.correct)
    keys = ["ratio", "budget", "share", "n_sft", "n_pft"]
    per_seed = (long.groupby(keys + ["seed"])
                .agg(correct=("correct", "sum"), n=("correct", "size"), formatted=("formatted", "mean"),
                     start=("start_correct", "mean"))
                .reset_index())
    per_seed["accuracy"] = per_seed.correct / per_seed.n
    table = (per_seed.groupby(keys)
             .agg(accuracy=("accuracy", "mean"), sd=("accuracy", "std"), seeds=("seed", "size"),
                  correct=("correct", "sum"), n=("n", "sum"), formatted=("formatted", "mean"),
                  start_accuracy=("start", "mean"))
             .reset_index())
    table["dpo_gain"] = table.accuracy - table.start_accuracy
    wilson = proportion_confint(table.correct, table.n, alpha=0.05, method="wilson")
    half = stats.t.ppf(0.975, np.maximum(table.seeds - 1, 1)) * table.sd.fillna(0) / np.sqrt(table.seeds)
    several = table.seeds > 1
    table["lo"] = np.where(several, table.accuracy - half, wilson[0])
    table["hi"] = np.where(several, table.accuracy + half, wilson[1])
    return table


class _Boot:
    """Arm means over the same test questions (and training seeds) and `n_boot` draws of them (one set of draws
    for every comparison, so that differences are paired). `matrix`: (question) or (seed, question) x arm scores
    (arms as columns). One seed: the questions are resampled. Several seeds: a draw is the point plus two
    independent deviations, the question resample's of the seed-averaged scores (which test questions) and a
    seed-level one, multivariate t whose scale is the covariance of the per-seed arm means over sqrt(n_seeds), so
    that every difference of arms gets its t interval over seeds (mean +- t sd / sqrt(n)) widened by the question
    noise. Resampling 3 seeds instead (a two-stage bootstrap) puts the seed part of a 95 % interval near the range
    of the 3 seed values, where the t interval reaches 4.30 sd / sqrt(3) = 2.5 sd either side of the mean: with 3
    simulated seeds the budget controls (`caplab.controls.budget`) read 6 % false positives that way.
    The covariance is moderated (empirical Bayes, `variance_prior`): with n_seeds - 1 = k degrees of freedom per
    arm, each arm's seed variance says little alone (t_{0.975, 2} = 4.30), so the sample covariance S of the
    seed-varying arms is shrunk towards s0^2 I, (d0 s0^2 I + k S) / (d0 + k), on d0 + k degrees of freedom, with
    (d0, s0^2) the prior of the arms' own variances: little shrinkage where they differ beyond sampling noise.
    Columns the same under every seed on every question (the base model, the guessers, arms that never answer in
    the format) carry no seed term, and duplicated columns count once in the prior."""

    def __init__(self, matrix: pd.DataFrame, n_boot: int, seed: int):
        if matrix.isna().any().any():
            raise ValueError("every arm must be scored on the same test questions (and seeds)")
        if matrix.index.nlevels == 2:
            seeds = list(matrix.index.get_level_values(0).unique())
            cube = np.stack([matrix.xs(s, level=0).to_numpy(float) for s in seeds])
        else:
            cube = matrix.to_numpy(float)[None]
        n_seeds, n_questions = cube.shape[:2]
        rng = np.random.default_rng(seed)
        q_counts = np.zeros((n_boot, n_questions))
        np.add.at(q_counts, (np.arange(n_boot)[:, None], resample_indices(n_questions, n_boot, rng)), 1.0)
        self.columns = list(matrix.columns)
        self.point = cube.mean((0, 1))
        self.draws = q_counts @ cube.mean(0) / n_questions
        self.prior = (0.0, 0.0)
        if n_seeds > 1:
            k = n_seeds - 1
            centred = cube.mean(1) - self.point                        # (seed, arm): per-seed arm means
            varying = ~(cube == cube[:1]).all((0, 1))                 # arms with any seed-to-seed difference
            distinct = np.unique(cube[:, :, varying].reshape(-1, varying.sum()), axis=1)   # duplicates once
            variances = distinct.reshape(n_seeds, n_questions, -1).mean(1).var(0, ddof=1)
            if (variances > 0).sum() >= 3:
                self.prior = variance_prior(variances[variances > 0], k)       # (d0, s0^2)
            d0, s0_sq = self.prior
            d0 = min(d0, 1e6)
            df = d0 + k
            z = rng.standard_normal((n_boot, n_seeds))
            prior = np.sqrt(d0 * s0_sq) * rng.standard_normal((n_boot, len(self.columns))) * varying
            deviation = z @ centred + prior                     # covariance d0 s0^2 I + k S
            scale = np.sqrt(df / rng.chisquare(df, n_boot))[:, None] / np.sqrt(df * n_seeds)
            self.draws = self.draws + deviation * scale

    def has(self, column) -> bool:
        return column in self.columns

    def compare(self, a, b, level: float = 0.95) -> tuple[float, float, float]:
        """The best of arms `a` minus the best of arms `b` (each a list of columns), max_i min_j (a_i - b_j), with
        an interval that holds whichever arms are best: percentile intervals of every pairwise difference, combined
        as [max_i min_j lo_ij, max_i min_j hi_ij]. The lower bound fails only if some a_i's interval against its
        own best b_j does, so its tail is Bonferroni over |a|; the upper bound fails only if the best a_i's
        interval against some b_j does, so its tail is Bonferroni over |b| (re-choosing the best arm on each
        resample instead would read the selection's own noise as an effect)."""
        ia, ib = [self.columns.index(c) for c in a], [self.columns.index(c) for c in b]
        if not ia or not ib:
            raise ValueError("no arm to compare")
        tail = (1 - level) / 2
        diffs = self.draws[:, ia][:, :, None] - self.draws[:, ib][:, None, :]
        lo = np.quantile(diffs, tail / len(ia), axis=0)
        hi = np.quantile(diffs, 1 - tail / len(ib), axis=0)
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


BASELINES = (("majority", 0.0), ("first_step", 0.0))
"""The no-skill guessers recorded in the same run: the majority answer, and solving only the first step (right
on every one-step question; `base` carries it as the `first_step` column, per question)."""


def scores_matrix(long: pd.DataFrame, ratio: float, base: pd.DataFrame | None = None,
                  column: str = "correct") -> pd.DataFrame:
    """(seed, question) x arm, arms (budget, share) at `ratio`; for column "correct" also ("start", budget, share),
    each run's SFT start (where `long` has `start_correct`). With `base` (the base model's scores: question,
    answer, correct, optionally first_step), also the arms ("base", 0), ("majority", 0) and ("first_step", 0),
    the same under every seed."""
    rows = _seeded(long[long.ratio == ratio])
    with_starts = column == "correct" and "start_correct" in rows
    values = [column, "start_correct"] if with_starts else [column]
    means = rows.groupby(["seed", "question", "budget", "share"])[values].mean().unstack(["budget", "share"])
    block = means[column]
    columns = {(int(b), float(s)): v for (b, s), v in zip(block.columns, block.to_numpy(float).T)}
    if with_starts:
        block = means["start_correct"]
        columns.update({("start", int(b), float(s)): v for (b, s), v in zip(block.columns, block.to_numpy(float).T)})
    if base is not None:
        base = base.set_index("question").reindex(means.index.get_level_values("question"))
        columns[("base", 0.0)] = base[column].to_numpy(float)
        if column == "correct":
            columns[("majority", 0.0)] = majority_correct(base.answer)
            if "first_step" in base:
                columns[("first_step", 0.0)] = base.first_step.to_numpy(float)
    matrix = pd.DataFrame(np.column_stack(list(columns.values())), index=means.index)
    matrix.columns = pd.Index(list(columns), tupleize_cols=False)
    return matrix


def dpo_gains(long: pd.DataFrame, ratio: float = 1.0, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """DPO's own gain per budget: the mean over that budget's runs with both SFT and DPO (0 < share < 1) of the
    final model's accuracy minus its SFT start's, paired over questions (and seeds), with a 95 % interval; and
    the same for DPO on the base model (share 0)."""
    boot = _Boot(scores_matrix(long, ratio), n_boot, seed)
    rows = []
    for budget in sorted(long.loc[long.ratio == ratio, "budget"].unique()):
        for kind, keep in (("after SFT", lambda s: 0 < s < 1), ("on the base", lambda s: s == 0)):
            arms = [(int(budget), s) for s in sorted(long[(long.ratio == ratio) & (long.budget == budget)]
                                                    .share.unique()) if keep(s)]
            if not arms:
                continue
            a = [boot.columns.index(arm) for arm in arms]
            b = [boot.columns.index(("start", *arm)) for arm in arms]
            diff = boot.draws[:, a].mean(1) - boot.draws[:, b].mean(1)
            rows.append({"budget": int(budget), "dpo": kind, "runs": len(arms),
                         "gain": float(boot.point[a].mean() - boot.point[b].mean()),
                         "lo": float(np.quantile(diff, 0.025)), "hi": float(np.quantile(diff, 0.975))})
    return pd.DataFrame(rows)


def claim_evidence(long: pd.DataFrame, small_budget: float = 1000, small_share: float = 0.1, ratio: float = 1.0,
                   n_boot: int = 1000, seed: int = 0, base: pd.DataFrame | None = None
                   ) -> dict[str, tuple[float, float, float]]:
    """Numbers the claims are judged on, at the cost ratio `ratio`, each (value, lo, hi): differences of accuracy
    over the same test questions (and training seeds, where `long` has several) with paired intervals from one set
    of draws (`_Boot`: questions resampled; with several seeds, a t-distributed seed term as well, its covariance
    moderated across arms). "The best of a set" of arms is read with simultaneous (Bonferroni) bounds over the
    arms (`_Boot.compare`); "at every budget" is the smallest difference, with the smallest bounds.
    - sft_only_minus_best_mix_small: the smallest, over budgets below `small_budget`, of SFT alone (share 1) minus
      the best other share (SFT must win at each small budget);
    - best_mix_minus_sft_only_large: at the largest budget, the best share strictly between 0 and 1 minus share 1,
      over the mixes whose accuracy is above the better no-skill guesser (arms at chance are dropped; all of
      them where none is above it);
    - cold_start_minus_small_sft: at the largest budget, share 0 (DPO on the base) minus the best share in
      (0, small_share]; small_sft_gain: its negative (the gain from at most `small_share` SFT);
    - cold_start_format_rate: at the largest budget, share 0's rate of answers in the "#### answer" format;
    - sft_only_last_step_gain: SFT alone at the largest budget minus at the one before (has SFT plateaued?);
    - dpo_gain_large: at the largest budget, the best, over the mixes, of the final model minus its own SFT start
      (each run's start is scored before DPO; Bonferroni over the mixes): does DPO act at all where a mix is judged?
    With `base` (the base model's per-question scores: question, answer, correct, first_step), the recorded
    no-skill guessers (`BASELINES`: the majority answer and the first-step guesser; "chance" is the better of them,
    chosen by the same simultaneous interval):
    - small_budgets_best_minus_chance: the smallest, over budgets below `small_budget`, of the best arm minus
      chance (did any allocation learn the task there?);
    - small_sft_minus_chance: the best share in (0, small_share] at the largest budget minus chance."""
    out: dict[str, tuple[float, float, float]] = {}
    rows = long.loc[long.ratio == ratio, ["budget", "share", "n_sft", "n_pft"]].drop_duplicates()
    budgets = sorted(rows.budget.unique())
    boot = _Boot(scores_matrix(long, ratio, base), n_boot, seed)
    shares = {b: sorted(group.share.unique()) for b, group in rows.groupby("budget")}
    chance = [arm for arm in BASELINES if boot.has(arm)]
    small = [b for b in budgets if b < small_budget and 1.0 in shares[b] and len(shares[b]) > 1]
    if small:
        out["sft_only_minus_best_mix_small"] = _lowest(
            [boot.compare([(b, 1.0)], [(b, s) for s in shares[b] if s < 1.0]) for b in small])
        if chance:
            out["small_budgets_best_minus_chance"] = _lowest(
                [boot.compare([(b, s) for s in shares[b]], chance) for b in small])
    top = budgets[-1]
    floor = max((boot.point[boot.columns.index(arm)] for arm in chance), default=-np.inf)
    mixed = [(top, s) for s in shares[top] if 0 < s < 1]
    mixed = [arm for arm in mixed if boot.point[boot.columns.index(arm)] > floor] or mixed   # none: all, and the
    # DPO guard reads them (arms at chance show no DPO gain)
    if mixed and 1.0 in shares[top]:
        out["best_mix_minus_sft_only_large"] = boot.compare(mixed, [(top, 1.0)])
    if len(budgets) > 1 and 1.0 in shares[top] and 1.0 in shares[budgets[-2]]:
        out["sft_only_last_step_gain"] = boot.compare([(top, 1.0)], [(budgets[-2], 1.0)])
    small_sft = [(top, s) for s in shares[top] if 0 < s <= small_share]
    if 0.0 in shares[top] and small_sft:
        out["cold_start_minus_small_sft"] = boot.compare([(top, 0.0)], small_sft)
        out["small_sft_gain"] = boot.compare(small_sft, [(top, 0.0)])
        formatted = scores_matrix(long, ratio, column="formatted")[(top, 0.0)]
        out["cold_start_format_rate"] = bootstrap_interval(formatted.to_numpy(float), n=n_boot,
                                                           rng=np.random.default_rng(seed))
        if chance:
            out["small_sft_minus_chance"] = boot.compare(small_sft, chance)
    pairs = [(arm, ("start", *arm)) for arm in mixed if boot.has(("start", *arm))]
    if pairs:           # the best DPO gain, each pair at the Bonferroni level over the pairs
        out["dpo_gain_large"] = _highest([boot.compare([arm], [start], level=1 - 0.05 / len(pairs))
                                          for arm, start in pairs])
    return out


def best_share(table: pd.DataFrame) -> pd.DataFrame:
    """The share with the highest accuracy per (ratio, budget)."""
    index = table.groupby(["ratio", "budget"]).accuracy.idxmax()
    return table.loc[index, ["ratio", "budget", "share", "n_sft", "n_pft", "accuracy", "lo", "hi"]]


def pretraining_texts(corpus_task: dict, held_out_prompts) -> list[str] | None:
    """The base model's pre-training text: None for a pretrained base (empty spec); worked chains
    (`chain_worked`) drawn without the held-out questions, so that no test question is ever seen worked; any
    other task kind as `load_task` gives it."""
    from caplab.substrate.tasks import load_task

    if not corpus_task:
        return None
    if corpus_task.get("kind") == "chain_worked":
        args = {k: v for k, v in corpus_task.items() if k != "kind"}
        return chains.worked_corpus(**args, exclude={chains.question_of(p) for p in held_out_prompts})
    return load_task(corpus_task).texts


def first_step_correct(prompts, answers) -> np.ndarray | None:
    """Per test question, whether the first-step guesser (solves only the first operation of a chain) is right;
    None where the prompts are not chain questions (the gpu tier's GSM8K)."""
    try:
        questions = [chains.question_of(p) for p in prompts]
    except ValueError:
        return None
    if not all(re.fullmatch(r"\d+([+-]\d+)+", q) for q in questions):
        return None
    return np.array([chains.first_step_answer(q) == str(a) for q, a in zip(questions, answers)], float)


def sweep_dpo(lrs, betas, train: Callable[[float, float], dict], accuracy: Callable[[dict], float],
              correct: Callable[[dict], np.ndarray] | None = None, start: dict | None = None,
              log: Callable[[str], None] = runlog.progress, prefetch: bool = False) -> pd.DataFrame:
    """DPO's small sweep: `train(lr, beta)` -> the DPO model, `accuracy(spec)` -> its held-out preference
    accuracy; one row per (lr, beta). With `correct(spec)` (per held-out question, 0/1 exact match of greedy
    answers) and the sweep's SFT `start`, also each setting's held-out exact match, its paired gain over the start
    (`em_gain`) and that gain's standard error (`em_gain_se`), which `choose_dpo` reads as a guard. `prefetch`:
    `train` is a cached step; run every setting side by side first (`caplab.substrate.sweep.parallel`)."""
    if (correct is None) != (start is None):
        raise ValueError("give both `correct` and `start` (the sweep's SFT model), or neither")
    if prefetch:
        parallel([lambda lr=lr, beta=beta: train(lr, beta) for lr, beta in itertools.product(lrs, betas)])
    before = None if correct is None else np.asarray(correct(start), float)
    rows = []
    for lr, beta in itertools.product(lrs, betas):
        spec = train(lr, beta)
        row = {"lr": float(lr), "beta": float(beta), "preference_accuracy": accuracy(spec)}
        note = ""
        if before is not None:
            diff = np.asarray(correct(spec), float) - before
            row.update(start_exact_match=float(before.mean()), exact_match=float(before.mean() + diff.mean()),
                       em_gain=float(diff.mean()), em_gain_se=float(diff.std(ddof=1) / np.sqrt(len(diff)))
                       if len(diff) > 1 else 0.0)
            note = f", held-out exact match {row['start_exact_match']:.3f} -> {row['exact_match']:.3f}"
        rows.append(row)
        log(f"DPO lr {lr:g} beta {beta:g}: held-out preference accuracy {row['preference_accuracy']:.3f}{note}")
    return pd.DataFrame(rows)


def choose_dpo(sweep: pd.DataFrame) -> dict:
    """DPO's (lr, beta) with the highest held-out preference accuracy in a sweep (columns lr, beta,
    preference_accuracy); ties go to the first row. Where the sweep has `em_gain` and `em_gain_se` (`sweep_dpo`
    with `correct`), only settings whose held-out exact match does not fall below the SFT start's by more than
    one standard error of the paired difference are eligible (preference accuracy alone rewards pushing the
    rejected chain down, which can wreck generation); where none is, the setting that hurts exact match least."""
    if sweep.empty:
        raise ValueError("the DPO sweep is empty: give dpo_sweep_lrs and dpo_sweep_betas")
    pool = sweep
    if "em_gain" in sweep:
        eligible = sweep[sweep.em_gain >= -sweep.em_gain_se]
        if eligible.empty:
            best = sweep.iloc[int(np.argmax(sweep.em_gain.to_numpy()))]
            return {"lr": float(best.lr), "beta": float(best.beta)}
        pool = eligible
    best = pool.iloc[int(np.argmax(pool.preference_accuracy.to_numpy()))]
    return {"lr": float(best.lr), "beta": float(best.beta)}


def check_pools(plan: pd.DataFrame, n_sft_pool: int, n_pft_pool: int) -> None:
    """Raise before any training when the grid asks for more examples than a pool holds."""
    if plan.n_sft.max() > n_sft_pool or plan.n_pft.max() > n_pft_pool:
        raise ValueError(f"the grid needs {plan.n_sft.max()} SFT examples and {plan.n_pft.max()} preference pairs; "
                         f"the pools hold {n_sft_pool} and {n_pft_pool}: enlarge the tasks or lower the budgets")
