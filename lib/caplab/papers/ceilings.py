"""Capability ceilings (with the downstream chain): the parameter set of the `ceilings` notebook and the claim
evidence its steps read.

The mechanisms live in `caplab.science.capability` (knowledge multiple choice, arithmetic, trends with scale, the
downstream chain, per-question correlations) and `caplab.science.attention_swap`.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import pandas as pd

from caplab.papers import _types as T
from caplab.params import Tier
from caplab.science import capability
from caplab.stats.resampling import percentile_interval, resample_indices


@dataclasses.dataclass(frozen=True)
class Params:
    """ceilings' parameters (the notebook's `parameters` cell; its defaults are the cpu tier's values)."""
    corpus_task: T.Task              # the training corpus (facts seen with Zipfian frequency, arithmetic, filler)
    knowledge_task: T.Questions      # multiple-choice questions about the facts
    arithmetic_eval: T.Task          # held-out arithmetic problems (never in the training corpus)
    family: T.Family                 # tiny models trained here with checkpoints, or a hub family
    train_config: T.Train            # TrainConfig of the family; {} for a hub family
    arithmetic_loss: Literal["all", "answer"]   # "answer": no training loss on the arithmetic prompts (operands and
                                                # "="), only on the answers; the facts and the filler keep every token
    checkpoints: T.Checkpoints       # {first, last, n}; {} for a hub family
    block_size: T.Count
    eval_blocks: T.Count
    mention_bands: list[int]         # lower edges of the bands of training mentions; [] for a hub family
    per_band: T.Count                # questions drawn per band (all of a band's facts where it has fewer), scored at
                                     # the last checkpoint: the knowledge claims' evidence
    chain_per_band: T.Count          # of those, questions per band scored at every checkpoint (the downstream chain)
    donor_seed: int                  # seed of the swap's donor: the largest shape trained again (init and data order)
    swap_donor: T.OptionalModel      # {} for a tiny family (the donor is trained here); for a hub family a released
                                     # model of the recipient's shape trained from another seed
    swap_recipient: str              # the hub family's model that receives the donor's attention; "" for a tiny family
    swap_learned: float              # a tiny family's recipient: its largest model whose held-out exact match at the
                                     # last checkpoint reaches this (issue 14: 50 %; the largest where none does)
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
    units, row = np.unique(frame[unit].to_numpy(), return_inverse=True)
    xs, col = np.unique(frame[x].to_numpy(float), return_inverse=True)
    values = frame[value].to_numpy(float)
    ok = np.isfinite(values)
    total, count = np.zeros((len(units), len(xs))), np.zeros((len(units), len(xs)))
    np.add.at(total, (row[ok], col[ok]), values[ok])
    np.add.at(count, (row[ok], col[ok]), 1.0)
    if (count == 0).any():
        raise ValueError(f"{value}: not every {unit} was scored by every model")
    return xs, total / count


def cluster_slope(xs: np.ndarray, matrix: np.ndarray, idx: np.ndarray) -> Interval:
    """The OLS slope of the panel's values on x (every unit at every x) with a percentile interval from resampling
    whole units (rows of `idx`): clustered by unit. On a balanced panel the pooled slope is the mean of the units'
    own slopes."""
    value, draws = slope_draws(xs, matrix, idx)
    return _percentile(value, draws)


def slope_draws(xs: np.ndarray, matrix: np.ndarray, idx: np.ndarray) -> tuple[float, np.ndarray]:
    """(the panel's OLS slope on x, its value in every resample of units `idx`): `cluster_slope` before the
    interval, for differences of slopes between panels resampled independently."""
    if len(np.unique(xs)) < 2:
        raise ValueError("a slope needs at least two distinct x values")
    w = (xs - xs.mean()) / ((xs - xs.mean()) ** 2).sum()
    per_unit = matrix @ w
    return float(per_unit.mean()), per_unit[idx].mean(axis=1)


def paired_mean(diff: np.ndarray, idx: np.ndarray) -> Interval:
    """A mean of per-unit paired differences with its percentile interval over resampled units."""
    return _percentile(diff.mean(), diff[idx].mean(axis=1))


def band_questions(questions: pd.DataFrame, mentions: np.ndarray, edges: list[int], per_band: int,
                   seed: int) -> pd.DataFrame:
    """The questions with their facts' training mentions and band (`capability.mention_band`), at most `per_band`
    per band drawn at random without replacement (a band with fewer facts keeps them all), in band order; with no
    edges (a hub benchmark: no mention counts) every question, in one band "all". `question` numbers the rows."""
    if not edges:
        return questions.assign(mentions=np.nan, band="all").reset_index(drop=True).assign(
            question=lambda f: np.arange(len(f)))
    if len(mentions) != len(questions):
        raise ValueError(f"{len(questions)} questions but {len(mentions)} mention counts")
    rng = np.random.default_rng(seed)
    framed = questions.assign(mentions=np.asarray(mentions), band=capability.mention_band(mentions, edges))
    picked = []
    for label in capability.band_labels(edges):
        pool = np.flatnonzero(framed.band.to_numpy() == label)
        picked.append(np.sort(rng.choice(pool, min(per_band, len(pool)), replace=False)))
    out = framed.iloc[np.concatenate(picked)].reset_index(drop=True)
    return out.assign(question=np.arange(len(out)))


def chain_questions(questions: pd.DataFrame, per_band: int, seed: int) -> pd.DataFrame:
    """The questions the downstream chain follows over every checkpoint: at most `per_band` of each band of facts the
    models saw (drawn at random without replacement, the rest of the band kept for the last checkpoint's knowledge
    evidence; the zero-mention band is left out: the chain is read on seen facts), their `question` numbers
    unchanged."""
    rng = np.random.default_rng(seed + 1)
    picked = [np.sort(rng.choice(rows.index.to_numpy(), min(per_band, len(rows)), replace=False))
              for band, rows in questions.groupby("band", sort=False) if band != "0"]
    if not picked:
        raise ValueError("no band of seen facts to follow over the checkpoints")
    return questions.loc[np.sort(np.concatenate(picked))]


def random_distractor_questions(knowledge_task: dict, questions: pd.DataFrame) -> pd.DataFrame:
    """The random-distractor control: the zero-mention band's facts asked again with uniformly drawn distractors
    (same entities, same fact set, `data.multiple_choice` with distractors "random"); empty where there is no
    zero-mention band (a hub benchmark)."""
    from caplab.substrate import data

    unseen = questions[questions.band == "0"]
    if unseen.empty or "entity" not in questions:
        return questions.iloc[:0].copy()
    if knowledge_task.get("kind") != "fact_questions_mc":
        raise ValueError(f"random distractors need fact questions, got kind {knowledge_task.get('kind')!r}")
    args = {k: v for k, v in knowledge_task.items() if k not in ("kind", "tail", "n_choices", "distractors")}
    out = data.multiple_choice(data.facts(**args), n_choices=knowledge_task.get("n_choices", 4),
                               entities=unseen.entity.tolist(), distractors="random", seed=args.get("seed", 0))
    return out.assign(mentions=unseen.mentions.to_numpy(), band="0", question=np.arange(len(out)))


def band_key(label: str) -> str:
    """A metric-name form of a band label: "0" -> "m0", "2-3" -> "m2_3", "16+" -> "m16up", "all" -> "all"."""
    return label if label == "all" else "m" + label.replace("-", "_").replace("+", "up")


def tail_and_control(bands: list[str]) -> tuple[str, str]:
    """(tail, positive control): the rarest band of facts the models saw (the first band after the zero-mention
    band, or the only band) and the most-seen band."""
    seen = [b for b in bands if b != "0"]
    if not seen:
        raise ValueError(f"no band of seen facts among {bands}")
    return seen[0], seen[-1]


def knowledge_evidence(final: pd.DataFrame, guessers: pd.DataFrame, *, n_boot: int,
                       rng: np.random.Generator) -> dict[str, Interval]:
    """The knowledge claims' evidence from one row per question and model at the last checkpoint (`question`,
    `band`, `log_params`, `accuracy`, `log_p_vocab`) and the prior-only guessers of the same questions
    (`capability.prior_guessers`, `question` = the same numbering). Per band, with the questions resampled within
    the band (clustered by question): the slopes of accuracy and of the correct choice's loss on log10 parameters,
    the largest model's accuracy and the corpus-prior guesser's. For the tail (the rarest seen band) also the
    largest model minus chance and minus the corpus prior, paired over the same questions; the positive control is
    the most-seen band's accuracy slope."""
    bands = final.sort_values("question", kind="stable").band.drop_duplicates().tolist()
    tail, control = tail_and_control(bands)
    g = guessers.set_index("question")
    out: dict[str, Interval] = {}
    slopes: dict[str, tuple[float, np.ndarray]] = {}
    for band in bands:
        rows = final[final.band == band]
        xs, acc = panel(rows, "accuracy", "question")
        _, loss = panel(rows.assign(answer_loss=-rows.log_p_vocab), "answer_loss", "question")
        ids = np.sort(rows.question.unique())
        chance, prior = (g.loc[ids, c].to_numpy(float) for c in ("chance", "corpus_prior"))
        idx = resample_indices(len(acc), n_boot, rng)
        largest = acc[:, -1]
        key = band_key(band)
        slopes[band] = slope_draws(xs, acc, idx)
        out[f"knowledge_{key}_accuracy_slope"] = _percentile(*slopes[band])
        out[f"knowledge_{key}_answer_loss_slope"] = cluster_slope(xs, loss, idx)
        out[f"knowledge_{key}_accuracy_largest"] = paired_mean(largest, idx)
        out[f"knowledge_{key}_prior_corpus"] = paired_mean(prior, idx)
        out[f"knowledge_{key}_questions"] = float(len(acc))
        if band == tail:
            out["knowledge_tail_accuracy_slope"] = out[f"knowledge_{key}_accuracy_slope"]
            out["knowledge_tail_answer_loss_slope"] = out[f"knowledge_{key}_answer_loss_slope"]
            out["knowledge_tail_accuracy_largest"] = out[f"knowledge_{key}_accuracy_largest"]
            out["knowledge_tail_chance"] = paired_mean(chance, idx)
            out["knowledge_tail_prior_corpus"] = out[f"knowledge_{key}_prior_corpus"]
            out["knowledge_tail_largest_minus_chance"] = paired_mean(largest - chance, idx)
            out["knowledge_tail_largest_minus_prior"] = paired_mean(largest - prior, idx)
    out["knowledge_control_accuracy_slope"] = out[f"knowledge_{band_key(control)}_accuracy_slope"]
    if "0" in slopes:
        # what a band gains with size beyond the zero-mention band (facts no model saw: the prior, the format),
        # the same models on both sides, the two bands' questions resampled independently
        for name, band in (("tail", tail), ("control", control)):
            (v, d), (v0, d0) = slopes[band], slopes["0"]
            out[f"knowledge_{name}_minus_zero_accuracy_slope"] = _percentile(v - v0, d - d0)
    return out


def random_distractor_evidence(final: pd.DataFrame, guessers: pd.DataFrame, *, n_boot: int,
                               rng: np.random.Generator) -> dict[str, Interval]:
    """The random-distractor control: the zero-mention facts asked with uniformly drawn distractors, the largest
    model's accuracy at the last checkpoint, and its difference from the corpus-prior guesser and from chance."""
    rows = final[final.log_params == final.log_params.max()].sort_values("question")
    acc = rows.accuracy.to_numpy(float)
    g = guessers.set_index("question").loc[rows.question]
    idx = resample_indices(len(acc), n_boot, rng)
    return {"knowledge_random_accuracy_largest": paired_mean(acc, idx),
            "knowledge_random_prior_corpus": paired_mean(g.corpus_prior.to_numpy(float), idx),
            "knowledge_random_largest_minus_chance": paired_mean(acc - g.chance.to_numpy(float), idx)}


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


def swap_evidence(grid: pd.DataFrame, *, n_boot: int, rng: np.random.Generator, value: str = "correct",
                  donor_own: np.ndarray | None = None) -> dict[str, Interval]:
    """The swap claim's evidence from `attention_swap.swap_grid` rows (source "donor": a same-shape model trained
    from another seed; source "uniform": attention that carries no information) of per-problem exact match on
    held-out problems: the recipient on its own (lambda 0), under the full swap (every layer, lambda 1) and at the
    floor (uniform attention in every layer), the recipient's margin over the floor and the share of it the swap
    keeps, (swapped - floor) / (own - floor), resampling problems. With `donor_own` (the donor's own per-problem
    `value`, the same problems in the same order) also the donor's margin over the recipient's floor: a donor that
    lacks the skill has no attention worth swapping."""
    every = grid[grid.layer_set == "all"]

    def arm(source, lam):
        rows = every[(every.source == source) & (every.lam == lam)].sort_values("row")
        if rows.empty:
            raise ValueError(f"no rows for source {source!r} at lambda {lam} over every layer")
        return rows[value].to_numpy(float)

    o, s, f = arm("donor", 0.0), arm("donor", 1.0), arm("uniform", 1.0)
    if not len(o) == len(s) == len(f):
        raise ValueError("own, swapped and floor must be scored on the same problems")
    if donor_own is not None and len(donor_own) != len(o):
        raise ValueError(f"the donor was scored on {len(donor_own)} problems, the recipient on {len(o)}")
    idx = resample_indices(len(o), n_boot, rng)
    margin = (o - f)[idx].mean(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        retained = np.where(margin > 0, (s - f)[idx].mean(1) / margin, np.nan)
    # where the recipient does not beat the floor there is nothing to retain: the ratio is given as 0 without an
    # interval, and the guard on own - floor makes the claim inconclusive; resamples in which the recipient does not
    # beat the floor are left out of the interval
    ratio = (s - f).mean() / (o - f).mean() if (o - f).mean() > 0 else 0.0
    donor = {} if donor_own is None else {
        "swap_donor_accuracy": paired_mean(np.asarray(donor_own, float), idx),
        "swap_donor_minus_floor": paired_mean(np.asarray(donor_own, float) - f, idx)}
    return {**donor, "swap_recipient_accuracy": paired_mean(o, idx),
            "swap_swapped_accuracy": paired_mean(s, idx),
            "swap_floor_accuracy": paired_mean(f, idx),
            "swap_own_minus_floor": paired_mean(o - f, idx),
            "swap_retained_above_floor": (float(ratio), *percentile_interval(retained, ignore_nan=True))
            if np.isfinite(retained).any() else (float(ratio), np.nan, np.nan)}


def swap_curve(grid: pd.DataFrame, value: str = "correct") -> pd.DataFrame:
    """The graded swap: per source, layer set and lambda, the mean of `value` and the share of the recipient's
    margin over the floor it keeps, (mean - floor) / (own - floor), with own the recipient at lambda 0 and floor
    uniform attention in every layer at lambda 1."""
    curve = grid.groupby(["source", "layer_set", "lam"], as_index=False)[value].mean()
    every = curve[curve.layer_set == "all"].set_index(["source", "lam"])[value]
    own, floor = every[("donor", 0.0)], every[("uniform", 1.0)]
    return curve.assign(retained_above_floor=(curve[value] - floor) / (own - floor) if own != floor else np.nan)


def train_donor(family: dict, corpus, train_config: dict, checkpoints: dict, seed: int,
                shape_name: str | None = None) -> pd.DataFrame:
    """The swap's donor: one of the family's shapes (`shape_name`, e.g. "d64-L3"; by default the largest) trained
    again on the same corpus for the same tokens, from another seed (initialisation and data order), its last
    checkpoint only (a `family.train_family` frame)."""
    from caplab.substrate.family import family_shapes, log_spaced_tokens, train_family

    if family.get("kind") != "tiny":
        raise ValueError("a donor is trained only for a tiny family")
    if seed == train_config.get("seed", 0) or seed == family.get("seed", 0):
        raise ValueError(f"the donor's seed {seed} must differ from the family's")
    shapes = family_shapes(family)                     # each shape's seed is replaced by the donor's below
    named = {s["name"]: s for s in shapes}
    if shape_name is not None and shape_name not in named:
        raise ValueError(f"no shape {shape_name!r} in the family {sorted(named)}")
    shape = named[shape_name] if shape_name is not None else shapes[-1]
    shape = {**shape, "seed": seed, "name": f"{shape['name']}-seed{seed}"}
    last = log_spaced_tokens(**checkpoints)[-1]
    return train_family([shape], corpus, {**train_config, "seed": seed}, [last])


def build_family_and_donor(family: dict, corpus, train_config: dict, checkpoints: dict,
                           donor_seed: int | None) -> pd.DataFrame:
    """`family.build_family`, with a tiny family's likely swap donor (its largest shape from `donor_seed`,
    `train_donor`) trained in the same sweep (`sweep.parallel`: every run side by side on the cores, the costliest
    first), so that the swap later reads it from the cache. The recipient is still chosen after the family is
    evaluated (`learned_recipient`): where it is not the largest shape, `swap_pair` trains that shape's donor then.
    A hub family, or `donor_seed` None: `build_family` alone."""
    from caplab.substrate.family import build_family, family_shapes, log_spaced_tokens, train_family
    from caplab.substrate.sweep import parallel

    if family.get("kind") == "tiny" and donor_seed is not None:
        if donor_seed in (train_config.get("seed", 0), family.get("seed", 0)):
            raise ValueError(f"the donor's seed {donor_seed} must differ from the family's")
        shapes = family_shapes(family)
        targets = log_spaced_tokens(**checkpoints)
        runs = [lambda s=s: train_family([s], corpus, train_config, targets) for s in shapes]
        runs.append(lambda: train_donor(family, corpus, train_config, checkpoints, donor_seed))
        sizes = [float(i) for i in range(len(shapes))] + [len(shapes) - 0.5]     # shapes grow; the donor is the last
        parallel(runs, costs=sizes)
    return build_family(family, corpus, train_config, checkpoints)


def learned_recipient(members: pd.DataFrame, exact_match: pd.Series, bar: float) -> str:
    """A tiny family's swap recipient, by a rule fixed before the swap is run: the largest model whose held-out
    exact match at the last checkpoint (`exact_match`, by model name) reaches `bar`; the largest model where none
    does (the swap's guard on the recipient's skill then reads it inconclusive)."""
    order = members.drop_duplicates("model").sort_values("params_non_embedding").model.tolist()
    missing = sorted(set(order) - set(exact_match.index))
    if missing:
        raise ValueError(f"no exact match for models {missing}")
    passed = [m for m in order if exact_match[m] >= bar]
    return passed[-1] if passed else order[-1]


def swap_pair(members: pd.DataFrame, family: dict, corpus, train_config: dict, checkpoints: dict, donor_seed: int,
              swap_donor: dict, swap_recipient: str, exact_match: pd.Series | None = None,
              learned: float = 0.5) -> tuple[dict, dict]:
    """(recipient, donor) model specs of the attention swap. A tiny family: the model `learned_recipient` picks
    (with `exact_match` per model at the last checkpoint; without it the largest) at the last checkpoint, and the
    same shape trained again from `donor_seed` (`train_donor`). A hub family: the last revision of `swap_recipient`
    and the released `swap_donor` (Pythia's PolyPythias: the same shape and data, another seed)."""
    from caplab.substrate.family import member_spec
    if family.get("kind") == "tiny":
        if swap_donor or swap_recipient:
            raise ValueError("a tiny family trains its own donor: give swap_donor {} and swap_recipient ''")
        if exact_match is None:
            name = members.loc[members.params_non_embedding.idxmax(), "model"]
        else:
            name = learned_recipient(members, exact_match, learned)
        rows = members[members.model == name]
        donor = train_donor(family, corpus, train_config, checkpoints, donor_seed, shape_name=name).iloc[-1]
        return member_spec(rows.sort_values("target_tokens").iloc[-1]), member_spec(donor)
    if not swap_donor or not swap_recipient:
        raise ValueError("a hub family's swap needs swap_donor (a model of the recipient's shape from another seed) "
                         "and swap_recipient (one of the family's models)")
    rows = members[members.pretrained == swap_recipient]
    if rows.empty:
        raise ValueError(f"swap_recipient {swap_recipient!r} is not one of the family's models "
                         f"{sorted(set(members.pretrained))}")
    return member_spec(rows.sort_values("target_tokens").iloc[-1]), dict(swap_donor)


CHAIN_STEPS = ("log_p_vocab", "p_vocab", "p_choices", "neg_brier", "accuracy")
RENORM = "p_choices"     # the renormalisation over the choices


def downstream_evidence(corr: pd.DataFrame, covariation: pd.DataFrame, *, n_boot: int, rng: np.random.Generator,
                        high: float = 0.75, moving: float = 0.5) -> dict[str, Interval | float]:
    """The downstream claims' evidence from the per-question Spearman correlations of each chain score with log
    compute (`capability.sample_correlations`) and of the incorrect choices' mass with the correct choice's
    (`capability.mass_covariation`), resampling questions (one set of resamples, paired across steps).

    Chain: over the questions whose five correlations are all defined (a score that never varies, accuracy on a
    question every model gets wrong, has none: the share undefined is reported per step, not counted as "not
    above"), the share correlating above `high` per step, the drop from log p_vocab to accuracy, the drop at each
    step, and the renormalisation's drop minus the largest other step's drop (positive: the largest drop is at the
    renormalisation over choices).

    Incorrect mass: the share of questions whose incorrect mass co-varies with the correct mass across compute
    (Spearman above `moving`): the mass that renormalising divides by moves with the correct answer's."""
    wide = corr.pivot(index="question", columns="score", values="spearman")
    values = np.column_stack([wide[c].to_numpy(float) for c in CHAIN_STEPS])
    defined = np.isfinite(values).all(axis=1)
    out: dict[str, Interval | float] = {}
    for j, step in enumerate(CHAIN_STEPS):
        out[f"corr_share_undefined_{step}"] = float(1 - np.isfinite(values[:, j]).mean())
    out["corr_questions_defined"] = float(defined.sum())
    above = (values[defined] > high).astype(float)
    if len(above) == 0:
        return {**out, **_mass_evidence(covariation, n_boot, rng, moving)}
    idx = resample_indices(len(above), n_boot, rng)
    shares = above[idx].mean(1)                                   # resample x step
    for j, step in enumerate(CHAIN_STEPS):
        out[f"corr_share_{step}"] = _percentile(above[:, j].mean(), shares[:, j])
    drops, drop_draws = -np.diff(above.mean(0)), -np.diff(shares, axis=1)
    for j, (a, b) in enumerate(zip(CHAIN_STEPS, CHAIN_STEPS[1:])):
        out[f"corr_drop_{a}_to_{b}"] = _percentile(drops[j], drop_draws[:, j])
    out["corr_share_drop_loglik_to_accuracy"] = _percentile(above[:, 0].mean() - above[:, -1].mean(),
                                                            shares[:, 0] - shares[:, -1])
    r = CHAIN_STEPS.index(RENORM) - 1                             # the step into p_choices
    others = [j for j in range(len(drops)) if j != r]
    out["corr_drop_renorm_minus_largest_other"] = _percentile(drops[r] - drops[others].max(),
                                                              drop_draws[:, r] - drop_draws[:, others].max(1))
    return {**out, **_mass_evidence(covariation, n_boot, rng, moving)}


def _mass_evidence(covariation: pd.DataFrame, n_boot: int, rng: np.random.Generator,
                   moving: float) -> dict[str, Interval | float]:
    rho = covariation.sort_values("question").spearman.to_numpy(float)
    ok = np.isfinite(rho)
    out: dict[str, Interval | float] = {"mass_covariation_undefined": float(1 - ok.mean()) if len(rho) else np.nan}
    if not ok.any():
        return out
    rho = rho[ok]
    idx = resample_indices(len(rho), n_boot, rng)
    out["incorrect_mass_share_covarying"] = paired_mean((rho > moving).astype(float), idx)
    out["incorrect_mass_covariation_median"] = _percentile(np.median(rho), np.median(rho[idx], axis=1))
    return out


NOTES = {
    "knowledge_tail_accuracy_slope": "rarest seen band: accuracy per decade of parameters, last checkpoint; "
                                     "interval resampling questions",
    "knowledge_tail_answer_loss_slope": "rarest seen band: correct choice's loss (nats) per decade of parameters",
    "knowledge_tail_accuracy_largest": "rarest seen band, largest model, last checkpoint",
    "knowledge_tail_chance": "uniform guess over the choices",
    "knowledge_tail_prior_corpus": "prior-only guesser: the choice the training corpus mentions most",
    "knowledge_tail_largest_minus_chance": "rarest seen band, paired over the same questions",
    "knowledge_tail_largest_minus_prior": "rarest seen band, largest model minus the corpus-prior guesser, paired",
    "knowledge_control_accuracy_slope": "positive control: the most-seen band's accuracy per decade of parameters",
    "knowledge_tail_minus_zero_accuracy_slope": "rarest seen band's accuracy slope minus the zero-mention band's "
                                                "(the rise that is not knowledge of the facts); bands resampled "
                                                "independently",
    "knowledge_control_minus_zero_accuracy_slope": "most-seen band's accuracy slope minus the zero-mention band's",
    "knowledge_random_accuracy_largest": "zero-mention facts with uniformly drawn distractors, largest model",
    "knowledge_random_prior_corpus": "the corpus-prior guesser on the random-distractor questions",
    "knowledge_random_largest_minus_chance": "random-distractor questions, largest model minus chance, paired",
    "arith_accuracy_slope": "exact match per decade of parameters; one row per problem and model, resampling problems",
    "arith_answer_loss_slope": "answer loss (nats per token) per decade of parameters; resampling problems",
    "arith_accuracy_best": "best model at the last checkpoint (the best is re-chosen in every resample)",
    "arith_lookup_baseline": "a lookup table of the training problems (majority answer where unseen)",
    "arith_best_minus_lookup": "best model minus the lookup table, paired over the same problems",
    "swap_recipient_accuracy": "the recipient (the largest model with held-out exact match >= swap_learned), "
                               "teacher-forced exact match on held-out arithmetic, no swap",
    "swap_swapped_accuracy": "full swap from a donor of the same shape trained from another seed: every layer, "
                             "lambda 1",
    "swap_floor_accuracy": "the floor: uniform attention in every layer",
    "swap_donor_accuracy": "the donor (the recipient's shape, another seed) on its own, the same problems",
    "swap_donor_minus_floor": "donor minus the recipient's floor; resampling problems",
    "swap_own_minus_floor": "recipient minus the floor; resampling problems",
    "swap_retained_above_floor": "(swapped - floor) / (own - floor); resampling problems",
    "corr_questions_defined": "questions whose five chain correlations are all defined",
    "corr_share_drop_loglik_to_accuracy": "share with Spearman > 0.75, log p_vocab minus accuracy (defined questions)",
    "corr_drop_renorm_minus_largest_other": "the drop at the renormalisation over choices minus the largest drop at "
                                            "another step",
    "incorrect_mass_share_covarying": "share of questions whose incorrect mass correlates with the correct mass "
                                      "across compute (Spearman > 0.5)",
    "incorrect_mass_covariation_median": "median per-question Spearman of incorrect with correct mass",
    "mass_covariation_undefined": "share of questions whose covariation is undefined",
}
