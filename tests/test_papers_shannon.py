"""The shannon claims' evidence functions on small planted tables (cheap laws only: no Shannon fits here)."""
import dataclasses

import numpy as np
import pandas as pd
import pytest

from caplab.papers import shannon as exp
from caplab.stats import laws
from caplab.stats.fit_compare import compare_grouped


def test_basin_evidence_controls_the_false_discovery_rate_and_reads_the_clean_control():
    found = pd.DataFrame({"perturbation": ["noise"] * 10 + ["none"] * 5,
                          "p_value": [1e-6, 1e-5] + [0.5] * 8 + [0.03] + [0.9] * 4})
    ev = exp.basin_evidence(found)
    assert ev["perturbed_basins"] == 2 and ev["clean_basins"] == 0          # 0.03 alone is no discovery among 5
    assert ev["basin_excess_over_clean"] == 2 and ev["perturbed_series"] == 10
    value, lo, hi = ev["basin_rate_perturbed_minus_clean"]
    assert value == pytest.approx(0.2) and lo < value < hi
    with pytest.raises(ValueError, match="clean"):
        exp.basin_evidence(found[found.perturbation != "none"])


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
