"""How much accelerator memory a training run needs, and what to do when it does not fit: full training, full
training with gradient checkpointing, or a clear refusal before any compute that says how many GPUs the run needs.

The static part is exact for this project's loop (`caplab.substrate.train`): fp32 master weights (4 bytes per
parameter, `train.master_weights`), fp32 gradients (4 per trainable parameter), AdamW's two moments (8 per trainable
parameter), and under bf16 autocast the cached bf16 copies of the weights (2 per parameter). Activations are an
upper bound per token and layer, `(10 h + 5 f)` elements (h the width, f the MLP's inner width), at 4 bytes in
fp32 and 2.5 under bf16 autocast (measured 0.55x of fp32), plus the logits twice in fp32: against the tensors
autograd saves in transformers' GPT-NeoX, Llama and OPT (tests/test_substrate_memory.py) the bound is 1.1-2.0x. With gradient checkpointing each layer keeps only its input
(the fp32 residual stream) and one layer's activations are rebuilt at a time.

A run that fits with neither is refused with its sizes; sharding weights, gradients and optimizer state over k GPUs
(FSDP / ZeRO-3 through `accelerate launch`) divides the static part by k, which is what `gpus_needed` reports.

    need = training_bytes(model.config, n_params=..., n_trainable=..., tokens=batch * seq_len, autocast=True)
    strategy(need, device_bytes=80e9)   ->  "full" | "checkpointing"   (or MemoryError with the sizes)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

ACT_H, ACT_F = 10, 5                 # activation elements saved per token and layer: ACT_H * h + ACT_F * f
BYTES_FP32, BYTES_AUTOCAST = 4.0, 2.5
HEADROOM = 0.9                       # share of a device's memory a plan may use (allocator, CUDA context, buffers)


@dataclass(frozen=True)
class Shape:
    """What activation memory depends on, read from a transformers config."""
    layers: int
    hidden: int
    inner: int                       # the MLP's inner width
    vocab: int

    @classmethod
    def of(cls, config) -> "Shape":
        get = lambda *names: next((getattr(config, n) for n in names if getattr(config, n, None)), None)  # noqa: E731
        layers, hidden = get("num_hidden_layers", "n_layer"), get("hidden_size", "n_embd", "d_model")
        inner = get("intermediate_size", "ffn_dim", "n_inner") or (4 * hidden if hidden else None)
        vocab = get("vocab_size")
        if not (layers and hidden and vocab):
            raise ValueError(f"cannot read layers, width and vocabulary from a {type(config).__name__}")
        return cls(int(layers), int(hidden), int(inner), int(vocab))


@dataclass(frozen=True)
class TrainingBytes:
    weights: float                   # fp32 master weights (and frozen models beside them)
    grads: float
    optimizer: float                 # AdamW's moments
    weight_casts: float              # bf16 copies of the weights cached by autocast
    activations: float               # without gradient checkpointing
    activations_checkpointed: float

    @property
    def static(self) -> float:
        return self.weights + self.grads + self.optimizer + self.weight_casts

    def total(self, checkpointing: bool = False) -> float:
        return self.static + (self.activations_checkpointed if checkpointing else self.activations)


def training_bytes(config, *, n_params: int, n_trainable: int, tokens: int, autocast: bool,
                   frozen_params: int = 0) -> TrainingBytes:
    """Bytes one optimizer step of `train` needs for a model of `config` (a transformers config) with `n_params`
    parameters of which `n_trainable` train, over `tokens` tokens per step (micro-batch x sequence length).
    `frozen_params`: parameters of other frozen models held beside it in fp32 (a teacher, a reference policy)."""
    if min(n_params, tokens) <= 0 or not 0 <= n_trainable <= n_params:
        raise ValueError(f"need n_params > 0, tokens > 0 and 0 <= n_trainable <= n_params, got {n_params}, "
                         f"{n_trainable}, {tokens}")
    shape = Shape.of(config)
    per_element = BYTES_AUTOCAST if autocast else BYTES_FP32
    layer = tokens * (ACT_H * shape.hidden + ACT_F * shape.inner) * per_element
    logits = 2 * tokens * shape.vocab * BYTES_FP32
    return TrainingBytes(weights=4.0 * (n_params + frozen_params), grads=4.0 * n_trainable,
                         optimizer=8.0 * n_trainable, weight_casts=2.0 * n_params if autocast else 0.0,
                         activations=shape.layers * layer + logits,
                         activations_checkpointed=shape.layers * tokens * shape.hidden * BYTES_FP32 + layer + logits)


def strategy(need: TrainingBytes, device_bytes: float) -> str:
    """"full" when the run fits `device_bytes` (with `HEADROOM`), "checkpointing" when it fits only with gradient
    checkpointing; otherwise MemoryError, before any compute, with the sizes and the GPUs a sharded run needs."""
    budget = HEADROOM * device_bytes
    if need.total() <= budget:
        return "full"
    if need.total(checkpointing=True) <= budget:
        return "checkpointing"
    raise MemoryError(f"this training run needs about {need.total(True) / 1e9:.0f} GB with gradient checkpointing "
                      f"({need.static / 1e9:.0f} GB of fp32 weights, gradients and AdamW state), more than the "
                      f"{device_bytes / 1e9:.0f} GB device offers; sharded over GPUs with FSDP it needs at least "
                      f"{gpus_needed(need, device_bytes)} of them (accelerate launch), or train fewer parameters")


def gpus_needed(need: TrainingBytes, device_bytes: float) -> int:
    """GPUs of `device_bytes` over which FSDP (ZeRO-3) must shard the static part for the checkpointed run to fit;
    activations are per GPU and not sharded."""
    room = HEADROOM * device_bytes - need.activations_checkpointed
    return math.ceil(need.static / room) if room > 0 else -1


def device_bytes(device) -> float | None:
    """Total memory of a CUDA device; None for a CPU (not checked: host memory is the operating system's)."""
    import torch
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return float(torch.cuda.get_device_properties(device).total_memory)


def trainer_flags(model, *, tokens: int, device, autocast: bool, frozen_params: int = 0,
                  n_trainable: int | None = None) -> dict[str, bool]:
    """transformers.Trainer / TRL flags for a run of `model` over `tokens` tokens per device step: gradient
    checkpointing only where the run needs it on this device (none on a CPU); MemoryError before any compute where
    it cannot fit. `frozen_params`: a reference policy's (TRL keeps one when beta > 0); `n_trainable`: fewer than
    all parameters (LoRA)."""
    total = device_bytes(device)
    if total is None:
        return {"gradient_checkpointing": False}
    n = sum(p.numel() for p in model.parameters())
    need = training_bytes(model.config, n_params=n, n_trainable=n if n_trainable is None else n_trainable,
                          tokens=tokens, autocast=autocast, frozen_params=frozen_params)
    return {"gradient_checkpointing": strategy(need, total) == "checkpointing"}
