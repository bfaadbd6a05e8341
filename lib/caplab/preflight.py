"""Before any cell runs: is every model and dataset a tier names in the local Hugging Face cache?

A gpu-tier run offline used to fail minutes in (after a Monte Carlo cell, say) with a generic "couldn't connect"
error. Here every model (a dict with `pretrained` and `revision`, or a `kind: hub` family of `models` x `revisions`)
and every dataset (`path`, `name`/`names`, `revision` of an `hf_*` task kind) named anywhere in the parameters is
looked up in the caches first; what is missing is listed with its id, revision and the command that fetches it.
Skipped when downloads are allowed (`HF_HUB_OFFLINE=0`).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

HF_TASK_KINDS = ("hf_text", "hf_pairs", "hf_preferences", "hf_multiple_choice", "hf")     # "hf": densing's benchmark
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_TOKENIZER = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


class MissingFromCache(ValueError):
    """Models or datasets a tier needs are not in the local cache (and downloads are off)."""


@dataclass(frozen=True)
class Need:
    kind: str                  # "model" or "dataset"
    id: str
    revision: str | None
    config: str | None = None  # a dataset's configuration name

    def fetch_command(self) -> str:
        if self.kind == "model":
            return f"HF_HUB_OFFLINE=0 hf download {self.id} --revision {self.revision or 'main'}"
        args = [repr(self.id)] + ([repr(self.config)] if self.config else [])
        if self.revision:
            args.append(f"revision={self.revision!r}")
        return (f"HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 python -c \"import datasets; "
                f"datasets.load_dataset({', '.join(args)})\"")

    def describe(self) -> str:
        what = f"{self.id}" + (f" (config {self.config})" if self.config else "")
        return f"{self.kind} {what} at revision {self.revision or 'main'}"


def downloads_allowed() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "1").strip().lower() in ("0", "false", "no", "off")


def needs(params: Any) -> Iterator[Need]:
    """Every model and dataset named anywhere in `params` (nested dicts and lists)."""
    if isinstance(params, list):
        for item in params:
            yield from needs(item)
        return
    if not isinstance(params, dict):
        return
    if isinstance(params.get("pretrained"), str):
        yield Need("model", params["pretrained"], params.get("revision") or "main")
    if params.get("kind") == "hub" and isinstance(params.get("models"), list):
        for model in params["models"]:
            for revision in params.get("revisions") or ["main"]:
                yield Need("model", str(model), str(revision))
    if params.get("kind") in HF_TASK_KINDS and isinstance(params.get("path"), str):
        names = params.get("names") if isinstance(params.get("names"), list) else [params.get("name")]
        for name in names:
            yield Need("dataset", params["path"], params.get("revision"), name)
    for value in params.values():
        if isinstance(value, (dict, list)):
            yield from needs(value)


def _model_cached(need: Need, hub_cache: Path) -> bool:
    """config.json, the weights (every shard of an index) and a tokenizer file of this revision are cached."""
    import json

    from huggingface_hub import try_to_load_from_cache

    def cached(name: str) -> str | None:
        found = try_to_load_from_cache(need.id, name, cache_dir=hub_cache, revision=need.revision)
        return found if isinstance(found, str) else None

    if cached("config.json") is None or not any(cached(t) for t in _TOKENIZER):
        return False
    for weights in _WEIGHTS:
        path = cached(weights)
        if path is None:
            continue
        if not weights.endswith(".index.json"):
            return True
        shards = set(json.loads(Path(path).read_text()).get("weight_map", {}).values())
        return all(cached(shard) for shard in shards)
    return False


# Kept light (no torch, no datasets import: the check takes a moment, not the seconds those imports take).
def _hub_cache() -> Path:
    """The hub cache as `caplab.substrate.models.hub_cache_dir` finds it: `HF_HUB_CACHE`, else `$HF_HOME/hub`."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface"
    return Path(home) / "hub"


def _snake(name: str) -> str:
    """`datasets.naming.camelcase_to_snakecase`: how `datasets` names a dataset's cache folder."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z\d])([A-Z])", r"\1_\2", name).lower()


def _datasets_cache() -> Path:
    if os.environ.get("HF_DATASETS_CACHE"):
        return Path(os.environ["HF_DATASETS_CACHE"])
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface"
    return Path(home) / "datasets"


def _dataset_cached(need: Need, hub_cache: Path) -> bool:
    """Prepared by `datasets` (its cache: `<namespace>___<name>/<config>/<version>/<hash>/`), or the repository's
    files in the hub cache at this revision."""
    parts = need.id.split("/")
    parts[-1] = _snake(parts[-1])
    prepared = _datasets_cache() / "___".join(parts)
    if any(p.is_dir() for p in prepared.glob(f"{need.config or '*'}/*/*")):
        return True
    repo = hub_cache / f"datasets--{need.id.replace('/', '--')}"
    return (repo / "refs" / (need.revision or "main")).is_file() or (
        need.revision is not None and (repo / "snapshots" / need.revision).is_dir())


def missing(params: Any) -> list[Need]:
    """What `params` names that the local caches do not hold (each once, in order of appearance)."""
    wanted = list(dict.fromkeys(needs(params)))
    if not wanted:
        return []
    hub_cache = _hub_cache()
    return [n for n in wanted
            if not (_model_cached(n, hub_cache) if n.kind == "model" else _dataset_cached(n, hub_cache))]


def check(plans) -> None:
    """Raise MissingFromCache listing, for every plan, what its parameters name and the caches lack."""
    if downloads_allowed():
        return
    lines = []
    for plan in plans:
        for need in missing(plan.params):
            lines.append(f"  {plan.notebook}/{plan.tier} ({plan.params_file}): {need.describe()} is not cached\n"
                         f"      fetch it with: {need.fetch_command()}")
    if lines:
        raise MissingFromCache("models or datasets are missing from the local Hugging Face cache (HF_HUB_OFFLINE "
                               "is set, so nothing can be downloaded):\n" + "\n".join(lines) + "\nFetch them on a "
                               "machine with network and copy the cache here (or point HF_HOME at it), or rerun "
                               "with HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 to let the run download them.")
