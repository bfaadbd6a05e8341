"""RL post-training with TRL's `GRPOTrainer`, with the held-out error and exact compute logged along the way.

Settings mirror Tan et al. 2025 (arXiv 2509.25300, VeRL code): G = 8 rollouts per prompt, 512 prompts per
generation split into 4 mini-batch updates (mini-batch 128 prompts), lr 1e-6, KL loss coefficient 0.001 (TRL's
k3 estimator, the paper's "low-variance KL"), clip 0.2, temperature 1.0 for training and 0.7 for evaluation,
binary reward. A tier scales the numbers down by parameters; unknown keys are rejected.

Accounting (the paper's): compute C = 6 N x tokens processed, where tokens are every rollout's prompt and
completion tokens (TRL's `num_input_tokens_seen`) and N is the model's non-embedding parameter count (Kaplan's
convention; the total count is also logged); data D = prompts seen = optimizer steps x prompts per update. The
test loss is the error rate 1 - pass@1 on held-out prompts, pass@1 estimated from `eval_samples` samples per
prompt at the evaluation temperature, logged at the optimizer steps `eval_steps` (log-spaced: 1, 2, 4, ...) or
every `eval_every` steps, and at step 0, with its standard error over test prompts. TRL's per-step log is kept
(`GRPORun.log`); its `frac_reward_zero_std` (groups whose rollouts all got the same reward: no advantage, no
gradient) at the first steps says whether RL starts with a learning signal.

    run = grpo(start_spec, prompts, answers, test_prompts, test_answers, GRPOSettings(lr=1e-4))
    run.curve, run.final, run.spec
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from caplab.science.posttrain import _digest, summarize_trainer_run
from caplab.substrate import memory, runlog
from caplab.substrate.cache import atomic_write_text, default_cache
from caplab.substrate.chains import correct_reward, is_correct
from caplab.substrate.evaluate import generate_texts
from caplab.substrate.models import get_model, param_counts, strict_from_dict
from caplab.substrate.train import master_weights, mixed_precision, resolve_device


@dataclasses.dataclass(frozen=True)
class GRPOSettings:
    """GRPO; defaults from Tan et al. 2025 (code): 512 prompts x 8 rollouts per generation, 4 updates each."""
    steps: int = 100                     # optimizer steps
    prompts_per_update: int = 128        # the paper's mini-batch (512 prompts per generation / 4 updates)
    updates_per_generation: int = 4
    num_generations: int = 8
    lr: float = 1e-6
    beta: float = 0.001                  # KL to the frozen reference
    epsilon: float = 0.2                 # clip
    temperature: float = 1.0
    eval_temperature: float = 0.7
    eval_samples: int = 1
    eval_every: int = 10
    eval_steps: tuple[int, ...] = ()     # evaluate at these optimizer steps (and at 0) instead of every `eval_every`
    eval_batch_size: int = 256           # sequences generated at once by the evaluation
    max_completion_length: int = 64
    loss_type: str = "dapo"              # token-mean over the batch, as VeRL's default aggregation
    warmup_steps: int = 0
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        for name in ("steps", "prompts_per_update", "updates_per_generation", "num_generations", "eval_samples",
                     "eval_every", "max_completion_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"GRPOSettings.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_generations < 2:
            raise ValueError("GRPO needs num_generations >= 2 (advantages are relative within a group)")
        if any(int(s) < 1 for s in self.eval_steps):
            raise ValueError(f"GRPOSettings.eval_steps must be >= 1, got {list(self.eval_steps)}")
        object.__setattr__(self, "eval_steps", tuple(sorted({int(s) for s in self.eval_steps})))
        if self.lr <= 0 or self.beta < 0 or not 0 < self.epsilon < 1:
            raise ValueError(f"need lr > 0, beta >= 0, 0 < epsilon < 1; got {self}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "GRPOSettings":
        return strict_from_dict(cls, values)


def pass_at_1(model, tokenizer, prompts: list[str], answers: list[str], *, samples: int, temperature: float,
              max_new_tokens: int, seed: int, batch_size: int = 256) -> np.ndarray:
    """Per prompt, the mean correctness of `samples` sampled completions (seeded; the global RNG state is
    restored afterwards, so evaluating does not change the training run)."""
    was_training = model.training
    device = next(iter(model.parameters())).device
    items = [(p, a) for _ in range(samples) for p, a in zip(prompts, answers)]
    # every generator forked and restored (the GPU's too): evaluating leaves the training run's random state as it was
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        texts = generate_texts(model, tokenizer, [p for p, _ in items], max_new_tokens, batch_size, do_sample=True,
                               temperature=temperature, top_k=0, top_p=1.0)
    model.train(was_training)
    correct = [is_correct(t, a) for t, (_, a) in zip(texts, items)]
    return np.asarray(correct, dtype=float).reshape(samples, len(prompts)).mean(0)


def _trainer_args(settings: GRPOSettings, out: Path) -> dict[str, Any]:
    use_cpu = resolve_device(settings.device).type == "cpu"
    completions = settings.prompts_per_update * settings.num_generations
    return dict(output_dir=str(out), max_steps=settings.steps, per_device_train_batch_size=completions,
                steps_per_generation=settings.updates_per_generation, num_generations=settings.num_generations,
                max_completion_length=settings.max_completion_length, learning_rate=settings.lr,
                lr_scheduler_type="constant_with_warmup", warmup_steps=settings.warmup_steps, beta=settings.beta,
                epsilon=settings.epsilon, temperature=settings.temperature, loss_type=settings.loss_type,
                top_k=0, top_p=1.0, seed=settings.seed, data_seed=settings.seed, use_vllm=False, use_cpu=use_cpu,
                **mixed_precision(settings.device), report_to="none", save_strategy="no", logging_steps=1,
                disable_tqdm=True, dataloader_num_workers=0)


def grpo(model_spec: dict, prompts: list[str], answers: list[str], test_prompts: list[str], test_answers: list[str],
         settings: GRPOSettings | dict, *, cache=None) -> "GRPORun":
    """GRPO from `model_spec` on a pool of prompts (sampled by TRL, reused when the run needs more than the pool).
    The run's `curve` has one row per evaluation: step, prompts_seen, tokens, compute (6 N tokens), error
    (1 - pass@1 on the test prompts), the parameter counts; `final` has each test prompt's pass@1 before training
    (`initial`) and at the end (`correct`)."""
    settings = GRPOSettings.from_dict(settings) if isinstance(settings, dict) else settings
    if len(prompts) != len(answers) or len(test_prompts) != len(test_answers) or not prompts or not test_prompts:
        raise ValueError("need non-empty prompts with one answer each, for training and for testing")
    cache = cache if cache is not None else default_cache()
    args = {"model": model_spec, "data": _digest(prompts, answers), "test": _digest(test_prompts, test_answers),
            "settings": settings}

    built = []

    def build(tmp: Path) -> None:
        from datasets import Dataset
        from transformers import TrainerCallback
        from trl import GRPOConfig, GRPOTrainer

        built.append(tmp)
        model, tokenizer = get_model(model_spec)
        if not model.config.name_or_path:         # TRL builds the KL reference from this path: give it one
            model.save_pretrained(tmp / "start")
            tokenizer.save_pretrained(tmp / "start")
            model, tokenizer = get_model({"path": str(tmp / "start")})
            model.train()
        master_weights(model).to(resolve_device(settings.device))     # the step-0 evaluation on the device too
        counts = param_counts(model)
        rows, last = [], {}

        def evaluate(step: int, tokens: int) -> None:
            per_prompt = pass_at_1(model, tokenizer, test_prompts, test_answers, samples=settings.eval_samples,
                                   temperature=settings.eval_temperature,
                                   max_new_tokens=settings.max_completion_length, seed=settings.seed + 1,
                                   batch_size=settings.eval_batch_size)
            last.setdefault("initial", per_prompt)
            last["correct"] = per_prompt
            error = 1.0 - float(per_prompt.mean())
            # the standard error over test prompts (each prompt's mean over its samples is one unit)
            se = float(per_prompt.std(ddof=1) / np.sqrt(len(per_prompt))) if len(per_prompt) > 1 else float("nan")
            rows.append({"step": step, "prompts_seen": step * settings.prompts_per_update, "tokens": tokens,
                         "compute": 6.0 * counts["non_embedding"] * tokens,
                         "compute_total_params": 6.0 * counts["total"] * tokens, "error": error, "error_se": se})
            runlog.progress(f"grpo step {step}/{settings.steps}: tokens {tokens:,}, held-out error {error:.3f}")

        class Evaluate(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if settings.eval_steps:
                    due = state.global_step in settings.eval_steps
                else:
                    due = state.global_step % settings.eval_every == 0
                if due or state.global_step == settings.steps:
                    evaluate(state.global_step, int(state.num_input_tokens_seen))

        evaluate(0, 0)
        # TRL samples each generation batch from one pass over the dataset: a pool smaller than a generation
        # batch (heavy reuse) is repeated whole until it fills one, so every prompt stays equally likely.
        copies = -(-settings.prompts_per_update * settings.updates_per_generation // len(prompts))
        data = Dataset.from_dict({"prompt": list(prompts) * copies, "answer": [str(a) for a in answers] * copies})
        # gradient checkpointing where the run needs it on this GPU (never on a CPU); a reference policy when beta > 0
        longest = max(len(tokenizer(p).input_ids) for p in prompts) + settings.max_completion_length
        memory_flags = memory.trainer_flags(
            model, tokens=settings.prompts_per_update * settings.num_generations * longest,
            device=resolve_device(settings.device), autocast=mixed_precision(settings.device)["bf16"],
            frozen_params=counts["total"] if settings.beta > 0 else 0)
        config = GRPOConfig(**_trainer_args(settings, tmp / "trainer"), **memory_flags)
        trainer = GRPOTrainer(model=model, reward_funcs=[correct_reward], args=config, train_dataset=data,
                              processing_class=tokenizer, callbacks=[Evaluate()])
        runlog.quiet_trainer(trainer)
        trainer.train()
        model.save_pretrained(tmp / "model")
        tokenizer.save_pretrained(tmp / "model")
        shutil.rmtree(tmp / "start", ignore_errors=True)
        curve = pd.DataFrame(rows).drop_duplicates("step", keep="last")
        curve = curve.assign(params_non_embedding=counts["non_embedding"], params_total=counts["total"])
        curve.to_csv(tmp / "curve.csv", index=False)
        pd.DataFrame({"prompt": range(len(test_prompts)), "initial": last["initial"],
                      "correct": last["correct"]}).to_csv(
            tmp / "final_eval.csv", index=False)
        pd.DataFrame(trainer.state.log_history).to_csv(tmp / "log.csv", index=False)
        atomic_write_text(tmp / "summary.json", json.dumps({"steps": trainer.state.global_step,
                                                            "tokens": int(trainer.state.num_input_tokens_seen)}))

    run = GRPORun(cache.directory("grpo", args, build))
    curve = run.curve
    summarize_trainer_run(run.path, f"grpo {runlog.describe(model_spec)}", cached=not built,
                          note=f"held-out error {curve.error.iloc[0]:.3f} -> {curve.error.iloc[-1]:.3f}")
    return run


@dataclasses.dataclass
class GRPORun:
    """A cache entry of a finished GRPO run."""
    path: Path

    @property
    def curve(self) -> pd.DataFrame:
        return pd.read_csv(self.path / "curve.csv")

    @property
    def final(self) -> pd.DataFrame:
        return pd.read_csv(self.path / "final_eval.csv")

    @property
    def log(self) -> pd.DataFrame:
        """TRL's per-step log (loss, reward, `frac_reward_zero_std`: the share of prompt groups whose rollouts all
        got the same reward, hence no advantage; ...)."""
        return pd.read_csv(self.path / "log.csv")

    def zero_std_share(self, first: int = 1) -> float:
        """The mean of TRL's `frac_reward_zero_std` over the first `first` optimizer steps (TRL logs it at each
        generation, every `updates_per_generation` steps; NaN when not logged)."""
        log = self.log
        if "frac_reward_zero_std" not in log or "step" not in log:
            return float("nan")
        rows = log.dropna(subset=["frac_reward_zero_std"])
        rows = rows[rows.step <= first]
        return float(rows.frac_reward_zero_std.mean()) if len(rows) else float("nan")

    @property
    def spec(self) -> dict:
        return {"path": str(self.path / "model")}
