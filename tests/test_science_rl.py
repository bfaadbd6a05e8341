"""RL scaling: GRPO (TRL) accounting on a tiny model, and the analysis recovering planted laws."""
import numpy as np
import pandas as pd
import pytest
import torch

from caplab.papers import rl_scaling as rl_fits
from caplab.science import rl
from caplab.stats import laws
from caplab.substrate import chains
from caplab.substrate.models import get_model, param_counts

TINY = {"family": "llama", "d_model": 16, "n_layer": 1, "n_head": 1, "max_seq_len": 64, "seed": 0}


def _curves(k_of_n, sizes=(1e4, 3e4, 1e5, 3e5), steps=range(10, 110, 10), noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        for step in steps:
            compute = 6 * n * 5000 * step
            error = 10 ** (-k_of_n(n) * np.log10(compute) + 0.4 + 0.05 * np.log10(n)) * np.exp(noise * rng.normal())
            rows.append({"model": f"N={n:g}", "N": n, "step": step, "prompts_seen": 16 * step,
                         "compute": compute, "error": error})
    return pd.DataFrame(rows)


def test_per_size_fits_recover_planted_exponents():
    k_of_n = lambda n: 0.3 * n / (n + 3e4)  # noqa: E731
    fits = rl_fits.per_size_fits(_curves(k_of_n, noise=0.01), xs=("compute",), n_boot=50)
    for row in fits.itertuples():
        assert abs(row.k - k_of_n(row.N)) < 0.01
        assert row.k_lo <= k_of_n(row.N) <= row.k_hi or abs(row.k - k_of_n(row.N)) < 0.003
        assert row.r2 > 0.9


def test_saturating_k_is_preferred_when_planted_and_not_when_linear_in_log_n():
    sizes = np.geomspace(1e4, 1e7, 7)
    noise = 1 + 1e-3 * np.random.default_rng(0).normal(size=sizes.size)
    saturating = pd.DataFrame({"x": "compute", "N": sizes, "k": 0.3 * sizes / (sizes + 1e5) * noise, "model": "m"})
    table, boot = rl_fits.k_law_comparison(saturating, "compute", n_boot=50)
    assert table.aic.idxmin() == laws.K_SATURATING_K.name
    assert boot.intervals.loc["K_max", "lower"] <= 0.3 <= boot.intervals.loc["K_max", "upper"]
    log_linear = saturating.assign(k=(0.02 + 0.03 * np.log10(sizes)) * noise)
    table, _ = rl_fits.k_law_comparison(log_linear, "compute", n_boot=10)
    assert table.aic.idxmin() != laws.K_SATURATING_K.name


def test_error_at_common_x_slope_has_the_planted_sign():
    curves = _curves(lambda n: 0.02 + 0.02 * np.log10(n) / 5)
    fits = rl_fits.per_size_fits(curves, xs=("prompts_seen",), n_boot=10)
    common = rl_fits.error_at_common_x(curves, fits, "prompts_seen")
    assert common["inside_all_ranges"] and common["hi"] < 0


def test_reuse_effect_is_paired_over_prompts():
    final = pd.concat([pd.DataFrame({"tau": t, "seed": 0, "prompt": range(200), "correct": c})
                       for t, c in ((1.0, np.r_[np.ones(100), np.zeros(100)]),
                                    (25.0, np.r_[np.ones(80), np.zeros(120)]))])
    value, lo, hi = rl_fits.reuse_effect(final, 25.0, n_boot=300)
    assert value == pytest.approx(0.1) and 0.05 < lo <= hi < 0.16
    assert list(rl_fits.reuse_plan(1000, [1, 5, 25, 100]).unique_prompts) == [1000, 200, 40, 10]


def test_grpo_counts_compute_and_data_exactly_and_is_cached():
    with pytest.raises(ValueError, match="unknown key.*of GRPOSettings"):
        rl.GRPOSettings.from_dict({"learning_rate": 1.0})
    train = chains.problems(12, 1, modulus=3, wrap=True, seed=0)
    test = chains.problems(6, 1, modulus=3, wrap=True, seed=1)
    settings = {"steps": 4, "prompts_per_update": 2, "updates_per_generation": 2, "num_generations": 2,
                "lr": 1e-3, "eval_steps": [3, 1], "max_completion_length": 8}
    with pytest.raises(ValueError, match="eval_steps"):
        rl.GRPOSettings.from_dict({**settings, "eval_steps": [0, 2]})
    run = rl.grpo(TINY, train.prompt.tolist(), train.answer.tolist(), test.prompt.tolist(), test.answer.tolist(),
                  settings)
    curve = run.curve
    n = param_counts(get_model(TINY)[0])["non_embedding"]
    # the listed steps (sorted), step 0 and the last step
    assert list(curve.step) == [0, 1, 3, 4] and list(curve.prompts_seen) == [0, 2, 6, 8]
    assert (curve.error_se >= 0).all()
    # TRL's share of zero-variance groups, logged at each generation, read over the first generation's updates
    assert run.log.frac_reward_zero_std.notna().sum() == 2        # one per generation (2 updates each)
    assert 0 <= run.zero_std_share(first=2) <= 1
    assert np.allclose(curve.compute, 6.0 * n * curve.tokens)
    # tokens: every rollout's prompt and completion; each prompt is at least its characters + <bos>
    shortest = min(len(p) + 1 for p in train.prompt)
    assert curve.tokens.iloc[-1] >= 8 * 2 * shortest and curve.tokens.is_monotonic_increasing
    assert len(run.final) == len(test) and curve.error.between(0, 1).all()
    again = rl.grpo(TINY, train.prompt.tolist(), train.answer.tolist(), test.prompt.tolist(), test.answer.tolist(),
                    settings)
    assert again.path == run.path


def test_pass_at_1_is_seeded_and_leaves_the_rng_alone():
    model, tok = get_model(TINY)
    test = chains.problems(5, 1, modulus=3, wrap=True, seed=1)
    torch.manual_seed(7)
    expected_next = torch.rand(1)
    torch.manual_seed(7)
    a = rl.pass_at_1(model, tok, test.prompt.tolist(), test.answer.tolist(), samples=3, temperature=1.0,
                     max_new_tokens=6, seed=0)
    assert torch.rand(1) == expected_next
    b = rl.pass_at_1(model, tok, test.prompt.tolist(), test.answer.tolist(), samples=3, temperature=1.0,
                     max_new_tokens=6, seed=0)
    assert a.shape == (5,) and np.array_equal(a, b)


def test_improvement_and_aic_margin():
    final = pd.DataFrame({"tau": 1.0, "prompt": range(100), "initial": np.r_[np.zeros(60), np.ones(40)],
                          "correct": np.r_[np.zeros(30), np.ones(70)]})
    gain, lo, hi = rl_fits.improvement(final, 1.0, n_boot=300)
    assert gain == pytest.approx(0.3) and lo > 0.15
    assert rl_fits.aic_margin(pd.DataFrame({"aic": [-10.0, -9.0, -3.0]})) == pytest.approx(1.0)


def test_reuse_relative_loss_reads_the_share_of_the_gain_lost():
    initial = np.zeros(200)
    at1 = np.r_[np.ones(100), np.zeros(100)]                  # tau = 1: pass@1 0 -> 0.5
    at25 = np.r_[np.ones(50), np.zeros(150)]                  # tau = 25 keeps half of that gain
    final = pd.concat([pd.DataFrame({"tau": t, "seed": 0, "prompt": range(200), "initial": initial, "correct": c})
                       for t, c in ((1.0, at1), (25.0, at25))])
    loss, lo, hi = rl_fits.reuse_relative_loss(final, 25.0, n_boot=300)
    assert loss == pytest.approx(0.5) and lo < 0.5 < hi


def test_start_and_reuse_evidence():
    starts = pd.DataFrame({"pass1": [0.4, 0.55], "zero_std": [0.2, 0.1]})
    curves = pd.DataFrame({"error_se": [0.012, 0.009]})
    assert rl_fits.start_evidence(starts, curves) == {"rl_start_pass1_min": 0.4, "rl_start_pass1_max": 0.55,
                                                      "rl_start_zero_std_max": 0.2, "rl_eval_se_max": 0.012}
    rng = np.random.default_rng(0)
    initial = rng.binomial(4, 0.4, 300) / 4
    final = pd.concat([pd.DataFrame({"tau": tau, "prompt": np.arange(300), "initial": initial,
                                     "correct": np.clip(initial + gain, 0, 1)})
                       for tau, gain in ((1.0, 0.2), (25.0, 0.2), (100.0, 0.0))])
    ev = rl_fits.reuse_evidence(final, n_boot=200)
    assert ev["reuse_tau1_gain"][0] > 0.1 and abs(ev["reuse_relative_loss_tau25"][0]) < 1e-9
    assert ev["reuse_relative_loss_tau100"][0] == pytest.approx(1.0)      # tau = 100 lost all of the gain
    assert rl_fits.reuse_evidence(final[final.tau > 1]) == {}


def test_learning_and_r2_references():
    curves = _curves(lambda n: 0.3 * n / (n + 3e4), noise=0.0)
    fits = rl_fits.per_size_fits(curves, xs=("compute",), n_boot=0, starts=1)
    assert fits.k_lo.isna().all() and (fits.r2 > 0.999).all()
    low_noise = rl_fits.r2_references(curves, fits, n_items=100_000, xs=("compute",))
    high_noise = rl_fits.r2_references(curves, fits, n_items=20, xs=("compute",))
    assert low_noise["attainable"] > 0.9 > high_noise["attainable"]
    assert high_noise["noise_only"] < 0.9
    finals = pd.DataFrame({"model": np.repeat(["a", "b"], 100), "prompt": np.tile(range(100), 2),
                           "initial": 0.0, "correct": np.r_[np.ones(50), np.zeros(50), np.zeros(100)]})
    drops = rl_fits.learning(finals, n_boot=200).set_index("model")
    assert drops.lo["a"] > 0 and drops.error_drop["b"] == 0
    ev = rl_fits.learning_evidence(finals, n_boot=200)
    assert ev["rl_error_drop_min"][0] == 0


def test_leakage_counts_test_questions_seen_in_training():
    test = chains.problems(30, n_ops=(2, 3), seed=2)
    clean = rl_fits.pretraining_texts({"kind": "chain_worked", "n_lines": 3000, "n_forms": 4, "seed": 5}, test.prompt)
    leaky = chains.worked_corpus(3000, n_forms=4, seed=5) + [chains.worked_text(q, form=1) for q in test.question[:3]]
    assert rl_fits.leakage_evidence(test.prompt, clean, sft=test.prompt[5:])["test_questions_in_pretraining"] == 0
    found = rl_fits.leakage_evidence(test.prompt, leaky, sft=test.prompt[5:])
    assert found["test_questions_in_pretraining"] >= 3 and found["test_questions_in_sft"] == 25
    assert rl_fits.leakage_evidence(["Question: how many apples?\nAnswer:"], leaky) == {}


def test_problem_space_is_the_number_of_distinct_questions():
    for wrap in (False, True):
        spec = {"kind": "chain_problems", "n_ops": [1, 2], "modulus": 3, "wrap": wrap}
        space = rl_fits.problem_space(spec)
        assert len(chains.problems(space, n_ops=(1, 2), modulus=3, wrap=wrap)) == space
    assert rl_fits.problem_space({"kind": "chain_problems", "n_ops": [2, 3]}) == 14520


def test_warm_settings_one_per_size():
    per_size = rl_fits.warm_settings({"lr": 3e-3, "fixed_steps": 225}, [225, 140], 2)
    assert [s.fixed_steps for s in per_size] == [225, 140] and per_size[0].lr == 3e-3
    assert [s.fixed_steps for s in rl_fits.warm_settings({"fixed_steps": 9}, [], 3)] == [9, 9, 9]
    with pytest.raises(ValueError, match="one entry per model"):
        rl_fits.warm_settings({}, [1, 2], 3)
