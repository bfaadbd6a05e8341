"""One training loop for pre-training and fine-tuning, and its cached form.

`train(model, dataset, config)` runs AdamW with warmup + cosine decay (to `min_lr_ratio * lr`), gradient clipping,
a chosen set of trainable tensors (the rest frozen), a seeded data order, and callbacks at given token counts.
It counts exact tokens (non-pad positions processed) and compute as 6 * N * D, with N the non-embedding parameters
(`flops`) and also all parameters (`flops_total`). With `resume_dir` it saves its full state every `save_every`
steps and, when started again, continues from the last save with the same result as an uninterrupted run.

`train_cached(model_spec, dataset, config)` stores the trained model, its tokenizer, the log and the models saved at
`checkpoint_tokens` in a cache entry, so a rerun costs nothing; an interrupted run resumes from its scratch folder.
The plain loop was chosen over `transformers.Trainer` by measurement: see TRAINING_CHOICE.md.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from caplab.substrate.data import TokenDataset
from caplab.substrate import runlog
from caplab.substrate.models import get_model, load_local, param_counts, resolve_device, strict_from_dict

PROGRESS_EVERY_S = 20.0
# Named phases of a training step, seen by torch.profiler (the step profile of `make bench`); free when not profiling.
PHASES = ("step.data", "step.forward", "step.backward", "step.clip", "step.optimizer")
_phase = torch.profiler.record_function
     # a progress line this often (visible in headless runs), and at the end of a run
Callback = Callable[[torch.nn.Module, dict], "dict | None"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run's result (and so its cache key)."""
    steps: int | None = None             # optimizer steps; or give max_tokens
    max_tokens: int | None = None        # stop once this many (non-pad) tokens were processed
    batch_size: int = 32
    lr: float = 1e-3
    min_lr_ratio: float = 0.1            # cosine decays to lr * min_lr_ratio
    warmup_steps: int | None = None      # None: min(100, a tenth of the steps)
    schedule: str = "cosine"             # "cosine" or "constant" (after warmup)
    weight_decay: float = 0.1            # on matrices only, not on biases and norms
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0
    seed: int = 0
    trainable: tuple[str, ...] | None = None   # parameter names or fnmatch patterns; None: keep requires_grad
    checkpoint_tokens: tuple[int, ...] = ()    # callbacks (and saved models in train_cached) at these counts
    log_every: int = 1
    save_every: int = 200                # steps between resume states (with resume_dir)
    device: str = "auto"                 # "auto": cuda when available
    autocast_dtype: str | None = None    # e.g. "bfloat16" on a GPU

    def __post_init__(self):
        if (self.steps is None) == (self.max_tokens is None):
            raise ValueError("give exactly one of steps and max_tokens")
        for name in ("steps", "max_tokens", "batch_size", "log_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.lr <= 0 or (self.warmup_steps or 0) < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("need lr > 0, warmup_steps >= 0 and 0 <= min_lr_ratio <= 1")
        object.__setattr__(self, "betas", tuple(self.betas))
        object.__setattr__(self, "checkpoint_tokens", tuple(sorted(int(t) for t in self.checkpoint_tokens)))
        if self.trainable is not None:
            object.__setattr__(self, "trainable", tuple(self.trainable))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        return strict_from_dict(cls, values)


@dataclasses.dataclass
class TrainResult:
    log: pd.DataFrame            # step, tokens, flops, flops_total, loss, lr, grad_norm, seconds
    evals: pd.DataFrame          # one row per callback call: step, tokens, target_tokens, + the callback's keys
    n_params: dict[str, int]     # total, non_embedding, trainable
    steps: int
    tokens: int


def set_trainable(model: torch.nn.Module, patterns: tuple[str, ...] | None) -> int:
    """Freeze every parameter not matched by a name or pattern; return the number of trainable elements."""
    named = dict(model.named_parameters())
    if patterns is not None:
        chosen = {n for p in patterns for n in named if n == p or fnmatch.fnmatchcase(n, p)}
        unmatched = [p for p in patterns if not any(n == p or fnmatch.fnmatchcase(n, p) for n in named)]
        if unmatched:
            raise ValueError(f"trainable patterns {unmatched} match no parameter; names look like "
                             f"{list(named)[:6]}")
        for name, param in named.items():
            param.requires_grad_(name in chosen)
    count = sum(p.numel() for p in named.values() if p.requires_grad)
    if count == 0:
        raise ValueError("no trainable parameters")
    return count


def plan_steps(config: TrainConfig, dataset: TokenDataset) -> int:
    """Optimizer steps of the run: `steps`, or enough batches of average length to reach `max_tokens`."""
    if config.steps is not None:
        return config.steps
    per_row = dataset.attention_mask.sum().item() / len(dataset)
    return math.ceil(config.max_tokens / (per_row * config.batch_size))


class DataOrder:
    """Rows of each batch: a fresh seeded permutation per epoch, so step k's batch depends only on (seed, k)."""

    def __init__(self, n_rows: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed, self._perms = n_rows, batch_size, seed, {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            self._perms = {epoch: torch.randperm(self.n, generator=torch.Generator().manual_seed(
                self.seed * 1_000_003 + epoch))}
        return self._perms[epoch]

    def indices(self, step: int) -> torch.Tensor:
        start = step * self.batch_size
        return torch.stack([self._perm(p // self.n)[p % self.n] for p in range(start, start + self.batch_size)])


def _optimizer(model, config: TrainConfig, total_steps: int, fused: bool):
    # transformers' schedules, imported here: their module pulls in the Trainer's stack, which checking
    # parameters (caplab validate) does not need
    from transformers import get_constant_schedule_with_warmup, get_cosine_with_min_lr_schedule_with_warmup

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, fused=fused or None)
    warmup = config.warmup_steps if config.warmup_steps is not None else min(100, total_steps // 10)
    if config.schedule == "constant":
        return opt, get_constant_schedule_with_warmup(opt, warmup)
    return opt, get_cosine_with_min_lr_schedule_with_warmup(
        opt, warmup, max(total_steps, warmup + 1), min_lr_rate=config.min_lr_ratio)


def master_weights(model: torch.nn.Module) -> torch.nn.Module:
    """Trainable weights in fp32 (the master copy; a GPU does the matrix work in bf16 under autocast): a model
    loaded in half precision is cast up in place, never trained in pure fp16/bf16, where most small AdamW updates
    round away. Returns the model."""
    half = [n for n, p in model.named_parameters() if p.requires_grad and p.dtype in (torch.float16, torch.bfloat16)]
    if half:
        runlog.progress(f"train: {len(half)} trainable tensors were in {dict(model.named_parameters())[half[0]].dtype}"
                        f"; cast to float32 master weights")
        model.float()
    return model


def mixed_precision(device) -> dict[str, bool]:
    """transformers.Trainer / TRL flags for a device: bf16 autocast over fp32 weights on a GPU that has it, no
    autocast on a CPU; never fp16."""
    device = resolve_device(device)
    return {"bf16": device.type == "cuda" and torch.cuda.is_bf16_supported(), "fp16": False}


def train(model: torch.nn.Module, dataset: TokenDataset, config: TrainConfig, *,
          callbacks: list[Callback] = (), loss_fn: Callable | None = None,
          resume_dir: str | os.PathLike | None = None) -> TrainResult:
    """Train `model` in place on `dataset`; see the module docstring. `loss_fn(model, batch) -> loss` replaces
    the default next-token loss (e.g. distillation); each callback gets `(model, info)` at every checkpoint token
    count and at the end, and may return a dict of metrics for the `evals` frame."""
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    if len(dataset) == 0:
        raise ValueError("empty dataset")
    total_steps = plan_steps(config, dataset)
    device = resolve_device(config.device)
    n_trainable = set_trainable(model, config.trainable)
    counts = {**param_counts(model), "trainable": n_trainable}
    master_weights(model).to(device).train()
    opt, sched = _optimizer(model, config, total_steps, fused=device.type == "cuda")
    order = DataOrder(len(dataset), config.batch_size, config.seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    state = {"step": 0, "tokens": 0, "log": [], "evals": [], "targets_done": 0, "seconds": 0.0}
    state_file = Path(resume_dir) / "state.pt" if resume_dir is not None else None
    torch.manual_seed(config.seed)
    if state_file is not None and state_file.exists():
        saved = torch.load(state_file, map_location="cpu", weights_only=True)    # rng state stays on cpu; no code runs
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["rng"])
        state = saved["state"]
    targets = config.checkpoint_tokens

    def autocast():
        return (torch.autocast(device.type, dtype=getattr(torch, config.autocast_dtype))
                if config.autocast_dtype else contextlib.nullcontext())

    def fire(target):
        info = {"step": state["step"], "tokens": state["tokens"], "target_tokens": target}
        model.eval()
        for callback in callbacks:
            info.update(callback(model, dict(info)) or {})
        model.train()
        state["evals"].append(info)

    started = time.perf_counter() - state["seconds"]
    last_progress = time.perf_counter()
    while state["step"] < total_steps and (config.max_tokens is None or state["tokens"] < config.max_tokens):
        with _phase("step.data"):
            batch = {k: v.to(device) for k, v in dataset.batch(order.indices(state["step"])).items()}
        with _phase("step.forward"), autocast():
            loss = loss_fn(model, batch) if loss_fn is not None else model(**batch).loss
        with _phase("step.backward"):
            loss.backward()
        with _phase("step.clip"):
            grad_norm = (torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip) if config.grad_clip
                         else torch.zeros(()))
        lr = sched.get_last_lr()[0]
        with _phase("step.optimizer"):
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        state["step"] += 1
        state["tokens"] += int(batch["attention_mask"].sum())
        last = state["step"] == total_steps or state["tokens"] >= (config.max_tokens or float("inf"))
        if state["step"] % config.log_every == 0 or last:
            state["log"].append({"step": state["step"], "tokens": state["tokens"], "loss": loss.item(), "lr": lr,
                                 "grad_norm": float(grad_norm), "seconds": time.perf_counter() - started})
        if time.perf_counter() - last_progress >= PROGRESS_EVERY_S or last:
            last_progress = time.perf_counter()
            runlog.progress(f"train: step {state['step']}/{total_steps}  tokens {state['tokens']:,}  "
                            f"loss {loss.item():.4f}  {last_progress - started:.0f} s")
        while state["targets_done"] < len(targets) and state["tokens"] >= targets[state["targets_done"]]:
            fire(targets[state["targets_done"]])
            state["targets_done"] += 1
        if state_file is not None and config.save_every and state["step"] % config.save_every == 0:
            state["seconds"] = time.perf_counter() - started
            _save_state(state_file, model, opt, sched, state)
    if not state["evals"] or state["evals"][-1]["step"] != state["step"]:
        fire(None)
    model.eval()
    log = pd.DataFrame(state["log"], columns=["step", "tokens", "loss", "lr", "grad_norm", "seconds"])
    log.insert(2, "flops", 6.0 * counts["non_embedding"] * log["tokens"])
    log.insert(3, "flops_total", 6.0 * counts["total"] * log["tokens"])
    return TrainResult(log=log, evals=pd.DataFrame(state["evals"]), n_params=counts, steps=state["step"],
                       tokens=state["tokens"])


def _save_state(path: Path, model, opt, sched, state) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "rng": torch.get_rng_state(), "state": state}, tmp)
    os.replace(tmp, path)


# -- cached runs ----------------------------------------------------------------------------------------------
def dataset_digest(dataset: TokenDataset) -> str:
    """A content hash of a token dataset: the cache key of the data a run saw."""
    digest = hashlib.sha256()
    for tensor in (dataset.input_ids, dataset.attention_mask, dataset.labels):
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.to(torch.int64).contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


@dataclasses.dataclass
class TrainedRun:
    """A cache entry of a finished run: `model/`, `log.csv`, `evals.csv`, `checkpoints.csv`, `summary.json`."""
    path: Path

    @property
    def log(self) -> pd.DataFrame:
        return pd.read_csv(self.path / "log.csv")

    @property
    def evals(self) -> pd.DataFrame:
        return pd.read_csv(self.path / "evals.csv")

    @property
    def checkpoints(self) -> pd.DataFrame:
        """One row per saved checkpoint: target_tokens, step, tokens, path (a folder for `load_local`)."""
        frame = pd.read_csv(self.path / "checkpoints.csv")
        frame["path"] = [str(self.path / p) for p in frame["path"]]
        return frame

    @property
    def summary(self) -> dict:
        return json.loads((self.path / "summary.json").read_text())

    def load(self, checkpoint_tokens: int | None = None, device: str | None = "auto"):
        """`(model, tokenizer)` at the end of training, or at the checkpoint saved for `checkpoint_tokens` (on the
        GPU when there is one, fp32: `caplab.substrate.models`)."""
        if checkpoint_tokens is None:
            return load_local(self.path / "model", device=device)
        rows = self.checkpoints.set_index("target_tokens")
        if checkpoint_tokens not in rows.index:
            raise KeyError(f"no checkpoint at {checkpoint_tokens} tokens; saved: {rows.index.tolist()}")
        return load_local(rows.path[checkpoint_tokens], device=device)


def _checkpoint_name(target_tokens: int) -> str:
    return f"checkpoints/tokens-{target_tokens:012d}"


def train_cached(model_spec: dict, dataset: TokenDataset, config: TrainConfig | dict, *, cache=None,
                 loss_fn: Callable | None = None, loss_name: str | None = None,
                 callbacks: list[Callback] = (), step: str = "train") -> TrainedRun:
    """Train `get_model(model_spec)` on `dataset` once; later calls with the same arguments read the entry back.
    A custom `loss_fn` must come with a `loss_name` (it is part of the key); callbacks are not (they only run
    when the entry is computed)."""
    from caplab.substrate.cache import atomic_write_text, default_cache

    if loss_fn is not None and not loss_name:
        raise ValueError("a custom loss_fn needs a loss_name for the cache key")
    cache, args = _run_key(model_spec, dataset, config, cache, loss_name)
    config = args["config"]

    built = []

    def build(tmp: Path) -> None:
        built.append(tmp)
        scratch = cache.scratch_path(step, args)
        model, tokenizer = get_model(model_spec)

        def save_checkpoint(m, info):
            if info["target_tokens"] is not None:
                m.save_pretrained(scratch / _checkpoint_name(info["target_tokens"]))
                tokenizer.save_pretrained(scratch / _checkpoint_name(info["target_tokens"]))

        result = train(model, dataset, config, callbacks=[*callbacks, save_checkpoint], loss_fn=loss_fn,
                       resume_dir=scratch)
        model.save_pretrained(tmp / "model")
        tokenizer.save_pretrained(tmp / "model")
        if (scratch / "checkpoints").exists():
            os.replace(scratch / "checkpoints", tmp / "checkpoints")
        result.log.to_csv(tmp / "log.csv", index=False)
        result.evals.to_csv(tmp / "evals.csv", index=False)
        saved = result.evals.dropna(subset=["target_tokens"])     # from the state, so rows before a resume too
        pd.DataFrame({"target_tokens": saved.target_tokens.astype("int64"), "step": saved.step,
                      "tokens": saved.tokens, "path": [_checkpoint_name(int(t)) for t in saved.target_tokens]}
                     ).to_csv(tmp / "checkpoints.csv", index=False)
        atomic_write_text(tmp / "summary.json", json.dumps(
            {"n_params": result.n_params, "steps": result.steps, "tokens": result.tokens,
             "flops": 6.0 * result.n_params["non_embedding"] * result.tokens,
             "flops_total": 6.0 * result.n_params["total"] * result.tokens,
             "seconds": float(result.log.seconds.iloc[-1]) if len(result.log) else 0.0}, indent=1))

    run = TrainedRun(cache.directory(step, args, build))
    _summarize(run, f"{step} {runlog.describe(model_spec)}", cached=not built)
    return run


def _run_key(model_spec: dict, dataset: TokenDataset, config: TrainConfig | dict, cache, loss_name: str | None):
    from caplab.substrate.cache import default_cache

    config = TrainConfig.from_dict(config) if isinstance(config, dict) else config
    cache = cache if cache is not None else default_cache()
    return cache, {"model": model_spec, "data": dataset_digest(dataset), "config": config, "loss": loss_name}


def is_trained(model_spec: dict, dataset: TokenDataset, config: TrainConfig | dict, *, cache=None,
               loss_name: str | None = None, step: str = "train") -> bool:
    """Whether `train_cached` with these arguments would read a finished entry back (no training)."""
    cache, args = _run_key(model_spec, dataset, config, cache, loss_name)
    return cache.contains(step, args)


def _summarize(run: TrainedRun, what: str, *, cached: bool) -> None:
    """The one line a training run leaves in its notebook cell."""
    summary, log = run.summary, run.log
    runlog.summary(what, steps=summary.get("steps"), tokens=summary.get("tokens"),
                   loss=float(log.loss.iloc[-1]) if len(log) else None, seconds=summary.get("seconds"),
                   cached=cached)


def prepare_base(spec: dict, corpus: TokenDataset, pretrain: dict, *, cache=None) -> dict:
    """The model spec a fine-tuning experiment starts from: a `pretrained` model as it is (then `pretrain` must be
    empty), or a tiny shape pre-trained on `corpus` with `pretrain` (a TrainConfig dict; cached), as a local path."""
    if "pretrained" in spec or "path" in spec:
        if pretrain:
            raise ValueError(f"the base {spec} is already trained: give an empty pretrain config, got {pretrain}")
        return dict(spec)
    if not pretrain:
        raise ValueError(f"the tiny base {spec} needs a pretrain config (TrainConfig keys)")
    run = train_cached(spec, corpus, TrainConfig.from_dict(pretrain), cache=cache, step="pretrain")
    return {"path": str(run.path / "model")}


# -- the settings' schema, checked by `caplab validate` before anything runs (caplab.params) --------------------
def _schema():
    from caplab.params import Fields
    # overrides of TrainConfig's defaults; not built here, since the caller adds what it decides itself
    # (a family's token budget, a fine-tune's learning rate)
    return Fields(TrainConfig, partial=True, construct=False, name="TrainConfig")


TRAIN = _schema()
"""Schema of a TrainConfig dict (a subset of its fields, each of its type): `Annotated[dict, TRAIN]`."""
