"""The optimal teacher per student, read from a grid of teachers with replicate seeds and shared evaluation blocks.

Input (`blocks`): one row per (student, teacher, seed, evaluation block) with the student's mean loss on that block
(columns `student_params`, `teacher_params`, `seed`, `block`, `loss`). The design is complete: every teacher of a
student has the same seeds (a seed fixes the student's initialisation and data order, the same for every teacher)
and the same blocks. So every comparison between two teachers is paired twice: over seeds and over blocks.

A paired difference d[k, b] (seed k, block b) is read with the two-way random-effects model d = mu + a_k + c_b + e:
the seed effect a (students trained again), the block effect c (other text) and their interaction e. The standard
error of the mean is sqrt((MS_seed + MS_block - MS_resid) / (K B)) (the expectations of the mean squares give
sigma_a^2 / K + sigma_c^2 / B + sigma_e^2 / (K B)), with Satterthwaite's degrees of freedom; with one seed only the
block part is known (`noise` "blocks only") and the seed-to-seed noise is missing.

Per student (`student_readings`):
- `curse`: the largest teacher's student is worse than some smaller teacher's (one-sided paired tests against each
  smaller teacher, Bonferroni over them); `rise` = largest minus best mean loss with its paired interval at the
  simultaneous level (lower bound > 0 is the test for the best teacher).
- `interior`: some interior teacher's student beats both the smallest and the largest teacher's (intersection-union
  p per interior teacher, Bonferroni over them); judged only where the grid brackets the student (`bracketed`:
  smallest teacher at most `below` x S, largest at least `above` x S).
- T*: the vertex of a quadratic in ln(teacher params) through the per-teacher mean losses; `readable` when convex,
  inside the grid and the best observed teacher is interior. Its interval comes from the student's own seed
  bootstrap: seeds and blocks resampled (the same resample for every teacher, keeping the pairing).
`holm` corrects the per-student p-values across students. `law_slope` fits log T* = log r + k log S over the counted
students; its interval propagates the bootstrap replicates of every T* (one joint resample of seeds and blocks per
replicate for all students).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as st

COLUMNS = ("student_params", "teacher_params", "seed", "block", "loss")
PAPER_RATIO = 2.5   # T* ~ 2.5 S (Zhang et al. 2023: the fitted slope is 2.498)


def _check(blocks: pd.DataFrame) -> np.ndarray:
    """The table's `COLUMNS` as a float array [row, column], or ValueError naming the problem."""
    if not isinstance(blocks, pd.DataFrame):
        raise ValueError(f"expected a pandas DataFrame of per-block losses, got {type(blocks).__name__}")
    missing = [c for c in COLUMNS if c not in blocks.columns]
    if missing:
        raise ValueError(f"per-block table: missing column(s) {missing}; it has {list(blocks.columns)}")
    try:
        values = blocks[list(COLUMNS)].to_numpy(float)
    except (TypeError, ValueError):
        raise ValueError(f"per-block table: columns {list(COLUMNS)} must be numeric") from None
    if not np.all(np.isfinite(values)):
        raise ValueError(f"per-block table: columns {list(COLUMNS)} hold missing or non-finite values")
    if (values[:, 1] <= 0).any():
        raise ValueError("per-block table: teacher_params must be positive (its log is taken)")
    return values


def cubes(blocks: pd.DataFrame) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """Per student: (teacher sizes ascending, losses [teacher, seed, block]). Raises ValueError unless every
    (teacher, seed, block) of a student appears exactly once, with at least 3 teachers."""
    values = _check(blocks)
    values = values[np.lexsort(values[:, 3::-1].T)]         # by student, teacher, seed, block
    out = {}
    for student in np.unique(values[:, 0]):
        g = values[values[:, 0] == student]
        teachers, seeds, ids = (np.unique(g[:, c]) for c in (1, 2, 3))
        if len(teachers) < 3:
            raise ValueError(f"student {student:g}: {len(teachers)} teachers; the readings need at least 3")
        full = len(teachers) * len(seeds) * len(ids)
        product = np.stack([a.ravel() for a in np.meshgrid(teachers, seeds, ids, indexing="ij")], axis=1)
        if len(g) != full or not np.array_equal(g[:, 1:4], product):     # sorted rows = the full product
            raise ValueError(f"student {student:g}: the design is not complete (every teacher needs the same seeds "
                             f"and blocks, each once): {len(g)} rows for {len(teachers)} teachers x {len(seeds)} "
                             f"seeds x {len(ids)} blocks")
        out[float(student)] = (teachers, g[:, 4].reshape(len(teachers), len(seeds), len(ids)))
    return out


def paired_se(d: np.ndarray) -> tuple[float, float, float, str]:
    """(mean, standard error, degrees of freedom, noise) of the mean of ONE pair's differences d[..., seed, block]
    (leading axes broadcast), by the two-way random-effects model of the module docstring; with one seed, blocks
    only. Each pair's noise comes from its own differences: the seed-to-seed spread of a difference grows with the
    distance between the two teachers (measured on the cpu tier), so pooling it over pairs would be wrong."""
    d = np.asarray(d, float)
    k, b = d.shape[-2:]
    mean = d.mean(axis=(-2, -1))
    seed_means, block_means = d.mean(-1), d.mean(-2)
    ms_block = k * ((block_means - mean[..., None]) ** 2).sum(-1) / max(b - 1, 1)
    if k < 2:
        return mean, np.sqrt(ms_block / (k * b)), np.full_like(mean, b - 1.0), "blocks only"
    ms_seed = b * ((seed_means - mean[..., None]) ** 2).sum(-1) / (k - 1)
    resid = d - seed_means[..., None] - block_means[..., None, :] + mean[..., None, None]
    ms_resid = (resid ** 2).sum(axis=(-2, -1)) / ((k - 1) * (b - 1))
    total = np.maximum(ms_seed + ms_block - ms_resid, np.maximum(ms_seed, ms_block) / 2)
    denominator = ms_seed ** 2 / (k - 1) + ms_block ** 2 / (b - 1) + ms_resid ** 2 / ((k - 1) * (b - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(denominator > 0, total ** 2 / denominator, np.inf)      # identical arms: no noise at all
    return mean, np.sqrt(total / (k * b)), df, "seeds and blocks"


def vertex(x: np.ndarray, means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(curvature q2, vertex ln T*) of the least-squares quadratic through (x, means[..., teacher]) (vectorised
    over leading axes of `means`)."""
    design = np.stack([np.ones_like(x), x, x ** 2], axis=1)
    q = np.linalg.lstsq(design, np.moveaxis(np.atleast_2d(means), -1, 0), rcond=None)[0]
    q = q.reshape(3, *np.shape(means)[:-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return q[2], np.where(q[2] != 0, -q[1] / (2 * q[2]), np.nan)


def resamples(n_seeds: int, n_blocks: int, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n_boot` joint resamples as count weights: seeds [n_boot, n_seeds] and blocks [n_boot, n_blocks]. With one
    seed only the blocks are resampled."""
    rng = np.random.default_rng(seed)

    def counts(n):
        weights = np.zeros((n_boot, n))
        np.add.at(weights, (np.arange(n_boot)[:, None], rng.integers(n, size=(n_boot, n))), 1.0)
        return weights

    return counts(n_seeds), counts(n_blocks)


def boot_means(cube: np.ndarray, w_seed: np.ndarray, w_block: np.ndarray) -> np.ndarray:
    """Per-teacher mean loss under each resample: [n_boot, teacher]."""
    k, b = cube.shape[1:]
    return np.einsum("nk,tkb,nb->nt", w_seed, cube, w_block) / (k * b)


def student_readings(student: float, teachers: np.ndarray, cube: np.ndarray, *, w_seed=None, w_block=None,
                     alpha: float = 0.05, below: float = 1.5, above: float = 30.0, level: float = 0.95) -> dict:
    """The readings of one student (module docstring) from its losses [teacher, seed, block]; `w_seed`, `w_block`:
    the bootstrap resamples (`resamples`) for T*'s interval and its `replicates` of ln T* (nan where the resample's
    quadratic is not convex); none: no interval."""
    n_t = len(teachers)
    x = np.log(teachers)
    means = cube.mean(axis=(1, 2))
    last, best = n_t - 1, int(np.argmin(means))
    smaller, inner = np.arange(last), np.arange(1, last)

    def p_greater(a, b):                # one-sided p of mean[a] - mean[b] > 0 for each b, paired (`paired_se`)
        mean, se, df, _ = paired_se(cube[a][None] - cube[b])
        return st.t.sf(mean / np.maximum(se, 1e-300), df)

    p_curse = min(1.0, last * float(p_greater(last, smaller).min()))
    simultaneous = 1 - 2 * alpha / last                          # two-sided level whose lower bound is the test
    rise, se, df, noise = paired_se(cube[last] - cube[best])
    rise, se, df = float(rise), float(se), float(df)
    half = float(st.t.ppf(0.5 + simultaneous / 2, df) * se) if best != last else 0.0
    p_iut = np.maximum(p_greater(0, inner), p_greater(last, inner))
    p_interior = min(1.0, (n_t - 2) * float(p_iut.min()))
    q2, xs = vertex(x, means)
    q2, xs = float(np.squeeze(q2)), float(np.squeeze(xs))
    convex = q2 > 0
    inside = convex and x[0] < xs < x[-1]
    out = {"student_params": student, "n_teachers": n_t, "n_seeds": cube.shape[1], "n_blocks": cube.shape[2],
           "noise": paired_se(cube[1] - cube[0])[3], "rise_se": se, "rise_df": df, "grid_min": float(teachers[0]),
           "grid_max": float(teachers[-1]), "best_teacher": float(teachers[best]),
           "bracketed": bool(teachers[0] <= below * student and teachers[-1] >= above * student),
           "rise": rise, "rise_lower": rise - half, "rise_upper": rise + half,
           "rise_level": simultaneous, "p_curse": p_curse, "p_interior": p_interior,
           "t_star": float(np.exp(xs)) if convex else np.nan, "convex": bool(convex), "inside": bool(inside),
           "readable": bool(inside and 0 < best < last), "lower": np.nan, "upper": np.nan, "n_boot_used": 0}
    if w_seed is not None:
        b2, bx = vertex(x, boot_means(cube, w_seed, w_block))
        ok = b2 > 0
        out["replicates"] = np.where(ok, bx, np.nan)
        if ok.any():
            lo, hi = np.quantile(bx[ok], [(1 - level) / 2, (1 + level) / 2])
            out.update(lower=float(np.exp(lo)), upper=float(np.exp(hi)), n_boot_used=int(ok.sum()))
    return out


def holm(p_values, alpha: float = 0.05) -> np.ndarray:
    """Holm's step-down rejections at family-wise error `alpha`: sort the p-values, reject the i-th smallest (from
    0) while p <= alpha / (m - i), stop at the first that is not."""
    p = np.asarray(p_values, float)
    order = np.argsort(p, kind="stable")
    passed = p[order] <= alpha / (len(p) - np.arange(len(p)))
    reject = np.zeros(len(p), bool)
    reject[order] = np.cumprod(passed).astype(bool)
    return reject


def readings(blocks: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05, below: float = 1.5,
             above: float = 30.0) -> tuple[pd.DataFrame, dict]:
    """Every student's readings (one row each, `student_readings`), with `curse` (Holm at `alpha` across all
    students), `interior_optimum` (Holm across the bracketed students; never for the others) and `counts` (an
    interior optimum with a readable T*); and the bootstrap replicates of log T* per student ({student: array},
    nan where the replicate's quadratic is not convex), from one joint resample of seeds and blocks."""
    per = cubes(blocks)
    n_seeds = {c.shape[1] for _, c in per.values()}
    n_blocks = {c.shape[2] for _, c in per.values()}
    if len(n_seeds) > 1 or len(n_blocks) > 1:
        raise ValueError(f"every student needs the same number of seeds and blocks, got {n_seeds} and {n_blocks}")
    w_seed, w_block = resamples(n_seeds.pop(), n_blocks.pop(), n_boot, seed)
    rows, reps = [], {}
    for student, (teachers, cube) in per.items():
        rows.append(student_readings(student, teachers, cube, w_seed=w_seed, w_block=w_block, alpha=alpha,
                                     below=below, above=above))
        reps[student] = rows[-1].pop("replicates")
    out = pd.DataFrame(rows)
    out["curse"] = holm(out.p_curse, alpha)
    out["interior_optimum"] = False
    if out.bracketed.any():
        out.loc[out.bracketed, "interior_optimum"] = holm(out.p_interior[out.bracketed], alpha)
    out["counts"] = out.interior_optimum & out.readable
    return out, reps


def law_slope(students: np.ndarray, t_star: np.ndarray, replicates: np.ndarray | None = None,
              level: float = 0.95) -> dict:
    """log T* = log r + k log S by least squares (the power law T* = r S^k in log space) over the given students;
    with `replicates` ([n_boot, student] of log T*), the percentile interval of k and of the ratio at k = 1
    (geometric mean of T* / S) over the replicates where every T* exists."""
    s, t = np.log(np.asarray(students, float)), np.log(np.asarray(t_star, float))
    if len(s) < 2 or len(np.unique(s)) < 2:
        raise ValueError(f"law_slope: need at least 2 distinct students, got {len(s)}")
    if not np.all(np.isfinite(t)):
        raise ValueError("law_slope: every T* must be positive and finite")

    def fit(logt):
        sc = s - s.mean()
        k = (sc * (logt - logt.mean(-1, keepdims=True))).sum(-1) / (sc ** 2).sum()
        return k, np.exp((logt - s).mean(-1))

    k, ratio = fit(t)
    out = {"k": float(k), "ratio": float(ratio), "n_students": len(s), "k_lower": np.nan, "k_upper": np.nan,
           "ratio_lower": np.nan, "ratio_upper": np.nan, "n_boot_used": 0}
    if replicates is not None:
        reps = np.asarray(replicates, float)
        reps = reps[np.all(np.isfinite(reps), axis=1)]
        if len(reps):
            ks, rs = fit(reps)
            q = [(1 - level) / 2, (1 + level) / 2]
            (klo, khi), (rlo, rhi) = np.quantile(ks, q), np.quantile(rs, q)
            out.update(k_lower=float(klo), k_upper=float(khi), ratio_lower=float(rlo), ratio_upper=float(rhi),
                       n_boot_used=len(reps))
    return out


def curves(blocks: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Per student and teacher: the mean loss, and its paired difference from the student's best teacher with the
    interval at `level` (`paired_se`; zero width for the best itself): the loss-against-teacher curve to plot."""
    rows = []
    for student, (teachers, cube) in cubes(blocks).items():
        means = cube.mean(axis=(1, 2))
        best = int(np.argmin(means))
        mean, se, df, _ = paired_se(cube - cube[best][None])
        for j, t in enumerate(teachers):
            half = float(st.t.ppf(0.5 + level / 2, df[j]) * se[j]) if j != best else 0.0
            rows.append({"student_params": student, "teacher_params": float(t), "loss": float(means[j]),
                         "minus_best": float(mean[j]), "lower": float(mean[j]) - half,
                         "upper": float(mean[j]) + half, "best": j == best})
    return pd.DataFrame(rows)
