"""The capacity gap in distillation: the parameter set of the `capacity_gap` notebook and its claim evidence.

The mechanisms live in `caplab.science.distill` (the distillation loss, cached distillation, the optimal teacher
per student with one definition of a readable optimum, teacher effects against evaluation noise, the T*(S) law).
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


def optimal_teacher_evidence(distilled: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Per student: the optimal teacher (`distill.optimal_teachers`: quadratic vertex T* with its bootstrap
    interval, `readable` when interior and not at the grid's edge), the teacher effects against evaluation noise,
    and `counts`: a readable optimum whose largest teacher is worse than the best by more than that noise."""
    optima = distill.optimal_teachers(distilled, n_boot=n_boot, seed=seed)
    optima = optima.merge(distill.teacher_effects(distilled), on="student_params")
    optima["counts"] = optima.readable & (optima.rise_to_largest > optima.rise_noise)
    return optima


def t_star_slope(readable: pd.DataFrame, *, n_boot: int, seed: int) -> tuple[float, float, float]:
    """The power-law slope k of T* against S (linear: k = 1) over the readable students, bootstrap interval."""
    fit = bootstrap(laws.POWER_LAW.fit(readable, inputs={"x": "student_params"}, target="t_star", seed=seed,
                                       warn=False), n=n_boot, seed=seed)
    lo, hi = fit.intervals.loc["alpha", ["lower", "upper"]]
    return float(fit.params["alpha"]), float(lo), float(hi)
