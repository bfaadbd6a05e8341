"""The shannon claims' evidence functions on small planted tables (cheap laws only: no Shannon fits here)."""
import dataclasses

import numpy as np
import pandas as pd
import pytest

from caplab.papers import shannon as exp
from caplab.science import law_fits
from caplab.stats import laws
from caplab.stats.fit_compare import compare_grouped


def _scan(rng, bump, lucky=0.0, n_blocks=64):
    """A scan with per-block losses: 4 models x 8 checkpoints, monotone decreasing clean losses, a perturbed
    setting "noise 1" drawn twice whose mean adds `bump` x a U along tokens, and whose first draw alone also dips
    by `lucky` at one interior checkpoint of every model (a lucky draw, not a basin)."""
    rows, blocks = [], []
    difficulty = rng.normal(0, 0.1, n_blocks)
    tokens = np.geomspace(5e4, 1.2e6, 8)
    for setting, draws in (("none", [0]), ("noise 1", [0, 1])):
        for draw in draws:
            for m, n in enumerate([1e4, 3e4, 1e5, 3e5]):
                for j, t in enumerate(tokens):
                    mean = 2 + 100 / n ** 0.3 + 30 / t ** 0.3
                    if setting != "none":
                        mean += 0.2 + bump * 0.4 * np.log(t / 2.5e5) ** 2 - (lucky if draw == 0 and j == 6 else 0)
                    rows.append(dict(setting=setting, perturbation=setting.split()[0], draw=draw, model=f"m{m}",
                                     params_non_embedding=n, target_tokens=int(t), tokens=t))
                    blocks.append(mean + difficulty + rng.normal(0, 0.03, n_blocks))
    return pd.DataFrame(rows), np.array(blocks)


def test_basins_are_found_where_planted_and_a_lucky_draw_cannot_fake_one():
    from caplab.science.basin_test import basin_test
    rng = np.random.default_rng(0)
    settings, series = basin_test(*_scan(rng, bump=1.0), n=400, seed=0)
    assert settings.set_index("setting").basin.to_dict() == {"none": False, "noise 1": True}
    ev = exp.basin_evidence(settings)
    assert ev["basin_settings"] == 1 and ev["clean_basin"] == 0 and ev["perturbed_settings"] == 1
    value, lo, hi = ev["basin_deepest_minus_clean"]
    assert 0 < lo < value < hi
    assert set(series.along) == {"tokens", "params"} and len(series) == 2 * (4 + 8)
    # one draw dips by 0.15 nats at an interior checkpoint: a single-draw scan reads U-shapes there ...
    frame, blocks = _scan(np.random.default_rng(1), bump=0.0, lucky=0.15)
    lucky = frame.setting.eq("none") | frame.draw.eq(0)
    single, _ = basin_test(frame[lucky].reset_index(drop=True), blocks[lucky.to_numpy()], n=400, seed=0)
    assert single.set_index("setting").basin["noise 1"]
    # ... the two-draw test locates the minimum on one draw and measures it on the other: no basin
    settings, _ = basin_test(frame, blocks, n=400, seed=0)
    assert not settings.basin.any()
    with pytest.raises(ValueError, match="clean"):
        basin_test(frame[frame.setting != "none"], blocks[(frame.setting != "none").to_numpy()])
    with pytest.raises(ValueError, match="one row per frame row"):
        basin_test(frame, blocks[:3])


def test_law_fits_are_cached_and_read_back(tmp_path):
    from caplab.science import law_fits
    from caplab.substrate.cache import Cache
    frame = _table(np.random.default_rng(0), 0.3).assign(fit_row=lambda f: f.N < f.N.max())
    cache = Cache(tmp_path, version="v1")
    args = dict(by=["setting"], inputs={"N": "N", "D": "D"}, train="fit_row", starts=3, seed=0, warn=False)
    first = law_fits.compare_groups(frame, ["Kaplan", "Chinchilla"], cache=cache, **args)
    again = law_fits.compare_groups(frame, ["Kaplan", "Chinchilla"], cache=cache, **args)
    assert cache.hits >= 1 and cache.misses == 1
    for a, b in zip(first, again):
        pd.testing.assert_frame_equal(a, b)
    direct = law_fits.compare_groups(frame, ["Kaplan", "Chinchilla"], cache=False, **args)
    pd.testing.assert_frame_equal(first[0], direct[0])
    changed = frame.assign(loss=frame.loss * 1.01)
    law_fits.compare_groups(changed, ["Kaplan", "Chinchilla"], cache=cache, **args)
    assert cache.misses == 2                                          # other data: refitted
    draws = law_fits.bootstrap_groups(frame, "Chinchilla", by="setting", inputs={"N": "N", "D": "D"}, n=3,
                                      cache=cache, starts=3, warn=False)
    assert sorted(draws.replicate.unique()) == [-1, 0, 1, 2] and len(draws) == 2 * 4
    with pytest.raises(ValueError, match="unknown law"):
        law_fits.compare_groups(frame, ["Nope"], cache=False, **args)


def test_exponent_evidence_reads_the_per_fit_draws_and_the_d_term_share():
    base = dict(a=0.012, b=1.0, c=1e-6, d=1e-6, e=1.0, alpha=0.15, beta=0.5, gamma=0.3, delta=0.8)
    rows = []
    for setting, d, shift in (("none", 1e-6, 0.0), ("noise 1", 1e-4, 0.3)):
        for r in range(-1, 5):
            rows.append({"setting": setting, "replicate": r, **base, "d": d, "delta": 0.8 + shift + 0.01 * max(r, 0),
                         "r2": 0.99 if r < 0 else np.nan, "converged": True if r < 0 else np.nan})
    points = pd.DataFrame({"setting": ["none", "none", "noise 1", "noise 1"], "params_non_embedding": [1e4, 1e5] * 2,
                           "tokens": [1e6, 1e6, 1e6, 1e6]})
    ev, table = exp.exponent_evidence(pd.DataFrame(rows), points)
    assert ev["shannon_delta_minus_beta"][0] == pytest.approx(0.6)
    assert ev["shannon_delta_minus_beta_perturbed_minus_clean"][0] == pytest.approx(0.3)
    assert ev["d_term_share_perturbed"] > 10 * ev["d_term_share_clean"] > 0
    for name in ("shannon_delta_minus_beta", "shannon_delta_minus_beta_clean"):
        value, lo, hi = ev[name]
        assert lo <= value <= hi


def test_parameters_refuse_checkpoints_inside_the_warm_up_and_a_single_draw():
    import yaml
    from caplab.params import from_namespace
    from conftest import REPO
    cpu = {**yaml.safe_load((REPO / "notebooks" / "params" / "shannon" / "cpu.yaml").read_text()), "tier": "cpu"}
    from_namespace(exp.Params, cpu)
    with pytest.raises(ValueError, match="inside the warm-up"):
        from_namespace(exp.Params, {**cpu, "checkpoints": {**cpu["checkpoints"], "first": 10000}})
    with pytest.raises(ValueError, match="at least 2 distinct seeds"):
        from_namespace(exp.Params, {**cpu, "perturbation_seeds": [0]})



def test_the_controls_simulate_the_cpu_tiers_design():
    """The controls' grid (`caplab.controls.shannon`) is the cpu tier's: its sizes' non-embedding counts, its
    checkpoints and the extrapolation's cut; a change of the design without the controls fails here."""
    import yaml
    from caplab.controls import shannon as controls
    from caplab.substrate.family import family_shapes, log_spaced_tokens, non_embedding_params
    from conftest import REPO
    cpu = yaml.safe_load((REPO / "notebooks" / "params" / "shannon" / "cpu.yaml").read_text())
    sizes = sorted(non_embedding_params({k: v for k, v in s.items() if k != "name"})
                   for s in family_shapes(cpu["family"]))
    assert tuple(sizes) == controls.SIZES
    targets = log_spaced_tokens(**cpu["checkpoints"])
    assert list(controls.grid().target_tokens.unique()) == targets
    assert cpu["extrapolation_checkpoint"] == controls.EXTRAPOLATION_CHECKPOINT

def test_carry_forward_holds_the_largest_models_last_fitted_loss():
    frame = pd.DataFrame({"setting": "none", "params_non_embedding": np.repeat([1e4, 1e5], 4),
                          "target_tokens": np.tile([1, 2, 3, 4], 2), "loss": np.arange(8.0)})
    protocol, largest = exp.extrapolation_protocol(frame, 1)
    held = protocol[~protocol.fit_row]
    assert list(held.target_tokens) == [3, 4] and largest == 1e5
    assert list(exp.carry_forward(held, frame, 1)) == [5.0, 5.0]


def _table(rng, shift):
    rows = []
    for setting, e in (("none", 0.0), ("noise 1", shift)):
        for i, n in enumerate(np.geomspace(1e4, 1e6, 4)):
            for d in np.geomspace(1e5, 1e8, 6):
                loss = (1.5 + e + 400 / n ** 0.34 + 400 / d ** 0.28) * np.exp(rng.normal(0, 0.005))
                rows.append({"setting": setting, "model": f"m{i}", "N": n, "D": d, "loss": loss,
                             "perturbation": setting.split()[0]})
    return pd.DataFrame(rows)


def test_aic_gap_evidence_adds_up_to_the_aic_table():
    frame = _table(np.random.default_rng(0), 0.3)
    copy = dataclasses.replace(laws.CHINCHILLA, name="Chinchilla copy")
    table, held, points = compare_grouped([laws.KAPLAN, laws.CHINCHILLA, copy], frame, by=["setting"],
        inputs={"N": "N", "D": "D"}, train=lambda f: (f.N < f.N.max()).to_numpy(), points=True, starts=4, seed=0,
        warn=False)
    ev = exp.aic_gap_evidence(table, points, frame, law="Kaplan", baselines=("Chinchilla", "Chinchilla copy"))
    aic = table.pivot(index="setting", columns="law", values="aic")
    gap = aic["Kaplan"] - aic[["Chinchilla", "Chinchilla copy"]].min(axis=1)
    assert ev["aic_gap_clean"][0] == pytest.approx(gap["none"], abs=1e-6)
    assert ev["aic_gap_perturbed"][0] == pytest.approx(gap["noise 1"], abs=1e-6)
    assert ev["aic_gap_perturbed_minus_clean"][0] == pytest.approx(gap["noise 1"] - gap["none"], abs=1e-6)
    for value, lo, hi in ev.values():
        assert lo <= value <= hi
    ext = exp.extrapolation_evidence(table, held, law="Kaplan", baselines=("Chinchilla",), n=200,
                                     rng=np.random.default_rng(0))
    assert ext["extrapolation_r2_clean_best"] > 0.5
    value, lo, hi = ext["extrapolation_r2_kaplan_minus_best_baseline"]
    assert lo <= value <= hi


def test_a_hub_family_evaluates_on_the_whole_corpus_and_too_few_blocks_is_an_error():
    from caplab.substrate.tasks import Task
    from caplab.substrate.tokenizer import char_tokenizer
    task = Task("t", texts=[f"sentence number {i} of the corpus." for i in range(200)])
    train, held = exp.corpus_split(task, {"kind": "hub"})
    assert train is None and held is task                      # nothing is trained: all of it is evaluation text
    train, held = exp.corpus_split(task, {"kind": "tiny"}, seed=0)
    assert len(held) == 10 and len(train) == 190
    tok = char_tokenizer()
    assert len(exp.evaluation_blocks(held, tok, 16, 20)) == 20
    with pytest.raises(ValueError, match="fewer than eval_blocks = 500"):
        exp.evaluation_blocks(held, tok, 16, 500)


def test_d_term_test_identifies_a_term_that_matters_and_the_evidence_judges_only_there():
    grid_n, grid_d = np.meshgrid(np.geomspace(1.3e4, 1e5, 4), np.geomspace(5e4, 1.2e6, 10), indexing="ij")
    base = dict(a=0.012, b=1.0, c=1e-6, e=1.0, alpha=0.15, beta=0.5, gamma=0.3, delta=0.8)
    rng = np.random.default_rng(0)
    frames = []
    for setting, d in (("none", 1e-9), ("noise 1", 1e-4)):
        x = {"N": grid_n.ravel(), "D": grid_d.ravel()}
        loss = laws.SHANNON.predict({**base, "d": d}, x) * (1 + 0.004 * rng.normal(size=grid_n.size))
        frames.append(pd.DataFrame({"setting": setting, "params_non_embedding": x["N"], "tokens": x["D"],
                                    "loss": loss}))
    frame = pd.concat(frames, ignore_index=True)
    start = {k: v for k, v in base.items() if k != "b"}
    options = {"Shannon": {"fixed": {"b": 1.0}, "starts": [{**start, "d": 1e-5}]},
               exp.WITHOUT_D: {"fixed": {"b": 1.0}, "starts": [{k: v for k, v in start.items() if k != "delta"}]}}
    table = law_fits.compare_groups(frame, ["Shannon", exp.WITHOUT_D], by=["setting"], inputs=exp.INPUTS,
                                    options=options, cache=False, delta=1e-3, warn=False)[0]
    test = exp.d_term_test(table).set_index("setting")
    assert bool(test.loc["noise 1", "identified"]) and not bool(test.loc["none", "identified"])
    # the notebook reads Shannon's in-sample AIC off its bootstrap draws' fit instead of fitting it twice
    draws = law_fits.bootstrap_groups(frame, "Shannon", by="setting", inputs=exp.INPUTS, n=0, cache=False, delta=1e-3,
                                      warn=False, **options["Shannon"])
    aic = exp.fitted_aic(draws, frame).set_index("setting").aic
    shannon = table[table.law == "Shannon"].set_index("setting").aic
    assert np.allclose(aic.loc[shannon.index], shannon, atol=1e-6)
    assert (test.df == 2).all()
    # the judged readings use only the identified settings
    rows = []
    for setting, delta in (("none", 0.5), ("noise 1", 0.9), ("noise 2", 0.1)):
        for r in range(-1, 4):
            rows.append({"setting": setting, "replicate": r, **base, "d": 1e-4, "delta": delta + 0.01 * max(r, 0),
                         "r2": 0.99 if r < 0 else np.nan, "converged": True if r < 0 else np.nan})
    points = pd.DataFrame({"setting": ["none", "noise 1", "noise 2"], "params_non_embedding": [1e5] * 3,
                           "tokens": [1e6] * 3})
    d_test = pd.DataFrame({"setting": ["none", "noise 1", "noise 2"], "lr": [0.1, 30.0, 0.2], "df": 2,
                           "p_value": [0.9, 1e-6, 0.9], "identified": [False, True, False]})
    ev, table = exp.exponent_evidence(pd.DataFrame(rows), points, d_test)
    assert ev["d_term_identified_settings"] == 1
    assert ev["shannon_delta_minus_beta"][0] == pytest.approx(0.4)
    ev_all, _ = exp.exponent_evidence(pd.DataFrame(rows), points)
    assert ev_all["d_term_identified_settings"] == 0 and ev_all["shannon_delta_minus_beta"][0] == pytest.approx(0.0)


def test_relative_aic_is_each_laws_aic_minus_its_clean_aic():
    table = pd.DataFrame({"setting": ["none"] * 3 + ["noise 1"] * 3, "law": ["Shannon", "Kaplan", "Chinchilla"] * 2,
                          "aic": [-10.0, -8.0, -12.0, -30.0, -15.0, -20.0]})
    rel = exp.relative_aic(table, baselines=("Kaplan", "Chinchilla"))
    assert rel.loc["noise 1", "Shannon"] == -20.0 and rel.loc["none"].abs().sum() == 0
    assert rel.loc["noise 1", "Shannon_advantage_minus_clean"] == pytest.approx((-30 + 20) - (-10 + 12))
