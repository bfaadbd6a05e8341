"""Selective fine-tuning arms and forgetting at a matched fit."""
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from caplab.science.forgetting import (Arm, common_target, compare_arms, forgetting_at_fit, format_floor,
                                       read_at_fit, summarize, trajectory)
from caplab.substrate.cache import Cache
from caplab.substrate.models import get_model
from caplab.substrate.tasks import load_task
from caplab.substrate.train import TrainConfig

BASE = {"family": "llama", "d_model": 32, "n_layer": 2, "n_head": 2, "max_seq_len": 64, "seed": 0}


def test_read_at_fit_interpolates_where_the_fit_first_reaches_the_target():
    run = pd.DataFrame({"tokens": [0, 100, 200, 300], "fit_b": [3.0, 2.0, 1.0, 1.5],
                        "control_a": [1.0, 1.2, 1.6, 2.0]})
    at = read_at_fit(run, 1.5)                     # halfway between the 2nd and 3rd evaluation
    assert at["control_a"] == pytest.approx(1.4) and at["tokens"] == pytest.approx(150)
    assert np.isnan(read_at_fit(run, 0.5)["control_a"])     # never reached
    run["exact_b"] = [0.0, 0.2, 0.6, 0.5]
    assert read_at_fit(run, 1.5)["exact_b"] == pytest.approx(0.4)
    forgot = forgetting_at_fit(run.assign(arm="a", seed=0, trainable=5), 0.5)
    assert not forgot.reached.iloc[0] and np.isnan(forgot.forgetting.iloc[0]) and forgot.best_fit_b.iloc[0] == 1.0


def test_format_floor_is_the_answer_entropy_per_scored_token():
    _, tok = get_model(BASE)
    train = ["ab"] * 6 + ["cde"] * 2                     # frequencies 3/4 and 1/4
    fit = ["ab", "cde"]                                  # scored: 2 + 1 and 3 + 1 tokens (the answer and <eos>)
    floor = format_floor(train, fit, tok)
    assert floor["floor"] == pytest.approx((np.log(4 / 3) + np.log(4)) / 7) and floor["exact"] == 0.5
    with pytest.raises(ValueError, match="not among the training answers"):
        format_floor(train, ["zz"], tok)


def test_forgetting_and_paired_comparison_match_scipy():
    rows = []
    for arm, slope in [("low", 0.1), ("high", 0.3)]:
        for seed, noise in enumerate([0.0, 0.05, -0.02]):
            for t, fit in enumerate([3.0, 2.0, 1.0]):
                rows.append({"arm": arm, "seed": seed, "tokens": 100 * t, "fit_b": fit,
                             "control_a": 1.0 + (slope + noise) * t, "trainable": 10})
    traj = pd.DataFrame(rows)
    target = common_target(traj)
    assert target == 1.0
    forgot = forgetting_at_fit(traj, target)
    assert forgot.set_index(["arm", "seed"]).forgetting[("high", 1)] == pytest.approx(2 * 0.35)
    comparison = compare_arms(forgot, "low").iloc[0]
    wide = forgot.pivot(index="seed", columns="arm", values="forgetting")
    t = stats.ttest_rel(wide["low"], wide["high"])
    assert comparison.p_value == pytest.approx(t.pvalue) and comparison.mean_diff == pytest.approx(-0.4)
    assert comparison.lo < -0.4 < comparison.hi
    assert summarize(forgot).set_index("arm").loc["low", "n"] == 3


@pytest.fixture(scope="module")
def small_data():
    _, tok = get_model(BASE)
    task = load_task({"kind": "arithmetic", "n": 64, "n_digits": 2, "seed": 0})
    control = load_task({"kind": "zipf_language", "n_sentences": 80, "vocab_size": 30, "seed": 0})
    return task.tokens(tok), task.subset(range(16)).tokens(tok), control.tokens(tok, block_size=32).head(8)


@pytest.mark.parametrize("arm", [Arm("two", "tensors", tensors=("model.layers.0.mlp.up_proj.weight",
                                                                   "model.layers.1.self_attn.q_proj.weight")),
                                 Arm("lora", "lora", lora_rank=2, lr=4e-3), Arm("full", "full"),
                                 Arm("lora-two", "lora", lora_rank=3, lr=4e-3,
                                     lora_targets=("model.layers.0.mlp.up_proj", "model.layers.1.self_attn.q_proj"))],
                         ids=lambda a: a.name)
def test_trajectory_runs_is_cached_and_trains_what_the_arm_says(tmp_path, small_data, arm):
    train_b, fit_b, control = small_data
    cache = Cache(tmp_path)
    config = TrainConfig(steps=6, batch_size=8, warmup_steps=1)
    first = trajectory(BASE, arm, train_b, fit_b, control, config, seed=0, eval_every_tokens=40, cache=cache)
    assert first.tokens.iloc[0] == 0 and len(first) >= 3 and first.fit_b.iloc[-1] < first.fit_b.iloc[0]
    assert first.exact_b.between(0, 1).all()
    model, _ = get_model(BASE)
    modules = dict(model.named_modules())
    expected = {"two": sum(dict(model.named_parameters())[n].numel() for n in arm.tensors),
                "full": sum(p.numel() for p in model.parameters()),
                "lora-two": 3 * sum(sum(modules[m].weight.shape) for m in arm.lora_targets)}.get(arm.name)
    if expected is not None:
        assert (first.trainable == expected).all()
    else:   # LoRA on all linears: rank * (in + out) per adapted layer, the lm_head excluded
        assert first.trainable.iloc[0] == 2 * sum(m.in_features + m.out_features for name, m in model.named_modules()
                                                  if isinstance(m, torch.nn.Linear) and name != "lm_head")
    again = trajectory(BASE, arm, train_b, fit_b, control, config, seed=0, eval_every_tokens=40, cache=cache)
    assert cache.hits == 1 and again.equals(first)


def test_bad_arms_are_rejected():
    with pytest.raises(ValueError, match="kind must be one of"):
        Arm("x", "adapters")
    with pytest.raises(ValueError, match="needs lora_rank"):
        Arm("x", "lora")
    with pytest.raises(ValueError, match="at least one tensor"):
        Arm("x", "tensors")
    with pytest.raises(ValueError, match="lora_targets are for a 'lora' arm"):
        Arm("x", "full", lora_targets=("a",))
