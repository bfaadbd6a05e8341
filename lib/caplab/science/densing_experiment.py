"""The densing paper's experiment (Xiao et al. 2024, arXiv 2412.04315): families, targets, tidy tables, claims.

The notebook `notebooks/densing.ipynb` calls, in order:

    items = benchmark_items(p.benchmark)                          # test items: prompt, target, benchmark
    corpora = build_corpora(p, items, tokenizer)                   # reference / task-rich / contaminated mixes
    models = build_models(p, corpora)                              # one row per model: role, params, tokens, date
    scores = score_items(models, items)                            # one row per (model, item): loss, correct
    est = estimate(models, scores, p)                              # the two fits, densities, claim metrics
    boot = item_bootstrap(models, scores, p, est)                  # intervals: items resampled, fits redone

Roles: "reference" (step 1, the loss law, and also points for step 2), "sigmoid" (the second family of step 2,
its largest `sigmoid_held_out` models held out), "target" (models whose density is read), "reference_alt" (a second
reference family of another recipe, used only by `sensitivity`, where it takes the reference's place). Targets are built by
known interventions on the reference recipe (constant learning rate after warmup, the reference corpus):
over-training (more tokens: denser), a task-rich mix (denser), pruning (magnitude, no retraining: less dense),
contamination (the test items in the corpus: inflated), each with a synthetic release date. At the gpu tier the
same rows come from the hub (`pretrained`), and the same functions run.

Scores: the mean over benchmarks and items of the share of each item's decisions (comparison signs and the label;
step results and the answer: `caplab.substrate.worked.decisions`) where the model's argmax is right given the
written target before it (teacher forcing; every target token where items carry no decisions, e.g. a hub
dataset). All-decisions-right was tried first: the cpu tier's tiny models scored 0-9 %, too flat for step 2; losses: the mean over benchmarks of the per-token conditional
loss -log P(target | prompt). Undefined densities (the inversion's floor and ceiling, see
`caplab.science.densing`) are NaN with their status in point estimates, and their limits (0 below the sigmoid's
floor, infinity above its ceiling) inside bootstrap resamples, so that percentiles stay order statistics.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import torch

from caplab.params import Fields, Kinds, Tier, optional
from caplab.science import densing
from caplab.stats.fitting import fit_law
from caplab.substrate import data, worked
from caplab.substrate.cache import default_cache
from caplab.substrate.evaluate import example_losses
from caplab.substrate.family import CHECKPOINTS, FAMILY, build_family, for_each_checkpoint
from caplab.substrate.models import MODEL, get_model, param_counts
from caplab.substrate.sweep import parallel
from caplab.substrate.train import TRAIN, TrainConfig, train_cached


# -- the parameters' schemas (caplab.params): nested settings checked at any depth before anything runs ----------
BENCHMARK = Kinds({
    "worked": Fields({"kinds": list[Literal["choice", "chain"]], "n_test": int, "seed": int}, name="worked items",
                     required=("kinds", "n_test"), partial=False),
    "hf": Fields({"path": str, "name": str | None, "split": str, "revision": str | None, "prompt_field": str,
                  "target_field": str, "benchmark_field": str, "decisions_field": str, "max_rows": int},
                 name="hf items", required=("path", "split", "prompt_field", "target_field"), partial=False)},
    name="benchmark spec")
CORPUS = Fields({"n_items": int, "filler_sentences": int, "filler_vocab": int, "block_size": int, "seed": int},
                name="corpus", required=("n_items", "filler_sentences", "filler_vocab", "block_size", "seed"),
                partial=False)
TASK_RICH = Fields({"n_items": int, "filler_sentences": int}, name="task-rich mix",
                   required=("n_items", "filler_sentences"), partial=False)
LISTED = Fields({"models": list[Annotated[dict, Fields({"pretrained": str, "revision": str | None, "params": int,
                                                        "tokens": int}, name="listed model", partial=False,
                                                       required=("pretrained", "params", "tokens"))]]},
                name="listed family", required=("models",), partial=False)
FAMILY_OR_LISTED = Kinds({**FAMILY.kinds, "listed": LISTED}, name="family spec")
TARGET = Fields({"name": str, "date": str,
                 "data": Literal["reference", "task_rich", "contaminated", "contaminated_clean"],
                 "tokens_x": float, "check": str, "growth": bool, "source": str, "prune": float, "pretrained": str,
                 "revision": str | None, "params": int}, name="target", required=("name", "date"), partial=False)


@dataclasses.dataclass
class Params:
    """The notebook's parameters; defaults are the cpu tier (our choices for a ~10-minute analogue on 2 cores,
    scaled from the paper's design: 6 reference sizes x 6 token multiples, a second family for step 2 with two
    held-out models, D0 = 1T tokens [paper, arXiv v2 sec. 2-3])."""

    tier: Tier = "cpu"
    # test items: the two kinds of the paper's loss (multiple choice + analysis; reasoning steps + answer)
    benchmark: Annotated[dict, BENCHMARK] = dataclasses.field(default_factory=lambda: {"kind": "worked", "kinds": ["choice", "chain"],
                                                                 "n_test": 150, "seed": 100})
    # the reference corpus: task-like training items (test items excluded) and a filler language
    corpus: Annotated[dict, optional(CORPUS)] = dataclasses.field(default_factory=lambda: {"n_items": 5000, "filler_sentences": 8000,
                                                              "filler_vocab": 300, "block_size": 64, "seed": 0})
    task_rich: Annotated[dict, optional(TASK_RICH)] = dataclasses.field(default_factory=lambda: {"n_items": 10000, "filler_sentences": 2000})
    contamination_copies: int = 150          # copies of every test item added to the contaminated corpus (a
                                             # strong dose: ~3/4 of its blocks, ~24 passes over each test item in
                                             # 3 D0 tokens; 3 copies at D0, under one pass, inflated nothing and 150
                                             # at D0 (~8 passes) too little to tell: our runs)
    reference: Annotated[dict, FAMILY_OR_LISTED] = dataclasses.field(default_factory=lambda: {
        "kind": "tiny", "n": 4, "min_params": 8000, "max_params": 120000, "family": "gpt_neox", "head_dim": 16,
        "aspect": 24.0, "max_seq_len": 64, "seed": 0})
    reference_train: Annotated[dict, optional(TRAIN)] = dataclasses.field(default_factory=lambda: {
        "batch_size": 32, "lr": 0.003, "warmup_steps": 20, "schedule": "constant", "seed": 0})
    reference_checkpoints: Annotated[dict, optional(CHECKPOINTS)] = dataclasses.field(default_factory=lambda: {"first": 100000, "last": 400000,
                                                                             "n": 3})
    # a second reference family (another recipe: here a deeper, narrower shape, d_model = 8 n_layer against 24) on
    # which step 1 is refitted to report the growth rate's sensitivity to the choice of reference family (the
    # paper uses one family; our choice). {}: not run
    reference_alt: Annotated[dict, optional(FAMILY_OR_LISTED)] = dataclasses.field(default_factory=lambda: {
        "kind": "tiny", "n": 4, "min_params": 8000, "max_params": 120000, "family": "gpt_neox", "head_dim": 16,
        "aspect": 8.0, "max_seq_len": 64, "seed": 3})
    reference_alt_data: Literal["reference", "task_rich"] = "reference"   # the second family's corpus
    sigmoid_family: Annotated[dict, FAMILY_OR_LISTED] = dataclasses.field(default_factory=lambda: {
        "kind": "tiny", "n": 4, "min_params": 15000, "max_params": 250000, "family": "llama", "head_dim": 16,
        "aspect": 24.0, "max_seq_len": 64, "seed": 2})
    sigmoid_held_out: int = 2                # the paper holds out its two largest step-2 models
    sigmoid_includes_reference: bool = True  # step 2 also sees the reference models (cpu: too few larger ones)
    sigmoid_tokens: int = 600000             # the step-2 family's training tokens: its scores must reach the
                                             # targets' (at D0 alone they plateau below them: our measurement)
    D0: int = 200000                         # tokens; the paper's D0 = 1T (arXiv), 5T (journal) [paper, notes]
    D0_sensitivity: list[int] = dataclasses.field(default_factory=lambda: [100000, 200000, 400000])
    target_shape: Annotated[dict, optional(MODEL)] = dataclasses.field(default_factory=lambda: {
        "family": "gpt_neox", "d_model": 48, "n_layer": 2, "n_head": 3, "max_seq_len": 64, "seed": 1})
    targets: list[Annotated[dict, TARGET]] = dataclasses.field(default_factory=lambda: [
        {"name": "ref", "date": "2023-03-01", "data": "reference", "tokens_x": 1, "check": "reference"},
        {"name": "ref-pruned30", "date": "2023-04-15", "source": "ref", "prune": 0.3},
        {"name": "over3", "date": "2023-06-01", "data": "reference", "tokens_x": 3},
        {"name": "rich", "date": "2023-08-01", "data": "task_rich", "tokens_x": 1},
        {"name": "over3-pruned30", "date": "2023-10-01", "source": "over3", "prune": 0.3},
        {"name": "rich-over3", "date": "2023-12-01", "data": "task_rich", "tokens_x": 3},
        {"name": "rich-over3-pruned50", "date": "2024-02-01", "source": "rich-over3", "prune": 0.5},
        {"name": "contaminated", "date": "2023-09-01", "data": "contaminated", "tokens_x": 3,
         "check": "contamination", "growth": False},
        {"name": "contaminated-clean", "date": "2023-09-01", "data": "contaminated_clean", "tokens_x": 3,
         "check": "contamination_clean", "growth": False}])
    date_origin: str = "2023-02-24"          # Llama-1's release, the paper's t = 0
    n_boot: int = 200
    n_perm: int = 2000
    starts: int = 24
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Params":
        from caplab.substrate.models import strict_from_dict
        params = strict_from_dict(cls, values)
        params.check()
        return params

    def check(self) -> None:
        """Reject bad settings before any compute."""
        names = [t["name"] for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError(f"target names repeat: {names}")
        for t in self.targets:
            allowed = {"name", "date", "data", "tokens_x", "check", "growth", "source", "prune", "pretrained",
                       "revision", "params"}
            if set(t) - allowed:
                raise ValueError(f"target {t.get('name')}: unknown keys {sorted(set(t) - allowed)}")
            dt.date.fromisoformat(t["date"])
            if "source" in t and t["source"] not in names:
                raise ValueError(f"target {t['name']}: source {t['source']!r} is not a target")
            if "prune" in t and not 0 < t["prune"] < 1:
                raise ValueError(f"target {t['name']}: prune must be a fraction in (0, 1)")
            if "data" in t and t["data"] not in ("reference", "task_rich", "contaminated", "contaminated_clean"):
                raise ValueError(f"target {t['name']}: data must be reference, task_rich, contaminated or "
                                 f"contaminated_clean")
        if self.D0 <= 0 or self.sigmoid_held_out < 0 or self.n_boot < 2:
            raise ValueError("need D0 > 0, sigmoid_held_out >= 0, n_boot >= 2")


# -- items and corpora --------------------------------------------------------------------------------------------
def benchmark_items(spec: dict) -> pd.DataFrame:
    """Test items (prompt, target, benchmark, item): synthetic worked items, or a Hugging Face dataset
    ({"kind": "hf", "path", "split", "name", "prompt_field", "target_field", "benchmark_field", "max_rows"})."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind == "worked":
        frames = [worked.items(k, spec["n_test"], seed=spec.get("seed", 0)) for k in spec["kinds"]]
        out = pd.concat(frames, ignore_index=True)
    elif kind == "hf":
        import datasets
        load = {k: spec[k] for k in ("path", "name", "split", "revision") if k in spec}
        rows = datasets.load_dataset(**load)
        if spec.get("max_rows"):
            rows = rows.shuffle(seed=0).select(range(min(int(spec["max_rows"]), len(rows))))
        out = pd.DataFrame({"prompt": rows[spec["prompt_field"]], "target": rows[spec["target_field"]],
                            "benchmark": rows[spec["benchmark_field"]] if spec.get("benchmark_field") else "all"})
    else:
        raise ValueError(f"benchmark kind must be 'worked' or 'hf', got {kind!r}")
    if "decisions" not in out:
        out["decisions"] = None
    return out.assign(item=np.arange(len(out)))[["item", "benchmark", "prompt", "target", "decisions"]]


def _mix(n_items: int, filler_sentences: int, kinds, exclude, seed: int, filler_vocab: int, extra=()) -> list[str]:
    texts = [p + t for k in kinds for p, t in zip(*worked.items(k, n_items, seed=seed + 1, exclude=exclude)[
        ["prompt", "target"]].T.values)]
    texts += data.zipf_language(filler_sentences, vocab_size=filler_vocab, seed=seed) if filler_sentences else []
    texts += list(extra)
    order = np.random.default_rng(seed).permutation(len(texts))
    return [texts[i] for i in order]


def build_corpora(p: Params, items: pd.DataFrame) -> dict[str, data.TokenDataset]:
    """The reference corpus, the task-rich mix, the contaminated corpus (the reference corpus plus
    `contamination_copies` copies of the test items' blocks) and its dose-matched clean twin (the same number of
    copies of as many fresh items of the same kinds, never a test prompt), packed into blocks with the tiny family's
    tokenizer. Training items never repeat a test prompt. The clean twin separates what the repeated test items
    inflate from what repeated task-like text adds. Nothing (an empty dict) when no model is trained here (the gpu
    tier's released models)."""
    trains = "tiny" in (p.reference.get("kind"), p.sigmoid_family.get("kind"), p.reference_alt.get("kind")) or any(
        "data" in t for t in p.targets)
    if not trains:
        return {}
    from caplab.substrate.family import family_tokenizer
    tokenizer = family_tokenizer(p.reference if p.reference.get("kind") == "tiny" else {"kind": "tiny"})
    c, kinds, exclude = p.corpus, p.benchmark.get("kinds", ["choice", "chain"]), set(items.prompt)
    common = dict(kinds=kinds, exclude=exclude, seed=c["seed"], filler_vocab=c["filler_vocab"])
    fresh = pd.concat([worked.items(k, int((items.benchmark == k).sum()), seed=c["seed"] + 2, exclude=exclude)
                       for k in kinds], ignore_index=True)
    out = {"reference": data.pack_blocks(_mix(c["n_items"], c["filler_sentences"], **common), tokenizer,
                                         c["block_size"]),
           "task_rich": data.pack_blocks(_mix(p.task_rich["n_items"], p.task_rich["filler_sentences"], **common),
                                         tokenizer, c["block_size"])}
    for name, rows in (("contaminated", items), ("contaminated_clean", fresh)):
        dose = data.pack_blocks([a + b for a, b in zip(rows.prompt, rows.target)], tokenizer, c["block_size"])
        out[name] = data.TokenDataset(*(torch.cat([getattr(out["reference"], f)] + [getattr(dose, f)]
                                                  * p.contamination_copies)
                                        for f in ("input_ids", "attention_mask", "labels")))
    return out


# -- models ----------------------------------------------------------------------------------------------------
def _days(date: str, origin: str) -> int:
    return (dt.date.fromisoformat(date) - dt.date.fromisoformat(origin)).days


def prune_magnitude(path: str, fraction: float, *, cache=None) -> tuple[str, int]:
    """A copy of the saved model at `path` with the smallest `fraction` of its non-embedding matrix weights (global
    magnitude) set to zero, no retraining; returns (saved path, non-zero non-embedding parameters). Cached."""
    cache = cache if cache is not None else default_cache()

    def build(tmp):
        model, tokenizer = get_model({"path": path})
        matrices = [m.weight for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)
                    and m is not model.get_output_embeddings()]
        magnitudes = torch.cat([w.detach().abs().flatten() for w in matrices])
        k = max(1, int(round(fraction * magnitudes.numel())))
        threshold = torch.kthvalue(magnitudes, k).values
        with torch.no_grad():
            for w in matrices:
                w[w.abs() <= threshold] = 0.0
        model.save_pretrained(tmp / "model")
        tokenizer.save_pretrained(tmp / "model")

    folder = cache.directory("densing-prune", {"source": path, "fraction": fraction}, build)
    model, _ = get_model({"path": str(folder / "model")})
    counts = param_counts(model)
    zeros = sum(int((m.weight == 0).sum()) for m in model.modules() if isinstance(m, torch.nn.Linear)
                and m is not model.get_output_embeddings())
    return str(folder / "model"), counts["non_embedding"] - zeros


def family_rows(spec: dict, corpus, config: dict, checkpoints: dict) -> pd.DataFrame:
    """A family frame: trained here (`build_family`, kind "tiny" or Pythia-style "hub"), or {"kind": "listed",
    "models": [{"pretrained", "revision", "params", "tokens"}, ...]} for released models with no step revisions
    (their parameter and token counts given, from the model cards)."""
    if spec.get("kind") != "listed":
        return build_family(spec, corpus, config, checkpoints)
    if config or checkpoints or set(spec) != {"kind", "models"}:
        raise ValueError("a listed family takes only 'models' (and no train config or checkpoints)")
    return pd.DataFrame([{"model": m["pretrained"].split("/")[-1], "params_non_embedding": float(m["params"]),
                          "tokens": float(m["tokens"]), "target_tokens": int(m["tokens"]), "path": None,
                          "pretrained": m["pretrained"], "revision": m.get("revision", "main")}
                         for m in spec["models"]])


def build_models(p: Params, corpora: dict[str, data.TokenDataset]) -> pd.DataFrame:
    """Every model of the experiment, one row each: model, role, params (non-embedding, non-zero), tokens, date,
    t (days since `date_origin`), check, growth, path or pretrained/revision."""
    rows = []
    ref = family_rows(p.reference, corpora.get("reference"), p.reference_train, p.reference_checkpoints)
    for r in ref.to_dict("records"):
        rows.append({**_family_row(r), "role": "reference", "model": f"ref:{r['model']}@{r['target_tokens']}"})
    sig_checkpoints = ({"first": p.sigmoid_tokens, "last": p.sigmoid_tokens, "n": 1}
                       if p.sigmoid_family.get("kind") == "tiny" else {})
    sig_train = {k: v for k, v in p.reference_train.items()} if p.sigmoid_family.get("kind") == "tiny" else {}
    sig = family_rows(p.sigmoid_family, corpora.get("reference"), sig_train, sig_checkpoints)
    for r in sig.to_dict("records"):
        rows.append({**_family_row(r), "role": "sigmoid", "model": f"sig:{r['model']}@{r['target_tokens']}"})
    if p.reference_alt:
        alt = family_rows(p.reference_alt, corpora.get(p.reference_alt_data), p.reference_train,
                          p.reference_checkpoints)
        for r in alt.to_dict("records"):
            rows.append({**_family_row(r), "role": "reference_alt", "model": f"alt:{r['model']}@{r['target_tokens']}"})
    rows += _targets(p, corpora)
    out = pd.DataFrame(rows)
    return out.assign(t=[_days(d, p.date_origin) if isinstance(d, str) else np.nan for d in out.date])


def _family_row(r: dict) -> dict:
    row = {"params": float(r["params_non_embedding"]), "tokens": float(r["tokens"]), "date": None,
           "check": None, "growth": False, "path": r.get("path")}
    if r.get("pretrained"):
        row.update(pretrained=r["pretrained"], revision=r.get("revision"))
    return row


def _targets(p: Params, corpora) -> list[dict]:
    done: dict[str, dict] = {}
    runs: dict[str, list[int]] = {}
    for t in p.targets:                                  # one run per corpus, checkpoints at each multiple of D0
        if "data" in t:
            runs.setdefault(t["data"], []).append(int(t["tokens_x"] * p.D0))
    paths = {}
    configs = {name: TrainConfig.from_dict({**p.reference_train, "max_tokens": max(tokens),
                                            "checkpoint_tokens": tuple(sorted(set(tokens)))})
               for name, tokens in runs.items()}
    trained = parallel([lambda name=name: train_cached(p.target_shape, corpora[name], configs[name],
                                                       step="densing-target") for name in runs],
                       costs=[max(tokens) for tokens in runs.values()])
    for (corpus_name, tokens), run in zip(runs.items(), trained):
        ckpts = run.checkpoints.set_index("target_tokens")
        n = run.summary["n_params"]["non_embedding"]
        for tok in set(tokens):
            paths[(corpus_name, tok)] = (ckpts.path[tok], float(ckpts.tokens[tok]), float(n))
    for t in p.targets:                                  # in order: a pruned target's source comes first
        base = {"model": t["name"], "role": "target", "date": t["date"], "check": t.get("check"),
                "growth": t.get("growth", True), "pretrained": t.get("pretrained"), "revision": t.get("revision")}
        if "pretrained" in t:
            row = {**base, "params": float(t["params"]), "tokens": np.nan, "path": None, "source": t.get("source")}
        elif "data" in t:
            path, tokens, n = paths[(t["data"], int(t["tokens_x"] * p.D0))]
            row = {**base, "params": n, "tokens": tokens, "path": path, "source": None}
        else:
            source = done[t["source"]]
            path, n = prune_magnitude(source["path"], t["prune"])
            row = {**base, "params": float(n), "tokens": source["tokens"], "path": path, "source": t["source"]}
        done[t["name"]] = row
    return list(done.values())


# -- scoring -----------------------------------------------------------------------------------------------------
def decision_labels(tokens: data.TokenDataset, items: pd.DataFrame, tokenizer) -> data.TokenDataset:
    """`tokens` with labels only at the targets' decision characters (`items.decisions`, character positions in
    the target; None or missing: every target token, i.e. exact match of the whole written target)."""
    if "decisions" not in items or items.decisions.isna().all():
        return tokens
    labels = torch.full_like(tokens.labels, -100)
    for i, (prompt, target, marks) in enumerate(zip(items.prompt, items.target, items.decisions)):
        if marks is None:
            labels[i] = tokens.labels[i]
            continue
        chars = {len(prompt) + int(m) for m in marks}
        offsets = tokenizer(prompt + target, return_offsets_mapping=True)["offset_mapping"]
        for j, (start, end) in enumerate(offsets):
            if end > start and start in chars:
                labels[i, j] = tokens.input_ids[i, j]
    return data.TokenDataset(tokens.input_ids, tokens.attention_mask, labels)


@torch.no_grad()
def decision_accuracy(model, dataset: data.TokenDataset, batch_size: int = 64) -> np.ndarray:
    """Per row: the share of labelled positions where the model's argmax (teacher-forced) is the label."""
    model.eval()
    device, out = next(model.parameters()).device, []
    for start in range(0, len(dataset), batch_size):
        batch = {k: v.to(device) for k, v in dataset.batch(slice(start, start + batch_size)).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        labels = batch["labels"][:, 1:]
        scored = labels != -100
        hit = (logits.argmax(-1) == labels) & scored
        out.append((hit.sum(1).float() / scored.sum(1).clamp(min=1).float()).cpu().numpy())
    return np.concatenate(out)


def _item_scores(model, tokenizer, row, items):
    tokens = data.pad_examples(items.prompt.tolist(), items.target.tolist(), tokenizer)
    per = example_losses(model, tokens)
    right = decision_accuracy(model, decision_labels(tokens, items, tokenizer))
    return [{"item": int(i), "benchmark": b, "loss_sum": float(ls), "n_tokens": int(nt), "correct": float(c)}
            for i, b, ls, nt, c in zip(items.item, items.benchmark, per.loss_sum, per.n_tokens, right)]


def score_items(models: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, item): loss_sum, n_tokens (the conditional loss of the written target) and correct
    (the share of the target's decisions where the argmax is right, given what precedes it: a graded item score
    whose chance floor the sigmoid's d absorbs, as MMLU's 25 %). Cached per model and item set."""
    frame = for_each_checkpoint(models[["model", "path"] + (["pretrained", "revision"]
                                                          if "pretrained" in models and models.pretrained.notna().any()
                                                          else [])], _item_scores,
                                args={"items": items[[c for c in ("item", "benchmark", "prompt", "target",
                                                                  "decisions") if c in items]]},
                                name="densing-item-scores")
    return frame.drop(columns=[c for c in ("path", "pretrained", "revision") if c in frame.columns])


class Matrices:
    """Item-level results as arrays [model x item] for fast aggregation under resampling weights."""

    def __init__(self, models: pd.DataFrame, scores: pd.DataFrame, benchmarks: list[str] | None = None):
        if benchmarks is not None:
            scores = scores[scores.benchmark.isin(benchmarks)]
        self.models = list(models.model)
        pivot = lambda col: scores.pivot(index="model", columns="item", values=col).loc[self.models]  # noqa: E731
        self.loss_sum = pivot("loss_sum").to_numpy(float)
        self.n_tokens = pivot("n_tokens").to_numpy(float)
        self.correct = pivot("correct").to_numpy(float)
        bench = scores.drop_duplicates("item").set_index("item").benchmark
        self.benchmark = bench.loc[pivot("correct").columns].to_numpy()
        self.groups = [np.flatnonzero(self.benchmark == b) for b in sorted(set(self.benchmark))]

    def aggregate(self, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(loss, score) per model: the mean over benchmarks of the per-token loss and of the accuracy."""
        w = np.ones(self.correct.shape[1]) if weights is None else weights
        loss = np.mean([(self.loss_sum[:, g] @ w[g]) / (self.n_tokens[:, g] @ w[g]) for g in self.groups], axis=0)
        score = np.mean([(self.correct[:, g] @ w[g]) / w[g].sum() for g in self.groups], axis=0)
        return loss, score

    def resample(self, rng: np.random.Generator) -> np.ndarray:
        """Bootstrap weights: items drawn with replacement within each benchmark (paired across models)."""
        w = np.zeros(self.correct.shape[1])
        for g in self.groups:
            w[g] = np.bincount(rng.integers(0, len(g), len(g)), minlength=len(g))
        return w


# -- estimation --------------------------------------------------------------------------------------------------
def held_out_mask(models: pd.DataFrame, n: int) -> np.ndarray:
    """The `n` largest models of the step-2 family."""
    sig = models[models.role == "sigmoid"]
    largest = sig.sort_values("params").model.tail(n) if n else []
    return models.model.isin(largest).to_numpy()


def fit_steps(models, loss, score, p: Params, *, start: dict | None = None):
    """(step-1 Fit, step-2 Fit) on the given per-model loss and score. `start`: refit from these parameters only
    (one start each, as a bootstrap refit does), else `p.starts` random starts."""
    ref = (models.role == "reference").to_numpy()
    frame = models.assign(loss=loss, score=score)
    sig_rows = (((ref & p.sigmoid_includes_reference) | (models.role == "sigmoid").to_numpy())
                & ~held_out_mask(models, p.sigmoid_held_out))
    if start is None:
        loss_fit = densing.fit_loss(frame[ref], params="params", tokens="tokens", starts=p.starts, seed=p.seed)
        sig_fit = densing.fit_sigmoid(frame[sig_rows], starts=p.starts, seed=p.seed)
    else:
        loss_fit = fit_law(densing.LOSS_LAW, frame[ref], inputs={"N": "params", "D": "tokens"}, target="loss",
                           starts=[start["loss"]], warn=False)
        sig_fit = fit_law(densing.SIGMOID, frame[sig_rows], inputs={"L": "loss"}, target="score",
                          starts=[start["sigmoid"]], warn=False)
    return loss_fit, sig_fit


def log_density(models, score, loss_params, sig_params, D0, *, limits: bool) -> tuple[np.ndarray, np.ndarray]:
    """(ln density, status) of every row; undefined rows NaN, or their limits (-inf below the floor, +inf above
    the ceiling or beyond the loss limit) when `limits`."""
    return _log_density(models.params.to_numpy(float), score, loss_params, sig_params, D0, limits=limits)


def _log_density(params, score, loss_params, sig_params, D0, *, limits: bool):
    loss_hat, status = densing.loss_from_score(sig_params, score)
    n_hat, status_n = densing.size_from_loss(loss_params, loss_hat, D0)
    status = np.where(status == densing.OK, status_n, status)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.log(np.where(status == densing.OK, n_hat, np.nan) / params)
    if limits:
        value = np.where(status == densing.BELOW_FLOOR, -np.inf, np.where(status == densing.OK, value, np.inf))
    return value, status


@dataclasses.dataclass(frozen=True)
class Layout:
    """What `claim_metrics` reads from the model table, found once per table (a bootstrap's resamples share it)."""

    params: np.ndarray
    targets: np.ndarray            # row indices of the targets
    target_names: tuple[str, ...]
    held: np.ndarray               # mask: step 2's held-out models
    fit_rows: np.ndarray           # mask: step 2's fitted models
    pairs: tuple[tuple[int, int], ...]   # (pruned, source) row indices
    checks: dict                   # check name -> row index
    same_tokens: bool              # contamination check and reference recipe trained on the same tokens

    @classmethod
    def of(cls, models: pd.DataFrame, p: Params) -> "Layout":
        at = {name: i for i, name in enumerate(models.model)}
        is_target = (models.role == "target").to_numpy()
        held = held_out_mask(models, p.sigmoid_held_out)
        fit_rows = (((models.role == "reference").to_numpy() & p.sigmoid_includes_reference)
                    | (models.role == "sigmoid").to_numpy()) & ~held
        targets = models[is_target]
        pairs = tuple((at[r.model], at[r.source]) for r in targets.itertuples()
                      if isinstance(getattr(r, "source", None), str))
        checks = ({c: at[m] for c, m in zip(targets.check, targets.model) if isinstance(c, str)}
                  if "check" in models else {})
        tokens = models.tokens.to_numpy()
        same = ("contamination" in checks and "reference" in checks
                and tokens[checks["contamination"]] == tokens[checks["reference"]])
        return cls(models.params.to_numpy(float), np.flatnonzero(is_target), tuple(targets.model), held,
                   fit_rows, pairs, checks, bool(same))


def claim_metrics(models, loss, score, loss_params, sig_params, p: Params, *, limits: bool,
                  layout: Layout | None = None) -> dict[str, float]:
    """The numbers the claims read, from per-model loss and score and the two fits. `layout`: `Layout.of(models,
    p)`, passed by a caller that evaluates many resamples of the same table."""
    lay = layout or Layout.of(models, p)
    loss, score = np.asarray(loss, dtype=float), np.asarray(score, dtype=float)
    logd, _ = _log_density(lay.params, score, loss_params, sig_params, p.D0, limits=limits)
    out: dict[str, float] = {f"log_density[{name}]": value
                             for name, value in zip(lay.target_names, logd[lay.targets])}
    held = lay.held
    if held.any():
        predicted = densing.score_at(sig_params, loss[held])
        out["heldout_error_minus_constant"] = float(np.mean(np.abs(predicted - score[held])
                                                            - np.abs(score[lay.fit_rows].mean() - score[held])))
        out["heldout_abs_error"] = float(np.mean(np.abs(predicted - score[held])))
    if lay.pairs:
        with np.errstate(invalid="ignore"):       # both at the same limit: the pair cannot be compared
            diffs = np.array([logd[a] - logd[b] for a, b in lay.pairs])
        out["pruned_minus_source_log_density"] = float(np.mean(diffs[~np.isnan(diffs)])) if (
            ~np.isnan(diffs)).any() else math.nan
    checks = lay.checks
    if "contamination" in checks and "contamination_clean" in checks:
        out["contaminated_minus_clean_score"] = float(score[checks["contamination"]]
                                                      - score[checks["contamination_clean"]])
        with np.errstate(invalid="ignore"):
            out["contaminated_minus_clean_log_density"] = float(logd[checks["contamination"]]
                                                                - logd[checks["contamination_clean"]])
    if "reference" in checks:
        out["reference_recipe_log_density"] = float(logd[checks["reference"]])
        if lay.same_tokens:
            with np.errstate(invalid="ignore"):
                out["contaminated_minus_reference_log_density"] = float(logd[checks["contamination"]]
                                                                        - logd[checks["reference"]])
    return out


def estimate(models: pd.DataFrame, scores: pd.DataFrame, p: Params, *, benchmarks=None, D0=None,
             fits=None) -> dict:
    """Point estimates: per-model loss and score, both fits, the target densities (NaN + status where undefined)
    and the claim metrics. `fits`: (step-1 Fit, step-2 Fit) already made on the same families (the fits never see
    the targets), e.g. when only the targets change."""
    p = dataclasses.replace(p, D0=D0) if D0 is not None else p
    m = Matrices(models, scores, benchmarks)
    loss, score = m.aggregate()
    loss_fit, sig_fit = fits if fits is not None else fit_steps(models, loss, score, p)
    inverted = densing.effective_size(score, loss_fit.params, sig_fit.params, p.D0)
    logd = np.log(inverted.n_hat.to_numpy() / models.params.to_numpy(float))
    table = models.assign(loss=loss, score=score, loss_hat=inverted.loss_hat.to_numpy(),
                          n_hat=inverted.n_hat.to_numpy(), log_density=logd, density=np.exp(logd),
                          status=inverted.status.to_numpy(), held_out=held_out_mask(models, p.sigmoid_held_out))
    table.loc[table.role != "target", ["loss_hat", "n_hat", "log_density", "density", "status"]] = [
        np.nan, np.nan, np.nan, np.nan, None]
    return {"table": table, "loss_fit": loss_fit, "sigmoid_fit": sig_fit, "matrices": m, "D0": p.D0,
            "metrics": claim_metrics(models, loss, score, loss_fit.params, sig_fit.params, p, limits=True)}


def item_bootstrap(models: pd.DataFrame, est: dict, p: Params, *, refit: bool = True) -> pd.DataFrame:
    """Resample test items (within benchmarks, the same items for every model), recompute every model's loss and
    score, refit both steps (one start from the point fit) when `refit`, and recompute the claim metrics with the
    inversion's limits. One row per resample."""
    m, rng = est["matrices"], np.random.default_rng(p.seed)
    start = {"loss": est["loss_fit"].params, "sigmoid": est["sigmoid_fit"].params}
    layout, rows = Layout.of(models, p), []
    for _ in range(p.n_boot):
        loss, score = m.aggregate(m.resample(rng))
        if refit:
            loss_fit, sig_fit = fit_steps(models, loss, score, p, start=start)
            lp, sp = loss_fit.params, sig_fit.params
        else:
            lp, sp = start["loss"], start["sigmoid"]
        rows.append(claim_metrics(models, loss, score, lp, sp, p, limits=True, layout=layout))
    return pd.DataFrame(rows)


def interval(samples: pd.Series, level: float = 0.95) -> tuple[float | None, float | None]:
    """Percentile interval by order statistics (valid with the +-inf limits of undefined densities). Resamples
    where the quantity cannot be formed (NaN: two densities at the same limit) are left out; (None, None) when
    none can."""
    values = np.asarray(samples, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return None, None
    tail = (1 - level) / 2
    return (float(np.quantile(values, tail, method="inverted_cdf")),
            float(np.quantile(values, 1 - tail, method="inverted_cdf")))


LIMIT = 1e6      # an undefined ln density recorded at its limit (ln 0 or ln inf) as a finite stand-in


def recordable(value) -> float | None:
    """A metric value for the report: +-inf (a density at its limit) as +-LIMIT, NaN as None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(np.clip(value, -LIMIT, LIMIT))


# -- growth -----------------------------------------------------------------------------------------------------
def growth(table: pd.DataFrame, p: Params) -> dict:
    """The envelope of the growth targets (defined densities), the law ln rho_max = A t + B on it with bootstrap
    intervals (when it has >= 3 dates), and the permutation control over every growth target."""
    pool = table[(table.role == "target") & table.growth.astype(bool)]
    defined = pool[np.isfinite(pool.density)]
    env = densing.envelope(defined, date="t") if len(defined) else defined
    out = {"pool": pool, "envelope": env, "n_defined": len(defined), "n_pool": len(pool), "fit": None}
    slope, p_value = densing.growth_permutation_p(defined.t, defined.density, n_perm=p.n_perm, seed=p.seed)
    out.update(slope_all=slope, permutation_p=p_value)
    if env.t.nunique() >= 3:
        out["fit"] = densing.fit_growth(env, date="t", n_boot=p.n_boot, seed=p.seed)
        out["A"] = out["fit"].params["A"]
        out["A_lo"], out["A_hi"] = out["fit"].intervals.loc["A", ["lower", "upper"]]
    elif env.t.nunique() == 2:
        out["A"] = densing.envelope_slope(env.t, np.log(env.density))
        out["A_lo"] = out["A_hi"] = None
    else:
        out["A"] = out["A_lo"] = out["A_hi"] = None
    return out


# -- sensitivity ---------------------------------------------------------------------------------------------------
def with_reference(models: pd.DataFrame, family: str) -> pd.DataFrame:
    """`models` with the chosen reference family in the "reference" role: "primary" (as built) or "alt" (the
    second family takes the role, the first becomes "reference_unused"; step 2 then sees the second family too,
    when it includes the reference)."""
    if family == "primary":
        return models
    if family != "alt" or not (models.role == "reference_alt").any():
        raise ValueError(f"reference family must be 'primary' or 'alt' (with reference_alt models), got {family!r}")
    roles = {"reference": "reference_unused", "reference_alt": "reference"}
    return models.assign(role=[roles.get(r, r) for r in models.role])


def sensitivity(models: pd.DataFrame, scores: pd.DataFrame, p: Params) -> pd.DataFrame:
    """The growth rate A (envelope law) and the reference-recipe density when the reference family, D0 and the
    benchmark subset change: one row per variant (both steps refitted for a subset or a family; D0 only changes the
    inversion)."""
    rows = []
    subsets = [None] + [[b] for b in sorted(scores.benchmark.unique())] if scores.benchmark.nunique() > 1 else [None]
    families = ["primary"] + (["alt"] if (models.role == "reference_alt").any() else [])
    for family in families:
        chosen = with_reference(models, family)
        for subset in subsets:
            for d0 in p.D0_sensitivity:
                key = {"reference": family, "benchmarks": "+".join(subset or ["all"]), "D0": d0}
                try:
                    est = estimate(chosen, scores, p, benchmarks=subset, D0=d0)
                except (ValueError, RuntimeError) as err:      # a subset too flat to fit: say so, do not hide it
                    rows.append({**key, "error": str(err)})
                    continue
                g = growth(est["table"], dataclasses.replace(p, n_perm=min(p.n_perm, 500),
                                                              n_boot=min(p.n_boot, 100)))
                rows.append({**key, "A": g["A"], "A_lo": g.get("A_lo"), "A_hi": g.get("A_hi"),
                             "doubling_days": densing.doubling_time(g["A"]) if g["A"] else None,
                             "envelope_points": len(g["envelope"]), "defined": g["n_defined"], "of": g["n_pool"],
                             "permutation_p": g["permutation_p"],
                             "reference_recipe_log_density": est["metrics"].get("reference_recipe_log_density"),
                             "error": None})
    return pd.DataFrame(rows)


def sensitivity_by_factor(sens: pd.DataFrame, p: Params) -> pd.DataFrame:
    """For each factor (reference family, D0, benchmark subset): the growth rate A over its variants with the
    other two at the main setting (primary family, all benchmarks, D0 = p.D0): A_spread = max A - min A over the
    variants where A is defined, `undefined` counts those where it is not (fewer than 3 envelope dates with defined
    densities, or a failed fit). Then the same spread in every setting of the other two factors where at least two
    variants are defined: `paired_settings` of them, the largest spread `A_spread_max` and the largest ratio of the
    variants' rates `A_ratio_max`."""
    main = {"reference": "primary", "benchmarks": "all", "D0": p.D0}
    a_all = pd.to_numeric(sens.get("A", pd.Series(math.nan, index=sens.index)), errors="coerce")
    sens = sens.assign(A=a_all)
    rows = []
    for factor in main:
        others = [k for k in main if k != factor]
        variants = sens[np.logical_and.reduce([sens[k] == main[k] for k in others])]
        a = variants.A
        ok = a.notna()
        spreads, ratios = [], []
        for _, cell in sens.groupby(others):
            defined = cell.A.dropna()
            if len(defined) >= 2:
                spreads.append(float(defined.max() - defined.min()))
                ratios.append(float(defined.max() / defined.min()) if defined.min() > 0 else math.nan)
        rows.append({"factor": factor, "variants": len(variants), "undefined": int((~ok).sum()),
                     "A_values": ", ".join(f"{v}: {x:.4g}" if pd.notna(x) else
                                           f"{v}: undefined ({d} of {n} defined)"
                                           for v, x, d, n in zip(variants[factor], a, variants.get("defined", a),
                                                                 variants.get("of", a))),
                     "A_min": float(a[ok].min()) if ok.any() else math.nan,
                     "A_max": float(a[ok].max()) if ok.any() else math.nan,
                     "A_spread": float(a[ok].max() - a[ok].min()) if ok.sum() > 1 else math.nan,
                     "paired_settings": len(spreads), "A_spread_max": max(spreads) if spreads else math.nan,
                     "A_ratio_max": max(ratios) if ratios else math.nan})
    return pd.DataFrame(rows)


# -- evidence for the claims -----------------------------------------------------------------------------------
def real_release_dates(table: pd.DataFrame) -> bool:
    """True when every growth target is a released model (a hub id): its date is its release date. Targets built
    here by known interventions carry dates the design chose, so a growth over them is planted, not observed."""
    pool = table[(table.role == "target") & table.get("growth", pd.Series(False, index=table.index)).fillna(False)
                 .astype(bool)]
    if not len(pool) or "pretrained" not in pool:
        return False
    return bool(pool.pretrained.notna().all())


def claim_evidence(est: dict, boot: pd.DataFrame, g: dict | None, p: Params) -> dict[str, dict]:
    """The metrics the registry's rules read, as `Report.record` keyword arguments (name, value, lo, hi, note),
    from the point estimates, the item bootstrap and the growth analysis. The notebook records them and the
    claim tests push simulated worlds through this same function."""
    table, metrics = est["table"], est["metrics"]
    out: dict[str, dict] = {}

    def with_interval(name, note=""):
        if name in metrics:
            lo, hi = interval(boot[name]) if name in boot else (None, None)
            out[name] = {"name": name, "value": recordable(metrics[name]), "lo": recordable(lo),
                         "hi": recordable(hi), "note": note}

    held = table.held_out.to_numpy(bool)
    fit_roles = ["reference", "sigmoid"] if p.sigmoid_includes_reference else ["sigmoid"]
    fit_set = table[table.role.isin(fit_roles) & ~held]
    out["sigmoid_fit_score_span"] = {"name": "sigmoid_fit_score_span",
                                     "value": float(fit_set.score.max() - fit_set.score.min()),
                                     "note": "score range of the step-2 fit set: below 0.1 the sigmoid is not "
                                             "identified"}
    with_interval("heldout_error_minus_constant",
                  f"held-out |error| {metrics.get('heldout_abs_error', math.nan):.3f} in score units, minus the "
                  f"fit set's mean score's")
    with_interval("reference_recipe_log_density", "ln density of the reference-recipe model at D0: known answer 0")
    with_interval("pruned_minus_source_log_density", "mean over (pruned, source) pairs; negative: less dense")
    with_interval("contaminated_minus_reference_log_density", "known answer: positive (contamination inflates)")
    with_interval("contaminated_minus_clean_log_density",
                  f"against the dose-matched clean twin ({p.contamination_copies} copies of fresh items): what the "
                  f"test items themselves inflate; known answer positive")
    with_interval("contaminated_minus_clean_score",
                  "the same on the benchmark score: at equal parameters density rises with score, so this paired "
                  "difference has the density difference's sign without the fits' extrapolation near the ceiling")
    targets = table[table.role == "target"].set_index("model")
    if "source" in targets:
        pairs = targets[targets.source.notna()]
        defined = sum(bool(np.isfinite(r.log_density) and np.isfinite(targets.log_density[r.source]))
                      for r in pairs.itertuples())
        out["compression_pairs_defined"] = {"name": "compression_pairs_defined", "value": int(defined),
                                            "note": f"of {len(pairs)} (pruned, source) pairs"}
    if g is not None:
        out["growth_models_defined"] = {"name": "growth_models_defined", "value": int(g["n_defined"]),
                                        "note": f"of {g['n_pool']} growth targets"}
        out["growth_dates_real"] = {"name": "growth_dates_real", "value": real_release_dates(table),
                                    "note": "every growth target is a released model (hub id) with its real date; "
                                            "models built here carry dates the design chose"}
        if g["A"] is not None and not math.isnan(g["A"]):
            out["growth_rate_per_day"] = {
                "name": "growth_rate_per_day", "value": float(g["A"]), "lo": g.get("A_lo"), "hi": g.get("A_hi"),
                "note": f"envelope of {len(g['envelope'])} points; doubling {densing.doubling_time(g['A']):.0f} "
                        f"days; paper: A ~ 0.0073/day (comparison only)"}
        if not math.isnan(g["permutation_p"]):
            out["growth_permutation_p"] = {
                "name": "growth_permutation_p", "value": float(g["permutation_p"]),
                "note": f"slope of ln density on date over all defined growth targets {g['slope_all']:.4g}/day, "
                        f"{p.n_perm} permutations"}
    return out
