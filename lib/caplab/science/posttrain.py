"""Post-training with TRL: supervised finetuning (`sft`) and direct preference optimisation (`dpo`), cached.

One settings dataclass per method; the defaults are the budget paper's (Raghavendra et al. 2025, arXiv 2502.11284,
code mohit-raghavendra/balance-budget): SFT 2 epochs at lr 5e-5, DPO 2 epochs at lr 5e-6 with beta = 1.0, cosine
schedule with warmup 0.1, effective batch 16, LoRA r = 32, alpha = 32 on all linear projections (gpu tier).
A tier overrides them by parameters; unknown keys are rejected (`from_dict`).

Both run TRL's trainers (`SFTTrainer`, `DPOTrainer`) on any causal LM `get_model` can build: a tiny model with
the char tokenizer, or a hub model. DPO's reference is the model it starts from (TRL copies it; with LoRA the
adapter-free base plays that part), which is the SFT model, or the base model when there was no SFT. Each run is
a cache entry keyed by the starting model, the data and the settings: `model/` (save_pretrained, LoRA merged),
`log.csv` (TRL's log history) and `summary.json`. A run with no data returns the starting model unchanged.

    spec = sft(base, prompts, solutions, SFTSettings(lr=1e-3))
    spec = dpo(spec, prompts, chosen, rejected, DPOSettings(lr=1e-4, beta=0.1))
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Any

import pandas as pd

from caplab.params import Fields, Lazy
from caplab.substrate import runlog
from caplab.substrate.cache import atomic_write_text, default_cache
from caplab.substrate.models import get_model, strict_from_dict
from caplab.substrate.train import master_weights


def _lora_fields():
    import peft
    return Fields(peft.LoraConfig, partial=True, construct=False, name="peft.LoraConfig")


LORA = Lazy(_lora_fields)     # the keys of peft.LoraConfig, checked only where a tier uses LoRA


@dataclasses.dataclass(frozen=True)
class _Settings:
    epochs: float = 2.0
    lr: float = 5e-5
    batch_size: int = 16
    warmup_ratio: float = 0.1
    schedule: str = "cosine"
    min_steps: int = 0                   # at least this many optimizer steps (small budgets on tiny models)
    fixed_steps: int = 0                 # > 0: exactly this many optimizer steps whatever the data's size
    max_length: int = 256
    seed: int = 0
    lora: Annotated[dict, LORA] | None = None   # peft.LoraConfig keys, e.g. {"r": 32, "lora_alpha": 32, ...}
    device: str = "auto"                 # "auto": the GPU when there is one

    def __post_init__(self):
        if self.epochs <= 0 or self.lr <= 0 or self.batch_size < 1 or not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"{type(self).__name__}: need epochs > 0, lr > 0, batch_size >= 1, "
                             f"0 <= warmup_ratio < 1; got {self}")
        if self.min_steps < 0 or self.fixed_steps < 0:
            raise ValueError(f"min_steps and fixed_steps must be >= 0, got {self.min_steps}, {self.fixed_steps}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        return strict_from_dict(cls, values)

    def steps(self, n_rows: int) -> int:
        """Optimizer steps for `n_rows` examples: `fixed_steps` when given (equal optimisation whatever the data's
        size: small sets are repeated, large ones seen in part), else `epochs` passes, at least `min_steps`."""
        if self.fixed_steps:
            return self.fixed_steps
        return max(math.ceil(self.epochs * n_rows / self.batch_size), self.min_steps)


@dataclasses.dataclass(frozen=True)
class SFTSettings(_Settings):
    """Supervised finetuning; loss on the completion only. Defaults: Raghavendra et al. 2025 (code)."""


@dataclasses.dataclass(frozen=True)
class DPOSettings(_Settings):
    """DPO (sigmoid loss). Defaults: Raghavendra et al. 2025 (code): lr 5e-6, beta 1.0. `precompute_ref`: the
    reference log-probabilities in one pass before training (TRL's `precompute_ref_log_probs`; the same loss,
    one forward pass fewer per step)."""
    lr: float = 5e-6
    beta: float = 1.0
    precompute_ref: bool = True


def _settings(cls, value):
    return cls.from_dict(value) if isinstance(value, dict) else value


def _digest(*columns: list[str]) -> str:
    digest = hashlib.sha256()
    for column in columns:
        for text in column:
            digest.update(text.encode())
            digest.update(b"\x00")
        digest.update(b"\x01")
    return digest.hexdigest()[:24]


def _common_args(settings: _Settings, n_rows: int, out: Path) -> dict[str, Any]:
    from caplab.substrate.train import mixed_precision, resolve_device

    use_cpu = resolve_device(settings.device).type == "cpu"
    steps = settings.steps(n_rows)
    return dict(output_dir=str(out), max_steps=steps, per_device_train_batch_size=settings.batch_size,
                learning_rate=settings.lr, lr_scheduler_type=settings.schedule,
                warmup_steps=int(settings.warmup_ratio * steps), seed=settings.seed, data_seed=settings.seed,
                use_cpu=use_cpu, **mixed_precision(settings.device), report_to="none", save_strategy="no",
                logging_steps=max(1, steps // 20), disable_tqdm=True, dataloader_num_workers=0,
                max_length=settings.max_length)


def _memory_flags(model, settings: _Settings, rows_per_example: int, reference: bool) -> dict[str, bool]:
    """Gradient checkpointing where the run needs it on this GPU (`caplab.substrate.memory`; never on a CPU).
    With LoRA the adapters' own state is left out (well under 1 % of the weights' bytes at rank 32)."""
    from caplab.substrate import memory
    from caplab.substrate.train import mixed_precision, resolve_device

    n = sum(p.numel() for p in model.parameters())
    return memory.trainer_flags(model, tokens=settings.batch_size * rows_per_example * (settings.max_length or 1024),
                                device=resolve_device(settings.device),
                                autocast=mixed_precision(settings.device)["bf16"],
                                frozen_params=n if reference else 0, n_trainable=0 if settings.lora else None)


def _peft_config(settings: _Settings):
    if not settings.lora:
        return None
    from peft import LoraConfig
    return LoraConfig(task_type="CAUSAL_LM", **settings.lora)


def _finish(trainer, tokenizer, tmp: Path, method: str, n_rows: int) -> None:
    model = trainer.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(tmp / "model")
    tokenizer.save_pretrained(tmp / "model")
    log = pd.DataFrame(trainer.state.log_history)
    log.to_csv(tmp / "log.csv", index=False)
    atomic_write_text(tmp / "summary.json", json.dumps(
        {"method": method, "rows": n_rows, "steps": trainer.state.global_step,
         "tokens": int(trainer.state.num_input_tokens_seen or 0)}, indent=1))


def summarize_trainer_run(path: Path, what: str, *, cached: bool, note: str = "") -> None:
    """The one line a TRL run leaves in its notebook cell, from its cache entry (summary.json, log.csv)."""
    summary = json.loads((path / "summary.json").read_text())
    log = pd.read_csv(path / "log.csv") if (path / "log.csv").stat().st_size > 1 else pd.DataFrame()
    losses = log["loss"].dropna() if "loss" in log else pd.Series(dtype=float)
    runtime = log["train_runtime"].dropna() if "train_runtime" in log else pd.Series(dtype=float)
    runlog.summary(what, steps=summary.get("steps"), tokens=summary.get("tokens"),
                   loss=float(losses.iloc[-1]) if len(losses) else None,
                   seconds=float(runtime.iloc[-1]) if len(runtime) else None, cached=cached, note=note)


def sft(model_spec: dict, prompts: list[str], completions: list[str], settings: SFTSettings | dict, *,
        cache=None) -> dict:
    """The model spec after TRL SFT of `model_spec` on prompt -> completion pairs (loss on the completion)."""
    settings = _settings(SFTSettings, settings)
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    if not prompts:
        return dict(model_spec)
    cache = cache if cache is not None else default_cache()
    args = {"model": model_spec, "data": _digest(prompts, completions), "settings": settings}

    built = []

    def build(tmp: Path) -> None:
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        built.append(tmp)
        model, tokenizer = get_model(model_spec)
        master_weights(model)
        eos = tokenizer.eos_token
        rows = Dataset.from_dict({"prompt": list(prompts), "completion": [c + eos for c in completions]})
        config = SFTConfig(**_common_args(settings, len(prompts), tmp / "trainer"), completion_only_loss=True,
                           **_memory_flags(model, settings, 1, reference=False))
        trainer = SFTTrainer(model=model, args=config, train_dataset=rows, processing_class=tokenizer,
                             peft_config=_peft_config(settings))
        runlog.quiet_trainer(trainer)
        trainer.train()
        _finish(trainer, tokenizer, tmp, "sft", len(prompts))

    entry = cache.directory("sft", args, build)
    summarize_trainer_run(entry, f"sft {runlog.describe(model_spec)} on {len(prompts)} examples", cached=not built)
    return {"path": str(entry / "model")}


def dpo(model_spec: dict, prompts: list[str], chosen: list[str], rejected: list[str],
        settings: DPOSettings | dict, *, cache=None) -> dict:
    """The model spec after TRL DPO of `model_spec` on (prompt, chosen, rejected); the reference is `model_spec`."""
    settings = _settings(DPOSettings, settings)
    if not len(prompts) == len(chosen) == len(rejected):
        raise ValueError(f"need as many chosen and rejected as prompts: {len(prompts)}, {len(chosen)}, "
                         f"{len(rejected)}")
    if not prompts:
        return dict(model_spec)
    cache = cache if cache is not None else default_cache()
    args = {"model": model_spec, "data": _digest(prompts, chosen, rejected), "settings": settings}

    built = []

    def build(tmp: Path) -> None:
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer

        built.append(tmp)
        model, tokenizer = get_model(model_spec)
        master_weights(model)
        eos = tokenizer.eos_token
        rows = Dataset.from_dict({"prompt": list(prompts), "chosen": [c + eos for c in chosen],
                                  "rejected": [r + eos for r in rejected]})
        config = DPOConfig(**_common_args(settings, len(prompts), tmp / "trainer"), beta=settings.beta,
                           precompute_ref_log_probs=settings.precompute_ref,
                           **_memory_flags(model, settings, 2, reference=not settings.lora))   # chosen, rejected
        reference = None if settings.lora else get_model(model_spec)[0]     # LoRA: the adapter-free base
        trainer = DPOTrainer(model=model, ref_model=reference, args=config, train_dataset=rows,
                             processing_class=tokenizer, peft_config=_peft_config(settings))
        runlog.quiet_trainer(trainer)
        trainer.train()
        _finish(trainer, tokenizer, tmp, "dpo", len(prompts))

    entry = cache.directory("dpo", args, build)
    summarize_trainer_run(entry, f"dpo {runlog.describe(model_spec)} on {len(prompts)} pairs", cached=not built)
    return {"path": str(entry / "model")}


def preference_accuracy(model_spec: dict, reference_spec: dict, prompts: list[str], chosen: list[str],
                        rejected: list[str], batch_size: int = 64) -> float:
    """Held-out preference accuracy of a DPO model: the share of pairs whose implicit reward ranks the chosen
    completion first, log pi(c)/pi_ref(c) > log pi(r)/pi_ref(r) (beta > 0 does not change the sign), with the
    completions as DPO saw them (ending in <eos>). Ties count half."""
    from caplab.substrate.evaluate import continuation_logprobs

    if not len(prompts) == len(chosen) == len(rejected) or not prompts:
        raise ValueError(f"need as many chosen and rejected as prompts (at least one): {len(prompts)}, "
                         f"{len(chosen)}, {len(rejected)}")

    def logratios(spec):
        model, tokenizer = get_model(spec)
        eos = tokenizer.eos_token
        pairs = [(p, c + eos) for p, c in zip(prompts, chosen)] + [(p, r + eos) for p, r in zip(prompts, rejected)]
        return [lp for lp, _, _ in continuation_logprobs(model, tokenizer, pairs, batch_size=batch_size)]

    policy, reference = logratios(model_spec), logratios(reference_spec)
    n = len(prompts)
    margins = [(policy[i] - reference[i]) - (policy[n + i] - reference[n + i]) for i in range(n)]
    return float(sum(1.0 if m > 0 else 0.5 if m == 0 else 0.0 for m in margins) / n)


def answer_scores(model_spec: dict, prompts: list[str], references: list[str], max_new_tokens: int, *,
                  cache=None) -> pd.DataFrame:
    """Greedy answers of a model to `prompts`, scored on the answer after "####" (`evaluate.answer_accuracy`):
    one row per prompt (question = its position, answer, correct, formatted). Cached by model and data, so that
    a model scored twice (a run's SFT start, and the same model as another run's final one) costs once."""
    cache = cache if cache is not None else default_cache()
    args = {"model": model_spec, "data": _digest(prompts, references), "max_new_tokens": max_new_tokens}

    def compute() -> pd.DataFrame:
        from caplab.substrate.evaluate import answer_accuracy

        model, tokenizer = get_model(model_spec)
        scored = answer_accuracy(model, tokenizer, prompts, references, max_new_tokens=max_new_tokens)
        return scored.assign(question=range(len(scored)))[["question", "answer", "correct", "formatted"]]

    return cache.get_or_compute("answer_scores", args, compute)


def worked_accuracy(model_spec: dict, questions: list[str], answers: list[str], max_new_tokens: int = 48) -> float:
    """The base model's skill in its pre-training form: greedy continuations of "7-3+5:" read after "=>"
    (`chains.worked_prompt`, `chains.worked_answer`), exact match."""
    from caplab.substrate import chains
    from caplab.substrate.evaluate import generate_texts

    model, tokenizer = get_model(model_spec)
    texts = generate_texts(model, tokenizer, [chains.worked_prompt(q) for q in questions], max_new_tokens,
                           batch_size=256)
    return float(sum(chains.worked_answer(t) == str(a) for t, a in zip(texts, answers)) / max(1, len(texts)))
