"""The densing paper's experiment (Xiao et al. 2024, arXiv 2412.04315): families, targets, tidy tables, claims.

The notebook `notebooks/densing.ipynb` calls, in order:

    items = benchmark_items(p.benchmark)                          # test items: prompt, target, benchmark
    corpora = build_corpora(p, items, tokenizer)                   # reference / task-rich / contaminated mixes
    models = build_models(p, corpora)                              # one row per model: role, params, tokens, date
    scores = score_items(models, items)                            # one row per (model, item): loss, correct
    est = estimate(models, scores, p)                              # the two fits, densities, claim metrics
    boot = item_bootstrap(models, est, p)                          # intervals: items resampled, fits redone

The first four are here; the estimation, its bootstrap, growth, sensitivity and the claims' evidence are in
`caplab.science.densing_estimate`.

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
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import torch

from caplab.params import Fields, Kinds, Tier, optional
from caplab.science import densing
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
