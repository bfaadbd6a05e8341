"""Selective fine-tuning and forgetting: train a chosen part of a model on a new task, trace what it forgets.

An *arm* says what is trained: a set of named tensors (the k lowest- or highest-kappa, k random), every tensor
(full fine-tuning), or LoRA adapters on all linear layers (PEFT). `trajectory` fine-tunes one arm from a base model
and evaluates, at fixed token counts, the new task's fit (loss on a fixed sample of its training data) and the
control task's held-out loss. Forgetting is the rise of the control loss; arms are compared at a matched new-task
fit, the way the KappaTune authors advise (training perplexity, not test), by reading each trajectory where it
first reaches a common target fit. `compare_arms` gives paired differences over seeds with t intervals and tests
(statsmodels).
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import pandas as pd
from statsmodels.stats.weightstats import DescrStatsW

from caplab.substrate import runlog
from caplab.substrate.cache import default_cache
from caplab.substrate.data import TokenDataset
from caplab.substrate.evaluate import mean_loss
from caplab.substrate.models import get_model
from caplab.substrate.train import TrainConfig, dataset_digest, train

ARM_KINDS = ("tensors", "full", "lora")


@dataclasses.dataclass(frozen=True)
class Arm:
    """What one fine-tuning arm trains. `tensors`: parameter names (kind "tensors"); `lora_rank` (kind "lora")."""

    name: str
    kind: str
    tensors: tuple[str, ...] = ()
    lora_rank: int | None = None
    lr: float = 1e-3

    def __post_init__(self):
        if self.kind not in ARM_KINDS:
            raise ValueError(f"arm {self.name!r}: kind must be one of {ARM_KINDS}, got {self.kind!r}")
        if self.kind == "tensors" and not self.tensors:
            raise ValueError(f"arm {self.name!r}: a 'tensors' arm needs at least one tensor name")
        if self.kind == "lora" and not (self.lora_rank and self.lora_rank >= 1):
            raise ValueError(f"arm {self.name!r}: a 'lora' arm needs lora_rank >= 1")
        object.__setattr__(self, "tensors", tuple(self.tensors))


def _prepare(model, arm: Arm):
    """The model to train for this arm, and the `trainable` argument of TrainConfig."""
    if arm.kind == "lora":
        from peft import LoraConfig, get_peft_model
        config = LoraConfig(r=arm.lora_rank, lora_alpha=2 * arm.lora_rank, lora_dropout=0.0,
                            target_modules="all-linear")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)   # a transformers deprecation raised inside PEFT
            return get_peft_model(model, config), None      # PEFT already froze everything but the adapters
    if arm.kind == "full":
        return model, tuple(n for n, _ in model.named_parameters())
    return model, arm.tensors


def trajectory(base: dict[str, Any], arm: Arm, train_b: TokenDataset, fit_b: TokenDataset, control_a: TokenDataset,
               config: TrainConfig, *, seed: int, eval_every_tokens: int, eval_batch_size: int = 64,
               cache=None) -> pd.DataFrame:
    """Fine-tune `get_model(base)` on task B with one arm; one row per evaluation (tokens 0 included):
    arm, seed, step, tokens, fit_b (loss on `fit_b`), control_a (loss on `control_a`), trainable.
    Cached: the same base, arm, data, config and seed are computed once."""
    if eval_every_tokens < 1:
        raise ValueError(f"eval_every_tokens must be >= 1, got {eval_every_tokens}")
    config = dataclasses.replace(config, seed=seed, lr=arm.lr, trainable=None)
    cache = cache if cache is not None else default_cache()
    args = {"base": base, "arm": arm, "train_b": dataset_digest(train_b), "fit_b": dataset_digest(fit_b),
            "control_a": dataset_digest(control_a), "config": config, "eval_every": eval_every_tokens,
            "eval_batch": eval_batch_size}

    computed = []

    def compute() -> pd.DataFrame:
        computed.append(True)
        model, _ = get_model(base)
        model, trainable = _prepare(model, arm)
        cfg = dataclasses.replace(config, trainable=trainable,
                                  checkpoint_tokens=tuple(range(eval_every_tokens, _token_budget(config, train_b),
                                                                eval_every_tokens)))

        def evaluate(m, info):
            return {"fit_b": mean_loss(m, fit_b, batch_size=eval_batch_size),
                    "control_a": mean_loss(m, control_a, batch_size=eval_batch_size)}

        start = {"step": 0, "tokens": 0, **evaluate(model, {})}
        result = train(model, train_b, cfg, callbacks=[evaluate])
        rows = pd.concat([pd.DataFrame([start]), result.evals[["step", "tokens", "fit_b", "control_a"]]],
                         ignore_index=True)
        rows.insert(0, "arm", arm.name)
        rows.insert(1, "seed", seed)
        rows["trainable"] = result.n_params["trainable"]
        return rows

    rows = cache.get_or_compute("finetune-trajectory", args, compute)
    last = rows.iloc[-1]
    runlog.summary(f"finetune {arm.name} (seed {seed})", steps=int(last.step), tokens=int(last.tokens),
                   note=f"new-task loss {last.fit_b:.4g}, control loss {last.control_a:.4g}", cached=not computed)
    return rows


def _token_budget(config: TrainConfig, data: TokenDataset) -> int:
    if config.max_tokens is not None:
        return config.max_tokens
    per_row = float(data.attention_mask.sum()) / len(data)
    return int(config.steps * config.batch_size * per_row)


def common_target(trajectories: pd.DataFrame) -> float:
    """The loosest new-task fit every run reaches: the largest of the runs' best `fit_b`."""
    return float(trajectories.groupby(["arm", "seed"]).fit_b.min().max())


def read_at_fit(run: pd.DataFrame, target: float) -> dict[str, float]:
    """Control loss where one run's fit first reaches `target` (linear interpolation between evaluations)."""
    run = run.sort_values("tokens")
    fit, control, tokens = run.fit_b.to_numpy(), run.control_a.to_numpy(), run.tokens.to_numpy()
    hit = np.nonzero(fit <= target)[0]
    if len(hit) == 0:
        return {"control_a": np.nan, "tokens": np.nan}
    i = hit[0]
    if i == 0:
        return {"control_a": float(control[0]), "tokens": float(tokens[0])}
    w = (fit[i - 1] - target) / (fit[i - 1] - fit[i])
    return {"control_a": float(control[i - 1] + w * (control[i] - control[i - 1])),
            "tokens": float(tokens[i - 1] + w * (tokens[i] - tokens[i - 1]))}


def forgetting_at_fit(trajectories: pd.DataFrame, target: float) -> pd.DataFrame:
    """One row per (arm, seed): the control loss before, at the matched fit, and forgetting = after - before."""
    rows = []
    for (arm, seed), run in trajectories.groupby(["arm", "seed"], sort=False):
        before = float(run.sort_values("tokens").control_a.iloc[0])
        at = read_at_fit(run, target)
        rows.append({"arm": arm, "seed": seed, "target_fit_b": target, "control_before": before,
                     "control_at_fit": at["control_a"], "tokens_to_fit": at["tokens"],
                     "forgetting": at["control_a"] - before, "trainable": int(run.trainable.iloc[0])})
    return pd.DataFrame(rows)


def summarize(forgetting: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Mean forgetting per arm with a t interval over seeds."""
    rows = []
    for arm, group in forgetting.groupby("arm", sort=False):
        values = group.forgetting.dropna().to_numpy()
        stats = DescrStatsW(values)
        lo, hi = stats.tconfint_mean(alpha) if len(values) > 1 else (np.nan, np.nan)
        rows.append({"arm": arm, "n": len(values), "mean": stats.mean, "lo": lo, "hi": hi,
                     "trainable": int(group.trainable.iloc[0])})
    return pd.DataFrame(rows)


def compare_arms(forgetting: pd.DataFrame, reference: str, alpha: float = 0.05) -> pd.DataFrame:
    """Paired by seed: forgetting(reference) - forgetting(other) for every other arm, its mean, t interval and the
    two-sided p-value of a paired t-test (statsmodels). Negative means the reference arm forgets less."""
    wide = forgetting.pivot(index="seed", columns="arm", values="forgetting")
    if reference not in wide:
        raise ValueError(f"no arm {reference!r}; arms: {list(wide.columns)}")
    rows = []
    for other in wide.columns:
        if other == reference:
            continue
        diff = (wide[reference] - wide[other]).dropna().to_numpy()
        if len(diff) < 2:
            rows.append({"other": other, "n": len(diff), "mean_diff": np.nan, "lo": np.nan, "hi": np.nan,
                         "p_value": np.nan})
            continue
        stats = DescrStatsW(diff)
        lo, hi = stats.tconfint_mean(alpha)
        _, p, _ = stats.ttest_mean(0.0)
        rows.append({"other": other, "n": len(diff), "mean_diff": stats.mean, "lo": lo, "hi": hi, "p_value": p})
    return pd.DataFrame(rows)
