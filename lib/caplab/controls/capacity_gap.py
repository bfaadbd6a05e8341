"""Controls of the capacity_gap claims: simulated per-block tables of the cpu design (`student_params`,
`teacher_params`, `seed`, `block`, `loss`), pushed through the notebook's functions
(`caplab.papers.capacity_gap.optimal_teacher_evidence`, `optimal_teacher_metrics`, `law_metrics`) and the registry's
rules.

Design (`notebooks/params/capacity_gap/cpu.yaml`): three students (888, 1,908, 3,312 non-embedding parameters), six
teachers from 888 to 100,096 (the grid brackets every student: from about its size to >= 30x it), 4 seeds (a seed
fixes the student's init and data order for every teacher), 256 evaluation blocks shared by every model.

Noise (per-block loss, nats; `NOISE`), measured on a pilot of this design (3 seeds): a block effect common to every
model of a student (0.13; cancels in paired differences), a teacher x block effect (0.010), a seed effect common to
a student's teachers (0.012; cancels), a per-seed tilt of the loss curve, slope 0.003 per e-fold of teacher size
(so the seed-to-seed spread of a difference grows with the distance between the teachers, as measured), a
teacher x seed effect (0.0035), a residual (0.016); the smallest teacher's two teacher-specific terms are 3x larger
(its students were that much noisier).

Worlds, x = ln(teacher params): planted, the student's loss is CURVATURE (x - ln T*)^2 with T* = 2.5 S (the
paper); nulls for the interior optimum: flat, bigger-is-better, or flat then rising (the smallest teacher as good as
any, the largest worse: the least favourable case); null for the law: every student has an interior optimum at one
T* that does not depend on S (drawn per world in the middle of the grid).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from caplab.controls import Control
from caplab.papers import capacity_gap as exp

STUDENTS = (888, 1908, 3312)                                # the cpu tier's students, non-embedding parameters
TEACHERS = (888, 3312, 7272, 12768, 39520, 100096)          # its six teachers (log_spaced_shapes, 800 to 110k)
SEEDS, BLOCKS = 4, 256
BASE_LOSS = (1.77, 1.60, 1.54)                              # student losses without a teacher effect
NOISE = {"block_common": 0.13, "block_pair": 0.010, "seed_common": 0.012, "seed_tilt": 0.003, "seed_pair": 0.0035,
         "resid": 0.016, "smallest": 3.0}
CURVATURE = 0.006                                           # nats per squared e-fold of teacher size
LAW_RATIO = 8.0        # the law's planted ratio: every T* inside its student's grid (at 2.5 S the smallest student's
                       # optimum lies one grid step above the smallest teacher, where this grid cannot read it)
N_BOOT = 100


def blocks_table(rng, curves, *, students=STUDENTS, teachers=TEACHERS, n_seeds=SEEDS, n_blocks=BLOCKS,
                 noise=None) -> pd.DataFrame:
    """The notebook's per-block table: loss[s, t, k, b] = base_s + curves[s](ln t) + the noise terms of `NOISE`
    (module docstring)."""
    noise = {**NOISE, **(noise or {})}
    s_n, t_n = len(students), len(teachers)
    x = np.log(np.asarray(teachers, float))
    shape = (s_n, t_n, n_seeds, n_blocks)
    truth = np.array([base + curve(x) for base, curve in zip(BASE_LOSS, curves)])[:, :, None, None]
    louder = np.where(np.arange(t_n) == 0, noise["smallest"], 1.0)[None, :, None, None]
    tilt = rng.normal(0, noise["seed_tilt"], (s_n, 1, n_seeds, 1)) * (x - x.mean())[None, :, None, None]
    loss = (truth + rng.normal(0, noise["block_common"], (s_n, 1, 1, n_blocks))
            + louder * rng.normal(0, noise["block_pair"], (s_n, t_n, 1, n_blocks))
            + rng.normal(0, noise["seed_common"], (s_n, 1, n_seeds, 1)) + tilt
            + louder * rng.normal(0, noise["seed_pair"], (s_n, t_n, n_seeds, 1))
            + rng.normal(0, noise["resid"], shape))
    s, t, k, b = np.meshgrid(np.asarray(students, float), np.asarray(teachers, float), np.arange(n_seeds),
                             np.arange(n_blocks), indexing="ij")
    return pd.DataFrame({"student_params": s.ravel(), "teacher_params": t.ravel(), "seed": k.ravel(),
                         "block": b.ravel(), "loss": loss.ravel()})


def parabola(t_star, curvature=None):
    c = CURVATURE if curvature is None else curvature
    return lambda x: c * (x - np.log(t_star)) ** 2


def no_interior(rng, x_lo, x_hi, curvature=None):
    """A curve without an interior optimum: flat, bigger-is-better (falling), or flat over the smaller half of the
    grid and rising over the larger half (the least favourable case for the interior test)."""
    kind, c = rng.integers(3), CURVATURE if curvature is None else curvature
    mid = (x_lo + x_hi) / 2
    if kind == 0:
        return lambda x: 0.0 * x
    if kind == 1:
        return lambda x: c * (x - x_hi) ** 2
    return lambda x: c * np.maximum(x - mid, 0.0) ** 2


def evidence(table: pd.DataFrame, rng) -> dict:
    """The notebook's cells: the readings per student, the claim metrics and the law's metrics."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optima, reps = exp.optimal_teacher_evidence(table, n_boot=N_BOOT, seed=int(rng.integers(2**31)))
    return {**exp.optimal_teacher_metrics(optima), **exp.law_metrics(optima, reps)}


def optimum_world(rng, planted: bool, **design):
    """Planted: T* = 2.5 S for every student. Null: no student has an interior optimum."""
    lo, hi = np.log(TEACHERS[0]), np.log(TEACHERS[-1])
    curves = [parabola(2.5 * s) if planted else no_interior(rng, lo, hi) for s in STUDENTS]
    return evidence(blocks_table(rng, curves, **design), rng)


def law_world(rng, planted: bool, **design):
    """Planted: T* = LAW_RATIO S (linear, k = 1). Null: one T* for every student (k = 0), log-uniform over the
    middle of the grid."""
    lo, hi = np.log(TEACHERS[0]), np.log(TEACHERS[-1])
    stars = (LAW_RATIO * np.asarray(STUDENTS, float) if planted
             else np.full(len(STUDENTS), np.exp(rng.uniform(lo + 0.3 * (hi - lo), hi - 0.3 * (hi - lo)))))
    return evidence(blocks_table(rng, [parabola(t) for t in stars], **design), rng)


CONTROLS = [
    Control("capacity_gap.optimal_teacher_exists",
            null_world="no interior optimum (per student: flat, bigger teacher better, or flat then rising with the "
                       "smallest teacher as good as any); cpu design (3 students 888-3,312, 6 teachers 888-100k, 4 "
                       "seeds, 256 shared blocks), noise as measured on the cpu tier",
            planted_effect=f"T* = 2.5 S (the paper), loss a parabola in ln T of curvature {CURVATURE} nats per "
                           f"squared e-fold, same design and noise",
            simulate=optimum_world),
    Control("capacity_gap.linear_law",
            null_world="every student has an interior optimum at one T* independent of S (log-uniform over the "
                       "middle 40 % of the grid); cpu design and noise",
            planted_effect=f"T* = {LAW_RATIO:g} S (linear; the ratio puts every optimum inside its grid), parabola "
                           f"of curvature {CURVATURE} nats per squared e-fold",
            simulate=law_world),
]
