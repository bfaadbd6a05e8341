"""Evaluation-time perturbations of a trained model: Gaussian weight noise and round-to-nearest quantization.

Each perturbation returns a perturbed *copy* (`copy.deepcopy`); the input model is never modified.

Which tensors (`include`, the same choices for both perturbations):
- `"blocks"` (default): the weight matrix of every linear layer except the output projection (unembedding), i.e. the
  attention and MLP matrices, the tensors behind the non-embedding parameter count N (Kaplan). This is also what
  GPTQ-style weight quantization of Pythia touches (lm_head and embeddings stay in 16 bit).
- `"linear"`: every linear layer's weight, the output projection included.
- `"all"`: every matrix of the model: linear weights plus the token (and positional) embeddings.
- a tuple of parameter names or fnmatch patterns (e.g. `("*.mlp.*weight",)`): exactly those tensors; any shape for
  noise, matrices only for quantization.
Biases and normalisation parameters are left alone by the three named sets.

Gaussian noise: `W + s * eps`, `eps ~ N(0, 1)` drawn on the cpu from a generator seeded by (seed, tensor name), so a
tensor's noise does not depend on which other tensors are included, and for one seed every sigma scales the same
draw (common random numbers: loss-vs-sigma curves are smooth). `relative=True`: `s = sigma * RMS(W)` per tensor
(RMS, not std: the two agree for the zero-mean weight matrices perturbed here); `relative=False`: `s = sigma`.

Round-to-nearest quantization (fake-quant): symmetric, one scale per row = output channel,
`scale = absmax(row) / (2^(b-1) - 1)`, `q = clamp(round(W / scale), -(2^(b-1) - 1), 2^(b-1) - 1)`, back to `q * scale`
in the model's dtype. So a row takes at most 2^b - 1 distinct values, zero is exact, and the row's largest weight is
kept exactly; ties round half to even (`torch.round`). A row of zeros stays zero. Rows are output channels: dim 0 of
an `nn.Linear` weight `[out, in]` and of an embedding `[vocab, d]`; dim 1 of a transformers `Conv1D` `[in, out]`.
"""
from __future__ import annotations

import copy
import fnmatch
import hashlib
from typing import Any

import torch
from torch import nn

from caplab.substrate.data import TokenDataset
from caplab.substrate.evaluate import mean_loss

INCLUDE_SETS = ("blocks", "linear", "all")
PERTURBATIONS: dict[str, dict[str, Any]] = {      # kind -> its keys and their defaults (None: required)
    "none": {},
    "noise": {"sigma": None, "seed": 0, "relative": True, "include": "blocks"},
    "quant": {"bits": None, "include": "blocks"},
}


# -- which tensors --------------------------------------------------------------------------------------------
def _is_conv1d(module: nn.Module) -> bool:
    return type(module).__name__ == "Conv1D"         # transformers.pytorch_utils.Conv1D (GPT-2): weight [in, out]


def select_tensors(model: nn.Module, include: str | tuple[str, ...] | list[str] = "blocks") -> dict[str, int]:
    """The tensors an `include` choice names, as `{parameter name: output-channel axis}` (module order)."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if isinstance(include, str):
        if include not in INCLUDE_SETS:
            raise ValueError(f"include must be one of {INCLUDE_SETS} or a tuple of name patterns, got {include!r}")
        by_id = {id(p): n for n, p in model.named_parameters()}      # tied weights: listed once, first name
        chosen = {}
        for module in model.modules():
            linear = isinstance(module, nn.Linear) or _is_conv1d(module)
            wanted = ((linear and module is not output) if include == "blocks" else linear if include == "linear"
                      else linear or isinstance(module, nn.Embedding))
            weight = getattr(module, "weight", None)
            if wanted and isinstance(weight, nn.Parameter) and id(weight) in by_id:
                chosen.setdefault(by_id[id(weight)], 1 if _is_conv1d(module) else 0)
        if not chosen:
            raise ValueError(f"include={include!r} selects no tensor of this {type(model).__name__}")
        return chosen
    patterns = tuple(include)
    names = [name for name, _ in model.named_parameters()]
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in names)]
    if not patterns or unmatched:
        raise ValueError(f"include patterns {unmatched or patterns} match no parameter; names look like {names[:5]}")
    conv1d = {f"{m}.weight" for m, module in model.named_modules() if _is_conv1d(module)}
    return {n: int(n in conv1d) for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)}


# -- Gaussian weight noise -------------------------------------------------------------------------------------
def _tensor_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") >> 1


def add_weight_noise(model: nn.Module, sigma: float, seed: int = 0, *, relative: bool = True,
                     include: str | tuple[str, ...] = "blocks") -> nn.Module:
    """A copy of `model` with Gaussian noise on the chosen tensors (see the module docstring)."""
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0, got {sigma!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    names = select_tensors(model, include)
    noisy = copy.deepcopy(model)
    params = dict(noisy.named_parameters())
    with torch.no_grad():
        for name in names:
            param = params[name]
            weight = param.detach().float()
            scale = sigma * weight.pow(2).mean().sqrt() if relative else torch.tensor(float(sigma))
            generator = torch.Generator().manual_seed(_tensor_seed(seed, name))
            eps = torch.randn(param.shape, generator=generator)
            param.copy_((weight + scale.to(weight.device) * eps.to(weight.device)).to(param.dtype))
    return noisy


# -- round-to-nearest quantization ------------------------------------------------------------------------------
def _check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
        raise ValueError(f"bits must be an int from 2 to 16 (e.g. 8, 4, 3, 2), got {bits!r}")
    return bits


def quantize_tensor(weight: torch.Tensor, bits: int, axis: int = 0) -> torch.Tensor:
    """Symmetric round-to-nearest fake-quant of a matrix, one absmax scale per slice along `axis` (the output
    channel); returned in `weight`'s dtype. See the module docstring for the exact rule."""
    qmax = 2 ** (_check_bits(bits) - 1) - 1
    if weight.dim() != 2:
        raise ValueError(f"per-row quantization needs a matrix, got a tensor of shape {tuple(weight.shape)}")
    rows = weight.detach().float()
    rows = rows if axis == 0 else rows.t()
    scale = rows.abs().amax(dim=1, keepdim=True) / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))     # an all-zero row stays zero
    quantized = torch.clamp(torch.round(rows / scale), -qmax, qmax) * scale
    return (quantized if axis == 0 else quantized.t()).to(weight.dtype)


def row_scales(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """The per-row scales `quantize_tensor` uses along dim 0: row absmax / (2^(b-1) - 1)."""
    return weight.detach().float().abs().amax(dim=1) / (2 ** (_check_bits(bits) - 1) - 1)


def quantize_rtn(model: nn.Module, bits: int, *, include: str | tuple[str, ...] = "blocks") -> nn.Module:
    """A copy of `model` whose chosen weight matrices are round-to-nearest fake-quantized to `bits`."""
    _check_bits(bits)
    names = select_tensors(model, include)
    params = dict(model.named_parameters())
    flat = [n for n in names if params[n].dim() != 2]
    if flat:
        raise ValueError(f"quantization is per row of a matrix; these tensors are not matrices: {flat[:5]}")
    quantized = copy.deepcopy(model)
    params = dict(quantized.named_parameters())
    with torch.no_grad():
        for name, axis in names.items():
            params[name].copy_(quantize_tensor(params[name], bits, axis))
    return quantized


# -- perturbation specs -------------------------------------------------------------------------------------------
def check_perturbation(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec with its defaults filled in; unknown kinds, unknown keys and missing values raise ValueError."""
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ValueError(f"a perturbation is a dict with a 'kind' (one of {sorted(PERTURBATIONS)}), got {spec!r}")
    kind = spec["kind"]
    if kind not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation kind {kind!r}; allowed: {sorted(PERTURBATIONS)}")
    allowed = PERTURBATIONS[kind]
    unknown = sorted(set(spec) - set(allowed) - {"kind"})
    if unknown:
        raise ValueError(f"perturbation {kind!r}: unknown keys {unknown}; allowed: {sorted(allowed)}")
    full = {"kind": kind, **allowed, **spec}
    missing = sorted(k for k, v in full.items() if v is None)
    if missing:
        raise ValueError(f"perturbation {kind!r} needs {missing}")
    if kind == "noise" and not (isinstance(full["sigma"], (int, float)) and full["sigma"] >= 0):
        raise ValueError(f"perturbation 'noise': sigma must be a number >= 0, got {full['sigma']!r}")
    if kind == "quant":
        _check_bits(full["bits"])
    include = full.get("include", "blocks")
    if not (include in INCLUDE_SETS if isinstance(include, str) else
            isinstance(include, (list, tuple)) and include and all(isinstance(p, str) for p in include)):
        raise ValueError(f"include must be one of {INCLUDE_SETS} or a list of name patterns, got {include!r}")
    return full


def apply_perturbation(model: nn.Module, spec: dict[str, Any]) -> nn.Module:
    """The model under a perturbation spec: a perturbed copy, or `model` itself for `{"kind": "none"}`."""
    spec = check_perturbation(spec)
    if spec["kind"] == "noise":
        return add_weight_noise(model, spec["sigma"], spec["seed"], relative=spec["relative"],
                                include=spec["include"])
    if spec["kind"] == "quant":
        return quantize_rtn(model, spec["bits"], include=spec["include"])
    return model


def perturbed_loss(model: nn.Module, dataset: TokenDataset, perturbation: dict[str, Any],
                   batch_size: int = 64) -> float:
    """Mean cross-entropy (nats per scored token) of `model` on `dataset` under a perturbation spec, e.g.
    `{"kind": "noise", "sigma": 0.05, "seed": 0}`, `{"kind": "quant", "bits": 4}` or `{"kind": "none"}`."""
    perturbed = apply_perturbation(model, perturbation)
    return mean_loss(perturbed, dataset, batch_size)
