"""Claim evidence of kappa (forgetting paired over seeds) and capacity_gap (optimal teachers with seed noise)."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from caplab.papers import capacity_gap, kappa


def test_forgetting_evidence_pairs_over_seeds_where_both_arms_reached_the_target():
    arms = kappa.ARMS
    bases = {arms["lowest"]: 0.0, arms["full"]: 0.5, arms["lora"]: 1.0, arms["high_matched"]: 0.2,
             arms["random_matched"]: 0.1, arms["high_whole"]: 0.3, arms["kappatune_lora"]: 0.4}
    rows = [{"arm": arm, "seed": s, "forgetting": base + 0.1 * s + 0.01 * s * s, "target_fit_b": 0.4}
            for arm, base in bases.items() for s in range(6)]
    frame = pd.DataFrame(rows)
    frame.loc[(frame.arm == arms["full"]) & (frame.seed < 2), "forgetting"] = np.nan      # never reached there
    frame.loc[frame.arm == arms["high_whole"], "forgetting"] = np.nan                       # never reached at all
    frame.loc[(frame.arm == arms["lora"]) & (frame.seed == 5), "forgetting"] += 0.3          # noise in one seed
    out = kappa.forgetting_evidence(frame)
    assert np.isclose(out["forgetting_low_minus_full"]["value"], -0.5) and out["pairs_low_minus_full"]["value"] == 4
    assert np.isclose(out["forgetting_low_minus_random"]["value"], -0.1)
    assert out["pairs_low_minus_lora"]["value"] == 6 and np.isclose(out["forgetting_low_minus_lora"]["value"], -1.05)
    lora = out["forgetting_low_minus_lora"]
    diffs = np.array([-1.0] * 5 + [-1.3])
    half = stats.t.ppf(0.975, 5) * diffs.std(ddof=1) / np.sqrt(6)
    assert np.isclose(lora["lo"], diffs.mean() - half) and np.isclose(lora["hi"], diffs.mean() + half)
    assert out["forgetting_low_minus_high_whole"]["value"] is None and out["pairs_low_minus_high_whole"]["value"] == 0
    assert np.isclose(out["forgetting_kappatune_lora_minus_lora"]["value"], 0.4 - 1.0 - 0.05)
    assert set(out) == {m for metric in [*kappa.ARM_METRICS.values(), kappa.MODULE_CHOICE[0]]
                        for m in (metric, kappa.pairs_name(metric))}
    assert "paired over 4 seeds" in out["forgetting_low_minus_full"]["note"]


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
