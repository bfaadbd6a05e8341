"""Causal language models: tiny ones built from a transformers config, real ones from the Hugging Face cache.

One door for both tiers, `get_model(spec) -> (model, tokenizer)`, where `spec` is a plain dict:

    get_model({"size": "1M", "family": "gpt_neox", "seed": 0})        # tiny, random init, char tokenizer
    get_model({"d_model": 96, "n_layer": 3, "n_head": 4})             # tiny, explicit shape
    get_model({"pretrained": "EleutherAI/pythia-160m", "revision": "step3000"})
    get_model({"path": "/some/saved/model"})                           # save_pretrained folder (model + tokenizer)

Parameter counts follow Kaplan et al.: `non_embedding` excludes token embeddings, the unembedding and learned
positional embeddings (every `nn.Embedding` plus the output projection); `total` counts every distinct tensor once.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from caplab.substrate.tokenizer import char_tokenizer

# name -> (d_model, n_layer, n_head); non-embedding parameters are about 12 * n_layer * d_model**2
PRESETS: dict[str, tuple[int, int, int]] = {
    "0.1M": (64, 2, 4),
    "0.3M": (96, 3, 4),
    "1M": (128, 5, 4),
    "3M": (192, 7, 6),
    "10M": (384, 6, 6),
    "30M": (512, 10, 8),
}
FAMILIES = ("gpt_neox", "llama")


class ModelNotAvailable(OSError):
    """A pretrained model is not in the local Hugging Face cache and the hub may not be reached."""


@dataclasses.dataclass(frozen=True)
class TinySpec:
    """The shape of a tiny random-init model: a preset `size` or explicit `d_model`/`n_layer`/`n_head`."""
    size: str | None = None
    family: str = "gpt_neox"
    d_model: int | None = None
    n_layer: int | None = None
    n_head: int | None = None
    max_seq_len: int = 256
    seed: int = 0
    alphabet: str | None = None          # characters of the char tokenizer (None: its default alphabet)

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        explicit = (self.d_model, self.n_layer, self.n_head)
        if self.size is not None:
            if self.size not in PRESETS:
                raise ValueError(f"unknown size {self.size!r}; presets: {sorted(PRESETS)}")
            if any(v is not None for v in explicit):
                raise ValueError("give either size or d_model/n_layer/n_head, not both")
        elif any(v is None for v in explicit):
            raise ValueError(f"give size (one of {sorted(PRESETS)}) or all of d_model, n_layer, n_head")
        d, _, h = self.shape()
        if d % h or (d // h) % 2:
            raise ValueError(f"d_model {d} must split into {h} heads of even size")

    def shape(self) -> tuple[int, int, int]:
        return PRESETS[self.size] if self.size is not None else (self.d_model, self.n_layer, self.n_head)


def _config(spec: TinySpec, tokenizer):
    from transformers import GPTNeoXConfig, LlamaConfig   # here, not at import: checking parameters needs no model

    d, n_layer, n_head = spec.shape()
    common = dict(vocab_size=len(tokenizer), hidden_size=d, num_hidden_layers=n_layer, num_attention_heads=n_head,
                  max_position_embeddings=spec.max_seq_len, bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                  tie_word_embeddings=False)
    if spec.family == "gpt_neox":      # Pythia's architecture: parallel residual, partial rotary, 4x MLP
        return GPTNeoXConfig(intermediate_size=4 * d, **common)
    ffn = 16 * round(8 * d / 3 / 16)   # SwiGLU width that keeps ~12 d^2 parameters per layer
    return LlamaConfig(intermediate_size=ffn, num_key_value_heads=n_head, **common)


def tiny_model(spec: TinySpec | dict | str = "1M", tokenizer=None):
    """A random-init causal LM of the given shape (seeded), and its tokenizer (char-level unless one is given)."""
    if isinstance(spec, str):
        spec = TinySpec(size=spec)
    elif isinstance(spec, dict):
        spec = strict_from_dict(TinySpec, spec)
    if tokenizer is None:
        alphabet = {"alphabet": spec.alphabet} if spec.alphabet is not None else {}
        tokenizer = char_tokenizer(model_max_length=spec.max_seq_len, **alphabet)
    torch.manual_seed(spec.seed)
    from transformers import GPTNeoXForCausalLM, LlamaForCausalLM
    model_cls = GPTNeoXForCausalLM if spec.family == "gpt_neox" else LlamaForCausalLM
    model = model_cls(_config(spec, tokenizer))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def strict_from_dict(cls, values: dict):
    """`cls(**values)` for a dataclass, rejecting unknown keys and wrong types with the allowed ones named (before
    any work): `caplab.params.strict`, the project's one strict-keys helper."""
    from caplab.params import strict
    return strict(cls, values)


# -- parameter counts ---------------------------------------------------------------------------------------
def _distinct(params) -> dict[int, nn.Parameter]:
    return {p.data_ptr(): p for p in params}


def param_counts(model: nn.Module) -> dict[str, int]:
    """`total` (each tensor once, tied ones too) and `non_embedding` (without embeddings and unembedding)."""
    every = _distinct(model.parameters())
    embedding = _distinct(p for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters())
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if out is not None:
        embedding.update(_distinct(out.parameters()))
    total = sum(p.numel() for p in every.values())
    return {"total": total, "non_embedding": total - sum(p.numel() for p in embedding.values())}


# -- real models --------------------------------------------------------------------------------------------
def hub_cache_dir() -> Path:
    """The Hugging Face hub cache as the environment says now (`HF_HUB_CACHE`, else `$HF_HOME/hub`)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface"
    return Path(home) / "hub"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _missing_message(model_id: str, revision: str, cache: Path) -> str:
    return (f"model {model_id!r} at revision {revision!r} is not in the local Hugging Face cache ({cache}) and "
            f"HF_HUB_OFFLINE is set. On a machine with network run\n"
            f"    huggingface-cli download {model_id} --revision {revision}\n"
            f"(or `hf download {model_id} --revision {revision}`) and copy the cache here, or point HF_HOME / "
            f"HF_HUB_CACHE at a cache that holds it.")


# -- where and in what precision a model lives -------------------------------------------------------------------
# One policy for every load (training, evaluation, scoring, scans): the GPU when there is one, fp32 weights always.
# fp32 are the master weights of training (the matrix work runs in bf16 under autocast on a GPU: `train`'s
# autocast_dtype, TRL's bf16 flag, `inference_autocast`); a hub config's own dtype (fp16 for Pythia and TinyLlama,
# bf16 for Qwen2.5) is never inherited silently: pure half-precision training loses most small updates (at lr 1e-6
# about 2 % of a bf16 matrix's elements move on AdamW's first step), and fp16 on a CPU is emulated (a stand-in
# forward pass: 289 s in fp16 against 5.8 s in fp32) and fails in LayerNorm ("mixed dtype"). A spec may still ask
# for a dtype explicitly (`{"pretrained": ..., "dtype": "bfloat16"}`) for evaluation-only use of a large model;
# training casts such weights back to fp32 (`caplab.substrate.train.master_weights`).
DEFAULT_DTYPE = torch.float32


def default_device() -> str:
    """"cuda" when a GPU is visible, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(name: str | torch.device | None) -> torch.device:
    """A device from a name: "auto" or None -> the GPU when there is one (`default_device`), else as given."""
    if name is None or name == "auto":
        return torch.device(default_device())
    return torch.device(name)


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """None or "auto" -> fp32 (`DEFAULT_DTYPE`; never the config's own dtype); a name -> that torch dtype."""
    if dtype is None or dtype == "auto":
        return DEFAULT_DTYPE
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}; e.g. float32, bfloat16, float16")
        return getattr(torch, dtype)
    return dtype


def inference_autocast(model):
    """bf16 autocast for a forward pass of a model on a GPU (fp32 weights, bf16 matrix work); nothing on a CPU."""
    import contextlib
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def load_pretrained(model_id: str, revision: str = "main", *, trust_remote_code: bool = False,
                    dtype: str | torch.dtype | None = None, device: str | None = "auto", **model_kwargs):
    """A causal LM and its tokenizer from the hub cache (`revision`: branch, tag such as "step3000", or sha), in
    fp32 unless `dtype` says otherwise, on the GPU when there is one (`device`; see the policy above)."""
    from huggingface_hub import try_to_load_from_cache
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache = hub_cache_dir()
    offline = _offline()
    if offline:
        found = try_to_load_from_cache(model_id, "config.json", cache_dir=cache, revision=revision)
        if not isinstance(found, str):
            raise ModelNotAvailable(_missing_message(model_id, revision, cache))
    kwargs = dict(revision=revision, cache_dir=cache, local_files_only=offline, trust_remote_code=trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_id, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(model_id, dtype=resolve_dtype(dtype), **kwargs, **model_kwargs)
    except OSError as err:
        if offline:
            raise ModelNotAvailable(_missing_message(model_id, revision, cache) + f"\n(cause: {err})") from err
        raise
    return _finish(model, tokenizer, device)


def load_local(path: str | os.PathLike, *, device: str | None = "auto", dtype=None):
    """A model and tokenizer saved together with `save_pretrained` in a local folder (fp32 unless `dtype` says
    otherwise; on the GPU when there is one)."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"no saved model (config.json) in {path}")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=resolve_dtype(dtype))
    return _finish(model, tokenizer, device)


def _finish(model, tokenizer, device):
    if tokenizer.pad_token is None:          # Pythia, Llama: no pad token; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.to(resolve_device(device))
    return model.eval(), tokenizer


def get_model(spec: dict[str, Any]):
    """`(model, tokenizer)` for a spec dict: `pretrained` (+ `revision`, ...), `path`, or a tiny shape."""
    if not isinstance(spec, dict) or "path" not in spec or not isinstance(spec["path"], os.PathLike):
        MODEL.check(spec, "model spec", "")        # (a saved run's path may be a Path object: no YAML gives one)
    spec = dict(spec)
    if "pretrained" in spec:
        return load_pretrained(spec.pop("pretrained"), **spec)
    if "path" in spec:
        return load_local(spec.pop("path"), **spec)
    return tiny_model(TinySpec(**spec))


# -- the spec's schema, checked by `caplab validate` before anything runs (caplab.params) -----------------------
def _schema():
    from caplab.params import Either, Fields

    pretrained = Fields({"pretrained": str, "revision": str | None, "trust_remote_code": bool, "dtype": str | None,
                         "device": str | None}, name="pretrained model", required=("pretrained",), partial=False)
    local = Fields({"path": str, "device": str | None, "dtype": str | None}, name="local model", required=("path",),
                   partial=False)
    return Either((lambda v: isinstance(v, dict) and "pretrained" in v, pretrained),
                  (lambda v: isinstance(v, dict) and "path" in v, local),
                  (lambda v: True, Fields(TinySpec, partial=True)), name="model spec")


MODEL = _schema()
"""Schema of a model spec (`get_model`): `Annotated[dict, MODEL]` in a paper's parameters."""
