"""Budget allocation: counts under a cost ratio, the grid, and claim evidence on planted outcomes."""
import json

import numpy as np
import pandas as pd
import pytest

from caplab.papers import budget as allocation


def test_counts_spend_the_budget_at_the_cost_ratio():
    assert allocation.counts(1000, 0.25, 1.0) == (250, 750)
    assert allocation.counts(1000, 0.25, 2.0) == (250, 375)     # preferences cost twice as much
    assert allocation.counts(1000, 0.0, 0.5) == (0, 2000)
    with pytest.raises(ValueError):
        allocation.counts(100, 1.5, 1.0)


def test_grid_runs_other_ratios_only_on_their_budgets():
    plan = allocation.grid([100, 1000], [0.0, 0.5, 1.0], [1.0, 2.0], ratio_budgets=[100])
    assert len(plan) == 6 + 3
    assert set(plan[plan.ratio == 2.0].budget) == {100}
    with pytest.raises(ValueError, match="pools hold"):
        allocation.check_pools(plan, n_sft_pool=500, n_pft_pool=5000)


def _planted(acc: dict, n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for (budget, share), p in acc.items():
        correct = rng.random(n) < p
        rows.append(pd.DataFrame({"question": range(n), "correct": correct, "formatted": share > 0 or p > 0.5,
                                  "ratio": 1.0, "budget": budget, "share": share, "n_sft": 0, "n_pft": 0}))
    return pd.concat(rows, ignore_index=True)


def test_claim_evidence_reads_planted_winners():
    acc = {(100, 0.0): 0.0, (100, 0.1): 0.05, (100, 0.5): 0.1, (100, 1.0): 0.3,
           (3000, 0.0): 0.02, (3000, 0.1): 0.4, (3000, 0.5): 0.7, (3000, 1.0): 0.5}
    ev = allocation.claim_evidence(_planted(acc), small_budget=1000, n_boot=200)
    value, lo, hi = ev["sft_only_minus_best_mix_small"]
    assert lo > 0 and abs(value - 0.2) < 0.06
    value, lo, hi = ev["best_mix_minus_sft_only_large"]
    assert lo > 0 and abs(value - 0.2) < 0.08
    assert ev["cold_start_minus_small_sft"][2] < 0 and ev["small_sft_gain"][1] > 0
    assert ev["cold_start_format_rate"][0] == 0.0


def test_claim_evidence_sees_when_sft_alone_wins_everywhere():
    acc = {(100, 0.0): 0.0, (100, 0.5): 0.1, (100, 1.0): 0.3,
           (3000, 0.0): 0.0, (3000, 0.1): 0.2, (3000, 0.5): 0.3, (3000, 1.0): 0.6}
    ev = allocation.claim_evidence(_planted(acc), n_boot=200)
    assert ev["best_mix_minus_sft_only_large"][2] < 0


def test_best_share_per_budget():
    table = allocation.accuracy_table(_planted({(100, 0.0): 0.1, (100, 1.0): 0.6, (300, 0.5): 0.8,
                                                (300, 1.0): 0.2}))
    best = allocation.best_share(table).set_index("budget").share
    assert best[100] == 1.0 and best[300] == 0.5


def _base(n: int = 400, majority: float = 0.2, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    answers = np.where(rng.random(n) < majority, "7", rng.integers(10, 99, n).astype(str))
    return pd.DataFrame({"question": range(n), "answer": answers, "correct": False, "formatted": False})


def test_baselines_are_compared_per_question():
    assert allocation.majority_baseline(["1", "1", "2", "3"]) == 0.5
    assert list(allocation.majority_correct(["1", "1", "2", "3"])) == [1.0, 1.0, 0.0, 0.0]
    at_chance = _planted({(100, 0.0): 0.1, (100, 0.5): 0.1, (100, 1.0): 0.12, (3000, 0.0): 0.0, (3000, 0.1): 0.1,
                          (3000, 1.0): 0.6})
    ev = allocation.claim_evidence(at_chance, n_boot=200, base=_base())
    assert ev["small_budgets_best_minus_chance"][1] < 0 and ev["small_sft_minus_chance"][2] < 0
    learned = _planted({(100, 0.0): 0.1, (100, 1.0): 0.5, (3000, 0.0): 0.0, (3000, 0.1): 0.5, (3000, 1.0): 0.6})
    ev = allocation.claim_evidence(learned, n_boot=200, base=_base())
    assert ev["small_budgets_best_minus_chance"][1] > 0.15 and ev["small_sft_minus_chance"][1] > 0.15


def test_dpo_gain_is_read_against_its_own_sft_start():
    """Each run carries its SFT start's per-question scores; DPO's gain is the final model minus that start."""
    acc = {(1000, 0.1): 0.55, (1000, 0.5): 0.6, (1000, 1.0): 0.5}
    long = _planted(acc)
    rng = np.random.default_rng(1)
    start = {0.1: 0.3, 0.5: 0.6, 1.0: None}
    long["start_correct"] = [c if start[s] is None else rng.random() < start[s]
                             for c, s in zip(long.correct, long.share)]
    means = long.groupby("share")[["correct", "start_correct"]].mean()
    gain = means.correct - means.start_correct
    value, lo, hi = allocation.claim_evidence(long, n_boot=200, base=_base())["dpo_gain_large"]
    assert lo > 0 and abs(value - gain[0.1]) < 1e-9 and gain[0.1] > 0.1     # the best gain: share 0.1 (0.3 -> 0.55)
    gains = allocation.dpo_gains(long, n_boot=200).set_index("dpo")
    assert abs(gains.loc["after SFT", "gain"] - gain[[0.1, 0.5]].mean()) < 1e-9 and gains.loc["after SFT", "runs"] == 2


def test_seeds_are_resampled_with_the_questions():
    """Arms that differ only by a per-seed offset: with seeds resampled the interval covers the spread of seeds."""
    frames = []
    for seed, shift in zip(range(3), (-0.15, 0.0, 0.15)):
        one = _planted({(3000, 0.5): 0.5 + shift, (3000, 1.0): 0.5}, n=400, seed=seed)
        frames.append(one.assign(seed=seed))
    long = pd.concat(frames, ignore_index=True)
    value, lo, hi = allocation.claim_evidence(long, n_boot=400)["best_mix_minus_sft_only_large"]
    _, lo1, hi1 = allocation.claim_evidence(frames[2], n_boot=400)["best_mix_minus_sft_only_large"]
    assert hi - lo > 1.5 * (hi1 - lo1) and lo < 0 < hi
    table = allocation.accuracy_table(long)
    assert (table.seeds == 3).all() and table.set_index("share").loc[0.5, "hi"] - table.set_index(
        "share").loc[0.5, "lo"] > 0.2


def test_the_seed_part_of_an_interval_is_a_t_interval_over_seeds():
    """Three seeds whose arm difference is the same on every question (no question noise): the interval is the t
    interval of the per-seed differences, mean +- t_{0.975, 2} sd / sqrt(3) = 4.30 sd / sqrt(3), not the seeds'
    range that resampling 3 seeds gives."""
    from scipy import stats

    per_seed = np.array([0.02, 0.05, 0.11])
    index = pd.MultiIndex.from_product([range(3), range(50)], names=["seed", "question"])
    matrix = pd.DataFrame({"a": np.repeat(per_seed, 50), "b": 0.0}, index=index)
    value, lo, hi = allocation._Boot(matrix, n_boot=20000, seed=1).compare(["a"], ["b"])
    half = stats.t.ppf(0.975, 2) * per_seed.std(ddof=1) / np.sqrt(3)
    assert value == pytest.approx(per_seed.mean())
    assert lo == pytest.approx(per_seed.mean() - half, abs=0.1 * half)
    assert hi == pytest.approx(per_seed.mean() + half, abs=0.1 * half)
    assert lo < per_seed.min() - 0.02          # well outside the seeds' range


def test_draws_are_nested_within_a_seed_and_differ_across_seeds():
    pool = pd.DataFrame({"prompt": [f"p{i}" for i in range(50)]})
    small, large = allocation.draw(pool, 5, 1), allocation.draw(pool, 20, 1)
    assert list(large.prompt[:5]) == list(small.prompt) and list(small.prompt) != list(allocation.draw(pool, 5, 0).prompt)
    # every seed shuffles (seed 0 too): a pool whose order drifts gives each budget the pool's own mix
    drifting = pd.DataFrame({"prompt": [f"p{i}" for i in range(1000)], "short": np.arange(1000) < 200})
    assert abs(allocation.draw(drifting, 100, 0).short.mean() - 0.2) < 0.12
    assert list(allocation.draw(drifting, 100, 0).prompt) == list(allocation.draw(drifting, 100, 0).prompt)
    with pytest.raises(ValueError):
        allocation.draw(pool, 51, 0)


def test_first_step_baseline_and_the_dpo_choice():
    prompts = ["Question: 7-3+5\nAnswer:", "Question: 2+6\nAnswer:"]
    assert list(allocation.first_step_correct(prompts, ["9", "8"])) == [0.0, 1.0]
    assert allocation.first_step_correct(["Natalia sold clips"], ["72"]) is None
    assert allocation.first_step_correct(["Question: Natalia sold 48 clips\nAnswer:"], ["72"]) is None
    sweep = pd.DataFrame({"lr": [1e-5, 1e-4, 1e-3], "beta": [0.1, 0.1, 1.0], "preference_accuracy": [0.6, 0.8, 0.7]})
    assert allocation.choose_dpo(sweep) == {"lr": 1e-4, "beta": 0.1}


def test_the_dpo_sweep_does_not_pick_a_setting_that_wrecks_generation():
    """The best preference accuracy loses where its held-out exact match falls below the start's by more than one
    SE of the paired difference; with every setting harmful, the least harmful one is chosen."""
    start = {"path": "start"}
    rng = np.random.default_rng(0)
    before = (rng.random(200) < 0.8).astype(float)
    flips = {1e-5: (0, 0), 1e-4: (6, 4), 1e-3: (80, 0)}   # answers each setting turns right -> wrong, wrong -> right
    pref = {1e-5: 0.7, 1e-4: 0.8, 1e-3: 0.95}

    def correct(spec):
        after = before.copy()
        lose, gain = flips.get(spec.get("lr"), (0, 0))
        after[np.flatnonzero(before == 1)[:lose]] = 0.0
        after[np.flatnonzero(before == 0)[:gain]] = 1.0
        return after

    logged = []
    sweep = allocation.sweep_dpo([1e-5, 1e-4, 1e-3], [1.0], lambda lr, beta: {"lr": lr},
                                 lambda spec: pref[spec["lr"]], correct=correct, start=start, log=logged.append)
    assert len(logged) == 3 and "exact match" in logged[0]
    row = sweep.set_index("lr")
    assert row.loc[1e-3, "em_gain"] == pytest.approx(-0.4) and row.loc[1e-5, "em_gain"] == 0.0
    diff = [-1.0] * 6 + [1.0] * 4 + [0.0] * 190
    assert row.loc[1e-4, "em_gain"] == pytest.approx(-0.01)
    assert row.loc[1e-4, "em_gain_se"] == pytest.approx(np.std(diff, ddof=1) / np.sqrt(200))     # 0.016
    assert allocation.choose_dpo(sweep) == {"lr": 1e-4, "beta": 1.0}       # within its SE; 1e-3 wrecks (-0.4)
    harmful = sweep.assign(em_gain=[-0.2, -0.1, -0.4], em_gain_se=[0.01, 0.01, 0.02])
    assert allocation.choose_dpo(harmful) == {"lr": 1e-4, "beta": 1.0}      # the least harm
    assert allocation.choose_dpo(sweep.drop(columns=["em_gain", "em_gain_se"])) == {"lr": 1e-3, "beta": 1.0}
    with pytest.raises(ValueError, match="both"):
        allocation.sweep_dpo([1e-5], [1.0], lambda lr, beta: {}, lambda spec: 0.5, correct=correct)


def test_the_best_of_equal_arms_is_not_an_effect():
    """Five mixes as good as SFT alone: the best of them must not read as a win (the selection is accounted for)."""
    wins = 0
    for seed in range(40):
        acc = {(3000, s): 0.5 for s in (0.1, 0.25, 0.5, 0.75, 0.9, 1.0)}
        ev = allocation.claim_evidence(_planted(acc, n=300, seed=seed), n_boot=200, seed=seed)
        wins += ev["best_mix_minus_sft_only_large"][1] > 0
    assert wins <= 3


def test_run_grid_prefetch_gives_the_plain_loops_frame():
    """The prefetching waves (SFT starts, DPO runs, scores) only warm the cache: the long frame is the same, and
    every run's SFT start is scored before DPO (`start_correct`)."""
    plan = allocation.grid([4, 8], [0.0, 0.5, 1.0], [1.0])

    def train_sft(spec, n, seed):
        return {"sft": n, "seed": seed} if n else dict(spec)

    def train_dpo(spec, n, seed):
        return {**spec, "dpo": n} if n else dict(spec)

    def score(spec):
        rng = np.random.default_rng(abs(hash(json.dumps(spec, sort_keys=True))) % 2**32)
        return pd.DataFrame({"question": range(5), "answer": "1", "correct": rng.random(5) < 0.5,
                             "formatted": True})

    plain = allocation.run_grid(plan, {"base": 1}, train_sft, train_dpo, score, seeds=(0, 1), log=lambda _: None)
    warm = allocation.run_grid(plan, {"base": 1}, train_sft, train_dpo, score, seeds=(0, 1), log=lambda _: None,
                               prefetch=True)
    pd.testing.assert_frame_equal(plain, warm)
    one = plain[(plain.seed == 1) & (plain.budget == 8) & (plain.share == 0.5)]
    assert one.start_correct.tolist() == score({"sft": 4, "seed": 1}).correct.tolist()


def _seeded_arms(rng, sds, n_seeds=3, n_questions=40):
    """(seed, question) x arm scores: each arm's per-seed mean shifted by a seed effect of its own sd, the
    same on every question (no question noise), all arms with true mean 0."""
    index = pd.MultiIndex.from_product([range(n_seeds), range(n_questions)], names=["seed", "question"])
    effects = rng.normal(0, sds, (n_seeds, len(sds)))
    return pd.DataFrame(np.repeat(effects, n_questions, axis=0), index=index,
                        columns=[f"arm{i}" for i in range(len(sds))]).assign(chance=0.0)


def test_many_arms_with_one_seed_variance_share_it():
    """Twelve arms with equal seed variance: the moderated interval of one arm against a constant is near
    the pooled-variance t interval (t_{0.975, 24} = 2.06 sd / sqrt(3)), far inside the arm's own 2-df t
    interval (4.30 of its own sd), and it still covers 0 in about 95 % of worlds."""
    from scipy import stats

    widths, covered = [], []
    for seed in range(60):
        rng = np.random.default_rng(seed)
        boot = allocation._Boot(_seeded_arms(rng, np.full(12, 0.05)), n_boot=2000, seed=seed)
        value, lo, hi = boot.compare(["arm0"], ["chance"])
        widths.append((hi - lo) / 2)
        covered.append(lo <= 0 <= hi)
    pooled_half = stats.t.ppf(0.975, 24) * 0.05 / np.sqrt(3)
    own_half = stats.t.ppf(0.975, 2) * 0.05 / np.sqrt(3)
    assert np.median(widths) < 0.5 * (pooled_half + own_half)
    assert np.mean(covered) > 0.88


def test_an_arm_noisier_than_the_rest_keeps_most_of_its_own_variance_when_variances_differ():
    """Arms whose seed variances span a factor of 400: the prior pools little (d0 small), so an interval is
    not much narrower than its own t interval, and the noisy arms keep their coverage."""
    sds = np.array([0.003, 0.006, 0.06, 0.06, 0.003, 0.06, 0.006, 0.06, 0.003, 0.06, 0.006, 0.06])
    covered, d0s = [], []
    for seed in range(80):
        rng = np.random.default_rng(seed)
        boot = allocation._Boot(_seeded_arms(rng, sds), n_boot=2000, seed=seed)
        d0s.append(boot.prior[0])
        _, lo, hi = boot.compare(["arm2"], ["chance"])
        covered.append(lo <= 0 <= hi)
    assert np.median(d0s) < 2 and np.mean(covered) > 0.88


def test_the_lower_bound_of_one_arm_against_the_best_of_several_needs_no_correction():
    """One arm against three (an intersection: it must beat each): its lower bound is the plain 95 % one of
    the closest, whereas the best of three arms against one is read at the Bonferroni level over the three."""
    rng = np.random.default_rng(0)
    draws = pd.DataFrame({"a": rng.normal(0.3, 0.05, 400), "b": 0.0, "c": 0.0, "d": 0.0})
    boot = allocation._Boot(draws, n_boot=4000, seed=0)
    _, lo_one, _ = boot.compare(["a"], ["b", "c", "d"])
    _, lo_plain, _ = boot.compare(["a"], ["b"])
    _, lo_best, _ = boot.compare(["a", "b", "c"], ["d"])
    assert lo_one == pytest.approx(lo_plain)
    assert lo_best < lo_plain
