"""Attention swap: run one model with another model's post-softmax attention probabilities.

Two models of the same shape (two seeds of one size, two checkpoints of one run) see the same batch. We record the
donor's attention probabilities [batch, heads, q, k] per layer, then run the recipient with, in the chosen layers,

    out = ((1 - lam) * own_probs + lam * donor_probs) @ V_recipient

while everything else (queries/keys for `own_probs`, values, output projection, MLP, residual stream) stays the
recipient's own. Other layers run the recipient's own eager attention.

    probs = record_attention(donor, batch)
    with swap_attention(recipient, probs, layers=[3], lam=0.5):
        logits = recipient(**batch).logits

How it plugs in: transformers looks up `config._attn_implementation` in its attention-function registry
(`AttentionInterface`) at every attention call. We register one function under the name "caplab_swap" and switch
the model to it for the duration of a context. A registered name also needs a mask function in
`AttentionMaskInterface`: without one, transformers builds *no* mask at all (no causal mask, no padding mask) and
nothing complains. We register transformers' own `eager_mask` for "caplab_swap", so our function receives exactly
the additive mask that the eager implementation receives, and computes own probabilities exactly as
`eager_attention_forward` does (scores * scaling + mask, softmax in float32, cast to the query dtype).

Recording uses the same function (with no donor), so recorded probabilities are exactly what the swap consumes.
Not supported: logit soft-capping and attention sinks (they raise), KV caches during generation (we pass
`use_cache=False`).
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence

import pandas as pd
import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

SWAP = "caplab_swap"
DEFAULT_LAMS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclasses.dataclass
class _Plan:
    """What the swap function does in one model for one context: donor probabilities per layer, lam, a recorder."""
    donor: dict[int, torch.Tensor]
    lam: float
    record: dict[int, torch.Tensor] | None = None
    seen: set[int] = dataclasses.field(default_factory=set)


_PLANS: dict[int, _Plan] = {}     # id(model.config) -> the plan of the context active on that model


def _swap_attention_forward(module: nn.Module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """The registered attention: eager attention, with probabilities mixed with the donor's in the planned layers."""
    plan = _PLANS.get(id(module.config))
    if plan is None:
        raise RuntimeError(f"attention {SWAP!r} ran outside swap_attention/record_attention")
    if kwargs.get("softcap") is not None or kwargs.get("s_aux") is not None:
        raise NotImplementedError("attention swap does not support logit soft-capping or attention sinks")
    layer = getattr(module, "layer_idx", None)
    if layer is None:
        raise RuntimeError(f"{type(module).__name__} has no layer_idx; cannot tell which layer to swap")
    n_rep = query.shape[1] // key.shape[1]          # grouped-query attention: share each key/value head
    if n_rep > 1:
        key, value = key.repeat_interleave(n_rep, dim=1), value.repeat_interleave(n_rep, dim=1)

    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:                  # eager_mask: 0 where allowed, dtype min where masked
        scores = scores + attention_mask[:, :, :, : key.shape[-2]]
    own = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    plan.seen.add(layer)
    if plan.record is not None:
        plan.record[layer] = own.detach()

    probs = own
    donor = plan.donor.get(layer)
    if donor is not None:
        if donor.shape != own.shape:
            raise ValueError(f"layer {layer}: donor probabilities have shape {tuple(donor.shape)}, recipient's "
                             f"{tuple(own.shape)} [batch, heads, q, k]: {_differs(donor.shape, own.shape)}")
        probs = (1 - plan.lam) * own + plan.lam * donor.to(device=own.device, dtype=own.dtype)

    dropped = nn.functional.dropout(probs, p=dropout, training=module.training)
    out = torch.matmul(dropped, value).transpose(1, 2).contiguous()
    return out, probs


def _differs(donor_shape, own_shape) -> str:
    names = ("batch sizes", "heads", "query lengths (sequence)", "key lengths (sequence)")
    return ", ".join(f"{n} differ" for n, d, o in zip(names, donor_shape, own_shape) if d != o)


# Registered at import: the attention function and, for the same name, the eager implementation's mask.
AttentionInterface.register(SWAP, _swap_attention_forward)
AttentionMaskInterface.register(SWAP, eager_mask)


def n_layers(model: nn.Module) -> int:
    """Number of transformer layers of a transformers model (its text config's `num_hidden_layers`)."""
    return model.config.get_text_config().num_hidden_layers


@contextlib.contextmanager
def _installed(model: nn.Module, plan: _Plan):
    """Switch `model` to the swap attention with `plan`; restore its implementation on exit, also on errors."""
    key = id(model.config)
    if key in _PLANS:
        raise RuntimeError("an attention swap or recording is already active on this model (contexts do not nest)")
    previous = model.config._attn_implementation
    _PLANS[key] = plan
    try:
        model.set_attn_implementation(SWAP)
        if model.config._attn_implementation != SWAP:
            raise RuntimeError(f"{type(model).__name__} does not take registered attention functions")
        yield model
    finally:
        _PLANS.pop(key, None)
        model.set_attn_implementation(previous)


def _inputs(model: nn.Module, batch: Mapping) -> dict:
    """The model inputs of a batch (input_ids, attention_mask, position_ids if present), on the model's device."""
    if "input_ids" not in batch:
        raise KeyError(f"batch needs input_ids; it has {sorted(batch)}")
    device = next(model.parameters()).device
    return {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "position_ids") if batch.get(k) is not None}


@torch.no_grad()
def record_attention(model: nn.Module, batch: Mapping) -> list[torch.Tensor]:
    """Post-softmax attention probabilities of `model` on `batch`, one [batch, heads, q, k] tensor per layer.

    Computed by the same function (and with the same mask) as the swap uses, so they are exactly what it consumes.
    """
    plan = _Plan(donor={}, lam=0.0, record={})
    with _installed(model, plan):
        model(**_inputs(model, batch), use_cache=False)
    missing = sorted(set(range(n_layers(model))) - set(plan.record))
    if missing:
        raise RuntimeError(f"no attention was recorded for layers {missing}")
    return [plan.record[i] for i in range(n_layers(model))]


@contextlib.contextmanager
def swap_attention(model: nn.Module, donor_probs: Sequence[torch.Tensor], layers: Iterable[int] | None = None,
                   lam: float = 1.0):
    """Within the context, `model` attends with `(1 - lam) * own + lam * donor` probabilities in `layers`.

    `donor_probs` comes from `record_attention(donor, batch)` on the batch the model will see; `layers=None` swaps
    every layer. Layers not chosen run the model's own eager attention. On exit (also on an exception) the
    model's previous attention implementation is restored. Yields the model.
    """
    total = n_layers(model)
    if len(donor_probs) != total:
        raise ValueError(f"donor probabilities cover {len(donor_probs)} layers, the model has {total}: layers differ")
    layers = list(range(total)) if layers is None else sorted(set(layers))
    if any(not 0 <= i < total for i in layers):
        raise ValueError(f"layers {layers} out of range for a model with {total} layers")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam}")
    heads = model.config.get_text_config().num_attention_heads
    for i in layers:
        if donor_probs[i].ndim != 4 or donor_probs[i].shape[1] != heads:
            raise ValueError(f"layer {i}: donor probabilities have shape {tuple(donor_probs[i].shape)}, expected "
                             f"[batch, {heads} heads, q, k]: heads differ")
    with _installed(model, _Plan(donor={i: donor_probs[i] for i in layers}, lam=float(lam))):
        yield model


@torch.no_grad()
def swap_outputs(recipient: nn.Module, donor: nn.Module, batch: Mapping, layers: Iterable[int] | None = None,
                 lam: float = 1.0) -> torch.Tensor:
    """Logits of `recipient` on `batch` with the donor's attention swapped in (see `swap_attention`)."""
    probs = record_attention(donor, batch)
    with swap_attention(recipient, probs, layers=layers, lam=lam):
        return recipient(**_inputs(recipient, batch), use_cache=False).logits


def uniform_attention(model: nn.Module, batch: Mapping) -> list[torch.Tensor]:
    """Attention probabilities that carry no information, one [batch, heads, q, k] tensor per layer: every query
    spreads its weight evenly over the keys it may see (itself and earlier, non-padding positions; a query that may
    see none keeps its own position). Swapped in at lambda 1 they give the floor of a swap: the recipient with
    attention that knows nothing about the input."""
    mask = batch.get("attention_mask")
    ids = batch["input_ids"]
    length = ids.shape[1]
    allowed = torch.ones(length, length, dtype=torch.bool).tril()[None]
    if mask is not None:
        allowed = allowed & mask.bool()[:, None, :]
    allowed = allowed | (torch.eye(length, dtype=torch.bool)[None] & ~allowed.any(-1, keepdim=True))
    probs = allowed.float() / allowed.sum(-1, keepdim=True)
    heads = model.config.get_text_config().num_attention_heads
    device = next(model.parameters()).device
    probs = probs[:, None].expand(len(ids), heads, length, length).to(device)
    return [probs for _ in range(n_layers(model))]


def one_layer_at_a_time(n: int) -> dict[str, list[int] | None]:
    """Layer sets {"all": every layer, "layer 0": [0], ...} for `swap_sweep`."""
    return {"all": None, **{f"layer {i}": [i] for i in range(n)}}


@torch.no_grad()
def swap_sweep(recipient: nn.Module, donor: nn.Module, batches: Iterable[Mapping] | Callable[[], Iterable[Mapping]],
               metric_fn: Callable[[torch.Tensor, Mapping], float | Mapping[str, float]],
               lams: Sequence[float] = DEFAULT_LAMS, layer_sets: Mapping[str, Iterable[int] | None] | None = None,
               ) -> pd.DataFrame:
    """A tidy frame, one row per (layer_set, lam): the metrics of the swapped recipient, averaged over batches.

    `batches` is an iterable of batches (dicts with input_ids, attention_mask, and whatever the metric needs) or a
    function returning one. `metric_fn(logits, batch)` returns a number (column "metric") or a dict of numbers.
    The average over batches is weighted by the number of sequences per batch (column "n"). `layer_sets` maps a
    name to layers (None: all); by default all layers, then each layer alone. The donor's attention is recorded
    once per batch.
    """
    batches = batches() if callable(batches) else batches
    layer_sets = one_layer_at_a_time(n_layers(recipient)) if layer_sets is None else dict(layer_sets)
    sums: dict[tuple[str, float], dict[str, float]] = {}
    counts: dict[tuple[str, float], int] = {}
    for batch in batches:
        probs = record_attention(donor, batch)
        size = len(batch["input_ids"])
        for name, layers in layer_sets.items():
            for lam in lams:
                with swap_attention(recipient, probs, layers=layers, lam=lam):
                    logits = recipient(**_inputs(recipient, batch), use_cache=False).logits
                values = metric_fn(logits, batch)
                values = dict(values) if isinstance(values, Mapping) else {"metric": values}
                cell = sums.setdefault((name, float(lam)), {})
                for k, v in values.items():
                    cell[k] = cell.get(k, 0.0) + float(v) * size
                counts[(name, float(lam))] = counts.get((name, float(lam)), 0) + size
    if not counts:
        raise ValueError("swap_sweep got no batches")
    rows = [{"layer_set": name, "lam": lam, **{k: v / counts[(name, lam)] for k, v in cell.items()},
             "n": counts[(name, lam)]} for (name, lam), cell in sums.items()]
    return pd.DataFrame(rows)


@torch.no_grad()
def swap_grid(recipient: nn.Module, sources: Mapping[str, Sequence[torch.Tensor]], batch: Mapping,
              row_fn: Callable[[torch.Tensor, Mapping], pd.DataFrame], lams: Sequence[float] = DEFAULT_LAMS,
              layer_sets: Mapping[str, Iterable[int] | None] | None = None) -> pd.DataFrame:
    """Per row of `batch`, the recipient's `row_fn(logits, batch)` (a frame, one row per sequence) with each source's
    attention probabilities (`record_attention(donor, batch)`, `uniform_attention(recipient, batch)`, ...) mixed in
    at every lambda in every layer set: a tidy frame with columns source, layer_set, lam, row and row_fn's."""
    layer_sets = one_layer_at_a_time(n_layers(recipient)) if layer_sets is None else dict(layer_sets)
    if not sources:
        raise ValueError("swap_grid needs at least one source of attention probabilities")
    frames = []
    for source, probs in sources.items():
        for name, layers in layer_sets.items():
            for lam in lams:
                with swap_attention(recipient, probs, layers=layers, lam=lam):
                    logits = recipient(**_inputs(recipient, batch), use_cache=False).logits
                rows = row_fn(logits, batch).reset_index(drop=True)
                rows.insert(0, "row", range(len(rows)))
                frames.append(rows.assign(source=source, layer_set=name, lam=float(lam)))
    out = pd.concat(frames, ignore_index=True)
    return out[["source", "layer_set", "lam", "row", *[c for c in out.columns
                                                       if c not in ("source", "layer_set", "lam", "row")]]]
