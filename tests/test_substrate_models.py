"""Tiny model factory, parameter counts, local save/load, and offline loading of real models."""
import pytest
import torch

from caplab.substrate.models import (ModelNotAvailable, TinySpec, get_model, load_local, load_pretrained,
                                     param_counts, tiny_model)

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def test_non_embedding_count_matches_hand_formula():
    model, tok = tiny_model("0.1M")             # GPTNeoX d64 L2: per layer 12 d^2 + 13 d, final norm 2 d
    d, n_layer, vocab = 64, 2, len(tok)
    counts = param_counts(model)
    assert counts["non_embedding"] == n_layer * (12 * d * d + 13 * d) + 2 * d
    assert counts["total"] == counts["non_embedding"] + 2 * vocab * d      # embedding + untied unembedding
    assert param_counts(tiny_model({"size": "1M", "family": "llama"})[0])["non_embedding"] == pytest.approx(1e6, rel=.1)


def test_seed_decides_init_and_bad_specs_fail_early():
    a, b, c = (tiny_model(TinySpec(size="0.1M", seed=s))[0] for s in (0, 0, 1))
    w = "gpt_neox.layers.0.attention.query_key_value.weight"
    assert torch.equal(a.state_dict()[w], b.state_dict()[w]) and not torch.equal(a.state_dict()[w], c.state_dict()[w])
    with pytest.raises(ValueError, match="presets"):
        TinySpec(size="7M")
    with pytest.raises(ValueError, match="either size"):
        TinySpec(size="1M", d_model=64)
    with pytest.raises(ValueError, match="allowed"):
        get_model({"size": "1M", "widht": 3})


@pytest.mark.parametrize("family", ["gpt_neox", "llama"])
def test_save_and_from_pretrained_give_identical_logits(tmp_path, family):
    model, tok = tiny_model({"size": "0.1M", "family": family, "seed": 3})
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again, tok2 = load_local(tmp_path)
    ids = tok(["12+34=46", "abc"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model.eval()(**ids).logits, again(**ids).logits)
    assert tok2("12+34=").input_ids == tok("12+34=").input_ids


def test_offline_missing_model_names_id_and_revision(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotAvailable) as err:
        load_pretrained("EleutherAI/pythia-160m", revision="step3000")
    message = str(err.value)
    assert "EleutherAI/pythia-160m" in message and "step3000" in message and "download" in message


def test_loads_from_hub_cache_layout_offline(tmp_path, monkeypatch):
    repo = tmp_path / "hub" / "models--EleutherAI--pythia-160m"
    snapshot = repo / "snapshots" / SHA
    model, tok = tiny_model("0.1M")
    model.save_pretrained(snapshot)
    tok.save_pretrained(snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "step3000").write_text(SHA)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    loaded, tok2 = get_model({"pretrained": "EleutherAI/pythia-160m", "revision": "step3000"})
    ids = torch.tensor([tok("1+1=2").input_ids])
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, model.eval()(input_ids=ids).logits)
    with pytest.raises(ModelNotAvailable, match="step9"):
        load_pretrained("EleutherAI/pythia-160m", revision="step9")
