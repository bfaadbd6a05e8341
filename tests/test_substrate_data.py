"""Synthetic generators are seeded and correct; token tensors mask what they should."""
import numpy as np
import pytest
import torch

from caplab.substrate import data
from caplab.substrate.tokenizer import char_tokenizer


def test_generators_deterministic_for_a_seed():
    assert data.zipf_language(50, seed=3) == data.zipf_language(50, seed=3)
    assert data.zipf_language(50, seed=3) != data.zipf_language(50, seed=4)
    a, b = data.facts(40, 8, 300, seed=2), data.facts(40, 8, 300, seed=2)
    assert a.texts == b.texts and a.table.equals(b.table)
    assert data.arithmetic(20, seed=1).equals(data.arithmetic(20, seed=1))


def test_facts_are_zipfian_and_consistent():
    f = data.facts(100, 10, 5000, exponent=1.0, seed=0)
    assert f.table.mentions.sum() == 5000
    assert f.table.mentions.iloc[0] > 5 * f.table.mentions.iloc[50]      # head seen far more than the tail
    lookup = dict(zip(f.table.entity, f.table.attribute))
    for text in f.texts[:200]:
        entity, attribute = text.split(":")
        assert lookup[entity] == attribute


def test_multiple_choice_answer_points_to_the_fact():
    f = data.facts(60, 10, 100, seed=0)
    mc = data.multiple_choice(f, n_choices=4, seed=1)
    truth = dict(zip(f.table.entity, f.table.attribute))
    for row in mc.itertuples():
        assert len(set(row.choices)) == 4 and row.choices[row.answer] == truth[row.entity]
        assert row.prompt == row.entity + ":"


def test_arithmetic_answers():
    for op, fn in (("+", int.__add__), ("-", int.__sub__), ("*", int.__mul__)):
        frame = data.arithmetic(30, (1, 5), op=op, seed=0)
        assert all(str(fn(a, b)) == ans for a, b, ans in zip(frame.a, frame.b, frame.answer))
    rev = data.arithmetic(5, 3, reverse_answer=True, seed=0)
    assert all(str(a + b)[::-1] == ans for a, b, ans in zip(rev.a, rev.b, rev.answer))
    with pytest.raises(ValueError, match="op must be"):
        data.arithmetic(3, op="/")


def test_pad_examples_loss_on_completion_only():
    tok = char_tokenizer()
    ds = data.pad_examples(["1+2=", "10+20="], ["3", "30"], tok)
    assert ds.input_ids.shape == (2, 1 + 6 + 2 + 1)
    row = ds.labels[0].tolist()
    assert row[:5] == [-100] * 5 and row[5:7] == [tok.convert_tokens_to_ids("3"), tok.eos_token_id]
    assert row[7:] == [-100] * 3 and ds.attention_mask[0].sum() == 7
    batch = ds.batch([0])
    assert batch["input_ids"].shape == (1, 7)                 # trimmed to the longest row of the batch
    full = data.pad_examples(["1+2="], ["3"], tok, loss_on="all")
    assert (full.labels[0] != -100).all()


def test_pack_blocks():
    tok = char_tokenizer()
    ds = data.pack_blocks(["ab", "cde"], tok, block_size=4)
    ab, cde = (tok(t, add_special_tokens=False).input_ids for t in ("ab", "cde"))
    assert ds.input_ids.tolist() == [[1, *ab, 2], [1, *cde]]         # the last partial block is dropped
    assert torch.equal(ds.labels, ds.input_ids)


def test_arithmetic_held_out_split_never_shares_a_problem():
    train = data.arithmetic(3000, 2, seed=1, held_out=0.1, part="train")
    held = data.arithmetic(200, 2, seed=3, held_out=0.1, part="held")
    pairs = set(zip(train.a, train.b))
    assert not pairs & set(zip(held.a, held.b))
    assert len(set(zip(held.a, held.b))) == 200                      # an evaluation set: no repeats
    assert (held.answer == (held.a + held.b).astype(str)).all()
    share = data.held_out_problem(*np.divmod(np.arange(10000, 1000000), 1000), share=0.1).mean()
    assert abs(share - 0.1) < 0.01                                     # the hash splits the space as asked
    assert data.arithmetic(20, seed=1).equals(data.arithmetic(20, seed=1, held_out=0.5))   # "all": as before
    with pytest.raises(ValueError, match="raise held_out"):
        data.arithmetic(500, 2, seed=3, held_out=0.05, part="held")
