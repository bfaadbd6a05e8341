"""Tests of caplab.science.attention_swap, always against the untouched model in its default (sdpa) attention.

Comparing the swap path only with itself proves nothing: a registered attention without a mask function runs with no
causal or padding mask, and a self-comparison still passes. So every equality here is with the model as shipped.
"""
import pytest
import torch
from transformers.masking_utils import AttentionMaskInterface

from caplab.science import attention_swap as S
from caplab.substrate.models import get_model

TOL = 1e-5
FAMILIES = ("llama", "gpt_neox")
TEXTS = ["the cat sat on the mat.", "12+34=46", "hi"]      # unequal lengths: the batch is padded


def tiny(family, seed, n_layer=2):
    model, tok = get_model({"family": family, "d_model": 32, "n_layer": n_layer, "n_head": 2, "seed": seed})
    return model.eval(), tok


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: on a shared 2-core machine, two torch threads wait on each other (~100x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=FAMILIES)
def setup(request):
    """(recipient, donor of the same shape, padded batch) for one family."""
    recipient, tok = tiny(request.param, seed=0)
    donor, _ = tiny(request.param, seed=1)
    batch = tok(TEXTS, return_tensors="pt", padding=True)
    assert (batch["attention_mask"] == 0).any()
    return recipient, donor, batch


@torch.no_grad()
def untouched(model, batch, **kw):
    assert model.config._attn_implementation == "sdpa"
    return model(**batch, **kw)


def real(logits, batch):
    """Logits at real (not padding) positions."""
    return logits[batch["attention_mask"].bool()]


def max_diff(a, b):
    return (a - b).abs().max().item()


def test_own_attention_swapped_in_equals_default_implementation(setup):
    model, _, batch = setup
    reference = untouched(model, batch).logits
    probs = S.record_attention(model, batch)
    assert len(probs) == 2 and probs[0].shape == (3, 2, batch["input_ids"].shape[1], batch["input_ids"].shape[1])
    with S.swap_attention(model, probs), torch.no_grad():
        swapped = model(**batch).logits
    assert max_diff(swapped, reference) < TOL            # right padding: every position, pad queries too


def test_recorded_probabilities_are_causal_and_skip_padding(setup):
    model, _, batch = setup
    for p in S.record_attention(model, batch):
        assert torch.allclose(p.sum(-1), torch.ones(p.shape[:-1]), atol=1e-6)
        assert p.triu(diagonal=1).abs().max() == 0                          # no attention to the future
        assert p[2, :, :, batch["attention_mask"][2] == 0].abs().max() == 0  # none to padding keys


def test_without_the_mask_the_first_test_would_fail(setup, monkeypatch):
    """Sensitivity: the same swap with the mask function unregistered (no causal mask) is far outside TOL."""
    model, _, batch = setup
    reference = untouched(model, batch).logits
    monkeypatch.delitem(AttentionMaskInterface._global_mapping, S.SWAP)
    probs = S.record_attention(model, batch)
    with S.swap_attention(model, probs), torch.no_grad():
        maskless = model(**batch).logits
    assert max_diff(real(maskless, batch), real(reference, batch)) > 100 * TOL


def test_lam_zero_with_a_donor_is_the_untouched_recipient(setup):
    recipient, donor, batch = setup
    reference = untouched(recipient, batch).logits
    assert max_diff(S.swap_outputs(recipient, donor, batch, lam=0.0), reference) < TOL


def test_lam_one_with_a_different_donor_changes_logits(setup):
    recipient, donor, batch = setup
    reference = untouched(recipient, batch).logits
    full = S.swap_outputs(recipient, donor, batch, lam=1.0)
    half = S.swap_outputs(recipient, donor, batch, lam=0.5)
    assert max_diff(real(full, batch), real(reference, batch)) > 100 * TOL
    assert 0 < max_diff(half, reference) < max_diff(full, reference)
    assert torch.isfinite(full).all()


def test_one_layer_swap_changes_only_from_that_layer_on(setup):
    recipient, donor, batch = setup
    before = untouched(recipient, batch, output_hidden_states=True).hidden_states   # embeddings, layer 0, layer 1
    probs = S.record_attention(donor, batch)
    with S.swap_attention(recipient, probs, layers=[1]), torch.no_grad():
        after = recipient(**batch, output_hidden_states=True).hidden_states
    assert max_diff(after[0], before[0]) < TOL and max_diff(after[1], before[1]) < TOL
    assert max_diff(real(after[2], batch), real(before[2], batch)) > 100 * TOL


def test_implementation_restored_after_context_and_exception(setup):
    model, _, batch = setup
    probs = S.record_attention(model, batch)
    with S.swap_attention(model, probs):
        assert model.config._attn_implementation == S.SWAP
    assert model.config._attn_implementation == "sdpa"
    with pytest.raises(ZeroDivisionError):
        with S.swap_attention(model, probs):
            1 / 0
    assert model.config._attn_implementation == "sdpa" and not S._PLANS
    untouched(model, batch)                                   # and it still runs as before


def test_shape_mismatch_says_what_differs(setup):
    recipient, donor, batch = setup
    family = "llama" if "Llama" in type(recipient).__name__ else "gpt_neox"
    deeper, _ = tiny(family, seed=0, n_layer=3)
    with pytest.raises(ValueError, match="layers differ"):
        S.swap_outputs(recipient, deeper, batch)
    probs = S.record_attention(donor, batch)
    shorter = {k: v[:, :-1] for k, v in batch.items()}
    with pytest.raises(ValueError, match="sequence"):
        with S.swap_attention(recipient, probs), torch.no_grad():
            recipient(**shorter)
    assert recipient.config._attn_implementation == "sdpa"


def test_sweep_is_tidy_and_lam_zero_is_the_baseline(setup):
    recipient, donor, batch = setup
    reference = untouched(recipient, batch).logits

    def metric(logits, b):
        return {"drift": max_diff(logits, reference), "mean_logit": logits.mean().item()}

    frame = S.swap_sweep(recipient, donor, [batch], metric, lams=[0.0, 1.0])
    assert list(frame.columns) == ["layer_set", "lam", "drift", "mean_logit", "n"]
    assert set(frame["layer_set"]) == {"all", "layer 0", "layer 1"} and len(frame) == 6
    assert (frame.loc[frame["lam"] == 0, "drift"] < TOL).all()
    assert (frame.loc[frame["lam"] == 1, "drift"] > 100 * TOL).all()
    assert (frame["n"] == 3).all()


def test_uniform_attention_is_what_a_model_without_queries_attends():
    """A llama whose query projections are zero scores every key alike: its recorded (eager, masked) attention is the
    uniform attention over the keys each query may see, padding excluded."""
    model, tok = tiny("llama", seed=0)
    batch = tok(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.zero_()
    recorded = S.record_attention(model, batch)
    uniform = S.uniform_attention(model, batch)
    assert len(uniform) == len(recorded)
    real_q = batch["attention_mask"].bool()
    for r, u in zip(recorded, uniform):
        assert r.shape == u.shape
        assert max_diff(r.transpose(1, 2)[real_q], u.transpose(1, 2)[real_q]) < TOL


def test_swap_grid_rows_match_the_untouched_model_at_lambda_zero(setup):
    import pandas as pd

    model, donor, batch = setup
    batch = {**batch, "labels": batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)}

    def hits(logits, b):
        right = (logits[:, :-1].argmax(-1) == b["labels"][:, 1:]) & (b["labels"][:, 1:] != -100)
        return pd.DataFrame({"hits": right.sum(1).numpy()})

    grid = S.swap_grid(model, {"donor": S.record_attention(donor, batch), "uniform": S.uniform_attention(model, batch)},
                       batch, hits, lams=(0.0, 1.0))
    assert len(grid) == 2 * 3 * 2 * len(TEXTS)          # sources x (all + 2 layers) x lams x rows
    own = hits(untouched(model, batch).logits, batch).hits.to_numpy()
    for _, cell in grid[grid.lam == 0.0].groupby(["source", "layer_set"]):
        assert (cell.sort_values("row").hits.to_numpy() == own).all()
