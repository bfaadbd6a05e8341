"""Selective fine-tuning and forgetting: train a chosen part of a model on a new task, trace what it forgets.

An *arm* says what is trained: a set of named tensors (the k lowest- or highest-kappa, k random), every tensor
(full fine-tuning), or LoRA adapters (PEFT) on all linear layers or on named modules. `trajectory` fine-tunes one
arm from a base model and evaluates, at fixed token counts, the new task's fit (loss on a fixed sample of its
training data), its exact match there (every answer token the argmax: greedy decoding's answer for a fixed-format
completion) and the control task's held-out loss. Forgetting is the rise of the control loss; arms are compared at
a matched new-task fit, the way the KappaTune authors advise (training perplexity, not test), by reading each
trajectory where it first reaches a target fit. The target should lie below `format_floor`, the fit a model
reaches that knows only the answers' frequencies (no new knowledge); runs that never reach it are reported.
`compare_arms` gives paired differences over seeds with t intervals and tests (statsmodels).
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
from caplab.substrate.evaluate import example_losses, mean_loss
from caplab.substrate.models import get_model
from caplab.substrate.sweep import parallel
from caplab.substrate.train import TrainConfig, dataset_digest, train

ARM_KINDS = ("tensors", "full", "lora")


@dataclasses.dataclass(frozen=True)
class Arm:
    """What one fine-tuning arm trains. `tensors`: parameter names (kind "tensors"); `lora_rank` (kind "lora") and
    `lora_targets`, the adapted module names (empty: all linear layers, PEFT's "all-linear")."""

    name: str
    kind: str
    tensors: tuple[str, ...] = ()
    lora_rank: int | None = None
    lr: float = 1e-3
    lora_targets: tuple[str, ...] = ()

    def __post_init__(self):
        if self.kind not in ARM_KINDS:
            raise ValueError(f"arm {self.name!r}: kind must be one of {ARM_KINDS}, got {self.kind!r}")
        if self.kind == "tensors" and not self.tensors:
            raise ValueError(f"arm {self.name!r}: a 'tensors' arm needs at least one tensor name")
        if self.kind == "lora" and not (self.lora_rank and self.lora_rank >= 1):
            raise ValueError(f"arm {self.name!r}: a 'lora' arm needs lora_rank >= 1")
        if self.lora_targets and self.kind != "lora":
            raise ValueError(f"arm {self.name!r}: lora_targets are for a 'lora' arm, not {self.kind!r}")
        object.__setattr__(self, "tensors", tuple(self.tensors))
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))


def _prepare(model, arm: Arm):
    """The model to train for this arm, and the `trainable` argument of TrainConfig."""
    if arm.kind == "lora":
        from peft import LoraConfig, get_peft_model
        config = LoraConfig(r=arm.lora_rank, lora_alpha=2 * arm.lora_rank, lora_dropout=0.0,
                            target_modules=list(arm.lora_targets) or "all-linear")
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
    arm, seed, step, tokens, fit_b (loss on `fit_b`), exact_b (fraction of `fit_b` rows whose every scored token is
    the argmax), control_a (loss on `control_a`), trainable.
    Cached: the same base, arm, data, config and seed are computed once."""
    if eval_every_tokens < 1:
        raise ValueError(f"eval_every_tokens must be >= 1, got {eval_every_tokens}")
    config = dataclasses.replace(config, seed=seed, lr=arm.lr, trainable=None)
    cache = cache if cache is not None else default_cache()
    args = {"base": base, "arm": arm, "train_b": dataset_digest(train_b), "fit_b": dataset_digest(fit_b),
            "control_a": dataset_digest(control_a), "config": config, "eval_every": eval_every_tokens,
            "eval_batch": eval_batch_size, "evals": ("fit_b", "exact_b", "control_a")}

    computed = []

    def compute() -> pd.DataFrame:
        computed.append(True)
        model, _ = get_model(base)
        model, trainable = _prepare(model, arm)
        cfg = dataclasses.replace(config, trainable=trainable,
                                  checkpoint_tokens=tuple(range(eval_every_tokens, _token_budget(config, train_b),
                                                                eval_every_tokens)))

        def evaluate(m, info):
            fit = example_losses(m, fit_b, batch_size=eval_batch_size)
            return {"fit_b": float(fit.loss_sum.sum() / fit.n_tokens.sum()), "exact_b": float(fit.all_correct.mean()),
                    "control_a": mean_loss(m, control_a, batch_size=eval_batch_size)}

        start = {"step": 0, "tokens": 0, **evaluate(model, {})}
        result = train(model, train_b, cfg, callbacks=[evaluate])
        rows = pd.concat([pd.DataFrame([start]), result.evals[["step", "tokens", "fit_b", "exact_b", "control_a"]]],
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


def trajectories(base: dict[str, Any], jobs: list[tuple[Arm, int]], train_b: TokenDataset, fit_b: TokenDataset,
                 control_a: TokenDataset, config: TrainConfig, **kwargs) -> pd.DataFrame:
    """`trajectory` for every (arm, seed) in `jobs`, side by side on the machine's cores (`sweep.parallel`; each run
    as the plain loop computes it), concatenated in the order of `jobs`."""
    runs = parallel([lambda arm=arm, seed=seed: trajectory(base, arm, train_b, fit_b, control_a, config, seed=seed,
                                                           **kwargs) for arm, seed in jobs])
    return pd.concat(runs, ignore_index=True)


def _token_budget(config: TrainConfig, data: TokenDataset) -> int:
    if config.max_tokens is not None:
        return config.max_tokens
    per_row = float(data.attention_mask.sum()) / len(data)
    return int(config.steps * config.batch_size * per_row)


def format_floor(train_answers, fit_answers, tokenizer) -> dict[str, float]:
    """What a model reaches on the fit sample that knows the answers' format and frequencies but no fact: each
    answer predicted with its frequency among the training answers, whatever the prompt. `floor`: its loss in nats
    per scored token (the answer's tokens and `<eos>`, as `pad_examples` scores them); `exact`: its exact match
    (always the most frequent answer). A matched fit below `floor` needs new knowledge."""
    counts = pd.Series(list(train_answers)).value_counts()
    freq = counts / counts.sum()
    fit_answers = list(fit_answers)
    unseen = sorted(set(fit_answers) - set(freq.index))
    if unseen:
        raise ValueError(f"fit answers not among the training answers: {unseen[:5]}")
    nll = -np.log(freq[fit_answers].to_numpy()).sum()
    tokens = sum(len(tokenizer(a, add_special_tokens=False).input_ids) + 1 for a in fit_answers)
    return {"floor": float(nll / tokens), "exact": float(np.mean([a == counts.index[0] for a in fit_answers]))}


def common_target(trajectories: pd.DataFrame) -> float:
    """The loosest new-task fit every run reaches: the largest of the runs' best `fit_b`."""
    return float(trajectories.groupby(["arm", "seed"]).fit_b.min().max())


def read_at_fit(run: pd.DataFrame, target: float, columns=("control_a", "exact_b")) -> dict[str, float]:
    """`columns` and tokens where one run's fit first reaches `target` (linear interpolation between
    evaluations); NaN where it never does."""
    run = run.sort_values("tokens")
    columns = [c for c in columns if c in run] + ["tokens"]
    fit = run.fit_b.to_numpy()
    hit = np.nonzero(fit <= target)[0]
    if len(hit) == 0:
        return {c: np.nan for c in columns}
    i = hit[0]
    if i == 0:
        return {c: float(run[c].iloc[0]) for c in columns}
    w = (fit[i - 1] - target) / (fit[i - 1] - fit[i])
    return {c: float(run[c].iloc[i - 1] + w * (run[c].iloc[i] - run[c].iloc[i - 1])) for c in columns}


def forgetting_at_fit(trajectories: pd.DataFrame, target: float) -> pd.DataFrame:
    """One row per (arm, seed): the control loss before, at the matched fit, forgetting = after - before, the
    exact match on the new task there (where the trajectories have `exact_b`), and whether the run reached the
    target at all (`reached`; if not, the readings are NaN)."""
    rows = []
    for (arm, seed), run in trajectories.groupby(["arm", "seed"], sort=False):
        before = float(run.sort_values("tokens").control_a.iloc[0])
        at = read_at_fit(run, target)
        rows.append({"arm": arm, "seed": seed, "target_fit_b": target, "reached": bool(np.isfinite(at["tokens"])),
                     "control_before": before, "control_at_fit": at["control_a"], "tokens_to_fit": at["tokens"],
                     "forgetting": at["control_a"] - before, "exact_at_fit": at.get("exact_b", np.nan),
                     "best_fit_b": float(run.fit_b.min()), "trainable": int(run.trainable.iloc[0])})
    return pd.DataFrame(rows)


def summarize(forgetting: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per arm: mean forgetting with a t interval over the seeds that reached the target (`n` of `runs`), and the
    mean exact match on the new task there (where recorded), and the mean best fit the runs reached."""
    rows = []
    for arm, group in forgetting.groupby("arm", sort=False):
        values = group.forgetting.dropna().to_numpy()
        mean = float(values.mean()) if len(values) else np.nan
        lo, hi = DescrStatsW(values).tconfint_mean(alpha) if len(values) > 1 else (np.nan, np.nan)
        exact = group["exact_at_fit"].dropna() if "exact_at_fit" in group else pd.Series(dtype=float)
        rows.append({"arm": arm, "runs": len(group), "n": len(values), "mean": mean, "lo": lo, "hi": hi,
                     "exact_at_fit": float(exact.mean()) if len(exact) else np.nan,
                     "best_fit_b": float(group.best_fit_b.mean()) if "best_fit_b" in group else np.nan,
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
