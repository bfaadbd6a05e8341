"""The training loop learns, freezes, repeats itself for a seed, caches and resumes."""
import pytest
import torch

from caplab.substrate import data, evaluate
from caplab.substrate.cache import Cache
from caplab.substrate.models import tiny_model
from caplab.substrate.train import TrainConfig, train, train_cached

SPEC = {"size": "0.1M", "seed": 0}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="module")
def blocks():
    tok = tiny_model("0.1M")[1]
    return data.pack_blocks(data.zipf_language(400, vocab_size=40, seed=0), tok, 32)


def quick(**kw):
    return TrainConfig(**{"steps": 30, "batch_size": 8, "lr": 3e-3, "warmup_steps": 3, **kw})


def test_loss_falls_on_a_learnable_task(blocks):
    model, _ = tiny_model(SPEC)
    before = evaluate.mean_loss(model, blocks)
    result = train(model, blocks, quick(steps=60))
    assert evaluate.mean_loss(model, blocks) < 0.7 * before
    log = result.log
    assert log.tokens.iloc[-1] == 60 * 8 * 32 == result.tokens
    assert log.flops.iloc[-1] == 6 * result.n_params["non_embedding"] * result.tokens
    assert log.flops_total.iloc[-1] == 6 * result.n_params["total"] * result.tokens
    assert log.lr.iloc[1] < log.lr.iloc[3] and log.lr.iloc[-1] < log.lr.iloc[10]     # warmup, then decay


def test_frozen_tensors_are_bit_identical(blocks):
    model, _ = tiny_model(SPEC)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(model, blocks, quick(steps=5, trainable=("*.mlp.*",)))
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]) != (".mlp." in name), name
    with pytest.raises(ValueError, match="match no parameter"):
        train(model, blocks, quick(steps=1, trainable=("nothing.*",)))


def test_same_seed_same_loss_other_seed_other_loss(blocks):
    def final(seed):
        model, _ = tiny_model(SPEC)
        return train(model, blocks, quick(steps=10, seed=seed)).log.loss.iloc[-1]
    assert final(1) == final(1) != final(2)


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="allowed.*batch_size"):
        TrainConfig.from_dict({"steps": 5, "batchsize": 3})
    with pytest.raises(ValueError, match="exactly one"):
        TrainConfig()
    assert TrainConfig.from_dict({"max_tokens": 100, "trainable": ["a"]}).trainable == ("a",)


def test_answer_only_fine_tuning_counts_non_pad_tokens():
    model, tok = tiny_model(SPEC)
    problems = data.arithmetic(64, (1, 3), seed=0)
    ds = data.pad_examples(problems.prompt.tolist(), problems.answer.tolist(), tok)
    result = train(model, ds, quick(steps=8, batch_size=64))       # one full epoch per step, same rows each time
    assert result.tokens == 8 * int(ds.attention_mask.sum())


class Interrupt(Exception):
    pass


def test_cached_training_is_not_recomputed_and_resumes(tmp_path, blocks):
    config = quick(steps=30, save_every=10, checkpoint_tokens=(5 * 256, 15 * 256, 25 * 256))
    fired = []

    def interrupt_at_third(model, info):
        fired.append(info["target_tokens"])
        if info["target_tokens"] == 25 * 256:
            raise Interrupt

    cache = Cache(tmp_path / "cache")
    with pytest.raises(Interrupt):
        train_cached(SPEC, blocks, config, cache=cache, callbacks=[interrupt_at_third])
    assert fired == [1280, 3840, 6400] and cache.misses == 1
    fired.clear()
    run = train_cached(SPEC, blocks, config, cache=cache, callbacks=[lambda m, i: fired.append(i["target_tokens"])])
    assert fired == [6400, None]               # resumed from step 20: the first two checkpoints were not redone
    assert run.checkpoints.target_tokens.tolist() == [1280, 3840, 6400]
    assert run.summary["tokens"] == 30 * 256 and len(run.log) == 30

    reference = Cache(tmp_path / "reference")  # the same run, never interrupted
    straight = train_cached(SPEC, blocks, config, cache=reference)
    assert run.log.loss.tolist() == straight.log.loss.tolist()
    ids = blocks.input_ids[:2]
    with torch.no_grad():
        assert torch.equal(run.load()[0](input_ids=ids).logits, straight.load()[0](input_ids=ids).logits)
        early, _ = run.load(checkpoint_tokens=3840)
        assert not torch.equal(early(input_ids=ids).logits, straight.load()[0](input_ids=ids).logits)

    fired.clear()
    again = train_cached(SPEC, blocks, config, cache=cache, callbacks=[lambda m, i: fired.append(1)])
    assert again.path == run.path and cache.hits == 1 and fired == []
