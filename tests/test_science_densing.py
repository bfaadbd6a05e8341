"""The densing method: planted laws recovered, the inversion inverts, the envelope, the undefined region."""
import math

import numpy as np
import pandas as pd
import pytest

from caplab.science import densing

LOSS = {"a": 10.0, "alpha": 0.3, "b": 20.0, "beta": 0.25}
SIG = {"c": 0.8, "gamma": -10.0, "l": 0.7, "d": 0.1}


def _grid(law_params, noise, seed):
    rng = np.random.default_rng(seed)
    N, D = np.meshgrid(np.geomspace(1e4, 1e6, 6), np.geomspace(1e6, 1e8, 6))
    frame = pd.DataFrame({"params_non_embedding": N.ravel(), "tokens": D.ravel()})
    frame["loss"] = densing.loss_at(law_params, frame.params_non_embedding, frame.tokens) * np.exp(
        rng.normal(0, noise, len(frame)))
    return frame


def test_loss_law_recovered():
    fit = densing.fit_loss(_grid(LOSS, 0.005, 0), seed=0, starts=16)
    assert fit.converged
    for name in ("alpha", "beta"):
        assert fit.params[name] == pytest.approx(LOSS[name], rel=0.1)
    assert fit.r2() > 0.99


def test_irreducible_variant_recovered():
    planted = {**LOSS, "e": 0.6}
    fit = densing.fit_loss(_grid(planted, 0.002, 1), irreducible=True, seed=0, starts=32)
    assert fit.params["e"] == pytest.approx(0.6, rel=0.15)
    assert fit.params["alpha"] == pytest.approx(0.3, rel=0.2)


def test_sigmoid_recovered():
    rng = np.random.default_rng(2)
    L = np.linspace(0.2, 1.2, 25)
    frame = pd.DataFrame({"loss": L, "score": densing.score_at(SIG, L) + rng.normal(0, 0.01, L.size)})
    fit = densing.fit_sigmoid(frame, seed=0)
    for name, value in SIG.items():
        assert fit.params[name] == pytest.approx(value, rel=0.15, abs=0.03)


def test_inversion_round_trip():
    N = np.geomspace(1e4, 1e7, 9)             # scores inside the sigmoid's range, away from its flat tails
    D0 = 5e7
    S = densing.score_at(SIG, densing.loss_at(LOSS, N, D0))
    est = densing.effective_size(S, LOSS, SIG, D0)
    assert (est.status == densing.OK).all()
    np.testing.assert_allclose(est.n_hat, N, rtol=1e-6)
    # with the irreducible term too
    loss_e = {**LOSS, "e": 0.2}
    S = densing.score_at(SIG, densing.loss_at(loss_e, N, D0))
    np.testing.assert_allclose(densing.effective_size(S, loss_e, SIG, D0).n_hat, N, rtol=1e-6)


def test_reference_model_at_d0_has_density_one_and_overtraining_more():
    N, D0 = np.array([2e4, 2e5]), 1e7
    targets = pd.DataFrame({"params": N, "score": densing.score_at(SIG, densing.loss_at(LOSS, N, D0))})
    np.testing.assert_allclose(densing.densities(targets, LOSS, SIG, D0).density, 1.0, rtol=1e-8)
    over = targets.assign(score=densing.score_at(SIG, densing.loss_at(LOSS, N, 4 * D0)))
    assert (densing.densities(over, LOSS, SIG, D0).density > 1).all()


def test_undefined_region_flagged():
    S = np.array([0.05, 0.1, 0.5, 0.9, 0.95])            # below d, at d, inside, at c + d, above
    est = densing.effective_size(S, LOSS, SIG, 1e7)
    assert est.status.tolist() == [densing.BELOW_FLOOR, densing.BELOW_FLOOR, densing.OK, densing.ABOVE_CEILING,
                                   densing.ABOVE_CEILING]
    assert est.n_hat.isna().tolist() == [True, True, False, True, True]
    # a score whose loss lies below what infinitely many parameters reach at D0: beyond the loss limit
    floor = LOSS["b"] * 1e7 ** -LOSS["beta"]
    S_beyond = densing.score_at(SIG, floor * 0.9)
    est = densing.effective_size([S_beyond], LOSS, SIG, 1e7)
    assert est.status[0] == densing.BEYOND_LOSS_LIMIT and np.isnan(est.n_hat[0])


def test_flat_sigmoid_rejected():
    with pytest.raises(ValueError, match="flat"):
        densing.loss_from_score({**SIG, "gamma": 0.0}, [0.5])


def test_published_arithmetic():
    assert densing.doubling_time(0.0073) == pytest.approx(95, abs=1)
    assert densing.doubling_time(0.0) == math.inf


def test_envelope_picks_record_setters():
    frame = pd.DataFrame({"t": [0, 10, 20, 30, 30, 40, 50], "density": [1.0, 0.8, 1.5, 1.2, 2.0, np.nan, 1.9]})
    env = densing.envelope(frame)
    assert env.t.tolist() == [0, 20, 30] and env.density.tolist() == [1.0, 1.5, 2.0]


def test_growth_law_recovered_and_doubling():
    rng = np.random.default_rng(3)
    t = np.arange(0, 800, 40.0)
    frame = pd.DataFrame({"t": t, "density": np.exp(0.0073 * t - 1 + rng.normal(0, 0.05, t.size))})
    fit = densing.fit_growth(frame, n_boot=200, seed=0)
    assert fit.params["A"] == pytest.approx(0.0073, rel=0.05)
    lo, hi = fit.intervals.loc["A", ["lower", "upper"]]
    assert lo < 0.0073 < hi
    assert fit.derived["doubling_days"] == pytest.approx(95, rel=0.06)


def test_envelope_slope_matches_the_envelope():
    rng = np.random.default_rng(5)
    t, rho = rng.integers(0, 300, 15).astype(float), np.exp(rng.normal(0, 0.5, 15))
    env = densing.envelope(pd.DataFrame({"t": t, "density": rho}))
    expected = np.polyfit(env.t, np.log(env.density), 1)[0]
    assert densing.envelope_slope(t, np.log(rho)) == pytest.approx(expected)


def test_permutation_p_detects_growth_and_holds_its_level_under_noise():
    rng = np.random.default_rng(4)
    t = np.arange(10) * 30.0
    _, p = densing.growth_permutation_p(t, np.exp(0.01 * t + rng.normal(0, 0.05, 10)), n_perm=500)
    assert p < 0.01
    # record-setters of noise rise too (the envelope's slope is positive on average) ...
    noise = [np.exp(rng.normal(0, 0.3, 10)) for _ in range(200)]
    assert np.nanmean([densing.envelope_slope(t, np.log(rho)) for rho in noise]) > 0
    # ... but the permutation p of the slope over all models holds its level
    ps = np.array([densing.growth_permutation_p(t, rho, n_perm=200, seed=i)[1] for i, rho in enumerate(noise)])
    assert np.mean(ps <= 0.05) <= 0.09


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="lacks column"):
        densing.fit_loss(pd.DataFrame({"N": [1.0]}))
    with pytest.raises(ValueError, match="at least 5"):
        densing.fit_sigmoid(pd.DataFrame({"loss": [1.0, 2.0], "score": [0.1, 0.2]}))
    with pytest.raises(ValueError, match="D0"):
        densing.size_from_loss(LOSS, [1.0], 0)


def test_second_reference_family_takes_the_reference_role():
    """A second family identical in sizes and scores to the first gives the same estimate once swapped in; one with
    a different loss law moves the densities; the factor summary reads each factor's spread at the main setting."""
    from caplab.controls import densing as controls
    from caplab.papers import densing as exp

    models, scores = controls.world(np.random.default_rng(0), {"ref": 1.0, "t2": 2.0})
    ref = models[models.role == "reference"]
    alt = ref.assign(role="reference_alt", model="alt:" + ref.model)
    alt_scores = scores[scores.model.isin(ref.model)].assign(model=lambda d: "alt:" + d.model)
    both, all_scores = pd.concat([models, alt], ignore_index=True), pd.concat([scores, alt_scores])
    p = controls.P
    main = exp.estimate(both, all_scores, p)["metrics"]
    swapped = exp.estimate(exp.with_reference(both, "alt"), all_scores, p)["metrics"]
    assert main == pytest.approx(swapped, rel=1e-6)
    worse = alt_scores.assign(loss_sum=alt_scores.loss_sum * 1.3)        # a family with higher loss at every size
    moved = exp.estimate(exp.with_reference(both, "alt"), pd.concat([scores, worse]), p)["metrics"]
    assert abs(moved["log_density[t2]"] - main["log_density[t2]"]) > 0.1
    with pytest.raises(ValueError):
        exp.with_reference(models, "alt")
    sens = pd.DataFrame([{"reference": r, "benchmarks": b, "D0": d, "A": a} for r, b, d, a in [
        ("primary", "all", p.D0, 0.010), ("primary", "all", 2 * p.D0, 0.013), ("primary", "chain", p.D0, None),
        ("primary", "choice", p.D0, 0.004), ("alt", "all", p.D0, 0.007), ("alt", "chain", p.D0, 0.5)]])
    table = exp.sensitivity_by_factor(sens, p).set_index("factor")
    assert table.loc["reference", "A_spread"] == pytest.approx(0.003)
    assert table.loc["D0", "A_spread"] == pytest.approx(0.003)
    assert table.loc["benchmarks", "A_spread"] == pytest.approx(0.006)
    assert table.loc["benchmarks", "undefined"] == 1


def test_sensitivity_is_cached_and_read_back_unchanged(tmp_path, monkeypatch):
    """The sensitivity grid (every variant refits both steps) is computed once per content: a second call reads
    the same frame back without refitting, and a change of the scores computes again."""
    from caplab.controls import densing as controls
    from caplab.papers import densing as exp
    from caplab.science import densing_estimate
    from caplab.substrate.cache import Cache

    models, scores = controls.world(np.random.default_rng(0), {"ref": 1.0, "t2": 2.0})
    cache, calls = Cache(tmp_path, version="v1"), []
    real = densing_estimate._sensitivity
    monkeypatch.setattr(densing_estimate, "_sensitivity", lambda *a: calls.append(1) or real(*a))
    p = controls.P
    first = exp.sensitivity(models, scores, p, cache=cache)
    again = exp.sensitivity(models, scores, p, cache=cache)
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(first, real(models, scores, p))
    assert len(calls) == 1 and len(first) >= len(p.D0_sensitivity)
    exp.sensitivity(models, scores.assign(loss_sum=scores.loss_sum * 1.01), p, cache=cache)
    assert len(calls) == 2
