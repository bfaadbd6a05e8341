"""Basins and damage trends on planted data; grouped law comparison; hub families through the same door."""
import numpy as np
import pandas as pd
import pytest

from caplab.stats import laws
from caplab.stats.fit_compare import compare_grouped, pooled_r2
from caplab.science.perturbation_scan import basins, degradation_trend
from caplab.substrate.family import build_family


def series(losses, se=0.01, kind="noise", level=0.1, model="m"):
    tokens = np.geomspace(1e3, 1e6, len(losses))
    return pd.DataFrame({"perturbation": kind, "level": level, "model": model, "tokens": tokens,
                         "target_tokens": tokens.astype(int), "params_non_embedding": 1000, "loss": losses,
                         "loss_se": se})


def test_basins_need_an_interior_minimum_and_a_rise_above_noise():
    frame = pd.concat([series([3.0, 2.0, 1.5, 1.8, 2.2], model="u"),
                       series([3.0, 2.0, 1.5, 1.4, 1.3], model="monotone"),
                       series([3.0, 2.0, 1.50, 1.52, 1.51], se=0.05, model="within-noise")])
    found = basins(frame, along="tokens").set_index("model")
    assert found.basin.to_dict() == {"u": True, "monotone": False, "within-noise": False}
    assert found.loc["u", "rise"] == pytest.approx(0.7) and found.loc["u", "argmin"] == pytest.approx(1e3 * 1e3 ** 0.5)
    with pytest.raises(ValueError, match="along"):
        basins(frame, along="time")


def test_degradation_trend_recovers_a_planted_slope():
    rng = np.random.default_rng(0)
    rows = []
    for model, offset in [("a", 0.1), ("b", 0.3)]:
        for t in np.geomspace(1e3, 1e6, 12):
            clean = 2.0 - 0.1 * np.log(t)
            rows += [{"model": model, "target_tokens": int(t), "tokens": t, "perturbation": "none", "level": 0.0,
                      "loss": clean},
                     {"model": model, "target_tokens": int(t), "tokens": t, "perturbation": "quant", "level": 2.0,
                      "loss": clean + offset + 0.05 * np.log(t) + rng.normal(0, 0.01)}]
    trend = degradation_trend(pd.DataFrame(rows), "quant", 2)
    assert trend["lo"] < 0.05 < trend["hi"] and abs(trend["slope"] - 0.05) < 0.01 and trend["n"] == 24
    with pytest.raises(ValueError, match="no rows"):
        degradation_trend(pd.DataFrame(rows), "quant", 3)


def test_grouped_comparison_and_pooled_r2():
    rng = np.random.default_rng(1)
    rows = []
    for group, e in [("g1", 1.5), ("g2", 2.0)]:
        for n in np.geomspace(1e4, 1e6, 4):
            for d in np.geomspace(1e5, 1e8, 6):
                loss = (e + 400 / n ** 0.34 + 400 / d ** 0.28) * np.exp(rng.normal(0, 0.005))
                rows.append({"setting": group, "N": n, "D": d, "loss": loss})
    frame = pd.DataFrame(rows)
    table, held = compare_grouped([laws.CHINCHILLA, laws.KAPLAN], frame, by=["setting"], inputs={"N": "N", "D": "D"},
                                  train=lambda f: (f.N < f.N.max()).to_numpy(), starts=8, seed=0, warn=False)
    assert set(table.setting) == {"g1", "g2"} and (table.groupby("setting").delta_aic.min() == 0).all()
    chin = table[table.law == "Chinchilla"]
    assert (chin.r2 > 0.99).all() and (chin.r2_extrapolation > 0.9).all()
    assert len(held) == 2 * 2 * 6                     # 2 groups x 2 laws x the largest N's 6 rows
    r2 = pooled_r2(held)
    rows = held[held.law == "Chinchilla"]
    y, p = np.log(rows.observed), np.log(rows.predicted)
    assert r2["Chinchilla"] == pytest.approx(1 - ((y - p) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def test_hub_family_rows_and_checks():
    spec = {"kind": "hub", "models": ["EleutherAI/pythia-160m-deduped", "EleutherAI/pythia-410m-deduped"],
            "revisions": ["step1000", "step143000"], "tokens_per_step": 2097152,
            "params_non_embedding": [85056000, 302311424]}
    frame = build_family(spec, None, {}, {})
    assert len(frame) == 4 and frame.tokens.max() == 143000 * 2097152
    assert set(frame.revision) == {"step1000", "step143000"} and frame.path.isna().all()
    with pytest.raises(ValueError, match="step<N>"):
        build_family({**spec, "revisions": ["main"]}, None, {}, {})
    with pytest.raises(ValueError, match="already trained"):
        build_family(spec, None, {"lr": 1e-3}, {})
    with pytest.raises(ValueError, match="unknown key .colour. of hub family"):
        build_family({**spec, "colour": 1}, None, {}, {})


def test_monotone_p_value_separates_a_u_from_noise():
    from caplab.science.perturbation_scan import monotone_p_value
    se = np.full(6, 0.01)
    assert monotone_p_value([3.0, 2.0, 1.5, 1.45, 1.6, 1.8], se) < 1e-6          # falls, then rises far above noise
    assert monotone_p_value([3.0, 2.0, 1.5, 1.4, 1.3, 1.2], se) == 1.0            # monotone
    assert monotone_p_value([1.0, 1.1, 1.2, 1.3, 1.4, 1.5], se) == 1.0            # rising throughout: no fall
    rng = np.random.default_rng(0)                                              # flat noise: valid (conservative)
    p = np.array([monotone_p_value(2.0 + rng.normal(0, 0.01, 8), np.full(8, 0.01)) for _ in range(2000)])
    assert np.mean(p < 0.05) <= 0.05


def test_damage_slopes_take_the_model_as_the_unit():
    from caplab.science.perturbation_scan import damage_slopes
    rng = np.random.default_rng(0)
    rows = []
    for model, offset in [("a", 0.1), ("b", 0.3), ("c", 0.2)]:
        for t in np.geomspace(1e3, 1e6, 8):
            clean = 2.0 - 0.1 * np.log(t)
            rows += [{"model": model, "target_tokens": int(t), "tokens": t, "perturbation": "none", "level": 0.0,
                      "loss": clean},
                     {"model": model, "target_tokens": int(t), "tokens": t, "perturbation": "quant", "level": 2.0,
                      "loss": clean + offset + 0.05 * np.log(t) + rng.normal(0, 0.01)}]
    trend = damage_slopes(pd.DataFrame(rows), "quant", 2)
    assert trend["n"] == 3 and set(trend["slopes"]) == {"a", "b", "c"}
    assert trend["lo"] < 0.05 < trend["hi"] and abs(trend["slope"] - 0.05) < 0.01
    mean, lo, hi = trend["normalised"]                   # damage per unit of the clean loss drop (0.1 per e-fold)
    assert lo < 0.5 < hi and abs(mean - 0.5) < 0.1
    mean, lo, hi = trend["normalised"]                   # damage per unit of the clean loss drop (0.1 per e-fold)
    assert lo < 0.5 < hi and abs(mean - 0.5) < 0.1
