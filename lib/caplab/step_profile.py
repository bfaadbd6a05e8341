"""Where one training step of a tiny model spends its time: torch.profiler over the project's own loop.

    profile = profile_step({"d_model": 64, "n_layer": 2, "n_head": 2}, blocks, steps=10)
    profile["phases"]      # {"step.data": s, "step.forward": s, ..., "loop outside the phases": s}
    profile["kinds"]       # {"matmul": s, "attention": s, ..., "framework and Python": s}

The loop (`caplab.substrate.train.train`) marks its phases with `torch.profiler.record_function` (`PHASES`). Every
aten operator's self time in the forward and backward passes is attributed to a kind of work by its name; the part
of those passes' wall time that no operator accounts for is framework and Python overhead (module calls, hooks,
autograd bookkeeping). The optimizer step with gradient clipping and data loading are counted as their phases. Times are per step, averaged over `steps` steps after `warmup` steps.
"""
from __future__ import annotations

import bisect
from collections import defaultdict

import torch

from caplab.substrate import models
from caplab.substrate.train import PHASES, TrainConfig, train

# Operator name -> kind of work, first match wins (names without the "aten::" prefix).
KINDS = (
    ("attention", ("softmax", "baddbmm", "bmm", "masked_fill", "tril", "triu")),
    ("matmul", ("mm", "addmm", "matmul", "linear", "_addmm_activation")),
    ("normalisation", ("native_layer_norm", "layer_norm", "rms_norm", "_fused_rms_norm")),
    ("loss", ("cross_entropy", "log_softmax", "nll_loss")),
    ("embedding", ("embedding",)),
    ("elementwise", ("add", "mul", "sub", "div", "gelu", "silu", "tanh", "pow", "neg", "rsqrt", "exp", "where",
                     "clamp", "copy", "fill", "zero", "zeros", "ones", "empty", "empty_strided", "cat", "to", "to_copy", "sum",
                     "mean", "norm", "linalg_vector_norm", "stack", "threshold", "dropout")),
    ("views and indexing", ("view", "reshape", "transpose", "permute", "t", "expand", "slice", "select", "index",
                            "contiguous", "unsqueeze", "squeeze", "split", "chunk", "as_strided", "detach",
                            "unsafe_view", "clone", "arange", "narrow", "unbind", "alias", "resolve")),
)
OVERHEAD = "framework and Python"


def kind_of(op: str) -> str:
    """The kind of work of an aten operator name (`aten::addmm`, `aten::native_layer_norm_backward`, ...)."""
    name = op.split("::", 1)[-1].lstrip("_")
    if "scaled_dot_product" in name or "flash_attention" in name:
        return "attention"
    name = name.removesuffix("_backward_data").removesuffix("_backward")
    for kind, stems in KINDS:
        if name in stems or any(name.startswith(stem + "_") or name == stem for stem in stems):
            return kind
    base = name.rstrip("_")
    for kind, stems in KINDS:
        if base in stems:
            return kind
    return "other operators"


def profile_step(shape: dict, blocks, *, batch_size: int = 16, steps: int = 10, warmup: int = 3,
                 device: str = "cpu") -> dict:
    """Seconds per step by phase and by kind of work for a tiny `shape` (a `TinySpec` dict) trained on `blocks`."""
    model, _ = models.tiny_model(dict(shape))
    counts = models.param_counts(model)
    config = dict(batch_size=batch_size, lr=1e-3, warmup_steps=1, device=device, log_every=10 ** 6)
    train(model, blocks, TrainConfig(steps=warmup, **config))          # allocator, caches, first-call costs
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        train(model, blocks, TrainConfig(steps=steps, **config))
    events = prof.events()
    phase_spans = sorted((e.time_range.start, e.time_range.end, e.name) for e in events if e.name in PHASES)
    starts = [s for s, _, _ in phase_spans]
    wall = defaultdict(float)
    for start, end, name in phase_spans:
        wall[name] += (end - start) / 1e6
    ops = defaultdict(float)
    for e in events:
        if not e.name.startswith("aten::") or e.self_cpu_time_total <= 0:
            continue
        i = bisect.bisect_right(starts, e.time_range.start) - 1
        if i < 0 or e.time_range.start >= phase_spans[i][1]:
            continue                          # between phases: the loop's own bookkeeping
        ops[(phase_spans[i][2], kind_of(e.name))] += e.self_cpu_time_total / 1e6
    train_events = [e for e in events if e.name.startswith("ProfilerStep") or e.name in PHASES]
    total = ((max(e.time_range.end for e in train_events) - min(e.time_range.start for e in train_events)) / 1e6
             if train_events else 0.0)
    phases = {name: wall[name] / steps for name in PHASES}
    phases["loop outside the phases"] = max(total / steps - sum(phases.values()), 0.0)
    # Kinds of work: operators of the forward and backward passes by kind, the rest of those passes' wall time as
    # framework overhead; the optimizer (with clipping), data loading and the loop's bookkeeping as their phases.
    model_phases = ("step.forward", "step.backward")
    kinds: dict[str, float] = defaultdict(float)
    for (phase, kind), seconds in ops.items():
        if phase in model_phases:
            kinds[kind] += seconds / steps
    kinds[OVERHEAD] = max(sum(phases[p] for p in model_phases) - sum(kinds.values()), 0.0)
    kinds["optimizer and clipping"] = phases["step.optimizer"] + phases["step.clip"]
    kinds["data loading"] = phases["step.data"]
    kinds["loop outside the phases"] = phases["loop outside the phases"]
    by_phase = {phase: {kind: s / steps for (p, kind), s in ops.items() if p == phase} for phase in PHASES}
    return {"shape": dict(shape), "non_embedding": counts["non_embedding"], "total_params": counts["total"],
            "batch_size": batch_size, "steps": steps, "threads": torch.get_num_threads(),
            "step_s": total / steps, "phases": phases, "kinds": dict(kinds), "by_phase": by_phase}
