"""The ceilings paper's evidence: bands of training mentions, per-band slopes clustered by question, the swap's
retention above its floor, and the downstream chain's per-step shares, on tables with planted answers."""
import numpy as np
import pandas as pd
import pytest

from caplab.papers import ceilings as paper
from caplab.science import capability

LOG_PARAMS = np.log10(np.geomspace(2e4, 3.2e5, 5))


def test_fact_mentions_and_bands():
    texts = ["abc:x", "abc:y", "de:x", "filler words.", "12+3=51"]
    assert capability.fact_mentions(texts, ["abc", "de", "zz"]).tolist() == [2, 1, 0]
    assert capability.band_labels([0, 1, 2, 4, 8, 16]) == ["0", "1", "2-3", "4-7", "8-15", "16+"]
    assert capability.mention_band([0, 1, 2, 3, 4, 7, 8, 15, 16, 400], [0, 1, 2, 4, 8, 16]).tolist() == \
        ["0", "1", "2-3", "2-3", "4-7", "4-7", "8-15", "8-15", "16+", "16+"]
    with pytest.raises(ValueError, match="increasing"):
        capability.band_labels([0, 2, 2])


def test_band_questions_caps_each_band_and_numbers_the_rows():
    mentions = np.array([0] * 50 + [1] * 7 + [3] * 30)
    questions = pd.DataFrame({"entity": [f"e{i}" for i in range(len(mentions))], "prompt": "p", "answer": 0})
    picked = paper.band_questions(questions, mentions, [0, 1, 2], per_band=10, seed=0)
    assert picked.band.value_counts().to_dict() == {"0": 10, "1": 7, "2+": 10}
    assert picked.question.tolist() == list(range(27))
    assert (capability.mention_band(picked.mentions, [0, 1, 2]) == picked.band).all()
    assert picked.entity.is_unique
    assert paper.tail_and_control(["0", "1", "2+"]) == ("1", "2+")


def _band_rows(rng, n, slope, start, q0):
    """One row per question and model: accuracy with logit start + slope x log10 params, per-question offsets."""
    offset = rng.normal(0, 1, n)
    logit = start + slope * (LOG_PARAMS[:, None] - LOG_PARAMS.mean()) + offset[None]
    acc = (rng.random(logit.shape) < 1 / (1 + np.exp(-logit))).astype(float)
    return pd.DataFrame({"question": np.tile(np.arange(n) + q0, len(LOG_PARAMS)),
                         "log_params": np.repeat(LOG_PARAMS, n), "accuracy": acc.ravel(),
                         "log_p_vocab": -(3 - 0.5 * np.repeat(LOG_PARAMS, n)) + rng.normal(0, 0.1, acc.size)})


def test_knowledge_evidence_reads_the_tail_and_the_positive_control():
    rng = np.random.default_rng(0)
    tail = _band_rows(rng, 1500, 0.0, -1.0, 0).assign(band="1")
    seen = _band_rows(rng, 1500, 2.5, 0.0, 1500).assign(band="16+")
    final = pd.concat([tail, seen], ignore_index=True)
    guessers = pd.DataFrame({"question": np.arange(3000), "chance": 0.25, "corpus_prior": 0.2, "answer_prior": 0.1})
    ev = paper.knowledge_evidence(final, guessers, n_boot=300, rng=rng)
    value, lo, hi = ev["knowledge_control_accuracy_slope"]
    assert lo > 0.2 and ev["knowledge_m16up_accuracy_slope"] == ev["knowledge_control_accuracy_slope"]
    value, lo, hi = ev["knowledge_tail_accuracy_slope"]
    assert lo < 0 < hi and hi - lo < 0.1
    assert ev["knowledge_tail_answer_loss_slope"][0] == pytest.approx(-0.5, abs=0.02)
    largest = tail[tail.log_params == LOG_PARAMS.max()].accuracy.mean()
    assert ev["knowledge_tail_largest_minus_chance"][0] == pytest.approx(largest - 0.25)
    assert ev["knowledge_tail_largest_minus_prior"][0] == pytest.approx(largest - 0.2)
    assert ev["knowledge_m1_questions"] == 1500


def test_swap_evidence_recovers_the_retained_share():
    rows = []
    n = 400
    own = np.ones(n)
    swapped = (np.arange(n) % 4 == 0).astype(float)          # a quarter kept
    floor = np.zeros(n)
    for source, lam, v in (("donor", 0.0, own), ("donor", 1.0, swapped), ("uniform", 0.0, own),
                           ("uniform", 1.0, floor)):
        rows.append(pd.DataFrame({"source": source, "layer_set": "all", "lam": lam, "row": np.arange(n), "correct": v}))
    grid = pd.concat(rows, ignore_index=True)
    ev = paper.swap_evidence(grid, n_boot=200, rng=np.random.default_rng(0))
    assert ev["swap_retained_above_floor"][0] == pytest.approx(0.25)
    assert ev["swap_own_minus_floor"][0] == 1.0
    curve = paper.swap_curve(grid)
    assert curve.set_index(["source", "lam"]).loc[("donor", 1.0), "retained_above_floor"] == pytest.approx(0.25)


def test_downstream_evidence_finds_the_step_with_the_largest_drop():
    n = 200
    steps = paper.CHAIN_STEPS
    spearman = {"log_p_vocab": np.full(n, 0.9), "p_vocab": np.full(n, 0.9),
                "p_choices": np.where(np.arange(n) < 80, 0.9, 0.2),       # 40 % above 0.75: a drop of 0.6
                "neg_brier": np.where(np.arange(n) < 70, 0.9, 0.2),
                "accuracy": np.where(np.arange(n) < 40, 0.9, 0.2)}
    spearman["accuracy"][-10:] = np.nan                                    # undefined: left out of every share
    corr = pd.concat([pd.DataFrame({"question": np.arange(n), "score": s, "spearman": spearman[s]}) for s in steps])
    cov = pd.DataFrame({"question": np.arange(n), "spearman": np.where(np.arange(n) < 100, 0.8, 0.0)})
    ev = paper.downstream_evidence(corr, cov, n_boot=200, rng=np.random.default_rng(0))
    assert ev["corr_questions_defined"] == 190
    assert ev["corr_share_undefined_accuracy"] == pytest.approx(0.05)
    assert ev["corr_drop_p_vocab_to_p_choices"][0] == pytest.approx(1 - 80 / 190)
    assert ev["corr_drop_renorm_minus_largest_other"][0] == pytest.approx((1 - 80 / 190) - 30 / 190)
    assert ev["incorrect_mass_share_covarying"][0] == pytest.approx(0.5)


def test_mass_covariation_follows_the_incorrect_mass():
    rng = np.random.default_rng(1)
    points = np.linspace(-1, 1, 12)
    rows = []
    for q in range(40):
        correct = -3 + points
        wrong = correct + np.log(3) if q < 20 else np.full(12, -2.0) + rng.normal(0, 0.01, 12)
        for x, c, w in zip(points, correct, wrong):
            rows.append({"question": q, "log_compute": x, "answer": 0, "logprob_0": c, "logprob_1": w,
                         "logprob_2": w - 1, "logprob_3": w - 2})
    chain = capability.downstream_chain(pd.DataFrame(rows))
    cov = capability.mass_covariation(chain).set_index("question").spearman
    assert (cov.iloc[:20] > 0.99).all()
    assert cov.iloc[20:].abs().mean() < 0.5


def test_tail_minus_zero_band_removes_the_rise_every_band_shares():
    rng = np.random.default_rng(1)
    zero = _band_rows(rng, 1500, 1.0, -1.0, 0).assign(band="0")          # a rise that is not knowledge
    tail = _band_rows(rng, 1500, 1.0, -1.0, 1500).assign(band="1")       # the same rise, no more
    seen = _band_rows(rng, 1500, 3.0, 0.0, 3000).assign(band="16+")
    final = pd.concat([zero, tail, seen], ignore_index=True)
    guessers = pd.DataFrame({"question": np.arange(4500), "chance": 0.25, "corpus_prior": 0.2, "answer_prior": 0.1})
    ev = paper.knowledge_evidence(final, guessers, n_boot=300, rng=rng)
    assert ev["knowledge_tail_accuracy_slope"][1] > 0                       # the tail alone rises ...
    value, lo, hi = ev["knowledge_tail_minus_zero_accuracy_slope"]
    assert lo < 0 < hi and hi - lo < 0.1                                    # ... no faster than the zero band
    assert value == pytest.approx(ev["knowledge_tail_accuracy_slope"][0] - ev["knowledge_m0_accuracy_slope"][0])
    assert ev["knowledge_control_minus_zero_accuracy_slope"][1] > 0.1


def test_swap_pair_of_a_hub_family_and_bad_input():
    members = pd.DataFrame([{"pretrained": "EleutherAI/pythia-410m", "revision": r, "target_tokens": t,
                             "params_non_embedding": 3e8, "path": None} for r, t in (("step33000", 1), ("step143000", 2))])
    donor = {"pretrained": "EleutherAI/pythia-410m-seed1", "revision": "main"}
    recipient, got = paper.swap_pair(members, {"kind": "hub"}, None, {}, {}, 1, donor, "EleutherAI/pythia-410m")
    assert recipient == {"pretrained": "EleutherAI/pythia-410m", "revision": "step143000"} and got == donor
    with pytest.raises(ValueError, match="not one of the family"):
        paper.swap_pair(members, {"kind": "hub"}, None, {}, {}, 1, donor, "EleutherAI/pythia-1b")
    with pytest.raises(ValueError, match="needs swap_donor"):
        paper.swap_pair(members, {"kind": "hub"}, None, {}, {}, 1, {}, "")
    with pytest.raises(ValueError, match="trains its own donor"):
        paper.swap_pair(members, {"kind": "tiny"}, None, {}, {}, 1, donor, "")


def test_swap_evidence_reads_the_donor_on_its_own():
    n = 200
    rows = [pd.DataFrame({"source": s, "layer_set": "all", "lam": lam, "row": np.arange(n), "correct": v})
            for s, lam, v in (("donor", 0.0, np.ones(n)), ("donor", 1.0, np.zeros(n)), ("uniform", 1.0, np.zeros(n)))]
    grid = pd.concat(rows, ignore_index=True)
    donor = (np.arange(n) % 5 != 0).astype(float)              # 80 % on its own
    ev = paper.swap_evidence(grid, n_boot=100, rng=np.random.default_rng(0), donor_own=donor)
    assert ev["swap_donor_accuracy"][0] == pytest.approx(0.8) and ev["swap_donor_minus_floor"][0] == pytest.approx(0.8)
    assert "swap_donor_accuracy" not in paper.swap_evidence(grid, n_boot=100, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="donor was scored on 3 problems"):
        paper.swap_evidence(grid, n_boot=100, rng=np.random.default_rng(0), donor_own=np.ones(3))


def test_recipient_is_the_largest_model_that_learned():
    members = pd.DataFrame({"model": ["a", "a", "b", "c"], "params_non_embedding": [1, 1, 2, 3]})
    assert paper.learned_recipient(members, pd.Series({"a": 0.9, "b": 0.6, "c": 0.1}), 0.5) == "b"
    assert paper.learned_recipient(members, pd.Series({"a": 0.9, "b": 0.6, "c": 0.7}), 0.5) == "c"
    assert paper.learned_recipient(members, pd.Series({"a": 0.1, "b": 0.2, "c": 0.3}), 0.5) == "c"   # none: largest
    with pytest.raises(ValueError, match="no exact match for models"):
        paper.learned_recipient(members, pd.Series({"a": 0.9}), 0.5)


def test_chain_questions_keep_their_numbers_and_cap_each_band():
    questions = pd.DataFrame({"band": ["0"] * 10 + ["1"] * 3 + ["2-3"] * 8, "question": np.arange(21)})
    got = paper.chain_questions(questions, 4, seed=0)
    assert got.groupby("band").size().to_dict() == {"1": 3, "2-3": 4}       # seen facts only
    with pytest.raises(ValueError, match="no band of seen facts"):
        paper.chain_questions(questions[questions.band == "0"], 4, seed=0)
    assert set(got.question) <= set(questions.question) and got.question.is_monotonic_increasing
    assert got.equals(paper.chain_questions(questions, 4, seed=0))


def test_the_donor_trains_in_the_familys_sweep(monkeypatch, tmp_path):
    """build_family_and_donor trains every member and the largest shape's donor (another seed) side by side; the
    family frame is build_family's, and the swap's donor is then read from the cache, not trained again."""
    import os
    from pathlib import Path

    from caplab.substrate import data
    from caplab.substrate.family import build_family, family_tokenizer
    from caplab.substrate.sweep import WORKERS_ENV

    monkeypatch.setenv(WORKERS_ENV, "2")
    family = {"kind": "tiny", "n": 2, "min_params": 2000, "max_params": 8000, "family": "gpt_neox", "head_dim": 16,
              "aspect": 16, "max_seq_len": 16}
    corpus = data.pack_blocks(data.zipf_language(200, vocab_size=40, seed=0), family_tokenizer(family), 16)
    config, checkpoints = {"batch_size": 4, "lr": 3e-3, "warmup_steps": 2, "seed": 0}, {"first": 64, "last": 192, "n": 2}
    members = paper.build_family_and_donor(family, corpus, config, checkpoints, donor_seed=1)
    runs = lambda: sorted(p.name for p in (Path(os.environ["CAPLAB_CACHE"]) / "train").iterdir() if p.is_dir())
    trained = runs()
    assert len(trained) == 3                                  # two members and the donor
    assert members.equals(build_family(family, corpus, config, checkpoints))
    donor = paper.train_donor(family, corpus, config, checkpoints, 1)
    assert runs() == trained and donor.model.tolist() == [members.model.iloc[-1] + "-seed1"]
    with pytest.raises(ValueError, match="must differ"):
        paper.build_family_and_donor(family, corpus, config, checkpoints, donor_seed=0)
