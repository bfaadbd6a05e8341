"""A family of tiny models of several sizes trained on one corpus in one data order, with checkpoints, as Pythia.

    shapes = log_spaced_shapes(5, 1e5, 3e6)                    # non-embedding sizes log-spaced over 30x
    frame = train_family(shapes, corpus, {"batch_size": 32, "lr": 1e-3}, log_spaced_tokens(2**14, 2**22, 12))
    losses = for_each_checkpoint(frame, lambda model, tok, row: {"loss": mean_loss(model, held_out)}, name="loss")

Every member is one `train_cached` run (cached, resumable; the members train side by side, one per core, through
`caplab.substrate.sweep.parallel`) with the same TrainConfig, so the same seed gives every
size the same batches in the same order; a model's init seed is its shape's `seed` (default 0). Checkpoints are
snapshots of one run (Pythia's design), so an early checkpoint sits part-way down the learning-rate schedule; pass
`"schedule": "constant"` in the config to remove that effect. Compute is `6 N D` with N the non-embedding parameters
and D the tokens actually processed at the checkpoint (`tokens`, >= `target_tokens`, the first step past it).
"""
from __future__ import annotations

import hashlib
import inspect
import math
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from caplab.substrate.cache import Cache, default_cache
from caplab.substrate.data import TokenDataset
from caplab.substrate.models import TinySpec, get_model, tiny_model
from caplab.substrate.sweep import parallel
from caplab.substrate.train import TrainConfig, dataset_digest, resolve_device, train_cached

COLUMNS = ["model", "family", "d_model", "n_layer", "n_head", "params_total", "params_non_embedding",
           "target_tokens", "tokens", "step", "flops", "path"]


def log_spaced_tokens(first: int, last: int, n: int) -> list[int]:
    """`n` distinct increasing token counts from `first` to `last`, geometrically spaced and rounded (values that
    round together are pushed up by one)."""
    if n < 1 or first < 1 or last < first or (n > 1 and last == first):
        raise ValueError(f"need 1 <= first < last and n >= 1 (n = 1 allows first == last); "
                         f"got first={first}, last={last}, n={n}")
    if n > last - first + 1:
        raise ValueError(f"cannot fit {n} distinct integers between {first} and {last}")
    values: list[int] = []
    for value in np.rint(np.geomspace(first, last, n)).astype(int).tolist():
        values.append(max(value, values[-1] + 1) if values else value)
    if values[-1] > last:
        raise ValueError(f"{n} distinct log-spaced integers do not fit between {first} and {last}")
    return values


# -- shapes ------------------------------------------------------------------------------------------------------
def non_embedding_params(spec: dict) -> int:
    """Non-embedding parameters of a tiny shape, counted on the meta device (no memory, no init)."""
    with torch.device("meta"):
        model, _ = tiny_model(dict(spec))
    embedding = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    embedding |= {id(p) for p in model.get_output_embeddings().parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in embedding)


def log_spaced_shapes(n: int, min_params: float, max_params: float, family: str = "gpt_neox", *,
                      aspect: float = 32.0, head_dim: int = 32, **common) -> list[dict]:
    """`n` tiny shapes whose non-embedding parameter counts are close to log-spaced from `min_params` to
    `max_params`. The rule, for each target N: a layer holds about 12 d^2 parameters and the width follows a fixed
    aspect ratio d_model = aspect * n_layer (Kaplan: shape matters little at fixed N), so
    d_model = head_dim * round((aspect * N / 12)^(1/3) / head_dim) (at least one head); then n_layer (>= 1) is the
    count whose exact non-embedding total is nearest N (counted on the meta device, biases and the family's MLP
    width included); n_head = d_model / head_dim. Widths and depths grow together, and the counts land within
    about 15 % of the targets (the width steps of `head_dim` are coarse for the smallest models). `common` keys (seed,
    max_seq_len, alphabet) go into every shape. Each shape also has a `name`, "d<d_model>-L<n_layer>"."""
    if n < 1 or not 0 < min_params <= max_params or (n > 1 and min_params == max_params):
        raise ValueError(f"need n >= 1 and 0 < min_params < max_params, got n={n}, {min_params}, {max_params}")
    if head_dim < 2 or head_dim % 2:
        raise ValueError(f"head_dim must be an even number >= 2, got {head_dim}")
    TinySpec(family=family, d_model=head_dim, n_layer=1, n_head=1, **common)      # rejects bad family / keys
    shapes = []
    for target in np.geomspace(min_params, max_params, n):
        d_model = head_dim * max(1, round((aspect * target / 12) ** (1 / 3) / head_dim))
        base = {"family": family, "d_model": d_model, "n_head": d_model // head_dim, **common}
        one, two = (non_embedding_params({**base, "n_layer": k}) for k in (1, 2))
        n_layer = max(1, round((target - one) / (two - one)) + 1)
        shapes.append({"name": f"d{d_model}-L{n_layer}", **base, "n_layer": n_layer})
    names = [s["name"] for s in shapes]
    if len(set(names)) < n:
        raise ValueError(f"{n} sizes between {min_params:g} and {max_params:g} give repeated shapes {names}: "
                         f"widen the range or lower n")
    return shapes


def width_shapes(widths: list[int], n_layer: int, family: str = "gpt_neox", *, head_dim: int = 32,
                 **common) -> list[dict]:
    """Tiny shapes of one depth whose sizes differ by width alone (`widths`, each a multiple of `head_dim`;
    n_head = d_model / head_dim). For tiny models shape matters: a family whose depth and head count follow N
    (`log_spaced_shapes`) mixes 1-, 2- and 3-layer members whose losses do not line up, so a size trend fitted on
    the smaller ones misses the largest; one depth keeps the family regular. `common` as in `log_spaced_shapes`."""
    if n_layer < 1 or head_dim < 2 or head_dim % 2:
        raise ValueError(f"need n_layer >= 1 and an even head_dim >= 2, got n_layer={n_layer}, head_dim={head_dim}")
    if not widths or any(w < head_dim or w % head_dim for w in widths) or len(set(widths)) < len(widths):
        raise ValueError(f"widths must be distinct multiples of head_dim {head_dim}, got {widths}")
    TinySpec(family=family, d_model=head_dim, n_layer=1, n_head=1, **common)      # rejects bad family / keys
    return [{"name": f"d{w}-L{n_layer}", "family": family, "d_model": int(w), "n_head": int(w) // head_dim,
             "n_layer": int(n_layer), **common} for w in sorted(widths)]


def family_shapes(spec: dict) -> list[dict]:
    """The shapes of a family trained here: kind "tiny" (`log_spaced_shapes`'s arguments) or "tiny_widths"
    (`width_shapes`'s)."""
    kind, args = _check_family(spec)
    common = {k: args[k] for k in ("max_seq_len", "seed") if k in args}
    if kind == "tiny":
        return log_spaced_shapes(args["n"], args["min_params"], args["max_params"], args.get("family", "gpt_neox"),
                                 aspect=args.get("aspect", 32.0), head_dim=args.get("head_dim", 32), **common)
    if kind == "tiny_widths":
        return width_shapes(args["widths"], args["n_layer"], args.get("family", "gpt_neox"),
                            head_dim=args.get("head_dim", 32), **common)
    raise ValueError(f"a {kind} family is not trained here")


# -- training ------------------------------------------------------------------------------------------------------
def _member(shape: dict) -> tuple[str, dict, tuple[int, int, int], str]:
    """(name, model spec for get_model, (d_model, n_layer, n_head), family) of one shape dict."""
    spec = {k: v for k, v in shape.items() if k != "name"}
    if not set(spec) <= set(TinySpec.__dataclass_fields__):
        raise ValueError(f"a family shape takes TinySpec keys {sorted(TinySpec.__dataclass_fields__)} and an "
                         f"optional name; got {sorted(shape)}")
    tiny = TinySpec(**spec)
    d, n_layer, n_head = tiny.shape()
    return shape.get("name") or tiny.size or f"d{d}-L{n_layer}", spec, (d, n_layer, n_head), tiny.family


def train_family(shapes: list[dict], corpus: TokenDataset, config: dict, checkpoints: list[int], *,
                 cache: Cache | None = None) -> pd.DataFrame:
    """Train every shape on `corpus` with one TrainConfig (`config`, without checkpoint_tokens; with neither
    `steps` nor `max_tokens` the run stops at the last checkpoint) and save a checkpoint at each token count.
    Returns one row per (model, checkpoint) with the columns `COLUMNS`, smallest model first."""
    members = [_member(s) for s in shapes]
    names = [m[0] for m in members]
    if not members or len(set(names)) < len(names):
        raise ValueError(f"give at least one shape, with distinct names; got {names}")
    if "checkpoint_tokens" in config:
        raise ValueError("give the checkpoint token counts as `checkpoints`, not in config")
    targets = sorted(int(t) for t in checkpoints)
    if not targets or targets[0] < 1 or len(set(targets)) < len(targets):
        raise ValueError(f"checkpoints must be distinct positive token counts, got {checkpoints}")
    config = dict(config)
    if "steps" not in config and "max_tokens" not in config:
        config["max_tokens"] = targets[-1]
    train_config = TrainConfig.from_dict({**config, "checkpoint_tokens": tuple(targets)})
    per_step = train_config.batch_size * float(corpus.attention_mask.sum()) / max(len(corpus), 1)
    budget = train_config.max_tokens or train_config.steps * per_step
    if targets[-1] > budget:
        raise ValueError(f"checkpoint {targets[-1]} is past the training budget (~{budget:.0f} tokens)")
    steps = [math.ceil(t / per_step) for t in targets]
    clash = [(a, b) for a, b, s, u in zip(targets, targets[1:], steps, steps[1:]) if s == u]
    if clash:
        raise ValueError(f"checkpoints {clash[0]} fall in the same optimizer step (~{per_step:.0f} tokens a step)")

    runs = parallel([lambda spec=spec: train_cached(spec, corpus, train_config, cache=cache)
                     for _, spec, _, _ in members],
                    costs=[non_embedding_params(spec) + 1 for _, spec, _, _ in members])
    rows = []
    for (name, spec, (d, n_layer, n_head), family), run in zip(members, runs):
        counts = run.summary["n_params"]
        for ckpt in run.checkpoints.itertuples(index=False):
            rows.append({"model": name, "family": family, "d_model": d, "n_layer": n_layer, "n_head": n_head,
                         "params_total": counts["total"], "params_non_embedding": counts["non_embedding"],
                         "target_tokens": int(ckpt.target_tokens), "tokens": int(ckpt.tokens),
                         "step": int(ckpt.step), "flops": 6.0 * counts["non_embedding"] * int(ckpt.tokens),
                         "path": ckpt.path})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.sort_values(["params_non_embedding", "model", "target_tokens"], kind="stable").reset_index(
        drop=True)


# -- evaluating every checkpoint ------------------------------------------------------------------------------------
def _fn_identity(fn: Callable, name: str | None) -> dict:
    """The cache key of a function: its name (given, else module.qualname) and a hash of its source if readable."""
    label = name or f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    try:
        source = hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:16]
    except (OSError, TypeError):
        source = None
    return {"name": label, "source": source}


def _key_args(args: dict) -> dict:
    """`args` as a cache key: a TokenDataset or a DataFrame argument is keyed by a digest of its content."""
    def key(value):
        if isinstance(value, TokenDataset):
            return {"token_dataset": dataset_digest(value)}
        if isinstance(value, pd.DataFrame):
            return {"frame": hashlib.sha256(value.to_json(orient="split").encode()).hexdigest()[:24]}
        return value
    return {name: key(value) for name, value in args.items()}


def _revision(value) -> str:
    """A row's revision: "main" where a frame holds none (None, or NaN where other rows have one)."""
    return value if isinstance(value, str) and value else "main"


def _where(row: dict, cache: Cache) -> dict:
    """How to load a row's model (for get_model) and the part of it that keys the cache."""
    if "path" in row and isinstance(row["path"], str):
        path = Path(row["path"])
        try:
            key = str(path.resolve().relative_to(cache.root.resolve()))     # survives a moved cache root
        except ValueError:
            key = str(path.resolve())
        return {"load": {"path": str(path)}, "key": {"path": key}}
    if "pretrained" in row:
        spec = {"pretrained": row["pretrained"], "revision": _revision(row.get("revision"))}
        return {"load": spec, "key": spec}
    raise ValueError("each row needs a `path` (a saved checkpoint) or `pretrained` (+ `revision`) column")


def member_spec(row) -> dict:
    """The model spec (for `get_model`) of one family member, whether trained here (`{"path": ...}`) or a hub
    checkpoint (`{"pretrained": id, "revision": ...}`): one way to name a model on every tier."""
    row = row._asdict() if hasattr(row, "_asdict") else dict(row)
    if isinstance(row.get("path"), str):
        return {"path": row["path"]}
    if isinstance(row.get("pretrained"), str):
        return {"pretrained": row["pretrained"], "revision": _revision(row.get("revision"))}
    raise ValueError("a family member needs a `path` (a saved checkpoint) or `pretrained` (+ `revision`)")


def for_each_checkpoint(frame: pd.DataFrame, fn: Callable[..., dict | list[dict]], *, args: dict | None = None,
                        name: str | None = None, device: str | None = "auto", cache: Cache | None = None
                        ) -> pd.DataFrame:
    """Apply `fn(model, tokenizer, row, **args)` to the model of every row (a saved `path`, or `pretrained` with
    `revision`) and return a tidy frame: the row's columns plus the keys of each dict `fn` returns (a list of dicts
    gives several rows). Each result is cached under (checkpoint, fn name and source hash, args), so a model is
    loaded only when its result is missing. `args` must be JSON-like, except that a TokenDataset or DataFrame value
    is keyed by its content: pass evaluation data through `args`, not through a closure, which the key cannot see;
    give `name` (or change it) when the function's meaning changes in a way its source does not show. `device`: where
    each model is loaded ("auto", the default: the GPU when there is one), in fp32 (`caplab.substrate.models`)."""
    args = dict(args or {})
    cache = cache if cache is not None else default_cache()
    identity = _fn_identity(fn, name)
    out = []
    for row in frame.to_dict("records"):
        where = _where(row, cache)

        def compute(row=row, where=where):
            load = {**where["load"], "device": str(resolve_device(device))}
            model, tokenizer = get_model(load)
            result = fn(model, tokenizer, dict(row), **args)
            results = [result] if isinstance(result, dict) else result
            if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
                raise TypeError(f"{identity['name']} must return a dict or a list of dicts, got {type(result)}")
            return results

        results = cache.get_or_compute("each_checkpoint", {"model": where["key"], "fn": identity,
                                                            "args": _key_args(args)}, compute)
        for result in results:
            clash = sorted(set(result) & set(row))
            if clash:
                raise ValueError(f"{identity['name']} returned keys {clash} that are already columns of the frame")
            out.append({**row, **result})
    return pd.DataFrame(out)


# -- one door for both tiers -------------------------------------------------------------------------------------
TRAINED_HERE = ("tiny", "tiny_widths")            # family kinds trained here (the others are read from the hub)


def _check_family(spec: dict) -> tuple[str, dict]:
    FAMILY.check(spec, "family spec", "")
    args = dict(spec)
    return args.pop("kind"), args


def family_tokenizer(spec: dict):
    """The tokenizer every member of the family shares (the char tokenizer of tiny models, or the hub model's)."""
    kind, args = _check_family(spec)
    if kind in TRAINED_HERE:
        return tiny_model(TinySpec(d_model=32, n_layer=1, n_head=2, max_seq_len=args.get("max_seq_len", 256)))[1]
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(args["models"][0], revision=args["revisions"][-1])


def build_family(spec: dict, corpus: TokenDataset | None, config: dict, checkpoints: dict, *,
                 cache: Cache | None = None) -> pd.DataFrame:
    """The family frame of `train_family` for `{"kind": "tiny", "n": 5, "min_params": 2e4, "max_params": 1e6, ...}`
    or `{"kind": "tiny_widths", "widths": [32, 64, 96], "n_layer": 2, ...}` (trained here on `corpus`), or for `{"kind": "hub", "models": [...], "revisions": ["step1000", ...],
    "tokens_per_step": 2097152, "params_non_embedding": [...]}` (Pythia-style checkpoints read from the Hugging
    Face cache; `checkpoints` and `config` are then unused and must be empty). `checkpoints` is the arguments of
    `log_spaced_tokens`: {"first": ..., "last": ..., "n": ...}."""
    kind, args = _check_family(spec)
    if kind in TRAINED_HERE:
        return train_family(family_shapes(spec), corpus, config, log_spaced_tokens(**checkpoints), cache=cache)
    if config or checkpoints:
        raise ValueError("a hub family is already trained: give an empty train config and no checkpoints")
    models, counts = args["models"], args["params_non_embedding"]
    if len(models) != len(counts):
        raise ValueError(f"{len(models)} models but {len(counts)} parameter counts")
    rows = []
    for model_id, n in zip(models, counts):
        for revision in args["revisions"]:
            if not revision.startswith("step"):
                raise ValueError(f"hub revisions must be 'step<N>' (Pythia's naming), got {revision!r}")
            tokens = int(revision[4:]) * int(args["tokens_per_step"])
            rows.append({"model": model_id.split("/")[-1], "family": "hub", "d_model": None, "n_layer": None,
                         "n_head": None, "params_total": None, "params_non_embedding": int(n),
                         "target_tokens": tokens, "tokens": tokens, "step": int(revision[4:]), "flops": 6.0 * n * tokens,
                         "path": None, "pretrained": model_id, "revision": revision})
    return pd.DataFrame(rows)


# -- the specs' schemas, checked by `caplab validate` before anything runs (caplab.params) -----------------------
def _schemas():
    from caplab.params import Fields, Kinds, Signature

    tiny = Signature(log_spaced_shapes, name="tiny family", extra={"max_seq_len": int, "seed": int})
    widths = Signature(width_shapes, name="tiny family of one depth", extra={"max_seq_len": int, "seed": int})
    hub = Fields({"models": list[str], "revisions": list[str], "tokens_per_step": int,
                  "params_non_embedding": list[int]}, name="hub family", partial=False,
                 required=("models", "revisions", "tokens_per_step", "params_non_embedding"))
    return Kinds({"tiny": tiny, "tiny_widths": widths, "hub": hub}, name="family spec"), Signature(log_spaced_tokens, name="checkpoints")


FAMILY, CHECKPOINTS = _schemas()
"""Schemas of a family spec (`build_family`) and of its checkpoints (`log_spaced_tokens`'s arguments; `{}` for a
hub family)."""
