"""Perturbations: round-to-nearest quantization by hand and against torch.ao, Gaussian noise statistics, copies."""
import pytest
import torch
from torch.ao.quantization.observer import PerChannelMinMaxObserver

from caplab.science import perturb
from caplab.substrate import data
from caplab.substrate.evaluate import mean_loss
from caplab.substrate.models import tiny_model

SPEC = {"d_model": 64, "n_layer": 2, "n_head": 2, "seed": 0}


@pytest.fixture(scope="module")
def model():
    return tiny_model(SPEC)[0].eval()


@pytest.fixture(scope="module")
def blocks():
    return data.pack_blocks(data.zipf_language(60, vocab_size=40, seed=0), tiny_model(SPEC)[1], 32)


def snapshot(m):
    return {n: p.detach().clone() for n, p in m.state_dict().items()}


def assert_untouched(m, before):
    after = m.state_dict()
    assert all(torch.equal(after[n], t) for n, t in before.items())


def logits(m, blocks):
    with torch.no_grad():
        return m(input_ids=blocks.input_ids[:4]).logits


# -- quantization -------------------------------------------------------------------------------------------------
def test_two_and_three_bit_examples_by_hand():
    weight = torch.tensor([[1.0, 0.5, -0.25, -0.75],      # scale 1: 0.5 ties to even (0), -0.75 -> -1
                           [2.0, -3.0, 1.0, 0.0],         # scale 3: 2/3 -> 1, 1/3 -> 0
                           [0.0, 0.0, 0.0, 0.0]])         # all zero: stays zero
    expected = torch.tensor([[1.0, 0.0, 0.0, -1.0], [3.0, -3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert torch.equal(perturb.quantize_tensor(weight, 2), expected)
    three = torch.tensor([[3.0, 1.4, -0.6, 2.5]])          # scale 3/3 = 1: 2.5 ties to even (2)
    assert torch.equal(perturb.quantize_tensor(three, 3), torch.tensor([[3.0, 1.0, -1.0, 2.0]]))
    assert torch.equal(perturb.quantize_tensor(weight.t(), 2, axis=1), expected.t())   # Conv1D layout


@pytest.mark.parametrize("bits", [8, 4, 3, 2])
def test_matches_torch_ao_per_channel_symmetric_fake_quant(bits):
    qmax = 2 ** (bits - 1) - 1
    weight = torch.randn(48, 96, generator=torch.Generator().manual_seed(bits)) * 0.05
    observer = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                        quant_min=-qmax, quant_max=qmax)
    observer(weight)
    scale, zero_point = observer.calculate_qparams()
    reference = torch.fake_quantize_per_channel_affine(weight, scale.float(), zero_point.int(), 0, -qmax, qmax)
    assert torch.equal(perturb.quantize_tensor(weight, bits), reference)
    assert torch.allclose(perturb.row_scales(weight, bits), scale.float())


@pytest.mark.parametrize("bits", [8, 4, 3, 2])
def test_levels_and_scale_per_row(bits):
    qmax = 2 ** (bits - 1) - 1
    weight = torch.randn(32, 200, generator=torch.Generator().manual_seed(0))
    quantized = perturb.quantize_tensor(weight, bits)
    absmax = weight.abs().amax(1, keepdim=True)
    for row in quantized:
        assert len(torch.unique(row)) <= 2 * qmax + 1
    levels = quantized / (absmax / qmax)
    assert torch.allclose(levels, levels.round(), atol=1e-4) and levels.abs().max() <= qmax + 1e-4
    assert torch.allclose(quantized.abs().amax(1, keepdim=True), absmax)        # the row's absmax is kept
    assert torch.allclose(perturb.row_scales(weight, bits), absmax[:, 0] / qmax)


def test_error_grows_as_bits_shrink_and_eight_bits_is_close(model, blocks):
    weight = model.gpt_neox.layers[0].mlp.dense_h_to_4h.weight
    errors = [(perturb.quantize_tensor(weight, b) - weight).pow(2).mean().sqrt() / weight.pow(2).mean().sqrt()
              for b in (8, 4, 3, 2)]
    assert errors[0] < 0.01 and all(a < b for a, b in zip(errors, errors[1:]))
    clean = logits(model, blocks)
    shifts = [(logits(perturb.quantize_rtn(model, b), blocks) - clean).abs().mean() for b in (8, 4, 3, 2)]
    assert shifts[0] < 1e-2 * clean.abs().mean() and all(a < b for a, b in zip(shifts, shifts[1:]))
    loss = mean_loss(model, blocks)
    assert abs(perturb.perturbed_loss(model, blocks, {"kind": "quant", "bits": 8}) - loss) < 1e-3


def test_quantize_returns_a_copy_and_touches_only_the_chosen_tensors(model):
    before = snapshot(model)
    blocks_only = perturb.quantize_rtn(model, 2)
    assert_untouched(model, before)
    changed = {n for n, t in blocks_only.state_dict().items() if not torch.equal(t, before[n])}
    assert changed == set(perturb.select_tensors(model, "blocks"))
    assert changed and all(n.endswith(".weight") and ".layers." in n for n in changed)   # not embeddings, head
    everything = {n for n, t in perturb.quantize_rtn(model, 2, include="all").state_dict().items()
                  if not torch.equal(t, before[n])}
    assert everything == changed | {"gpt_neox.embed_in.weight", "lm_head.weight"}
    with pytest.raises(ValueError, match="not matrices"):
        perturb.quantize_rtn(model, 4, include=("*.bias",))
    with pytest.raises(ValueError, match="bits must be"):
        perturb.quantize_rtn(model, 1)


# -- noise ----------------------------------------------------------------------------------------------------------
def test_noise_has_the_asked_std_relative_and_absolute(model):
    before = snapshot(model)
    params = dict(model.named_parameters())
    noisy = dict(perturb.add_weight_noise(model, 0.1, seed=3).named_parameters())
    for name in perturb.select_tensors(model, "blocks"):
        ratio = (noisy[name] - params[name]).std() / params[name].pow(2).mean().sqrt()
        assert abs(ratio - 0.1) < 0.01, name
    absolute = dict(perturb.add_weight_noise(model, 0.02, seed=3, relative=False, include="all").named_parameters())
    for name in perturb.select_tensors(model, "all"):
        assert abs((absolute[name] - params[name]).std() - 0.02) < 0.002, name
    assert_untouched(model, before)


def test_noise_is_reproducible_by_seed_and_one_draw_per_seed(model):
    before = snapshot(model)
    name = "gpt_neox.layers.1.attention.dense.weight"
    draw = lambda sigma, seed: dict(perturb.add_weight_noise(model, sigma, seed).named_parameters())[name]  # noqa
    weight = dict(model.named_parameters())[name]
    assert torch.equal(draw(0.1, 0), draw(0.1, 0)) and not torch.equal(draw(0.1, 0), draw(0.1, 1))
    assert torch.allclose(draw(0.2, 0) - weight, 2 * (draw(0.1, 0) - weight), atol=1e-6)
    assert torch.equal(draw(0.0, 0), weight)
    assert_untouched(model, before)


def test_loss_grows_with_noise(model, blocks):
    clean = logits(model, blocks)
    shifts = [(logits(perturb.add_weight_noise(model, s, 0), blocks) - clean).abs().mean() for s in (0.01, 0.1, 1)]
    assert shifts[0] < shifts[1] < shifts[2]


# -- specs ----------------------------------------------------------------------------------------------------------
def test_perturbation_specs_are_checked(model, blocks):
    assert perturb.perturbed_loss(model, blocks, {"kind": "none"}) == mean_loss(model, blocks)
    assert perturb.apply_perturbation(model, {"kind": "none"}) is model
    full = perturb.check_perturbation({"kind": "noise", "sigma": 0.05})
    assert full == {"kind": "noise", "sigma": 0.05, "seed": 0, "relative": True, "include": "blocks"}
    for spec, message in [({"kind": "dropout"}, "unknown perturbation kind"),
                          ({"kind": "noise", "sigma": 0.1, "std": 1}, r"unknown keys \['std'\]"),
                          ({"kind": "noise"}, r"needs \['sigma'\]"),
                          ({"kind": "noise", "sigma": -1}, "sigma must be"),
                          ({"kind": "quant", "bits": 4.5}, "bits must be"),
                          ({"kind": "quant", "bits": 4, "include": "heads"}, "include must be"),
                          ({"sigma": 0.1}, "with a 'kind'")]:
        with pytest.raises(ValueError, match=message):
            perturb.perturbed_loss(model, blocks, spec)
