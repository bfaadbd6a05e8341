"""The capacity gap in distillation: the parameter set of the `capacity_gap` notebook and its claim evidence.

The mechanisms live in `caplab.science.distill` (the distillation loss, cached distillation, the optimal teacher
per student with one definition of a readable optimum, the teacher tests with seed noise, the T*(S) law); the claim
evidence is `optimal_teacher_evidence` / `optimal_teacher_metrics` and `t_star_slope`.
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from caplab.papers import _types as T
from caplab.params import Tier
from caplab.science import distill
from caplab.stats import laws
from caplab.stats.fitting import bootstrap


@dataclasses.dataclass(frozen=True)
class Params:
    """capacity_gap's parameters (the notebook's `parameters` cell; its defaults are the cpu tier's values). The
    paper's loss (Zhang et al. 2023: 0.5 CE + 0.5 soft CE at temperature 1) gives `alpha` and `temperature`."""
    corpus_task: T.Task              # the language teachers and students learn
    block_size: T.Count
    eval_blocks: T.Count             # held-out blocks on which every student loss is measured
    teachers: T.Family               # log-spaced teachers trained here, or a hub family
    teacher_train: T.Train           # TrainConfig of the teachers; {} for a hub family
    teacher_checkpoints: T.Checkpoints   # the final model only: first = last, n = 1; {} for a hub family
    students: list[T.Model]          # student shapes, each distilled from every teacher and trained alone
    distill_train: T.Train           # TrainConfig of every student (one token budget and schedule)
    alpha: float                     # weight of the hard-label cross-entropy
    temperature: T.positive(float)
    n_boot: T.Count
    seed: int
    tier: Tier = "cpu"


def optimal_teacher_evidence(distilled: pd.DataFrame, *, n_boot: int, seed: int, alpha: float = 0.05) -> pd.DataFrame:
    """Per student: the optimal teacher (`distill.optimal_teachers`: quadratic vertex T* with its bootstrap
    interval over the rows, seeds included, and `readable` when interior and not at the grid's edge) and the tests
    of `distill.teacher_tests` (noise from the seed spread when every pair has replicate seeds, else evaluation
    noise only), corrected across students by Holm at `alpha`: `teacher_effect` (the loss differs across teachers),
    `curse` (the largest teacher is worse than a smaller one), `interior_optimum` (an interior teacher beats both the
    smallest and the largest), and `counts`: a readable optimum with an interior optimum."""
    optima = distill.optimal_teachers(distilled, n_boot=n_boot, seed=seed)
    optima = optima.merge(distill.teacher_tests(distilled), on="student_params")
    for test, column in (("teacher_effect", "p_teacher_effect"), ("curse", "p_curse"),
                         ("interior_optimum", "p_interior")):
        optima[test] = distill.holm(optima[column].to_numpy(float), alpha)
    optima["counts"] = optima.readable & optima.interior_optimum
    return optima


def optimal_teacher_metrics(optima: pd.DataFrame) -> dict[str, dict]:
    """The claim metrics of `optimal_teacher_evidence`: name -> Metric fields (value, note)."""
    noise = ", ".join(sorted(set(optima.noise)))
    return {
        "seeds_per_pair": {"value": int(optima.n_seeds.min()),
                           "note": f"replicate seeds of the fewest-seeded (student, teacher) pair; noise: {noise}"},
        "students_with_teacher_effect": {"value": int(optima.teacher_effect.sum()),
                                         "note": "students whose loss differs across teachers (F test, Holm 5 % "
                                                 "across students)"},
        "students_with_interior_optimum": {"value": int(optima.counts.sum()),
                                           "note": f"of {len(optima)} students ({int(optima.readable.sum())} "
                                                   f"readable): an interior teacher beats both ends (intersection-"
                                                   f"union test, Bonferroni over teachers, Holm 5 % across students); "
                                                   f"teacher grid {int(optima.grid_min.min()):,} to "
                                                   f"{int(optima.grid_max.max()):,}"}}


def t_star_slope(readable: pd.DataFrame, *, n_boot: int, seed: int) -> tuple[float, float, float]:
    """The power-law slope k of T* against S (linear: k = 1) over the readable students, bootstrap interval."""
    fit = bootstrap(laws.POWER_LAW.fit(readable, inputs={"x": "student_params"}, target="t_star", seed=seed,
                                       warn=False), n=n_boot, seed=seed)
    lo, hi = fit.intervals.loc["alpha", ["lower", "upper"]]
    return float(fit.params["alpha"]), float(lo), float(hi)
