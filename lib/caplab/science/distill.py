"""Knowledge distillation and the law of capacity gap (Zhang et al. 2023, arXiv 2311.07052).

Loss (the paper's code): `alpha * CE(student, labels) + (1 - alpha) * softCE`, with
`softCE = -sum_v softmax(teacher / T)_v * log_softmax(student / T)_v`, both averaged over the positions whose
(shifted, as in the causal LM loss) label is not -100; alpha = 0.5, T = 1 in the paper. No T^2 factor is applied
(at T = 1 it makes no difference). softCE = KL(teacher || student) + H(teacher): the KL is what TRL's GKD loss
(`generalized_jsd_loss` at beta = 0) computes, and the teacher entropy does not depend on the student, so both give
the same gradients.

Training: `distill_cached` runs the teacher at every step (any model, the gpu tier); `distill_cached_logits` computes
a teacher's logits once on the distillation blocks (`TeacherLogits`) and shares them across students and seeds (the
cpu tier: tiny students cost less than a large teacher's forward pass). `train_teachers` trains a grid of tiny
teachers each at one tokens-per-parameter ratio (`TeacherBudget`, with a floor); `build_teachers` gives the grid of
a family spec (trained here, or a hub family as it is); `distilled_block_losses` distils every (teacher, student,
seed) and scores every student on every evaluation block (the paired design `caplab.science.teacher_grid` reads).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from caplab.substrate.evaluate import example_losses
from caplab.substrate.family import FAMILY, build_family, family_shapes, member_spec
from caplab.substrate.models import get_model, param_counts, strict_from_dict
from caplab.substrate.sweep import parallel
from caplab.substrate.train import TrainConfig, is_trained, train_cached


def distillation_terms(student_logits, teacher_logits, labels, temperature: float = 1.0) -> dict:
    """Per-token means over the shifted positions with a label: `ce` (student vs labels, at T = 1), `soft_ce`
    (teacher probs vs student log-probs at T), and `teacher_entropy` (at T), so soft_ce = KL + teacher_entropy."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ: teacher and student must share the tokenizer/vocab")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    labels = labels[:, 1:]
    mask = labels != -100
    dtype = torch.promote_types(student_logits.dtype, torch.float32)     # bf16/fp16 logits: softmax in fp32
    student = student_logits[:, :-1][mask].to(dtype)           # (n, V): the positions that carry a loss
    teacher = teacher_logits[:, :-1][mask].to(dtype).detach()
    count = max(int(mask.sum()), 1)                            # an empty batch gives 0, not nan
    ce = F.cross_entropy(student, labels[mask], reduction="sum") / count
    student_logp = F.log_softmax(student / temperature, dim=-1)
    teacher_logp = F.log_softmax(teacher / temperature, dim=-1)
    teacher_p = teacher_logp.exp()
    soft_ce = -(teacher_p * student_logp).sum() / count
    entropy = -(teacher_p * teacher_logp).sum() / count
    return {"ce": ce, "soft_ce": soft_ce, "teacher_entropy": entropy}


def distillation_loss(student_logits, teacher_logits, labels, alpha: float = 0.5, temperature: float = 1.0):
    """The paper's loss, `alpha * CE + (1 - alpha) * softCE` (module docstring); alpha = 1 is the plain LM loss."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    terms = distillation_terms(student_logits, teacher_logits, labels, temperature)
    return alpha * terms["ce"] + (1.0 - alpha) * terms["soft_ce"]


def _vocab_size(model) -> int:
    return model.get_output_embeddings().weight.shape[0]


def make_distill_loss_fn(teacher: torch.nn.Module, alpha: float = 0.5, temperature: float = 1.0):
    """A `loss_fn(model, batch)` for `train`/`train_cached`: the distillation loss of `model` (the student) against
    a frozen `teacher` (eval mode, no grad, moved to the batch's device). Raises ValueError if the vocabularies
    differ (teacher and student must share the tokenizer)."""
    if not 0.0 <= alpha <= 1.0 or temperature <= 0:
        raise ValueError(f"need 0 <= alpha <= 1 and temperature > 0, got alpha={alpha}, temperature={temperature}")
    teacher.eval().requires_grad_(False)

    def loss_fn(model, batch):
        if _vocab_size(model) != _vocab_size(teacher):
            raise ValueError(f"student vocab size {_vocab_size(model)} != teacher vocab size "
                             f"{_vocab_size(teacher)}: teacher and student must share the tokenizer")
        device = batch["input_ids"].device
        if next(teacher.parameters()).device != device:
            teacher.to(device)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        with torch.no_grad():
            teacher_logits = teacher(**inputs).logits
        student_logits = model(**inputs).logits
        return distillation_loss(student_logits, teacher_logits, batch["labels"], alpha, temperature)

    return loss_fn


def teacher_spec(teacher) -> tuple[dict, str]:
    """(model spec, cache identity) of a teacher given as a local path, `{"path": ...}` or
    `{"pretrained": hub id, "revision": ...}` (revision "main" when not given)."""
    if isinstance(teacher, (str, Path)):
        teacher = {"path": str(teacher)}
    if "path" in teacher:
        path = Path(teacher["path"]).resolve()
        return {**teacher, "path": str(path)}, str(path)
    if "pretrained" in teacher:
        revision = teacher.get("revision", "main")
        return {**teacher, "revision": revision}, f"{teacher['pretrained']}@{revision}"
    raise ValueError(f"a teacher is a local path, {{'path': ...}} or {{'pretrained': ..., 'revision': ...}}; "
                     f"got {teacher!r}")


def distill_cached(student_spec: dict, teacher_path, dataset, config, alpha: float = 0.5,
                   temperature: float = 1.0, *, cache=None, step: str = "distill"):
    """Train `get_model(student_spec)` on `dataset` with the distillation loss against the teacher, cached per
    (teacher, student, data, config, alpha, T): the key's loss name is `distill:<teacher path or id@rev>:alpha:T`.
    The teacher is loaded only when the entry has to be computed. Returns a `TrainedRun`."""
    spec, key = teacher_spec(teacher_path)
    loaded = {}

    def loss_fn(model, batch):
        if "fn" not in loaded:
            teacher, _ = get_model(spec)
            loaded["fn"] = make_distill_loss_fn(teacher, alpha, temperature)
        return loaded["fn"](model, batch)

    if not 0.0 <= alpha <= 1.0 or temperature <= 0:
        raise ValueError(f"need 0 <= alpha <= 1 and temperature > 0, got alpha={alpha}, temperature={temperature}")
    return train_cached(student_spec, dataset, config, cache=cache, loss_fn=loss_fn,
                        loss_name=f"distill:{key}:{alpha}:{temperature}", step=step)


# -- teachers at one tokens-per-parameter ratio, and their logits computed once -------------------------------
@dataclasses.dataclass(frozen=True)
class TeacherBudget:
    """Each tiny teacher's token budget: `tokens_per_param` times its non-embedding parameters, at least
    `min_tokens` (a floor for the smallest teachers, which at the ratio alone would take a handful of steps)."""
    tokens_per_param: float
    min_tokens: int = 0

    def __post_init__(self):
        if not self.tokens_per_param > 0 or self.min_tokens < 0:
            raise ValueError(f"need tokens_per_param > 0 and min_tokens >= 0, got {self}")

    def tokens(self, params: int) -> int:
        return max(int(math.ceil(self.tokens_per_param * params)), int(self.min_tokens))


def train_teachers(shapes: list[dict], corpus, config: dict, budget: TeacherBudget | dict, *, cache=None
                   ) -> pd.DataFrame:
    """Train every tiny teacher shape on `corpus` with one TrainConfig (`config`, without a length) for
    `budget.tokens(its non-embedding parameters)` tokens (cached). One row per teacher, smallest first: model,
    params_non_embedding, params_total, tokens, tokens_per_param, steps, seconds, path (the final model)."""
    budget = strict_from_dict(TeacherBudget, budget) if isinstance(budget, dict) else budget
    if "steps" in config or "max_tokens" in config:
        raise ValueError("the teachers' length comes from the budget: give no steps or max_tokens in their config")
    specs = [{k: v for k, v in shape.items() if k != "name"} for shape in shapes]
    counts = [param_counts(get_model(spec)[0]) for spec in specs]          # tiny: building one costs milliseconds
    tokens = [budget.tokens(c["non_embedding"]) for c in counts]
    runs = parallel([lambda spec=spec, n=n: train_cached(spec, corpus, TrainConfig.from_dict({**config, "max_tokens": n}),
                                                        cache=cache, step="teacher")
                     for spec, n in zip(specs, tokens)],
                    costs=[c["non_embedding"] * n for c, n in zip(counts, tokens)])
    rows = []
    for shape, spec, counts, run in zip(shapes, specs, counts, runs):
        summary = run.summary
        rows.append({"model": shape.get("name") or f"d{spec.get('d_model')}-L{spec.get('n_layer')}",
                     "params_non_embedding": counts["non_embedding"], "params_total": counts["total"],
                     "tokens": summary["tokens"], "tokens_per_param": summary["tokens"] / counts["non_embedding"],
                     "steps": summary["steps"], "seconds": summary["seconds"], "path": str(run.path / "model")})
    return pd.DataFrame(rows).sort_values("params_non_embedding", kind="stable").reset_index(drop=True)


def seeded(student: dict, seed: int) -> dict:
    """A student spec with its initialisation seed: a tiny shape takes `seed`; a pretrained or saved model has
    one initialisation (then only the data order varies with the seed)."""
    return dict(student) if "pretrained" in student or "path" in student else {**student, "seed": int(seed)}


class TeacherLogits:
    """A teacher's logits on every row of `dataset`, computed once (eval mode, no grad) and looked up by the row's
    tokens, so every student and seed distilled on these rows shares one teacher pass. A row is identified by its
    token ids: two identical rows have identical teacher logits, so the lookup is exact."""

    def __init__(self, teacher: torch.nn.Module, dataset, batch_size: int = 64):
        teacher.eval()
        chunks = []
        with torch.no_grad():
            for start in range(0, len(dataset), batch_size):
                batch = dataset.batch(slice(start, start + batch_size))
                if batch["input_ids"].shape[1] != dataset.input_ids.shape[1]:
                    raise ValueError("TeacherLogits needs full rows (packed blocks without padding)")
                chunks.append(teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
                                      ).logits.float())
        self.logits = torch.cat(chunks)
        self.index = {row.numpy().tobytes(): i for i, row in enumerate(dataset.input_ids)}
        self.vocab = self.logits.shape[-1]

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        rows = input_ids.cpu()
        try:
            index = [self.index[row.numpy().tobytes()] for row in rows]
        except KeyError:
            raise ValueError("a batch row is not among the rows the teacher's logits were computed on") from None
        return self.logits[index].to(input_ids.device)


def distill_cached_logits(student_spec: dict, teacher, dataset, config, alpha: float = 0.5, temperature: float = 1.0,
                          *, teacher_logits: dict | None = None, cache=None, step: str = "distill"):
    """`distill_cached` with the teacher's logits computed once on `dataset` (`TeacherLogits`) and kept in the
    caller's dict `teacher_logits` (keyed by the teacher's identity), so the students and seeds of one teacher
    share its pass; cached under the loss name `distill-logits:<teacher>:alpha:T`. Loss as `distillation_loss`."""
    spec, key = teacher_spec(teacher)
    memo = teacher_logits if teacher_logits is not None else {}
    if not 0.0 <= alpha <= 1.0 or temperature <= 0:
        raise ValueError(f"need 0 <= alpha <= 1 and temperature > 0, got alpha={alpha}, temperature={temperature}")

    def loss_fn(model, batch):
        _teacher_pass(memo, teacher, dataset)
        if _vocab_size(model) != memo[key].vocab:
            raise ValueError(f"student vocab size {_vocab_size(model)} != teacher vocab size {memo[key].vocab}: "
                             f"teacher and student must share the tokenizer")
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return distillation_loss(model(**inputs).logits, memo[key](batch["input_ids"]), batch["labels"], alpha,
                                 temperature)

    return train_cached(student_spec, dataset, config, cache=cache, loss_fn=loss_fn,
                        loss_name=_logits_loss_name(key, alpha, temperature), step=step)


def _logits_loss_name(key: str, alpha: float, temperature: float) -> str:
    return f"distill-logits:{key}:{alpha}:{temperature}"


def _teacher_pass(memo: dict, teacher, dataset) -> None:
    """Fill `memo` with this teacher's logits on `dataset` (one teacher's at a time) unless they are there."""
    spec, key = teacher_spec(teacher)
    if key not in memo:
        memo.clear()
        memo[key] = TeacherLogits(get_model(spec)[0], dataset)


def build_teachers(spec: dict, corpus, config: dict, budget: dict, *, cache=None) -> pd.DataFrame:
    """The teacher grid of a family spec: tiny shapes (`log_spaced_shapes` of the spec) trained here by
    `train_teachers` at the budget's tokens per parameter, or a hub family as it is (`build_family`; then `config`
    and `budget` must be empty). One row per teacher with `params_non_embedding` and a model spec column `spec`."""
    FAMILY.check(spec, "teachers", "")
    if spec["kind"] == "tiny":
        if not budget:
            raise ValueError("tiny teachers need a teacher_budget (tokens_per_param, min_tokens)")
        frame = train_teachers(family_shapes(spec), corpus, config, budget, cache=cache)
    else:
        if budget:
            raise ValueError("a hub family is already trained: give an empty teacher_budget")
        frame = build_family(spec, None, config, {}, cache=cache)
        frame = frame[frame.revision == frame.revision.iloc[-1]].reset_index(drop=True)   # the final revision
    frame["spec"] = [member_spec(row) for row in frame.to_dict("records")]
    return frame


def distilled_block_losses(students: list[dict], seeds: list[int], teachers: pd.DataFrame, dataset, config: dict,
                           eval_blocks, *, alpha: float = 0.5, temperature: float = 1.0,
                           teacher_logits: str = "precomputed", cache=None) -> pd.DataFrame:
    """Every student, for every seed (its init and data order: `seeded`, and `config`'s seed), distilled from every
    teacher of `teachers` (rows with `spec` and `params_non_embedding`) and trained alone on `dataset` (cached
    runs), each scored on every evaluation block. Tidy rows: student_params, teacher (model name, "none" alone),
    teacher_params (nan alone), seed, block, loss (mean nats per token of the block). `teacher_logits`:
    "precomputed" (one teacher pass per teacher on `dataset`, `distill_cached_logits`; teachers run outermost) or
    "online" (the teacher runs at every step, `distill_cached`)."""
    if teacher_logits not in ("precomputed", "online"):
        raise ValueError(f"teacher_logits must be 'precomputed' or 'online', got {teacher_logits!r}")
    if "seed" in config:
        raise ValueError("give the seeds as `seeds`, not in the student's config")
    sizes = {}
    for student in students:
        model, _ = get_model(seeded(student, seeds[0]))
        sizes[repr(student)] = param_counts(model)["non_embedding"]
    if len(set(sizes.values())) < len(sizes):
        raise ValueError(f"students are told apart by their non-embedding size, and two are the same size: "
                         f"{sizes}")
    frames = []

    def score(run, student, seed, teacher, params):
        losses = example_losses(run.load()[0], eval_blocks).loss.to_numpy(float)
        frames.append(pd.DataFrame({"student_params": sizes[repr(student)], "teacher": teacher,
                                    "teacher_params": params, "seed": seed, "block": np.arange(len(losses)),
                                    "loss": losses}))

    # Every (student, seed) run of one teacher trains side by side, one per core (`sweep.parallel`); the teacher's
    # logits are computed once in this process first, and the forked runs share them.
    pairs = [(student, seed) for student in students for seed in seeds]
    costs = [sizes[repr(student)] for student, _ in pairs]
    runs = parallel([lambda s=s, seed=seed: train_cached(seeded(s, seed), dataset, {**config, "seed": seed},
                                                         cache=cache, step="student-alone") for s, seed in pairs],
                    costs=costs)
    for (student, seed), run in zip(pairs, runs):
        score(run, student, seed, "none", np.nan)
    memo: dict = {}
    for teacher in teachers.itertuples():
        if teacher_logits == "precomputed":
            key = teacher_spec(teacher.spec)[1]
            if not all(is_trained(seeded(s, seed), dataset, {**config, "seed": seed}, cache=cache, step="distill",
                                  loss_name=_logits_loss_name(key, alpha, temperature)) for s, seed in pairs):
                _teacher_pass(memo, teacher.spec, dataset)

        def distil(student, seed, teacher=teacher):
            cfg = {**config, "seed": seed}
            return (distill_cached_logits(seeded(student, seed), teacher.spec, dataset, cfg, alpha, temperature,
                                          teacher_logits=memo, cache=cache) if teacher_logits == "precomputed"
                    else distill_cached(seeded(student, seed), teacher.spec, dataset, cfg, alpha, temperature,
                                        cache=cache))

        runs = parallel([lambda s=s, seed=seed: distil(s, seed) for s, seed in pairs], costs=costs)
        for (student, seed), run in zip(pairs, runs):
            score(run, student, seed, teacher.model, float(teacher.params_non_embedding))
    return pd.concat(frames, ignore_index=True)
