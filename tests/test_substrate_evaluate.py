"""Evaluation against a stub model with known probabilities, and greedy decoding with left padding."""
import math
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from caplab.substrate import data, evaluate
from caplab.substrate.models import tiny_model
from caplab.substrate.tokenizer import char_tokenizer


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


class Bigram(torch.nn.Module):
    """Logits of the next token depend only on the current one: a fixed table."""

    def __init__(self, table):
        super().__init__()
        self.table = table

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.table[input_ids])


def hand_logprob(table, ids):
    total = 0.0
    for prev, nxt in zip(ids[:-1], ids[1:]):
        row = table[prev].tolist()
        total += row[nxt] - math.log(sum(math.exp(v) for v in row))
    return total


def test_multiple_choice_logprobs_match_hand_sums():
    tok = char_tokenizer("abcxyz:")
    table = torch.randn(len(tok), len(tok), generator=torch.Generator().manual_seed(0)) * 2
    questions = pd.DataFrame({"prompt": ["ab:", "c:"], "choices": [["x", "yz", "zzz"], ["y", "x", "xyz"]],
                              "answer": [1, 2]})
    frame = evaluate.score_multiple_choice(Bigram(table), tok, questions, batch_size=4)
    for q, row in zip(questions.itertuples(), frame.itertuples()):
        context = tok(q.prompt).input_ids
        expected = [hand_logprob(table, context + tok(c, add_special_tokens=False).input_ids) -
                    hand_logprob(table, context) for c in q.choices]
        got = [getattr(row, f"logprob_{j}") for j in range(3)]
        assert got == pytest.approx(expected, abs=1e-5)
        assert row.pred == max(range(3), key=expected.__getitem__)
        assert row.correct == (row.pred == q.answer)
        assert [getattr(row, f"n_tokens_{j}") for j in range(3)] == [len(c) for c in q.choices]


def test_mean_loss_equals_models_own_loss_on_blocks():
    model, tok = tiny_model("0.1M")
    ds = data.pack_blocks(data.zipf_language(40, seed=0), tok, 32)
    with torch.no_grad():
        own = model(**ds.batch(slice(0, len(ds)))).loss.item()
    assert evaluate.mean_loss(model, ds, batch_size=5) == pytest.approx(own, rel=1e-5)


def test_answer_only_loss_uses_answer_tokens():
    tok = char_tokenizer("abcxyz:")
    table = torch.randn(len(tok), len(tok), generator=torch.Generator().manual_seed(1))
    ds = data.pad_examples(["ab:", "c:"], ["xy", "z"], tok)
    frame = evaluate.example_losses(Bigram(table), ds)
    assert frame.n_tokens.tolist() == [3, 2]          # answer characters + <eos>
    ids = tok("ab:xy").input_ids + [tok.eos_token_id]
    assert frame.loss_sum[0] == pytest.approx(-(hand_logprob(table, ids) - hand_logprob(table, ids[:4])), abs=1e-5)


def test_greedy_left_padding_matches_one_by_one():
    model, tok = tiny_model({"size": "0.1M", "seed": 5})
    problems = data.arithmetic(6, (1, 4), seed=0)        # prompts of different lengths
    batched = evaluate.greedy_exact_match(model, tok, problems.prompt.tolist(), problems.answer.tolist(),
                                          batch_size=6, max_new_tokens=5, stop=None)
    single = evaluate.greedy_exact_match(model, tok, problems.prompt.tolist(), problems.answer.tolist(),
                                         batch_size=1, max_new_tokens=5, stop=None)
    assert batched.generation.tolist() == single.generation.tolist()
    assert problems.prompt.str.len().nunique() > 1
    exact = evaluate.greedy_exact_match(model, tok, ["1+1="], [batched.generation[0]], stop=None)
    assert list(exact.columns) == ["prompt", "answer", "generation", "correct"]
