"""The training-memory plan (`caplab.substrate.memory`): its static part equals the tensors an AdamW step holds, its
activation bound holds (and is at most 2.5x loose) for the real architecture classes, gradient checkpointing changes
nothing but memory, and a run that cannot fit is refused before any compute."""
import pytest
import torch
import transformers

from caplab.substrate import memory
from caplab.substrate.data import TokenDataset
from caplab.substrate.train import TrainConfig, train

CONFIGS = {
    "gpt_neox": transformers.GPTNeoXConfig(hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                                           intermediate_size=256, vocab_size=300),
    "llama": transformers.LlamaConfig(hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                                      num_key_value_heads=4, intermediate_size=172, vocab_size=300),
    "opt": transformers.OPTConfig(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, ffn_dim=256,
                                  vocab_size=300, word_embed_proj_dim=64),
}


def _model(kind, seed=0):
    torch.manual_seed(seed)
    return transformers.AutoModelForCausalLM.from_config(CONFIGS[kind])


def _saved_bytes(model, ids, autocast=False):
    """Bytes of the distinct storages autograd saves for the backward pass (parameters excluded)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    model.train()
    context = torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), context:
        model(input_ids=ids, labels=ids).loss.backward()
    return sum(seen.values())


def _counts(model):
    n = sum(p.numel() for p in model.parameters())
    return dict(n_params=n, n_trainable=n)


def test_static_part_is_the_tensors_of_an_adamw_step():
    model = _model("gpt_neox")
    ids = torch.randint(0, 300, (2, 16))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    size = lambda ts: sum(t.numel() * t.element_size() for t in ts)  # noqa: E731
    held = {"weights": size(model.parameters()), "grads": size(p.grad for p in model.parameters()),
            "optimizer": size(s[k] for s in opt.state.values() for k in ("exp_avg", "exp_avg_sq"))}
    need = memory.training_bytes(model.config, **_counts(model), tokens=32, autocast=False)
    assert (need.weights, need.grads, need.optimizer, need.weight_casts) == (*held.values(), 0)
    half = memory.training_bytes(model.config, n_params=1000, n_trainable=10, tokens=32, autocast=True)
    assert (half.weights, half.grads, half.optimizer, half.weight_casts) == (4000, 40, 80, 2000)


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_activation_bound_holds_within_a_factor_2_5(kind):
    model = _model(kind)
    ids = torch.randint(0, 300, (4, 32))
    need = memory.training_bytes(model.config, **_counts(model), tokens=ids.numel(), autocast=False)
    measured = _saved_bytes(model, ids)
    assert measured <= need.activations <= 2.5 * measured
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert _saved_bytes(model, ids) <= need.activations_checkpointed < need.activations
    bf16 = memory.training_bytes(model.config, **_counts(model), tokens=ids.numel(), autocast=True)
    assert _saved_bytes(_model(kind), ids, autocast=True) <= bf16.activations + bf16.weight_casts   # casts saved too


def test_checkpointing_changes_nothing_but_memory():
    ids = torch.randint(0, 300, (16, 24))
    data = TokenDataset(ids, torch.ones(16, 24, dtype=torch.long), ids)
    config = dict(steps=3, batch_size=4, lr=3e-3, warmup_steps=0, grad_clip=1.0, device="cpu")
    runs = []
    for checkpointing in (False, True):
        model = _model("llama")
        result = train(model, data, TrainConfig(**config, gradient_checkpointing=checkpointing))
        assert not model.is_gradient_checkpointing                 # left as it was found
        runs.append((model, result.log))
    (plain, plain_log), (ckpt, ckpt_log) = runs
    assert plain_log.loss.tolist() == pytest.approx(ckpt_log.loss.tolist(), abs=1e-6)
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_strategy_on_the_named_models():
    pythia_12b = transformers.GPTNeoXConfig(hidden_size=5120, num_hidden_layers=36, num_attention_heads=40,
                                            intermediate_size=20480, vocab_size=50688)
    need = memory.training_bytes(pythia_12b, n_params=11_846_072_320, n_trainable=11_846_072_320, tokens=4 * 512,
                                 autocast=True)
    assert need.static == pytest.approx(18 * 11_846_072_320)
    with pytest.raises(MemoryError, match="at least 2 of them"):
        memory.strategy(need, 141e9)
    assert memory.gpus_needed(need, 80e9) == 4
    pythia_410m = transformers.GPTNeoXConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                             intermediate_size=4096, vocab_size=50304)
    long = memory.training_bytes(pythia_410m, n_params=405_334_016, n_trainable=405_334_016, tokens=16 * 2048,
                                 autocast=True)
    assert [memory.strategy(long, gb * 1e9) for gb in (141, 40)] == ["full", "checkpointing"]


def test_a_run_that_cannot_fit_is_refused_before_compute(monkeypatch):
    model = _model("gpt_neox")
    before = [p.detach().clone() for p in model.parameters()]
    data = TokenDataset(torch.randint(0, 300, (8, 16)), torch.ones(8, 16, dtype=torch.long),
                        torch.randint(0, 300, (8, 16)))
    monkeypatch.setattr(memory, "device_bytes", lambda device: 1e5)       # a device far too small
    with pytest.raises(MemoryError, match="gradient checkpointing"):
        train(model, data, TrainConfig(steps=2, batch_size=4, device="cpu"))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    need = memory.training_bytes(model.config, **_counts(model), tokens=4 * 16, autocast=False)
    monkeypatch.setattr(memory, "device_bytes", lambda device: need.total(True) / memory.HEADROOM + 1)
    enabled = []
    monkeypatch.setattr(model, "gradient_checkpointing_enable", lambda **kw: enabled.append(kw))
    train(model, data, TrainConfig(steps=1, batch_size=4, device="cpu"))    # fits only with checkpointing: trained
    assert enabled
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_trainer_flags_follow_the_plan(monkeypatch):
    model = _model("llama")
    assert memory.trainer_flags(model, tokens=256, device="cpu", autocast=False) == {"gradient_checkpointing": False}
    need = memory.training_bytes(model.config, **_counts(model), tokens=256, autocast=True,
                                 frozen_params=_counts(model)["n_params"])
    for room, expected in ((need.total() * 2, False), (need.total(True) / memory.HEADROOM + 1, True)):
        monkeypatch.setattr(memory, "device_bytes", lambda device, room=room: room)
        flags = memory.trainer_flags(model, tokens=256, device="cuda", autocast=True,
                                     frozen_params=_counts(model)["n_params"])
        assert flags == {"gradient_checkpointing": expected}
    monkeypatch.setattr(memory, "device_bytes", lambda device: 1e4)
    with pytest.raises(MemoryError):
        memory.trainer_flags(model, tokens=256, device="cuda", autocast=True)
