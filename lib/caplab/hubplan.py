"""Before hours of work: what a tier needs from the Hugging Face hub, what is cached, a rough cost, and the fetch.

    python -m caplab plan --tier gpu shannon      # each model and dataset: id, revision/config, cached size
    python -m caplab fetch shannon                # fill the cache on a machine with network, run offline later

`plan` lists every model (id, revision) and dataset (id, config) the tier's parameters name (`caplab.preflight.needs`),
with its size on disk where the local cache holds it, and, for the papers in `ESTIMATES`, an order-of-magnitude
estimate of the run's GPU hours from the FLOPs its counts imply (6 N per trained token, 2 N per evaluated or
generated token) at 40 % of an H100's dense bf16 peak: a lower bound (decoding is memory-bound), not a schedule.

`fetch` downloads each model revision with huggingface_hub's `snapshot_download` (weights, config, tokenizer) and
loads each dataset configuration once with `datasets.load_dataset`, which downloads it and prepares the cache that
an offline `load_dataset` reads (a snapshot of the dataset repository alone is not enough offline: `datasets`
reads only its prepared cache when the hub cannot be reached).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caplab import preflight

H100_BF16_DENSE = 989e12          # FLOP/s, NVIDIA's H100 SXM dense bf16 figure
MFU = 0.4                         # the share of it a well-tuned training run reaches
MODEL_FILES = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt", "*.tiktoken", "*.py"]


@dataclass
class Row:
    kind: str
    id: str
    revision: str | None
    config: str | None
    cached_bytes: int | None      # None: not in the local cache


def _dir_bytes(path: Path) -> int:
    return sum(f.resolve().stat().st_size for f in path.rglob("*") if f.is_file())


def cached_size(need: preflight.Need) -> int | None:
    """Bytes on disk of a model revision's snapshot or a dataset configuration's prepared cache, None if absent."""
    hub = preflight._hub_cache()
    if need.kind == "model":
        repo = hub / f"models--{need.id.replace('/', '--')}"
        ref = repo / "refs" / (need.revision or "main")
        sha = ref.read_text().strip() if ref.is_file() else need.revision
        snapshot = repo / "snapshots" / str(sha)
        return _dir_bytes(snapshot) if sha and snapshot.is_dir() and preflight._model_cached(need, hub) else None
    parts = need.id.split("/")
    parts[-1] = preflight._snake(parts[-1])
    root = preflight._datasets_cache() / "___".join(parts)
    found = [p for p in root.glob(f"{need.config or '*'}/*/*") if p.is_dir()]
    return sum(_dir_bytes(p) for p in found) if found else None


def resources(params: Any) -> list[Row]:
    return [Row(n.kind, n.id, n.revision, n.config, cached_size(n)) for n in dict.fromkeys(preflight.needs(params))]


def _params_of(model_id: str, params: Any) -> float | None:
    """A model's parameter count: from a hub family's `params_non_embedding` or a listed `params`, else from the
    size in its id ("pythia-160m", "Qwen2.5-1.5B")."""
    import re

    def walk(value):
        if isinstance(value, dict):
            if value.get("kind") == "hub" and model_id in (value.get("models") or []):
                counts = value.get("params_non_embedding") or []
                i = value["models"].index(model_id)
                if i < len(counts):
                    return float(counts[i])
            if value.get("pretrained") == model_id and isinstance(value.get("params"), (int, float)):
                return float(value["params"])
            for item in value.values():
                found = walk(item)
                if found:
                    return found
        elif isinstance(value, list):
            for item in value:
                found = walk(item)
                if found:
                    return found
        return None

    found = walk(params)
    if found:
        return found
    sizes = re.findall(r"(\d+(?:\.\d+)?)([mMbB])(?![a-zA-Z])", model_id.split("/")[-1])
    return float(sizes[0][0]) * (1e6 if sizes[0][1] in "mM" else 1e9) if sizes else None


def _n(model_id: str, params: Any) -> float:
    return _params_of(model_id, params) or 0.0


# Per paper, the FLOPs its gpu tier's counts imply: (what, FLOPs) terms, 6 N per trained token (forward and backward),
# 2 N per evaluated, scored or generated token. Token lengths not in the parameters are typical values (a GSM8K
# prompt ~100 tokens, a solution ~150). Decoding is memory-bound, so generation-heavy terms take longer than their
# FLOPs say: the estimate is a lower bound on the order of magnitude.
def _shannon(p: dict) -> list[tuple[str, float]]:
    fam = p["family"]
    if fam.get("kind") != "hub":
        return []
    per_ckpt_eval = (2 + len(p["noise_sigmas"]) + len(p["quant_bits"])) * p["eval_blocks"] * p["block_size"]
    sft_tokens = p["sft"].get("steps", 0) * p["sft"].get("batch_size", 1) * p["block_size"]
    n_sum = sum(fam["params_non_embedding"]) * len(fam["revisions"])
    return [("evaluation of every checkpoint and perturbation", 2 * n_sum * per_ckpt_eval),
            ("the SFT perturbation at every checkpoint", 6 * n_sum * sft_tokens)]


def _rl_scaling(p: dict) -> list[tuple[str, float]]:
    g, test = p["grpo"], p["test_task"].get("max_rows", 500)
    seq = 100 + g.get("max_completion_length", 64)
    rollouts = g["steps"] * g["prompts_per_update"] * g["num_generations"]
    evals = (g["steps"] // g.get("eval_every", 10) + 1) * test * g.get("eval_samples", 1) * seq
    terms = []
    for model in p["models"]:
        n = _n(model["pretrained"], p) if "pretrained" in model else 0.0
        terms += [(f"GRPO {model.get('pretrained')}: rollouts generated, scored by policy and reference, trained",
                   rollouts * seq * (2 + 2 + 6) * n), (f"held-out evaluations {model.get('pretrained')}", 2 * n * evals)]
    reuse = p["models"][p["reuse_model"]].get("pretrained", "")
    runs = len(p["reuse_taus"]) * len(p["reuse_seeds"])
    share = p["reuse_steps"] / max(g["steps"], 1)
    terms.append(("the reuse sweep", runs * share * sum(f for w, f in terms[:2])) if reuse else ("", 0.0))
    return terms


def _budget(p: dict) -> list[tuple[str, float]]:
    from caplab.papers.budget import grid
    n = _n(p["model"].get("pretrained", ""), p)
    plan = grid(p["budgets"], p["shares"], p["cost_ratios"], p["ratio_budgets"])
    epochs = 2.0
    sft = epochs * plan.n_sft.sum() * 250 * 6 * n
    dpo = epochs * plan.n_pft.sum() * 2 * 250 * (6 + 2) * n
    scoring = (len(plan) + 1) * p["test_task"].get("max_rows", 1319) * (100 + p["max_new_tokens"]) * 2 * n
    return [("SFT runs", sft), ("DPO runs (policy and reference)", dpo), ("greedy scoring of every run", scoring)]


def _kappa(p: dict) -> list[tuple[str, float]]:
    n = _n(p["base_model"].get("pretrained", ""), p)
    f = p["finetune"]
    tokens = f.get("steps", 0) * f.get("batch_size", 1) * p["block_size"]
    # per seed: lowest-, highest- and random-kappa arms, the whole-model contrast, full, LoRA-all and KappaTune-LoRA
    runs = 7 * len(p["seeds"]) + len(p["lora_lr_sweep"]) * p["lora_sweep_seeds"]
    evals = tokens // max(p["eval_every_tokens"], 1) + 1
    per_eval = (p["control_eval_blocks"] * p["block_size"] + p["fit_sample"] * 250) * 2 * n
    return [("fine-tuning runs (full backward through the model)", runs * tokens * 6 * n),
            ("forgetting and fit evaluations along each run", runs * evals * per_eval)]


def _capacity_gap(p: dict) -> list[tuple[str, float]]:
    t, d = p["teachers"], p["distill_train"]
    if t.get("kind") != "hub":
        return []
    students = [_n(s.get("pretrained", ""), p) for s in p["students"]]
    tokens = d.get("max_tokens") or d.get("steps", 0) * d.get("batch_size", 1) * p["block_size"]
    seeds = len(p["seeds"])
    teachers = t["params_non_embedding"]
    runs = [(ns, nt) for ns in students for nt in [0.0, *teachers]]     # each student alone and with each teacher
    evaluation = p["eval_blocks"] * p["block_size"] * 2 * (sum(teachers) + seeds * sum(ns for ns, _ in runs))
    return [("distillation runs (student trained, teacher forward online)",
             seeds * sum(tokens * (6 * ns + 2 * nt) for ns, nt in runs)),
            ("evaluation of teachers and every student", evaluation)]


def _densing(p: dict) -> list[tuple[str, float]]:
    items = p["benchmark"].get("max_rows", 1000) * 300          # a written-reasoning item, prompt and target
    models = [m for key in ("reference", "sigmoid_family") if p[key].get("kind") == "listed"
              for m in p[key]["models"]] + [t for t in p["targets"] if "pretrained" in t]
    return [("teacher-forced scoring of the benchmark by every model",
             sum(2 * float(m.get("params") or _n(m["pretrained"], p)) * items for m in models))]


ESTIMATES = {"shannon": _shannon, "rl_scaling": _rl_scaling, "budget": _budget, "kappa": _kappa,
             "capacity_gap": _capacity_gap, "densing": _densing}


def gpu_hours(notebook: str, params: dict) -> tuple[float | None, list[tuple[str, float]]]:
    """(GPU hours on one H100 at `MFU`, the FLOPs terms), or (None, []) for a paper without an estimate."""
    if notebook not in ESTIMATES:
        return None, []
    terms = [(what, flops) for what, flops in ESTIMATES[notebook](params) if what]
    return sum(f for _, f in terms) / (H100_BF16_DENSE * MFU) / 3600, terms


def _human(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


def describe(plan) -> str:
    rows = resources(plan.params)
    lines = [f"{plan.notebook} at the {plan.tier} tier ({plan.params_file}){' [shrunk]' if plan.shrunk else ''}:"]
    for r in rows:
        where = r.revision or "main" if r.kind == "model" else (r.config or "default")
        size = f"{_human(r.cached_bytes):>9} cached" if r.cached_bytes is not None else "       not cached"
        lines.append(f"  {r.kind:<7} {r.id:<50} {where:<22} {size}")
    missing = sum(r.cached_bytes is None for r in rows)
    lines.append(f"  {len(rows)} items, {missing} not cached"
                 + (f" (fetch them with: python -m caplab fetch {plan.notebook})" if missing else ""))
    hours, terms = gpu_hours(plan.notebook, plan.params)
    if hours is None:
        lines.append("  GPU hours: no estimate for this paper yet (caplab.hubplan.ESTIMATES)")
    else:
        lines.append(f"  rough GPU hours on one H100 (bf16 at {MFU:.0%} of peak; a lower bound, decoding is slower): "
                     f"{hours:.2g}")
        lines += [f"      {flops:9.2e} FLOPs  {what}" for what, flops in terms]
    return "\n".join(lines)


def fetch(params: Any, *, log=print) -> list[preflight.Need]:
    """Download every model revision and dataset configuration `params` names into the local caches."""
    from huggingface_hub import snapshot_download
    wanted = list(dict.fromkeys(preflight.needs(params)))
    for need in wanted:
        log(f"fetching {need.describe()}")
        if need.kind == "model":
            snapshot_download(repo_id=need.id, revision=need.revision or "main", allow_patterns=MODEL_FILES)
        else:
            import datasets
            datasets.load_dataset(need.id, need.config, revision=need.revision)
    return wanted
