"""Tests of caplab.science.distill: the distillation loss, its loss_fn and cache key, the optimal teacher, the law."""
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from caplab.science import distill as D
from caplab.substrate import data
from caplab.substrate.models import get_model

torch.set_num_threads(1)


def random_batch(vocab=11, batch=3, length=7, seed=0):
    """Student and teacher logits and labels with some -100 (a masked prompt and right padding)."""
    gen = torch.Generator().manual_seed(seed)
    student = torch.randn(batch, length, vocab, generator=gen, dtype=torch.float64) * 2
    teacher = torch.randn(batch, length, vocab, generator=gen, dtype=torch.float64) * 2
    labels = torch.randint(0, vocab, (batch, length), generator=gen)
    labels[0, :3] = -100
    labels[2, -2:] = -100
    return student, teacher, labels


def by_hand(student, teacher, labels, alpha, temperature):
    """The loss written out position by position."""
    s, t, y = student[:, :-1], teacher[:, :-1], labels[:, 1:]
    ce, soft, n = 0.0, 0.0, 0
    for b in range(y.shape[0]):
        for i in range(y.shape[1]):
            if y[b, i] == -100:
                continue
            n += 1
            ce += F.cross_entropy(s[b, i][None], y[b, i][None]).item()
            log_q = F.log_softmax(s[b, i] / temperature, -1)
            log_p = F.log_softmax(t[b, i] / temperature, -1)
            kl = F.kl_div(log_q, log_p, reduction="sum", log_target=True).item()     # KL(teacher || student)
            entropy = -(log_p.exp() * log_p).sum().item()
            soft += kl + entropy
    return alpha * ce / n + (1 - alpha) * soft / n


@pytest.mark.parametrize("alpha, temperature", [(0.5, 1.0), (0.2, 2.0), (0.0, 0.5)])
def test_loss_equals_hand_computation(alpha, temperature):
    student, teacher, labels = random_batch()
    got = D.distillation_loss(student, teacher, labels, alpha, temperature).item()
    assert got == pytest.approx(by_hand(student, teacher, labels, alpha, temperature), rel=1e-10)


def test_soft_term_with_teacher_equal_student_is_student_entropy():
    student, _, labels = random_batch()
    terms = D.distillation_terms(student, student, labels)
    log_q = F.log_softmax(student[:, :-1], -1)[labels[:, 1:] != -100]
    entropy = -(log_q.exp() * log_q).sum(-1).mean().item()
    assert terms["soft_ce"].item() == pytest.approx(entropy, rel=1e-10)
    assert D.distillation_loss(student, student, labels, alpha=0.0).item() == pytest.approx(entropy, rel=1e-10)


def test_kl_part_matches_trl_gkd_at_beta_zero():
    gkd = pytest.importorskip("trl.experimental.gkd.gkd_trainer")
    student, teacher, labels = random_batch()
    for temperature in (1.0, 2.0):
        terms = D.distillation_terms(student, teacher, labels, temperature)
        kl = gkd.GKDTrainer.generalized_jsd_loss(student[:, :-1], teacher[:, :-1], labels[:, 1:], beta=0.0,
                                                 temperature=temperature)
        # soft CE = KL(teacher || student) + H(teacher)
        assert (terms["soft_ce"] - terms["teacher_entropy"]).item() == pytest.approx(kl.item(), rel=1e-10)


def tiny(seed, alphabet=None):
    spec = {"d_model": 32, "n_layer": 1, "n_head": 2, "max_seq_len": 64, "seed": seed}
    return get_model({**spec, **({"alphabet": alphabet} if alphabet else {})})


@pytest.fixture
def batch():
    model, tok = tiny(0)
    blocks = data.pack_blocks(data.zipf_language(40, vocab_size=12, seed=0), tok, 16)
    out = blocks.batch(torch.arange(4))
    out["labels"][0, :5] = -100
    return out


def test_alpha_one_equals_hf_loss_and_teacher_gets_no_grad(batch):
    student, _ = tiny(0)
    teacher, _ = tiny(1)
    student.train()
    loss = D.make_distill_loss_fn(teacher, alpha=1.0)(student, batch)
    assert loss.item() == pytest.approx(student(**batch).loss.item(), rel=1e-5)
    mixed = D.make_distill_loss_fn(teacher, alpha=0.5)(student, batch)
    reference = D.distillation_loss(student(**batch).logits, teacher(**batch).logits, batch["labels"])
    assert mixed.item() == pytest.approx(reference.item(), rel=1e-5)
    mixed.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert not teacher.training


def test_different_vocab_raises(batch):
    student, _ = tiny(0)
    teacher, _ = tiny(1, alphabet="abcdefgh .")
    with pytest.raises(ValueError, match="vocab size"):
        D.make_distill_loss_fn(teacher)(student, batch)
    with pytest.raises(ValueError, match="alpha"):
        D.make_distill_loss_fn(teacher, alpha=1.5)


def test_distill_cached_keys_on_teacher_and_reads_back(tmp_path):
    from caplab.substrate.cache import Cache

    teacher, tok = tiny(1)
    teacher.save_pretrained(tmp_path / "teacher")
    tok.save_pretrained(tmp_path / "teacher")
    spec = {"d_model": 32, "n_layer": 1, "n_head": 2, "max_seq_len": 64, "seed": 0}
    blocks = data.pack_blocks(data.zipf_language(40, vocab_size=12, seed=0), tok, 16)
    config = {"steps": 2, "batch_size": 4, "warmup_steps": 0, "device": "cpu"}
    cache = Cache(tmp_path / "cache")
    run = D.distill_cached(spec, tmp_path / "teacher", blocks, config, 0.5, 1.0, cache=cache)
    args = (run.path / "args.json").read_text()
    assert f"distill:{(tmp_path / 'teacher').resolve()}:0.5:1.0" in args
    assert D.distill_cached(spec, str(tmp_path / "teacher"), blocks, config, 0.5, 1.0, cache=cache).path == run.path
    assert cache.hits == 1
    other = D.distill_cached(spec, tmp_path / "teacher", blocks, config, 0.3, 1.0, cache=cache)
    assert other.path != run.path
    assert D.teacher_spec({"pretrained": "EleutherAI/pythia-160m"})[1] == "EleutherAI/pythia-160m@main"


# -- the optimal teacher ------------------------------------------------------------------------------------------
TEACHERS = np.geomspace(1e5, 1e8, 7)


def planted(t_star, curvature=0.05, noise=0.003, seeds=3, seed=0, teachers=TEACHERS):
    rng = np.random.default_rng(seed)
    rows = [dict(teacher_params=t, loss=2.0 + curvature * (np.log(t) - np.log(t_star)) ** 2 + rng.normal(0, noise))
            for t in teachers for _ in range(seeds)]
    return pd.DataFrame(rows)


def test_planted_parabola_vertex_is_recovered_with_interval():
    result = D.optimal_teacher(planted(2e6), n_boot=500)
    assert result["convex"] and result["interior"] and not result["at_edge"]
    assert result["t_star"] == pytest.approx(2e6, rel=0.02)
    assert result["lower"] < result["t_star"] < result["upper"]
    assert result["n_boot_convex"] + result["n_boot_degenerate"] == 500
    # coverage over 40 planted datasets: nominal 95 %; the row bootstrap on 21 rows gives about 85 %
    hits = [D.optimal_teacher(planted(2e6, noise=0.01, seed=s), n_boot=200, seed=s) for s in range(40)]
    assert np.mean([h["lower"] <= 2e6 <= h["upper"] for h in hits]) >= 0.75


def test_monotone_series_is_at_edge_and_not_interior():
    x = np.log(TEACHERS)
    monotone = pd.DataFrame({"teacher_params": TEACHERS, "loss": 3.0 - 0.1 * x + 0.001 * x ** 2})   # vertex far out
    result = D.optimal_teacher(monotone, n_boot=50)
    assert result["at_edge"] and not result["interior"] and not result["readable"]
    falling = pd.DataFrame({"teacher_params": TEACHERS, "loss": -np.log(TEACHERS) ** 2})     # concave
    result = D.optimal_teacher(falling, n_boot=50)
    assert not result["convex"] and result["at_edge"] and np.isnan(result["t_star"])
    flat = planted(2e6, curvature=0.0, noise=0.01)          # pure noise: only some resamples have a minimum
    result = D.optimal_teacher(flat, n_boot=200)
    assert 0 < result["n_boot_convex"] < result["n_boot"] - result["n_boot_degenerate"]


def test_bad_input_raises_naming_the_problem():
    with pytest.raises(ValueError, match="missing column.*'loss'"):
        D.optimal_teacher(pd.DataFrame({"teacher_params": TEACHERS}))
    with pytest.raises(ValueError, match="at least 3 distinct teachers"):
        D.optimal_teacher(planted(2e6, teachers=TEACHERS[:2]))
    with pytest.raises(ValueError, match="missing column.*'student_params'"):
        D.optimal_teachers(planted(2e6))
    with pytest.raises(ValueError, match="missing column.*'t_star'"):
        D.capacity_gap_law(pd.DataFrame({"student_params": [1.0, 2.0]}))
    with pytest.raises(ValueError, match="at least 2 students"):
        D.capacity_gap_law(pd.DataFrame({"student_params": [1e6, 2e6], "t_star": [2e6, 4e6],
                                         "interior": [True, False], "at_edge": [False, False]}))


# -- the law of capacity gap ----------------------------------------------------------------------------------------
def test_optimal_teachers_then_ratio_law_recovers_planted_ratio():
    students = [2e5, 5e5, 1e6, 2e6]
    frames = [planted(2.5 * s, seed=i).assign(student_params=s) for i, s in enumerate(students)]
    edge = planted(1e9, seed=9).assign(student_params=4e6)            # optimum beyond the grid: excluded
    optima = D.optimal_teachers(pd.concat(frames + [edge]), n_boot=100)
    assert list(optima.student_params) == students + [4e6]
    assert optima.interior.tolist() == [True] * 4 + [False]
    law = D.capacity_gap_law(optima, n_boot=200)
    assert law["n_students"] == 4 and law["excluded"] == [4e6]
    assert law["r"] == pytest.approx(2.5, rel=0.1)
    assert law["r_lower"] <= 2.5 <= law["r_upper"]
    assert law["linear"] is not None and law["linear"].params["a"] == pytest.approx(2.5, rel=0.2)


def test_ratio_law_on_exact_synthetic_optima():
    optima = pd.DataFrame({"student_params": [1e6, 2e6, 4e6, 8e6], "t_star": [3.1e6, 5.9e6, 12.2e6, 23.8e6]})
    law = D.capacity_gap_law(optima, n_boot=200, seed=1)
    r = np.dot([1, 2, 4, 8], [3.1, 5.9, 12.2, 23.8]) / np.dot([1, 2, 4, 8], [1, 2, 4, 8])   # least squares
    assert law["r"] == pytest.approx(r, rel=1e-6)
    assert law["r_lower"] < r < law["r_upper"] and not law["paper_ratio_in_interval"]


# -- teacher tests with seed noise ------------------------------------------------------------------------------
def _seeded(curve, n_seeds, sd, seed=0, teachers=(1e3, 3e3, 1e4, 3e4, 1e5)):
    rng = np.random.default_rng(seed)
    x = np.log(np.asarray(teachers))
    return pd.DataFrame([{"student_params": 1, "teacher_params": t, "seed": s, "loss": 3 + curve(xi) + rng.normal(0, sd),
                          "loss_se": 0.001} for s in range(n_seeds) for t, xi in zip(teachers, x)])


def test_teacher_tests_read_a_planted_u_and_not_a_hockey_stick():
    mid = np.log(1e4)
    u = D.teacher_tests(_seeded(lambda x: 0.05 * (x - mid) ** 2, 3, 0.01)).iloc[0]
    assert u.noise == "seeds" and u.n_seeds == 3 and u.df == 10
    assert u.p_interior < 0.01 and u.p_curse < 0.01 and u.p_teacher_effect < 0.01
    stick = D.teacher_tests(_seeded(lambda x: 0.05 * max(x - mid, 0) ** 2, 3, 0.01)).iloc[0]
    assert stick.p_curse < 0.01 and stick.p_interior > 0.05       # larger is worse, but no interior optimum


def test_teacher_tests_with_one_seed_use_the_evaluation_se():
    one = _seeded(lambda x: 0.0 * x, 1, 0.0).drop(columns="seed")
    one.loc[2, "loss"] -= 0.01                                      # the middle teacher 10 evaluation SEs better
    out = D.teacher_tests(one).iloc[0]
    assert out.noise == "evaluation only" and np.isinf(out.df)
    assert out.p_interior < 1e-6


def test_teacher_tests_hold_their_level_under_a_flat_null():
    hits = sum(D.teacher_tests(_seeded(lambda x: 0.0 * x, 3, 0.02, seed=i)).iloc[0].p_interior < 0.05
               for i in range(300))
    assert hits / 300 <= 0.05


def test_holm_matches_the_step_down_rule():
    assert D.holm([0.01, 0.04, 0.03], 0.05).tolist() == [True, False, False]
    assert D.holm([0.01, 0.02, 0.03], 0.05).tolist() == [True, True, True]
    assert D.holm([0.2, 0.001], 0.05).tolist() == [False, True]
