"""Knowledge distillation and the law of capacity gap (Zhang et al. 2023, arXiv 2311.07052).

Loss (the paper's code): `alpha * CE(student, labels) + (1 - alpha) * softCE`, with
`softCE = -sum_v softmax(teacher / T)_v * log_softmax(student / T)_v`, both averaged over the positions whose
(shifted, as in the causal LM loss) label is not -100; alpha = 0.5, T = 1 in the paper. No T^2 factor is applied
(at T = 1 it makes no difference). softCE = KL(teacher || student) + H(teacher): the KL is what TRL's GKD loss
(`generalized_jsd_loss` at beta = 0) computes, and the teacher entropy does not depend on the student, so both give
the same gradients.

Analysis: for one student, `optimal_teacher` fits loss = q0 + q1 x + q2 x^2 in x = log(teacher params) and reads
the vertex T* = exp(-q1 / (2 q2)) with a bootstrap interval; `capacity_gap_law` fits T* against the student size S
with the toolkit's LINEAR (T* = a S + b) and RATIO (T* = r S) laws; `teacher_tests` tests, per student, whether the
teacher matters, whether the largest is worse, and whether an interior teacher beats both ends, with the noise of
replicate seeds where the table has them (`holm` corrects across students).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats as st

from caplab.stats import laws
from caplab.stats.fitting import bootstrap, fit_law
from caplab.stats.resampling import percentile_interval, resample_indices
from caplab.substrate.models import get_model
from caplab.substrate.train import train_cached

PAPER_RATIO = 2.5   # T* ~ 2.5 S (the paper's fitted slope is 2.498)


def distillation_terms(student_logits, teacher_logits, labels, temperature: float = 1.0) -> dict:
    """Per-token means over the shifted positions with a label: `ce` (student vs labels, at T = 1), `soft_ce`
    (teacher probs vs student log-probs at T), and `teacher_entropy` (at T), so soft_ce = KL + teacher_entropy."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ: teacher and student must share the tokenizer/vocab")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    labels = labels[:, 1:]
    mask = labels != -100
    dtype = torch.promote_types(student_logits.dtype, torch.float32)     # bf16/fp16 logits: softmax in fp32
    student = student_logits[:, :-1][mask].to(dtype)           # (n, V): the positions that carry a loss
    teacher = teacher_logits[:, :-1][mask].to(dtype).detach()
    count = max(int(mask.sum()), 1)                            # an empty batch gives 0, not nan
    ce = F.cross_entropy(student, labels[mask], reduction="sum") / count
    student_logp = F.log_softmax(student / temperature, dim=-1)
    teacher_logp = F.log_softmax(teacher / temperature, dim=-1)
    teacher_p = teacher_logp.exp()
    soft_ce = -(teacher_p * student_logp).sum() / count
    entropy = -(teacher_p * teacher_logp).sum() / count
    return {"ce": ce, "soft_ce": soft_ce, "teacher_entropy": entropy}


def distillation_loss(student_logits, teacher_logits, labels, alpha: float = 0.5, temperature: float = 1.0):
    """The paper's loss, `alpha * CE + (1 - alpha) * softCE` (module docstring); alpha = 1 is the plain LM loss."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    terms = distillation_terms(student_logits, teacher_logits, labels, temperature)
    return alpha * terms["ce"] + (1.0 - alpha) * terms["soft_ce"]


def _vocab_size(model) -> int:
    return model.get_output_embeddings().weight.shape[0]


def make_distill_loss_fn(teacher: torch.nn.Module, alpha: float = 0.5, temperature: float = 1.0):
    """A `loss_fn(model, batch)` for `train`/`train_cached`: the distillation loss of `model` (the student) against
    a frozen `teacher` (eval mode, no grad, moved to the batch's device). Raises ValueError if the vocabularies
    differ (teacher and student must share the tokenizer)."""
    if not 0.0 <= alpha <= 1.0 or temperature <= 0:
        raise ValueError(f"need 0 <= alpha <= 1 and temperature > 0, got alpha={alpha}, temperature={temperature}")
    teacher.eval().requires_grad_(False)

    def loss_fn(model, batch):
        if _vocab_size(model) != _vocab_size(teacher):
            raise ValueError(f"student vocab size {_vocab_size(model)} != teacher vocab size "
                             f"{_vocab_size(teacher)}: teacher and student must share the tokenizer")
        device = batch["input_ids"].device
        if next(teacher.parameters()).device != device:
            teacher.to(device)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        with torch.no_grad():
            teacher_logits = teacher(**inputs).logits
        student_logits = model(**inputs).logits
        return distillation_loss(student_logits, teacher_logits, batch["labels"], alpha, temperature)

    return loss_fn


def teacher_spec(teacher) -> tuple[dict, str]:
    """(model spec, cache identity) of a teacher given as a local path, `{"path": ...}` or
    `{"pretrained": hub id, "revision": ...}` (revision "main" when not given)."""
    if isinstance(teacher, (str, Path)):
        teacher = {"path": str(teacher)}
    if "path" in teacher:
        path = Path(teacher["path"]).resolve()
        return {**teacher, "path": str(path)}, str(path)
    if "pretrained" in teacher:
        revision = teacher.get("revision", "main")
        return {**teacher, "revision": revision}, f"{teacher['pretrained']}@{revision}"
    raise ValueError(f"a teacher is a local path, {{'path': ...}} or {{'pretrained': ..., 'revision': ...}}; "
                     f"got {teacher!r}")


def distill_cached(student_spec: dict, teacher_path, dataset, config, alpha: float = 0.5,
                   temperature: float = 1.0, *, cache=None, step: str = "distill"):
    """Train `get_model(student_spec)` on `dataset` with the distillation loss against the teacher, cached per
    (teacher, student, data, config, alpha, T): the key's loss name is `distill:<teacher path or id@rev>:alpha:T`.
    The teacher is loaded only when the entry has to be computed. Returns a `TrainedRun`."""
    spec, key = teacher_spec(teacher_path)
    loaded = {}

    def loss_fn(model, batch):
        if "fn" not in loaded:
            teacher, _ = get_model(spec)
            loaded["fn"] = make_distill_loss_fn(teacher, alpha, temperature)
        return loaded["fn"](model, batch)

    if not 0.0 <= alpha <= 1.0 or temperature <= 0:
        raise ValueError(f"need 0 <= alpha <= 1 and temperature > 0, got alpha={alpha}, temperature={temperature}")
    return train_cached(student_spec, dataset, config, cache=cache, loss_fn=loss_fn,
                        loss_name=f"distill:{key}:{alpha}:{temperature}", step=step)


# -- the optimal teacher and the law of capacity gap -----------------------------------------------------------
def _check(frame, columns, what):
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{what}: expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; the frame has {list(frame.columns)}")
    values = frame[list(columns)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what}: columns {list(columns)} hold missing or non-finite values")


def _vertex(x, y):
    q2, q1, q0 = np.polyfit(x, y, 2)
    return q0, q1, q2, (-q1 / (2 * q2) if q2 != 0 else np.nan)


def readable(interior: bool, at_edge: bool) -> bool:
    """The one definition of an optimum that can be read: the best observed teacher is neither the smallest nor
    the largest (`interior`), and the fitted vertex lies inside the grid on a convex fit (not `at_edge`)."""
    return bool(interior and not at_edge)


def optimal_teacher(frame: pd.DataFrame, teacher_col: str = "teacher_params", loss_col: str = "loss",
                    n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """T* for ONE student from rows (teacher size, student loss), several seeds per teacher allowed.

    Fits loss = q0 + q1 x + q2 x^2, x = ln(teacher params), by least squares; T* = exp(-q1 / (2 q2)).
    Flags: `convex` (q2 > 0: the parabola has a minimum); `at_edge` (the fitted curve's minimum over the grid is at
    or beyond its smallest or largest teacher, always so when not convex: then the law cannot be read from this
    student); `interior` (the teacher with the lowest mean observed loss is neither the smallest nor the largest).
    Bootstrap: `n_boot` resamples of the rows (seeded); resamples with < 3 distinct teachers are skipped
    (`n_boot_degenerate`), and the percentile interval on T* uses the `n_boot_convex` resamples with q2 > 0."""
    _check(frame, [teacher_col, loss_col], "optimal_teacher")
    teachers = frame[teacher_col].to_numpy(dtype=float)
    loss = frame[loss_col].to_numpy(dtype=float)
    if np.any(teachers <= 0):
        raise ValueError(f"optimal_teacher: column {teacher_col!r} must be positive (its log is taken)")
    grid = np.unique(teachers)
    if len(grid) < 3:
        raise ValueError(f"optimal_teacher: need at least 3 distinct teachers for a quadratic, got {len(grid)}")
    x = np.log(teachers)
    q0, q1, q2, x_star = _vertex(x, loss)
    convex = bool(q2 > 0)
    at_edge = not convex or not np.log(grid[0]) < x_star < np.log(grid[-1])
    means = frame.groupby(teacher_col)[loss_col].mean()
    best = float(means.idxmin())
    stars, degenerate = [], 0
    for rows in resample_indices(len(x), n_boot, np.random.default_rng(seed)):
        if len(np.unique(x[rows])) < 3:
            degenerate += 1
            continue
        *_, b2, bx = _vertex(x[rows], loss[rows])
        if b2 > 0:
            stars.append(bx)
    lower, upper = np.exp(percentile_interval(stars, level)) if stars else (np.nan, np.nan)
    return {"t_star": float(np.exp(x_star)) if convex else np.nan, "log_t_star": float(x_star) if convex else np.nan,
            "lower": float(lower), "upper": float(upper), "q0": float(q0), "q1": float(q1), "q2": float(q2),
            "convex": convex, "at_edge": bool(at_edge), "interior": best not in (grid[0], grid[-1]),
            "readable": readable(best not in (grid[0], grid[-1]), at_edge), "observed_best": best,
            "grid_min": float(grid[0]), "grid_max": float(grid[-1]),
            "n_teachers": len(grid), "n_rows": len(x), "n_boot": n_boot, "n_boot_convex": len(stars),
            "n_boot_degenerate": degenerate, "boot_seed": seed, "level": level}


def optimal_teachers(frame: pd.DataFrame, student_col: str = "student_params", teacher_col: str = "teacher_params",
                     loss_col: str = "loss", n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """`optimal_teacher` for each student: one row per student (column `student_col`) with its result keys."""
    _check(frame, [student_col, teacher_col, loss_col], "optimal_teachers")
    rows = [{student_col: student, **optimal_teacher(group, teacher_col, loss_col, n_boot, seed, level)}
            for student, group in frame.groupby(student_col, sort=True)]
    return pd.DataFrame(rows)


def capacity_gap_law(optima: pd.DataFrame, n_boot: int = 1000, seed: int = 0, *, student_col: str = "student_params",
                     t_star_col: str = "t_star", unit: float = 1e6, level: float = 0.95) -> dict:
    """Fit T* = a S + b (laws.LINEAR) and T* = r S (laws.RATIO) to the students whose optimum can be read
    (`interior` and not `at_edge`, when those columns exist), in units of `unit` parameters (default millions,
    the paper's presumed unit: b depends on it, r does not). Least squares (delta = inf), bootstrap over students.

    With few students (the CPU tier has 3-4) the bootstrap resamples repeat the same few points, so the interval on
    r is wide and coarse, and the linear law (2 parameters) is barely constrained: read r's interval, not a line."""
    _check(optima, [student_col, t_star_col], "capacity_gap_law")
    if "readable" in optima.columns:
        keep = optima.readable.astype(bool).to_numpy()
    else:
        keep = np.array([readable(bool(i), bool(e)) for i, e in zip(optima.get("interior", [True] * len(optima)),
                                                                     optima.get("at_edge", [False] * len(optima)))])
    used = optima[keep]
    if len(used) < 2:
        raise ValueError(f"capacity_gap_law: need at least 2 students with a readable interior optimum, got "
                         f"{len(used)} of {len(optima)}")
    data = pd.DataFrame({"S": used[student_col].to_numpy(float) / unit, "T": used[t_star_col].to_numpy(float) / unit})
    ratio = fit_law(laws.RATIO, data, target="T", delta=np.inf, starts=5, seed=seed)
    ratio = bootstrap(ratio, n=n_boot, seed=seed, level=level)
    linear = None
    if len(used) >= 3:
        linear = bootstrap(fit_law(laws.LINEAR, data, target="T", delta=np.inf, starts=5, seed=seed),
                           n=n_boot, seed=seed, level=level)
    r_lower, r_upper = (float(v) for v in ratio.intervals.loc["r", ["lower", "upper"]])
    return {"ratio": ratio, "linear": linear, "r": ratio.params["r"], "r_lower": r_lower, "r_upper": r_upper,
            "paper_ratio_in_interval": bool(r_lower <= PAPER_RATIO <= r_upper), "n_students": len(used),
            "excluded": optima.loc[~keep, student_col].tolist(), "unit": unit, "data": data,
            "note": "few students: the bootstrap interval on r is wide; the linear law needs >= 3 students"}


def teacher_effects(pairs: pd.DataFrame, student_col: str = "student_params", teacher_col: str = "teacher_params",
                    loss_col: str = "loss", se_col: str = "loss_se", margin_se: float = 2.0) -> pd.DataFrame:
    """Per student (sorted), whether teacher size measurably matters: `spread` (worst minus best student loss over
    teachers) against `spread_noise`, and `rise_to_largest` (largest teacher minus best) against `rise_noise`, each
    noise `margin_se` combined (unpaired, so conservative) standard errors of the two evaluations."""
    _check(pairs, [student_col, teacher_col, loss_col, se_col], "teacher_effects")
    rows = []
    for student, g in pairs.groupby(student_col, sort=True):
        best, worst, largest = g.loc[g[loss_col].idxmin()], g.loc[g[loss_col].idxmax()], g.loc[g[teacher_col].idxmax()]
        rows.append({student_col: student, "spread": worst[loss_col] - best[loss_col],
                     "spread_noise": margin_se * np.hypot(worst[se_col], best[se_col]),
                     "rise_to_largest": largest[loss_col] - best[loss_col],
                     "rise_noise": margin_se * np.hypot(largest[se_col], best[se_col])})
    out = pd.DataFrame(rows)
    out["teacher_effect"] = out.spread > out.spread_noise
    return out


def teacher_tests(pairs: pd.DataFrame, student_col: str = "student_params", teacher_col: str = "teacher_params",
                  loss_col: str = "loss", se_col: str = "loss_se", seed_col: str = "seed") -> pd.DataFrame:
    """Per student (sorted), tests of the teacher's effect on the student's loss, with a noise that includes the
    seed-to-seed spread of the students when the table has replicate seeds.

    Noise of one (student, teacher) pair's mean loss: with replicate seeds (column `seed_col`, at least 2 rows for
    every teacher of the student), the pooled within-pair variance over seeds, s^2 with df = sum(n_pair - 1), and
    SE = s / sqrt(n_pair): the spread of students trained with different seeds, their evaluation noise included
    (`noise` "seeds"). Otherwise the evaluation standard error `se_col`, normal (df = inf; `noise` "evaluation
    only"): seed noise is then missing, and every p-value below is too small when seeds matter.

    - `p_teacher_effect`: the pair means differ at all (one-way F test with the pooled variance; with evaluation
      SEs only, the chi-square test of equal means).
    - `p_curse`: the largest teacher's student is worse than some smaller teacher's: the smallest one-sided p of
      (largest - j) > 0 over the smaller teachers j, times their number (Bonferroni).
    - `p_interior`: some interior teacher's student is better than both the smallest and the largest teacher's
      (the loss falls, then rises): for each interior teacher j the intersection-union p,
      max(p(smallest - j > 0), p(largest - j > 0)); the smallest over j, times the number of interior teachers.
    Each p is valid for its student alone; correct across students (Holm) before counting them. Differences are
    unpaired (sqrt(SE_a^2 + SE_b^2)); students that share initialisation or evaluation blocks across teachers would
    be tighter paired, so these tests are conservative there. Descriptive columns: `n_seeds` (fewest rows of a
    pair), `df`, `spread` (worst minus best mean), `rise_to_largest` (largest minus best mean)."""
    _check(pairs, [student_col, teacher_col, loss_col], "teacher_tests")
    rows = []
    for student, g in pairs.groupby(student_col, sort=True):
        per = g.groupby(teacher_col, sort=True)[loss_col].agg(["mean", "count", "var"])
        if len(per) < 3:
            raise ValueError(f"teacher_tests: student {student} has {len(per)} teachers; the tests need >= 3")
        n, mean = per["count"].to_numpy(float), per["mean"].to_numpy(float)
        if seed_col in g.columns and n.min() >= 2:
            df = float((n - 1).sum())
            s2 = float(((n - 1) * per["var"].to_numpy(float)).sum() / df)
            se, noise = np.sqrt(s2 / n), "seeds"
        else:
            _check(g, [se_col], "teacher_tests (one seed per pair: evaluation SEs)")
            se2 = g.groupby(teacher_col, sort=True)[se_col].agg(lambda v: float(np.mean(np.square(v)))).to_numpy()
            df, se, noise = np.inf, np.sqrt(se2 / n), "evaluation only"
        dist = st.t(df) if np.isfinite(df) else st.norm()

        def p_worse(a, b):   # one-sided p of mean[a] - mean[b] > 0
            return float(dist.sf((mean[a] - mean[b]) / np.hypot(se[a], se[b])))

        k, last = len(mean), len(mean) - 1
        w = 1 / se ** 2
        if np.isfinite(df):
            grand = (n * mean).sum() / n.sum()
            f = (n * (mean - grand) ** 2).sum() / (k - 1) / s2
            p_effect = float(st.f.sf(f, k - 1, df))
        else:
            grand = (w * mean).sum() / w.sum()
            p_effect = float(st.chi2.sf((w * (mean - grand) ** 2).sum(), k - 1))
        p_curse = min(1.0, (k - 1) * min(p_worse(last, j) for j in range(last)))
        p_interior = min(1.0, (k - 2) * min(max(p_worse(0, j), p_worse(last, j)) for j in range(1, last)))
        rows.append({student_col: student, "noise": noise, "n_seeds": int(n.min()), "df": df,
                     "spread": float(mean.max() - mean.min()), "rise_to_largest": float(mean[last] - mean.min()),
                     "p_teacher_effect": p_effect, "p_curse": p_curse, "p_interior": p_interior})
    return pd.DataFrame(rows)


def holm(p_values, alpha: float = 0.05) -> np.ndarray:
    """Holm's step-down rejections at family-wise error `alpha`: sort the p-values, reject the i-th smallest (from
    0) while p <= alpha / (m - i), stop at the first that is not."""
    p = np.asarray(p_values, float)
    order = np.argsort(p, kind="stable")
    passed = p[order] <= alpha / (len(p) - np.arange(len(p)))
    reject = np.zeros(len(p), bool)
    reject[order] = np.cumprod(passed).astype(bool)
    return reject
