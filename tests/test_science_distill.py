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


# -- teachers at a tokens-per-parameter ratio; their logits computed once ----------------------------------------
def test_teacher_budget_is_the_ratio_with_a_floor():
    budget = D.TeacherBudget(tokens_per_param=10, min_tokens=3000)
    assert budget.tokens(100) == 3000 and budget.tokens(1000) == 10000 and budget.tokens(1001) == 10010
    with pytest.raises(ValueError, match="tokens_per_param"):
        D.TeacherBudget(tokens_per_param=0)


def test_train_teachers_gives_each_its_own_budget(tmp_path):
    from caplab.substrate.cache import Cache

    _, tok = tiny(0)
    blocks = data.pack_blocks(data.zipf_language(60, vocab_size=12, seed=0), tok, 16)
    shapes = [{"name": "a", "d_model": 8, "n_layer": 1, "n_head": 1, "max_seq_len": 16},
              {"name": "b", "d_model": 16, "n_layer": 1, "n_head": 2, "max_seq_len": 16}]
    config = {"batch_size": 4, "warmup_steps": 0, "device": "cpu"}
    frame = D.train_teachers(shapes, blocks, config, {"tokens_per_param": 0.1, "min_tokens": 100},
                             cache=Cache(tmp_path))
    assert frame.model.tolist() == ["a", "b"] and frame.params_non_embedding.tolist() == [888, 3312]
    # a: the floor (100 tokens); b: 0.1 x 3312 = 332 tokens; each stops at the first step past its budget (64/step)
    assert frame.tokens.tolist() == [128, 384]
    with pytest.raises(ValueError, match="budget"):
        D.train_teachers(shapes, blocks, {**config, "max_tokens": 10}, {"tokens_per_param": 1.0})


def test_precomputed_logits_give_the_online_loss_and_reject_unknown_rows(batch):
    student, tok = tiny(0)
    teacher, _ = tiny(1)
    blocks = data.pack_blocks(data.zipf_language(40, vocab_size=12, seed=0), tok, 16)
    logits = D.TeacherLogits(teacher, blocks, batch_size=3)
    rows = torch.tensor([5, 0, 5, 2])
    some = blocks.batch(rows)
    with torch.no_grad():
        assert torch.allclose(logits(some["input_ids"]), teacher(input_ids=some["input_ids"]).logits, atol=1e-5)
        online = D.make_distill_loss_fn(teacher)(student, some)
        offline = D.distillation_loss(student(**{k: v for k, v in some.items() if k != "labels"}).logits,
                                      logits(some["input_ids"]), some["labels"])
    assert offline.item() == pytest.approx(online.item(), rel=1e-5)
    with pytest.raises(ValueError, match="not among the rows"):
        logits(torch.zeros_like(some["input_ids"]))


def test_distill_cached_logits_shares_one_teacher_pass_and_keys_on_the_teacher(tmp_path):
    from caplab.substrate.cache import Cache

    teacher, tok = tiny(1)
    teacher.save_pretrained(tmp_path / "teacher")
    tok.save_pretrained(tmp_path / "teacher")
    blocks = data.pack_blocks(data.zipf_language(40, vocab_size=12, seed=0), tok, 16)
    config = {"steps": 2, "batch_size": 4, "warmup_steps": 0, "device": "cpu"}
    cache, memo = Cache(tmp_path / "cache"), {}
    spec = {"d_model": 16, "n_layer": 1, "n_head": 2, "max_seq_len": 64}
    first = D.distill_cached_logits(D.seeded(spec, 0), tmp_path / "teacher", blocks, config, teacher_logits=memo,
                                    cache=cache)
    table = next(iter(memo.values()))
    D.distill_cached_logits(D.seeded(spec, 1), tmp_path / "teacher", blocks, {**config, "seed": 1},
                            teacher_logits=memo, cache=cache)
    assert next(iter(memo.values())) is table                      # the second student reused the teacher's pass
    assert "distill-logits:" in (first.path / "args.json").read_text()
    assert D.seeded({"pretrained": "x"}, 3) == {"pretrained": "x"} and D.seeded(spec, 3)["seed"] == 3
