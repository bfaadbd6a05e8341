"""A model family: log-spaced token counts and shapes, checkpoints where asked, a tidy frame, caching throughout."""
import numpy as np
import pandas as pd
import pytest
import torch

from caplab.substrate import data
from caplab.substrate.cache import Cache
from caplab.substrate.evaluate import mean_loss
from caplab.substrate.family import (COLUMNS, family_shapes, for_each_checkpoint, log_spaced_shapes,
                                     log_spaced_tokens, train_family)
from caplab.substrate.models import load_local, param_counts, tiny_model

SHAPES = [{"name": "big", "d_model": 64, "n_layer": 1, "n_head": 2}, {"d_model": 32, "n_layer": 1, "n_head": 1}]
CONFIG = {"batch_size": 2, "lr": 3e-3, "warmup_steps": 2}
PER_STEP = 2 * 16                                   # batch_size rows of 16-token blocks
CHECKPOINTS = [PER_STEP, 3 * PER_STEP - 10, 6 * PER_STEP]


@pytest.fixture(scope="module")
def corpus():
    return data.pack_blocks(data.zipf_language(200, vocab_size=40, seed=0), tiny_model("0.1M")[1], 16)


@pytest.fixture(scope="module")
def family(corpus, tmp_path_factory):
    cache = Cache(tmp_path_factory.mktemp("family-cache"))
    return cache, train_family(SHAPES, corpus, CONFIG, CHECKPOINTS, cache=cache)


def test_log_spaced_tokens():
    tokens = log_spaced_tokens(1000, 10**6, 7)
    assert tokens[0] == 1000 and tokens[-1] == 10**6 and len(set(tokens)) == 7 == len(tokens)
    assert np.allclose(np.diff(np.log(tokens)), np.log(10) / 2, rtol=0.01)
    assert log_spaced_tokens(1, 6, 6) == [1, 2, 3, 4, 5, 6]          # rounding collisions pushed apart
    with pytest.raises(ValueError, match="distinct"):
        log_spaced_tokens(1, 4, 5)


def test_log_spaced_shapes_have_log_spaced_non_embedding_counts():
    shapes = log_spaced_shapes(5, 1e5, 2e6, seed=1)
    counts = []
    for shape in shapes:
        spec = {k: v for k, v in shape.items() if k != "name"}
        counts.append(param_counts(tiny_model(spec)[0])["non_embedding"])
        assert shape["seed"] == 1 and shape["d_model"] == 32 * shape["n_head"]
    targets = np.geomspace(1e5, 2e6, 5)
    assert all(a < b for a, b in zip(counts, counts[1:]))
    assert np.all(np.abs(np.log(np.array(counts) / targets)) < np.log(1.2)), counts
    assert [s["d_model"] for s in shapes] == sorted(s["d_model"] for s in shapes)
    assert [s["n_layer"] for s in shapes] == sorted(s["n_layer"] for s in shapes)
    with pytest.raises(ValueError, match="repeated shapes"):
        log_spaced_shapes(6, 1e5, 1.2e5)
    with pytest.raises(ValueError, match="family"):
        log_spaced_shapes(3, 1e5, 1e6, family="gpt2")



def test_a_family_of_one_depth_differs_by_width_alone():
    shapes = family_shapes({"kind": "tiny_widths", "widths": [64, 32, 96], "n_layer": 2, "head_dim": 16,
                            "max_seq_len": 64})
    assert [s["name"] for s in shapes] == ["d32-L2", "d64-L2", "d96-L2"]                   # smallest first
    built = [tiny_model({k: v for k, v in s.items() if k != "name"})[0] for s in shapes]
    assert [m.config.num_hidden_layers for m in built] == [2, 2, 2]
    assert [m.config.num_attention_heads for m in built] == [2, 4, 6]
    counts = [param_counts(m)["non_embedding"] for m in built]
    assert counts[0] < counts[1] < counts[2]
    with pytest.raises(ValueError, match="multiples of head_dim"):
        family_shapes({"kind": "tiny_widths", "widths": [32, 40], "n_layer": 2, "head_dim": 16})
    with pytest.raises(ValueError, match="unknown key 'n'"):
        family_shapes({"kind": "tiny_widths", "widths": [32], "n_layer": 2, "n": 3})

def test_family_frame_checkpoints_and_order(family):
    _, frame = family
    assert list(frame.columns) == COLUMNS and len(frame) == 2 * len(CHECKPOINTS)
    assert frame.model.tolist() == ["d32-L1"] * 3 + ["big"] * 3                      # smallest first
    assert frame.params_non_embedding.is_monotonic_increasing
    for _, rows in frame.groupby("model"):
        assert rows.target_tokens.tolist() == CHECKPOINTS
        assert rows.tokens.tolist() == [PER_STEP, 3 * PER_STEP, 6 * PER_STEP]   # first step past the target
        assert rows.step.tolist() == [1, 3, 6]
    assert np.array_equal(frame.flops, 6.0 * frame.params_non_embedding * frame.tokens)
    row = frame.iloc[-1]
    model, _ = load_local(row.path)
    counts = param_counts(model)
    assert (counts["total"], counts["non_embedding"]) == (row.params_total, row.params_non_embedding)
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (row.d_model, row.n_layer) == (64, 1)
    early, _ = load_local(frame.iloc[3].path)
    assert not torch.equal(early.gpt_neox.embed_in.weight, model.gpt_neox.embed_in.weight)


def test_second_call_is_a_cache_hit(family, corpus):
    cache, frame = family
    misses, hits = cache.misses, cache.hits
    again = train_family(SHAPES, corpus, CONFIG, CHECKPOINTS, cache=cache)
    assert cache.misses == misses and cache.hits == hits + 2
    assert again.equals(frame)


def test_bad_requests_fail_before_training(corpus, tmp_path):
    cache = Cache(tmp_path)
    for config, checkpoints, message in [(CONFIG, [40, 41], "same optimizer step"),
                                         ({**CONFIG, "steps": 3}, [5 * PER_STEP], "past the training budget"),
                                         ({**CONFIG, "checkpoint_tokens": [64]}, [64], "as `checkpoints`"),
                                         (CONFIG, [], "distinct positive")]:
        with pytest.raises(ValueError, match=message):
            train_family(SHAPES, corpus, config, checkpoints, cache=cache)
    with pytest.raises(ValueError, match="TinySpec keys"):
        train_family([{"width": 3}], corpus, CONFIG, [64], cache=cache)
    assert cache.misses == 0


def test_for_each_checkpoint_is_tidy_and_cached(family, tmp_path):
    train_cache, frame = family
    calls = []

    def probe(model, tokenizer, row, scale=1.0):
        calls.append(row["path"])
        n = sum(p.numel() for p in model.parameters())
        return [{"what": "params", "value": scale * n}, {"what": "vocab", "value": float(len(tokenizer))}]

    cache = Cache(tmp_path)
    out = for_each_checkpoint(frame, probe, args={"scale": 2.0}, cache=cache)
    assert len(calls) == 6 and len(out) == 12 and list(out.columns) == COLUMNS + ["what", "value"]
    params = out[out.what == "params"]
    assert np.array_equal(params.value, 2.0 * params.params_total)
    assert for_each_checkpoint(frame, probe, args={"scale": 2.0}, cache=cache).equals(out) and len(calls) == 6
    for_each_checkpoint(frame.head(1), probe, args={"scale": 3.0}, cache=cache)     # other args: computed again
    assert len(calls) == 7
    held_out = data.pack_blocks(data.zipf_language(20, vocab_size=40, seed=9), tiny_model("0.1M")[1], 16)
    losses = for_each_checkpoint(frame, lambda m, t, r, dataset: {"loss": mean_loss(m, dataset)}, name="loss",
                                 args={"dataset": held_out}, cache=cache)
    first = losses[losses.model == "big"].loss.tolist()
    assert first[0] > first[-1] and not losses.equals(for_each_checkpoint(     # other data: other results
        frame, lambda m, t, r, dataset: {"loss": mean_loss(m, dataset)}, name="loss",
        args={"dataset": held_out.head(3)}, cache=cache))
    with pytest.raises(ValueError, match="already columns"):
        for_each_checkpoint(frame.head(1), lambda m, t, r: {"step": 0}, name="clash", cache=cache)


def test_member_spec_names_local_and_hub_members_alike():
    from caplab.substrate.family import member_spec
    local = pd.DataFrame([{"model": "m", "path": "/runs/m/ckpt-64", "pretrained": None, "revision": None}])
    hub = pd.DataFrame([{"model": "pythia-70m", "path": None, "pretrained": "EleutherAI/pythia-70m",
                         "revision": "step1000"}])
    assert member_spec(next(local.itertuples())) == {"path": "/runs/m/ckpt-64"}
    assert member_spec(hub.iloc[0]) == {"pretrained": "EleutherAI/pythia-70m", "revision": "step1000"}
    with pytest.raises(ValueError, match="needs a `path`"):
        member_spec({"model": "x"})


def test_member_spec_of_a_frame_row_without_revision():
    """A frame mixing rows with and without a revision holds NaN for the missing ones: read as "main"."""
    from caplab.substrate.family import member_spec
    frame = pd.DataFrame([{"pretrained": "a/b", "revision": "step1"}, {"pretrained": "c/d", "revision": None},
                          {"pretrained": "e/f", "revision": np.nan}])
    specs = [member_spec(row) for row in frame.to_dict("records")]
    assert [s["revision"] for s in specs] == ["step1", "main", "main"]
