"""The downstream chain on hand-computed probabilities; trends; per-sample correlations; the swap metric."""
import numpy as np
import pandas as pd
import pytest
import torch

from caplab.science.capability import answer_accuracy_metric, downstream_chain, sample_correlations, trend


def test_chain_steps_on_hand_computed_probabilities():
    # vocabulary-level probabilities of the 3 choices: 0.2 (correct), 0.1, 0.1 -> p_choices = 0.5, 0.25, 0.25
    rows = pd.DataFrame({"logprob_0": [np.log(0.2)], "logprob_1": [np.log(0.1)], "logprob_2": [np.log(0.1)],
                         "answer": [0]})
    out = downstream_chain(rows).iloc[0]
    assert out.log_p_vocab == pytest.approx(np.log(0.2)) and out.p_vocab == pytest.approx(0.2)
    assert out.p_choices == pytest.approx(0.5)
    assert out.neg_brier == pytest.approx(-((0.5 - 1) ** 2 + 0.25 ** 2 + 0.25 ** 2))
    assert out.accuracy == 1.0 and out.p_vocab_incorrect == pytest.approx(0.2)
    wrong = downstream_chain(rows.assign(answer=1)).iloc[0]
    assert wrong.accuracy == 0.0 and wrong.p_choices == pytest.approx(0.25)
    with pytest.raises(ValueError, match="logprob"):
        downstream_chain(pd.DataFrame({"answer": [0]}))


def test_trend_recovers_a_planted_slope():
    rng = np.random.default_rng(0)
    x = np.repeat(np.linspace(4, 6, 5), 200)
    frame = pd.DataFrame({"log_params": x, "y": 0.3 * x + rng.normal(0, 0.1, len(x))})
    fit = trend(frame, "y")
    assert fit["lo"] < 0.3 < fit["hi"] and abs(fit["slope"] - 0.3) < 0.02


def test_sample_correlations_follow_the_scores():
    chain = pd.DataFrame({"question": [0] * 4 + [1] * 4, "log_compute": [1, 2, 3, 4] * 2,
                          "log_p_vocab": [-4, -3, -2, -1, -1, -2, -3, -4], "accuracy": [0, 0, 0, 0, 0, 0, 1, 1]})
    corr = sample_correlations(chain, scores=("log_p_vocab", "accuracy")).set_index(["question", "score"])
    assert corr.loc[(0, "log_p_vocab"), "spearman"] == pytest.approx(1.0)
    assert corr.loc[(1, "log_p_vocab"), "spearman"] == pytest.approx(-1.0)
    assert np.isnan(corr.loc[(0, "accuracy"), "spearman"])       # constant score: no correlation
    assert corr.loc[(1, "accuracy"), "kendall"] > 0


def test_answer_accuracy_metric_reads_only_scored_positions():
    labels = torch.tensor([[-100, 5, 6], [-100, 5, 7]])
    logits = torch.zeros(2, 3, 10)
    logits[:, 0, 5] = 1        # predicts 5 at position 1
    logits[:, 1, 6] = 1        # predicts 6 at position 2: right for row 0, wrong for row 1
    assert answer_accuracy_metric(logits, {"labels": labels}) == {"accuracy": 0.5}


def test_token_accuracy_metric_counts_scored_tokens():
    from caplab.science.capability import token_accuracy_metric
    labels = torch.tensor([[-100, 5, 6, 7]])
    logits = torch.zeros(1, 4, 10)
    logits[0, 0, 5] = 1
    logits[0, 1, 6] = 1
    logits[0, 2, 1] = 1        # wrong at the last position
    assert token_accuracy_metric(logits, {"labels": labels}) == {"accuracy": pytest.approx(2 / 3)}


def test_sample_correlations_match_scipy_with_ties():
    from scipy import stats
    rng = np.random.default_rng(0)
    n_q, n_p = 20, 9
    chain = pd.DataFrame({"question": np.repeat(np.arange(n_q), n_p),
                          "log_compute": np.tile(np.round(rng.normal(size=n_p), 1), n_q),
                          "s": np.round(rng.normal(size=n_q * n_p))}).sample(frac=1, random_state=0)
    fast = sample_correlations(chain, scores=("s",)).set_index("question")
    for q, group in chain.groupby("question"):
        if np.ptp(group.s) == 0:
            assert np.isnan(fast.loc[q, "spearman"])
            continue
        assert fast.loc[q, "spearman"] == pytest.approx(stats.spearmanr(group.log_compute, group.s)[0])
        assert fast.loc[q, "kendall"] == pytest.approx(stats.kendalltau(group.log_compute, group.s)[0])
        assert fast.loc[q, "pearson"] == pytest.approx(stats.pearsonr(group.log_compute, group.s)[0])


def test_chain_relative_incorrect_mass_ignores_a_shared_shift():
    rows = pd.DataFrame({"logprob_0": [-2.0, -1.0], "logprob_1": [-3.0, -2.0], "logprob_2": [-3.0, -2.0],
                         "answer": [0, 0]})
    out = downstream_chain(rows)
    assert out.log_odds_incorrect.iloc[0] == pytest.approx(out.log_odds_incorrect.iloc[1])
    assert out.log_odds_incorrect.iloc[0] == pytest.approx(np.log(2 * np.exp(-3.0)) + 2.0)


def test_prior_guessers_and_lookup_table():
    from caplab.science.capability import lookup_baseline, prior_guessers
    questions = pd.DataFrame({"choices": [["ab", "cd", "ef"], ["cd", "ab", "gh"], ["ef", "gh", "cd"]],
                              "answer": [0, 1, 2]})
    texts = ["x:ab", "y:ab", "z:cd", "abc", "w:cd", "v:cd"]                # "abc" is not a mention of "ab"
    g = prior_guessers(questions, texts)
    assert g.chance.tolist() == pytest.approx([1 / 3] * 3)
    assert g.corpus_prior.tolist() == [0.0, 0.0, 1.0]                     # cd mentioned most (3), ab twice
    # answers ab, ab, cd, each question left out of its own count; question 0: ab 1, cd 1, ef 0 (a tie of two: 1/2); question 2: ef, gh, cd all 0 (a tie of three: 1/3)
    assert g.answer_prior.tolist() == pytest.approx([0.5, 0.5, 1 / 3])
    looked = lookup_baseline(["1+2=3", "2+2=4", "5+5=4"], ["1+2=", "2+2=", "7+7="], ["3", "5", "4"])
    assert looked.tolist() == [1.0, 0.0, 1.0]                             # unseen: the majority answer ("4")


def test_bigram_floor_predicts_the_most_frequent_successor():
    from caplab.science.capability import bigram_floor
    from caplab.substrate.data import TokenDataset
    ids = torch.tensor([[1, 2, 1, 2, 1, 3]])
    train = TokenDataset(ids, torch.ones_like(ids), ids.clone())
    held_ids = torch.tensor([[1, 2, 1, 5]])
    held = TokenDataset(held_ids, torch.ones_like(held_ids), held_ids.clone())
    floor = bigram_floor(train, held)
    # after 1 the bigram says 2 (twice against 3 once), after 2 it says 1: right, right, then 2 where 5 follows
    assert floor.scored.tolist() == [3] and floor.hits.tolist() == [2]


def test_answer_only_loss_masks_arithmetic_prompts_only():
    from caplab.science.capability import answer_only_loss
    from caplab.substrate.data import pack_blocks
    from caplab.substrate.tokenizer import char_tokenizer

    tok = char_tokenizer()                                      # the tiny family's tokenizer
    packed = pack_blocks(["ab:cd", "12+34=64", "hi there.", "99+99=891", "xy:zz"], tok, 12)   # 3 full blocks
    masked = answer_only_loss(packed, tok)
    assert torch.equal(masked.input_ids, packed.input_ids)
    text = "".join("_" if lab == -100 else tok.decode([i]) if i != tok.eos_token_id else "|"
                   for i, lab in zip(packed.input_ids.reshape(-1).tolist(), masked.labels.reshape(-1).tolist()))
    # a text with "=" loses its prompt (bos, operands, "="), keeps answer and eos; others keep everything; a text
    # cut by a block boundary ("<bos>12+3" | "4=64") is judged on each part
    assert text.replace(tok.decode([tok.bos_token_id]), "^") == "^ab:cd|^12+3__64|^hi there.|_______8"
    with pytest.raises(ValueError, match="one token"):
        answer_only_loss(packed, tok, marker="+=")


def test_score_choices_equals_the_substrate_scorer():
    """The batched knowledge scorer gives `evaluate.score_multiple_choice`'s columns and values (choices of several
    lengths, so batches mix lengths and padding; an empty prompt starts from <bos>)."""
    from caplab.science.capability import score_choices
    from caplab.substrate.data import facts, multiple_choice
    from caplab.substrate.evaluate import score_multiple_choice
    from caplab.substrate.models import tiny_model

    model, tok = tiny_model({"size": "0.1M", "seed": 3})
    questions = multiple_choice(facts(n_entities=60, n_attributes=8, n_mentions=100, seed=1), n_choices=4,
                                distractors="random", seed=2)
    questions.loc[0, "prompt"] = ""
    want = score_multiple_choice(model, tok, questions, batch_size=7)
    got = score_choices(model, tok, questions, batch_size=16)
    assert list(got.columns) == list(want.columns) and (got.dtypes == want.dtypes).all()
    assert np.allclose(got.filter(like="logprob").to_numpy(), want.filter(like="logprob").to_numpy(), atol=1e-4)
    assert got.drop(columns=list(got.filter(like="logprob"))).equals(want.drop(columns=list(want.filter(like="logprob"))))
    with pytest.raises(ValueError, match="same number of choices"):
        score_choices(model, tok, questions.assign(choices=[["a"]] + list(questions.choices[1:])))


def test_mention_counts_whole_words_only():
    from caplab.science.capability import mention_counts
    texts = ["ab:cat", "cat cats", "xcat_cat", "1+2=3", "3/4 of 13", "éclat cat", " 3/4"]
    got = mention_counts(texts, ["cat", " 3", "3/4", "13", "", "dog"])
    assert got == {"cat": 4, " 3": 3, "3/4": 2, "13": 1, "": 0, "dog": 0}


def test_each_checkpoint_on_every_core_equals_the_plain_loop(monkeypatch):
    from caplab.science.capability import each_checkpoint, knowledge_rows
    from caplab.substrate import data
    from caplab.substrate.family import for_each_checkpoint, train_family
    from caplab.substrate.models import tiny_model
    from caplab.substrate.sweep import WORKERS_ENV

    tok = tiny_model("0.1M")[1]
    corpus = data.pack_blocks(data.zipf_language(100, vocab_size=40, seed=0), tok, 16)
    shapes = [{"name": "a", "d_model": 16, "n_layer": 1, "n_head": 1}, {"name": "b", "d_model": 32, "n_layer": 1,
                                                                         "n_head": 2}]
    members = train_family(shapes, corpus, {"batch_size": 2, "lr": 3e-3, "warmup_steps": 1}, [32, 64])
    questions = data.multiple_choice(data.facts(n_entities=20, n_attributes=6, n_mentions=40, seed=1), seed=2)
    monkeypatch.setenv(WORKERS_ENV, "2")
    got = each_checkpoint(members, knowledge_rows, args={"questions": questions}, name="mc-parallel")
    monkeypatch.setenv(WORKERS_ENV, "1")
    want = for_each_checkpoint(members, knowledge_rows, args={"questions": questions}, name="mc-plain")
    assert got.equals(want)
