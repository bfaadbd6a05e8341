"""Tests of caplab.science.teacher_grid: paired readings of a teacher grid over seeds and evaluation blocks."""
import numpy as np
import pandas as pd
import pytest

from caplab.science import teacher_grid as G
from caplab.stats import laws

TEACHERS = np.geomspace(1e3, 1e5, 6)


def table(curve, students=(1000.0,), seeds=3, blocks=64, seed=0, seed_sd=0.004, block_sd=0.01):
    """Per-block losses: curve(ln T) + common block and seed effects (cancel when paired) + pair-specific noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in students:
        common_b, common_k = rng.normal(0, 0.1, blocks), rng.normal(0, 0.05, seeds)
        for t in TEACHERS:
            pair_k = rng.normal(0, seed_sd, seeds)
            for k in range(seeds):
                loss = 2 + curve(np.log(t), s) + common_b + common_k[k] + pair_k[k] + rng.normal(0, block_sd, blocks)
                rows += [{"student_params": s, "teacher_params": t, "seed": k, "block": b, "loss": v}
                         for b, v in enumerate(loss)]
    return pd.DataFrame(rows)


def test_paired_se_is_calibrated_and_holds_its_level():
    """Two-way random effects: the predicted SE matches the spread of the mean over many worlds, and a t test of
    a zero mean rejects about 5 % of the time."""
    rng = np.random.default_rng(0)
    d = (rng.normal(0, 0.02, (4000, 3, 1)) + rng.normal(0, 0.03, (4000, 1, 50))
         + rng.normal(0, 0.05, (4000, 3, 50)))
    mean, se, df, noise = G.paired_se(d)
    assert noise == "seeds and blocks"
    truth = np.sqrt(0.02 ** 2 / 3 + 0.03 ** 2 / 50 + 0.05 ** 2 / 150)
    assert np.std(mean) == pytest.approx(truth, rel=0.05)
    assert np.sqrt(np.mean(se ** 2)) == pytest.approx(truth, rel=0.1)
    from scipy import stats
    rejects = np.mean(np.abs(mean / se) > stats.t.ppf(0.975, df))
    assert 0.03 < rejects < 0.08
    one = G.paired_se(d[:5, :1])
    assert one[3] == "blocks only" and np.allclose(one[1], d[:5, 0].std(-1, ddof=1) / np.sqrt(50))


def test_a_planted_u_is_an_interior_optimum_with_its_vertex():
    t_star = 8e3
    out, reps = G.readings(table(lambda x, s: 0.01 * (x - np.log(t_star)) ** 2), n_boot=300, below=1.5, above=30)
    row = out.iloc[0]
    assert row.bracketed and row.interior_optimum and row.curse and row.readable and row.counts
    assert row.lower < t_star < row.upper and row.t_star == pytest.approx(t_star, rel=0.15)
    assert row.rise_lower > 0 and row.rise > 0.01 * (np.log(1e5 / t_star)) ** 2 * 0.8
    assert np.isfinite(reps[1000.0]).mean() > 0.9


def test_a_hockey_stick_has_the_curse_but_no_interior_optimum():
    mid = np.log(TEACHERS).mean()
    out, _ = G.readings(table(lambda x, s: 0.03 * max(x - mid, 0.0) ** 2), n_boot=50)
    row = out.iloc[0]
    assert row.curse and not row.interior_optimum and not row.counts


def test_bigger_is_better_has_neither_and_an_unbracketed_student_is_not_judged():
    out, _ = G.readings(table(lambda x, s: -0.02 * x), n_boot=50)
    assert not out.curse.iloc[0] and not out.interior_optimum.iloc[0]
    u = table(lambda x, s: 0.01 * (x - np.log(8e3)) ** 2, students=(5000.0,))     # largest teacher only 20x
    out, _ = G.readings(u, n_boot=50)
    assert not out.bracketed.iloc[0] and not out.interior_optimum.iloc[0] and out.p_interior.iloc[0] < 0.05


def test_flat_worlds_rarely_read_an_interior_optimum():
    hits = [G.readings(table(lambda x, s: 0.0 * x, seed=i, blocks=32), n_boot=10)[0].p_interior.iloc[0] < 0.05
            for i in range(60)]
    assert np.mean(hits) <= 0.1


def test_incomplete_designs_and_bad_input_raise():
    full = table(lambda x, s: 0.0 * x)
    with pytest.raises(ValueError, match="not complete"):
        G.cubes(full.drop(index=5))
    with pytest.raises(ValueError, match="not complete"):
        G.cubes(pd.concat([full, full.iloc[:1]]))
    with pytest.raises(ValueError, match="at least 3"):
        G.cubes(full[full.teacher_params <= TEACHERS[1]])
    with pytest.raises(ValueError, match="missing column"):
        G.cubes(full.drop(columns="block"))
    with pytest.raises(ValueError, match="non-finite"):
        G.cubes(full.assign(loss=np.nan))


def test_law_slope_recovers_a_planted_law_and_equals_the_toolkit_power_law():
    students = np.array([1e3, 3e3, 1e4])
    law = G.law_slope(students, 2.5 * students)
    assert law["k"] == pytest.approx(1.0) and law["ratio"] == pytest.approx(2.5)
    rng = np.random.default_rng(1)
    t = 2.5 * students ** 0.8 * np.exp(rng.normal(0, 0.1, 3))
    fit = laws.POWER_LAW.fit(pd.DataFrame({"S": students, "T": t}), inputs={"x": "S"}, target="T", delta=np.inf,
                             warn=False)
    assert G.law_slope(students, t)["k"] == pytest.approx(fit.params["alpha"], abs=1e-4)
    reps = np.log(2.5 * students)[None] + rng.normal(0, 0.1, (500, 3))
    out = G.law_slope(students, 2.5 * students, reps)
    assert out["k_lower"] < 1 < out["k_upper"] and out["n_boot_used"] == 500
    with pytest.raises(ValueError, match="2 distinct"):
        G.law_slope([1e3], [2e3])


def test_law_over_students_planted_at_two_and_a_half():
    students = (1000.0, 1700.0, 3000.0)                 # every grid brackets its student (1e5 >= 30 x 3000)
    out, reps = G.readings(table(lambda x, s: 0.05 * (x - np.log(2.5 * s)) ** 2, students=students), n_boot=200)
    assert out.counts.all()
    law = G.law_slope(out.student_params, out.t_star, np.column_stack([reps[s] for s in students]))
    assert law["k_lower"] < 1 < law["k_upper"] and law["k_lower"] > 0


def test_holm_matches_the_step_down_rule():
    assert G.holm([0.01, 0.04, 0.03], 0.05).tolist() == [True, False, False]
    assert G.holm([0.01, 0.02, 0.03], 0.05).tolist() == [True, True, True]
    assert G.holm([0.2, 0.01], 0.05).tolist() == [False, True]


def test_curves_are_differences_from_the_best_with_paired_intervals():
    c = G.curves(table(lambda x, s: 0.01 * (x - np.log(8e3)) ** 2))
    best = c[c.best].iloc[0]
    assert best.minus_best == 0 and best.lower == best.upper == 0
    assert (c.minus_best >= 0).all() and (c.lower <= c.minus_best).all() and (c.minus_best <= c.upper).all()
