"""`make bench`'s machinery on one small size: the step profile accounts for the step's time, every strategy runs."""
import pytest

from caplab import bench
from caplab.step_profile import kind_of


@pytest.mark.parametrize("op, kind", [
    ("aten::mm", "matmul"), ("aten::addmm", "matmul"),
    ("aten::_scaled_dot_product_flash_attention_for_cpu_backward", "attention"),
    ("aten::native_layer_norm_backward", "normalisation"), ("aten::gelu_backward", "elementwise"),
    ("aten::_log_softmax_backward_data", "loss"), ("aten::embedding_dense_backward", "embedding"),
    ("aten::_unsafe_view", "views and indexing"), ("aten::some_new_op", "other operators")])
def test_operators_are_sorted_into_kinds(op, kind):
    assert kind_of(op) == kind


def test_bench_profiles_and_measures_every_strategy():
    result = bench.run("cpu", sizes={"25k": 3}, profile_steps=3, matmul_n=512, corpus_docs=300, fit_evals=3)
    (profile,) = result["profiles"]
    assert 15_000 < profile["non_embedding"] < 40_000
    kinds, phases = profile["kinds"], profile["phases"]
    # the kinds partition the step: they add up to the step's wall time, and so do the phases
    assert sum(kinds.values()) == pytest.approx(profile["step_s"], rel=0.02)
    assert sum(phases.values()) == pytest.approx(profile["step_s"], rel=0.02)
    assert kinds["matmul"] > 0 and kinds["attention"] > 0 and kinds["optimizer and clipping"] > 0
    assert phases["step.backward"] > 0 and phases["step.forward"] > 0
    strategies = {row["strategy"]: row for row in result["training"]}
    assert len(strategies) == 3
    for row in strategies.values():
        assert "error" not in row, row
        assert row["tokens_per_s"] > 0 and 0 < row["fraction_of_peak"] < row["model_fraction_of_peak"] < 1.5
    text = bench.table(result)
    assert "framework and Python" in text and "processes x 1 thread" in text
    methods = {(row["law"], row["gradient"]) for row in result["fitting"]}
    assert methods == {(law, f"exact gradient ({how})") for law in ("Chinchilla", "Shannon")
                       for how in ("compiled by sympy", "dual numbers")}
    assert all(row["ms_per_evaluation"] > 0 for row in result["fitting"]) and "ms/eval" in text



def test_model_flops_match_torch_flop_counter():
    """The bench's model FLOPs per token against torch's own count of one forward and backward pass. torch counts
    the matmuls, not the CPU's fused attention kernel; with attention as explicit matmuls ("eager") it counts the
    full square, twice the causal half the formula counts."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from caplab.substrate import models

    def counted(model, ids):
        with FlopCounterMode(display=False) as counter:
            model(input_ids=ids, labels=ids).loss.backward()
        return counter.get_total_flops() / ids.numel()

    for size in ("25k", "100k"):
        model, _ = models.tiny_model(bench.shape_of(size))
        ids = torch.randint(0, model.config.vocab_size, (2, bench.SEQ))
        causal_attention = 6 * model.config.num_hidden_layers * bench.SEQ * model.config.hidden_size
        fused = counted(model, ids)
        model.set_attn_implementation("eager")
        explicit = counted(model, ids)
        formula = bench.model_flops_per_token(model, bench.SEQ)
        assert formula - causal_attention == pytest.approx(fused, rel=1e-9)
        assert explicit - fused == pytest.approx(2 * causal_attention, rel=1e-9)
