"""Claim evidence of kappa (forgetting paired over seeds) and capacity_gap (optimal teachers with seed noise)."""
import numpy as np
import pandas as pd
import pytest

from caplab.papers import capacity_gap, kappa


def test_forgetting_evidence_pairs_over_seeds():
    rows = [{"arm": arm, "seed": s, "forgetting": base + 0.1 * s, "target_fit_b": 0.9}
            for arm, base in (("lowest-kappa", 0.0), ("full", 0.5), ("lora-all-linear", 1.0),
                              ("highest-kappa", 0.2), ("random", 0.1)) for s in range(3)]
    out = kappa.forgetting_evidence(pd.DataFrame(rows))
    assert out["forgetting_seeds"]["value"] == 3
    assert np.isclose(out["forgetting_low_minus_full"]["value"], -0.5)
    assert set(out) == set(kappa.ARM_METRICS.values()) | {"forgetting_seeds"}
    assert "paired over 3 seeds" in out["forgetting_low_minus_lora"]["note"]


def test_optimal_teacher_metrics_count_bracketed_interior_optima_and_the_law_reads_them():
    rng = np.random.default_rng(0)
    teachers = np.geomspace(1e3, 1.2e5, 6)
    rows = [{"student_params": s, "teacher_params": t, "seed": k, "block": b,
             "loss": 3 + 0.05 * (np.log(t) - np.log(2.5 * s)) ** 2 + common + rng.normal(0, 0.01)}
            for s in (1e3, 2e3, 4e3) for k in range(3) for b, common in enumerate(rng.normal(0, 0.1, 32))
            for t in teachers]
    optima, reps = capacity_gap.optimal_teacher_evidence(pd.DataFrame(rows), n_boot=100, seed=0)
    metrics = capacity_gap.optimal_teacher_metrics(optima)
    assert metrics["seeds_per_pair"]["value"] == 3 and set(optima.noise) == {"seeds and blocks"}
    assert metrics["students_bracketed"]["value"] == 3           # 1.2e5 >= 30 x 4e3
    assert metrics["students_with_interior_optimum"]["value"] == 3
    law = capacity_gap.law_metrics(optima, reps)
    assert law["t_star_log_slope"]["lo"] < 1 < law["t_star_log_slope"]["hi"]
    assert law["t_star_ratio"]["value"] == pytest.approx(2.5, rel=0.2)
    assert capacity_gap.law_metrics(optima.assign(counts=False), reps) == {}
