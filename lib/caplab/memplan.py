"""The training runs a tier's parameters imply on hub models, and the accelerator memory each needs
(`caplab.substrate.memory`): shown by `python -m caplab plan`, and checked before a gpu run starts, so that a run
which cannot fit the GPU is refused before hours of other work rather than when it reaches that model.

Covered: the runs of the project's own loop (`caplab.substrate.train`) on hub models: shannon's SFT perturbation of
every family model, kappa's full fine-tuning arm, capacity_gap's distillation of each student with its largest
teacher held beside it. The TRL runs (budget's SFT and DPO with LoRA, rl_scaling's GRPO with its reference
policy) take their gradient checkpointing from the same plan when they start (`memory.trainer_flags`), and are
refused there, before training, if they cannot fit; `plan` does not list them yet.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from caplab.substrate import memory


@dataclass(frozen=True)
class Run:
    what: str
    model: str
    revision: str | None
    tokens: int                       # per optimizer step (micro-batch x sequence length)
    autocast: bool
    frozen: tuple[tuple[str, str | None], ...] = field(default=())     # other models held beside it (id, revision)


def _shannon(p: dict) -> list[Run]:
    fam, sft = p["family"], p["sft"]
    if fam.get("kind") != "hub" or not sft:
        return []
    last = (fam.get("revisions") or [None])[-1]
    return [Run("SFT perturbation", m, last, sft.get("batch_size", 32) * p["block_size"],
                bool(sft.get("autocast_dtype"))) for m in fam["models"]]


def _kappa(p: dict) -> list[Run]:
    base, f = p["base_model"], p["finetune"]
    if "pretrained" not in base:
        return []
    return [Run("full fine-tuning arm", base["pretrained"], base.get("revision"),
                f.get("batch_size", 32) * p["block_size"], bool(f.get("autocast_dtype")))]


def _capacity_gap(p: dict) -> list[Run]:
    t, d = p["teachers"], p["distill_train"]
    if t.get("kind") != "hub":
        return []
    largest = (t["models"][-1], (t.get("revisions") or [None])[-1])
    return [Run(f"distillation from {largest[0]}", s["pretrained"], s.get("revision"),
                d.get("batch_size", 32) * p["block_size"], bool(d.get("autocast_dtype")), (largest,))
            for s in p["students"] if "pretrained" in s]


RUNS = {"shannon": _shannon, "kappa": _kappa, "capacity_gap": _capacity_gap}


def runs(notebook: str, params: dict) -> list[Run]:
    return RUNS[notebook](params) if notebook in RUNS else []


def _config(model: str, revision: str | None):
    """The model's config from the local Hugging Face cache, None when it is not cached."""
    import transformers

    from caplab import preflight
    try:
        return transformers.AutoConfig.from_pretrained(model, revision=revision or "main", local_files_only=True,
                                                       cache_dir=preflight._hub_cache())
    except (OSError, ValueError):
        return None


def _n_params(config) -> int:
    """Parameters of a model of `config`, counted on the meta device (no memory, a fraction of a second)."""
    import torch
    import transformers
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


@dataclass
class Assessment:
    run: Run
    need: memory.TrainingBytes | None          # None: a config not cached
    verdict: str                               # "full", "checkpointing", "needs k GPUs (FSDP)", "config not cached"

    def line(self) -> str:
        head = f"{self.run.what}: {self.run.model}"
        if self.need is None:
            return f"{head}: {self.verdict}"
        return (f"{head}: {self.need.total() / 1e9:.1f} GB, {self.need.total(True) / 1e9:.1f} GB with gradient "
                f"checkpointing ({self.need.static / 1e9:.1f} GB weights, gradients, AdamW): {self.verdict}")


def assess(run: Run, device_bytes: float) -> Assessment:
    config = _config(run.model, run.revision)
    frozen = [_config(m, r) for m, r in run.frozen]
    if config is None or any(c is None for c in frozen):
        return Assessment(run, None, "config not cached (python -m caplab fetch)")
    n = _n_params(config)
    need = memory.training_bytes(config, n_params=n, n_trainable=n, tokens=run.tokens, autocast=run.autocast,
                                 frozen_params=sum(_n_params(c) for c in frozen))
    try:
        verdict = memory.strategy(need, device_bytes)
    except MemoryError:
        gpus = memory.gpus_needed(need, device_bytes)
        verdict = f"does not fit one GPU: needs {gpus} with FSDP" if gpus > 0 else "does not fit (activations)"
    return Assessment(run, need, verdict)


def describe(plan, device_bytes: float) -> list[str]:
    found = runs(plan.notebook, plan.params)
    if not found:
        return []
    return ([f"  memory of each training run on a {device_bytes / 1e9:.0f} GB GPU (fp32 master weights, AdamW):"]
            + [f"      {assess(r, device_bytes).line()}" for r in found])


def check(plans) -> None:
    """On a CUDA machine, raise MemoryError (before any compute) naming every planned run that cannot fit its GPU."""
    total = memory.device_bytes("cuda") if _cuda() else None
    if total is None:
        return
    bad = [f"  {plan.notebook}/{plan.tier}: {a.line()}" for plan in plans for r in runs(plan.notebook, plan.params)
           for a in [assess(r, total)] if a.verdict.startswith("does not fit")]
    if bad:
        raise MemoryError("training runs that cannot fit this GPU even with gradient checkpointing:\n"
                          + "\n".join(bad) + "\nRun them sharded over several GPUs, or leave those models out.")


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()
