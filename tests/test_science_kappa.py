"""Tests of caplab.science.kappa: condition numbers, selection, agreement with PEFT, budgets, the entropy claim."""
import math

import pandas as pd
import pytest
import torch
from torch import nn

from caplab.science import kappa as K


def known_matrix(singular_values, rows=None, seed=0):
    """U diag(s) V^T with random orthonormal U (rows x n) and V (n x n)."""
    s = torch.tensor(singular_values, dtype=torch.float64)
    n = len(s)
    gen = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(rows or n, n, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return u @ torch.diag(s) @ v.T


def tiny_llama(tied=False):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, vocab_size=128,
                                        tie_word_embeddings=tied))


def tiny_gptneox():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    return GPTNeoXForCausalLM(GPTNeoXConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                            num_attention_heads=4, vocab_size=128))


MODELS = {"llama": tiny_llama, "llama-tied": lambda: tiny_llama(tied=True), "gptneox": tiny_gptneox}


@pytest.fixture(scope="module", params=list(MODELS))
def model(request):
    return MODELS[request.param]()


def test_kappa_of_known_spectrum():
    w = known_matrix([9.0, 4.0, 2.0, 0.5], rows=6).float()
    kappa, smax, smin = K.matrix_kappa(w)
    assert kappa == pytest.approx(18.0, rel=1e-5)
    assert (smax, smin) == (pytest.approx(9.0, rel=1e-5), pytest.approx(0.5, rel=1e-5))


class Stack(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 4)  # a dimension of 50: over the size rule below
        self.proj = nn.Linear(4, 3)  # weight (3, 4) eligible, bias 1-D
        self.conv = nn.Conv1d(2, 3, kernel_size=2)  # weight (3, 2, 2): reshaped to (3, 4)
        with torch.no_grad():
            self.proj.weight.copy_(known_matrix([5.0, 2.0, 1.0], rows=4).T)


def test_condition_numbers_skips_1d_and_oversize():
    frame = K.condition_numbers(Stack(), max_dim_size_to_analyze=4)  # boundary: 4 is kept
    assert list(frame["name"]) == ["proj.weight", "conv.weight"]
    assert frame.attrs["skipped"] == {"embed.weight": "dimension>4", "proj.bias": "ndim<2", "conv.bias": "ndim<2"}
    proj = frame.set_index("name").loc["proj.weight"]
    assert proj["kappa"] == pytest.approx(5.0, rel=1e-5) and proj["is_linear"] and proj["numel"] == 12
    assert frame.set_index("name").loc["conv.weight", "shape"] == (3, 2, 2)
    assert "embed.weight" in set(K.condition_numbers(Stack(), max_dim_size_to_analyze=None)["name"])


def test_tensor_names_to_type_and_layer(model):
    frame = K.condition_numbers(model)
    assert not (frame["tensor_type"] == "other").any()
    assert set(frame["layer"].dropna()) == {0, 1}
    assert K.tensor_type("gpt_neox.layers.3.attention.dense.weight") == "attn-out"
    assert K.layer_index("model.layers.12.mlp.up_proj.weight") == 12 and K.layer_index("lm_head.weight") is None


def test_selection_order_and_ties():
    frame = pd.DataFrame({"name": list("abcde"), "kappa": [3.0, 1.0, 3.0, 1.0, 2.0], "numel": [1] * 5})
    assert list(K.select_tensors(frame, 3, "lowest")["name"]) == ["b", "d", "e"]
    assert list(K.select_tensors(frame, 3, "highest")["name"]) == ["a", "c", "e"]
    picked = K.select_tensors(frame, 3, "random", seed=1)
    assert list(picked["name"]) == list(K.select_tensors(frame, 3, "random", seed=1)["name"])
    assert list(picked["name"]) == sorted(picked["name"]) and len(set(picked["name"])) == 3


@pytest.mark.parametrize("kwargs, message", [(dict(k=2, how="best"), "how='best'"), (dict(k=9), "k=9"),
                                             (dict(k=2, how="random"), "seed=None")])
def test_selection_bad_input(kwargs, message):
    frame = pd.DataFrame({"name": list("abc"), "kappa": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match=message):
        K.select_tensors(frame, **kwargs)


@pytest.mark.parametrize("budget", [dict(), dict(top_p=0.5), dict(num_modules=5), dict(max_dim_size_to_analyze=100)])
def test_agrees_with_peft_selector(model, budget):
    ours, theirs = K.select_modules_like_peft(model, **budget), K.peft_selection(model, **budget)
    agreement = K.selection_agreement(ours, theirs)
    assert agreement["equal"] and agreement["jaccard"] == 1.0, agreement
    assert ours["target_parameters"] is None


def test_agreement_counts_differences():
    agreement = K.selection_agreement(["a", "b", "c"], {"target_modules": ["b", "a", "d"]})
    assert not agreement["equal"] and agreement["overlap"] == 2 and agreement["jaccard"] == 0.5
    assert agreement["only_ours"] == ["c"] and agreement["only_theirs"] == ["d"]


def test_fused_moe_parameters_like_peft():
    class Experts(nn.Module):
        def __init__(self, kappas_up, kappas_down):
            super().__init__()
            stack = lambda kappas: torch.stack([known_matrix([k, 1.0, 1.0, 1.0], seed=i) for i, k in enumerate(kappas)])
            self.gate_up_proj = nn.Parameter(stack(kappas_up).float())
            self.down_proj = nn.Parameter(stack(kappas_down).float())
            self.router = nn.Linear(4, 2)

    # per-expert kappas: mean ranks up0 (6) < up1 (7) < down1 (8) < down0 (9); the max would rank them otherwise
    model = nn.Sequential(Experts([2.0, 10.0], [9.0, 9.0]), Experts([7.0, 7.0], [4.0, 12.0]))
    ours, theirs = K.select_modules_like_peft(model, top_p=1.0), K.peft_selection(model, top_p=1.0)
    assert ours == theirs
    assert ours["target_parameters"] == ["0.gate_up_proj", "1.gate_up_proj", "1.down_proj", "0.down_proj"]


def test_lora_rank_count_matches_peft(model):
    table = K.budget_table(model, k=4, seed=0)
    lora = table.set_index("arm").loc["lora-all-linear"]
    assert lora["trainable_params"] == K.peft_lora_parameter_count(model, int(lora["lora_rank"]))
    lowest = table.set_index("arm").loc["lowest", "trainable_params"]
    per_rank = K.lora_parameter_count(model, 1)
    assert abs(lora["trainable_params"] - lowest) <= per_rank / 2
    assert list(table["arm"]) == ["lowest", "highest", "random", "lora-all-linear", "full"]


def test_entropy_closed_form_on_known_matrix():
    sigma = [3.0, 1.5, 0.7, 0.2, 0.05]
    expected = 0.5 * len(sigma) * math.log(2 * math.pi * math.e) + sum(math.log(s) for s in sigma)
    assert K.gaussian_output_entropy(known_matrix(sigma)) == pytest.approx(expected, abs=1e-9)


def test_entropy_monte_carlo_and_relation():
    frame = K.entropy_monte_carlo(n=60, dim=8, frobenius_norm=2.0, seed=3)
    assert (frame["frobenius_norm"] - 2.0).abs().max() < 1e-9
    assert (frame["entropy"] - frame["entropy_closed_form"]).abs().max() < 1e-8
    assert frame.loc[frame["kappa"].idxmin(), "entropy"] == frame["entropy"].max()  # flat spectrum: max entropy
    relation = K.entropy_relation(frame, n_boot=300)
    assert relation["ci_low"] <= relation["rho"] <= relation["ci_high"] < 0
    assert 0.5 < relation["frac_pairs_higher_kappa_lower_entropy"] <= 1.0
    assert relation["n_pairs"] == 60 * 59 // 2
    with pytest.raises(ValueError, match="spectrum='flat'"):
        K.entropy_monte_carlo(spectrum="flat")


def shapes_frame():
    """Eight tensors in two shapes whose kappas interleave: lowest overall are both shapes' lowest."""
    return pd.DataFrame({"name": [f"t{i}" for i in range(8)],
                         "shape": [(4, 2)] * 4 + [(2, 2)] * 4,
                         "kappa": [1.0, 5.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0], "numel": [8] * 4 + [4] * 4})


def test_shape_matched_selection_keeps_the_reference_shapes():
    frame = shapes_frame()
    lowest = K.select_tensors(frame, 3, "lowest")                 # t0 (4x2), t4 (2x2), t2 (4x2)
    assert list(lowest["name"]) == ["t0", "t4", "t2"]
    high = K.shape_matched(frame, lowest["name"], "highest")
    assert list(high["name"]) == ["t3", "t1", "t5"]               # two of 4x2, one of 2x2, each its highest
    assert sorted(high["shape"]) == sorted(lowest["shape"]) and high["numel"].sum() == lowest["numel"].sum()
    draws = {tuple(K.shape_matched(frame, lowest["name"], "random", seed=s)["name"]) for s in range(20)}
    assert len(draws) > 3 and all(sorted(frame.set_index("name").loc[list(d), "numel"]) == [4, 8, 8] for d in draws)
    with pytest.raises(ValueError, match="not in kappa_frame"):
        K.shape_matched(frame, ["t0", "nope"], "highest")


def test_finetune_arms_budgets_and_roles():
    model = tiny_llama()
    frame = K.condition_numbers(model)
    candidates = frame[frame.is_linear].reset_index(drop=True)
    arms, table = K.finetune_arms(model, candidates, 3, seed=0, lr_tensors=1e-3, lr_lora=4e-3)
    by_role = table.set_index("role")
    assert list(table.arm) == [a.name for a in arms] == list(K.ARMS.values())
    named = dict(zip(table.role, arms))
    lowest = K.select_tensors(candidates, 3, "lowest")
    assert named["lowest"].tensors == tuple(lowest["name"])
    shapes = candidates.set_index("name")["shape"]
    for role in ("high_matched", "random_matched"):        # same shapes and size as the lowest-kappa arm
        assert sorted(shapes[list(named[role].tensors)]) == sorted(lowest["shape"])
        assert by_role.trainable_params[role] == by_role.trainable_params["lowest"]
    assert by_role.trainable_params["lora"] == K.peft_lora_parameter_count(model, int(by_role.lora_rank["lora"]))
    per_rank_all = K.lora_parameter_count(model, 1)
    assert abs(by_role.trainable_params["lora"] - by_role.trainable_params["lowest"]) <= per_rank_all / 2
    kt = named["kappatune_lora"]                            # LoRA on the lowest-kappa modules, LoRA-all's budget
    assert kt.lora_targets == tuple(n.rsplit(".", 1)[0] for n in lowest["name"]) and kt.lr == 4e-3
    per_rank_kt = sum(sum(dict(model.named_modules())[m].weight.shape) for m in kt.lora_targets)
    assert by_role.trainable_params["kappatune_lora"] == kt.lora_rank * per_rank_kt
    assert abs(by_role.trainable_params["kappatune_lora"] - by_role.trainable_params["lora"]) <= per_rank_kt / 2
    assert by_role.confound["high_whole"] and not by_role.confound["high_matched"]
    other, _ = K.finetune_arms(model, candidates, 3, seed=1, lr_tensors=1e-3, lr_lora=4e-3,
                               roles=("lowest", "random_matched"))
    assert [a.name for a in other] == [K.ARMS["lowest"], K.ARMS["random_matched"]]
    assert K.lora_sweep_arms(model, candidates, 3, [1e-3, 1e-2])[1].lora_rank == int(by_role.lora_rank["lora"])
    with pytest.raises(ValueError, match="allowed roles"):
        K.finetune_arms(model, candidates, 3, seed=0, lr_tensors=1e-3, lr_lora=4e-3, roles=("best",))
