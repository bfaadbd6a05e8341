"""The capacity gap in distillation: the parameter set of the `capacity_gap` notebook and its claim evidence.

The mechanisms live in `caplab.science.distill` (the distillation loss, teachers at one tokens-per-parameter ratio,
distillation with the teacher's logits computed once) and `caplab.science.teacher_grid` (paired readings over seeds
and evaluation blocks: the curse, the interior optimum where the grid brackets the student, T* with its seed
bootstrap, the law T*(S)); the claim evidence is `optimal_teacher_evidence`, `optimal_teacher_metrics` and
`law_metrics`, which the notebook and the controls share.
"""
from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

import numpy as np
import pandas as pd

from caplab.papers import _types as T
from caplab.params import Fields, Tier, optional, positive
from caplab.science import teacher_grid
from caplab.science.distill import TeacherBudget

Budget = Annotated[dict, optional(Fields(TeacherBudget))]    # {} for a hub family (already trained)


@dataclasses.dataclass(frozen=True)
class Params:
    """capacity_gap's parameters (the notebook's `parameters` cell; its defaults are the cpu tier's values). The
    paper's loss (Zhang et al. 2023: 0.5 CE + 0.5 soft CE at temperature 1) gives `alpha` and `temperature`; the
    bracket (teachers from about the student's size to 30x it) and 3+ seeds are issue 16's design."""
    corpus_task: T.Task              # the language teachers and students learn
    block_size: T.Count
    eval_blocks: T.Count             # held-out blocks on which every student's loss is measured (paired)
    teachers: T.Family               # log-spaced tiny teachers trained here, or a hub family
    teacher_train: T.OptionalTrain   # TrainConfig of the teachers, without a length; {} for a hub family
    teacher_budget: Budget           # tokens per parameter (and a floor) of each tiny teacher; {} for a hub family
    students: list[T.Model]          # student shapes, each distilled from every teacher and trained alone
    seeds: T.Seeds                   # per seed: the student's initialisation and data order, shared by its teachers
    distill_blocks: T.Count          # the first blocks of the training split: every student's distillation data
    distill_train: T.Train           # TrainConfig of every student (one budget and schedule; seed from `seeds`)
    teacher_logits: Literal["precomputed", "online"]   # teacher pass once per teacher on the distillation blocks
    bracket_below: positive(float)   # a student's grid brackets it when its smallest teacher <= below x S ...
    bracket_above: positive(float)   # ... and its largest teacher >= above x S
    alpha: float                     # weight of the hard-label cross-entropy
    temperature: positive(float)
    n_boot: T.Count
    seed: int                        # the bootstrap's seed
    tier: Tier = "cpu"

    def __post_init__(self):
        if "seed" in self.distill_train:
            raise ValueError("distill_train: give no seed; each of `seeds` sets the student's init and data order")
        if len(set(self.seeds)) < len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")


def optimal_teacher_evidence(blocks: pd.DataFrame, *, n_boot: int, seed: int, below: float = 1.5,
                             above: float = 30.0, alpha: float = 0.05) -> tuple[pd.DataFrame, dict]:
    """Per student, from the per-block losses of the distilled students (`teacher_grid.readings`): the curse and
    its paired interval, the interior optimum (bracketed students only), T* with its seed-and-block bootstrap
    interval; and the bootstrap replicates of every log T* (for the law)."""
    return teacher_grid.readings(blocks, n_boot=n_boot, seed=seed, alpha=alpha, below=below, above=above)


def optimal_teacher_metrics(optima: pd.DataFrame) -> dict[str, dict]:
    """The claim metrics of `optimal_teacher_evidence`: name -> Metric fields (value, note)."""
    grid = f"teachers {int(optima.grid_min.min()):,} to {int(optima.grid_max.max()):,}"
    return {
        "seeds_per_pair": {"value": int(optima.n_seeds.min()),
                           "note": f"seeds per (student, teacher), init and data order shared across teachers; "
                                   f"noise: {', '.join(sorted(set(optima.noise)))}"},
        "students_bracketed": {"value": int(optima.bracketed.sum()),
                               "note": f"of {len(optima)} students, those whose grid runs from about their size to "
                                       f">= 30x it ({grid})"},
        "students_with_curse": {"value": int(optima.curse.sum()),
                                "note": "the largest teacher's student is worse than a smaller teacher's (paired "
                                        "one-sided tests over seeds and blocks, Bonferroni over teachers, Holm 5 % "
                                        "across students)"},
        "students_with_interior_optimum": {"value": int(optima.counts.sum()),
                                           "note": f"bracketed students ({int(optima.bracketed.sum())}) where an "
                                                   f"interior teacher beats both ends (intersection-union, "
                                                   f"Bonferroni over teachers, Holm 5 %) with a readable T*"}}


def law_metrics(optima: pd.DataFrame, replicates: dict) -> dict[str, dict]:
    """The slope k of log T* against log S (linear: k = 1) and the ratio T*/S at k = 1, over the students counted
    in `optimal_teacher_metrics`, with intervals from the joint seed-and-block bootstrap; {} with fewer than 2."""
    used = optima[optima.counts].sort_values("student_params")
    if len(used) < 2:
        return {}
    reps = np.column_stack([replicates[s] for s in used.student_params])
    law = teacher_grid.law_slope(used.student_params.to_numpy(), used.t_star.to_numpy(), reps)
    note = f"{law['n_students']} students; {law['n_boot_used']} bootstrap replicates with every T* defined"
    return {"t_star_log_slope": {"value": law["k"], "lo": law["k_lower"], "hi": law["k_upper"], "note": note},
            "t_star_ratio": {"value": law["ratio"], "lo": law["ratio_lower"], "hi": law["ratio_upper"],
                             "note": f"geometric mean of T*/S; paper ~{teacher_grid.PAPER_RATIO}; {note}"}}
