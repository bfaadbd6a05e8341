"""A stand-in Hugging Face hub for offline tests of the gpu tier: tiny random models of the real architecture
classes and small datasets in the real column layouts, laid out in a private HF_HOME under the exact ids and
revisions the `notebooks/params/*/gpu.yaml` files name, so that the gpu tier runs through the same loading code
(`transformers` / `datasets` from the cache, offline) as it would on a cluster.

    hub = StandinHub(tmp / "hf")
    hub.provide_for(params)          # every model and dataset `caplab.preflight.needs(params)` lists
    os.environ.update(hub.env())     # HF_HOME, HF_HUB_CACHE, HF_DATASETS_CACHE

Models: the architecture class of the real repository (GPTNeoX for Pythia, OPT, Llama for TinyLlama and the Llama
family, Qwen2 for Qwen2 / Qwen2.5, and the classes of the densing paper's other targets), a few layers of width 32 to
112 growing with the real model's size (so that sizes stay ordered and distinct), random weights seeded by (id,
revision): a checkpoint revision is a different model, as on the hub. The tokenizer is a subword BPE trained here
with the `tokenizers` library on the stand-in texts, in the real one's style: byte-level BPE whose words carry their
leading space (GPT-2 style: Pythia, OPT, Qwen2), or a SentencePiece-style metaspace BPE with byte fallback that
prepends `<s>` (Llama). Like the real ones, a prompt that ends in a space tokenizes differently alone than in
front of its completion ("Answer: " + "72" gives "Answer:", " 72", not "Answer:", " ", "72"), which a character
tokenizer never shows. `tokenizer_config.json` names the real class (GPTNeoXTokenizer, Qwen2Tokenizer,
LlamaTokenizer, GPT2Tokenizer), so `AutoTokenizer` builds the same class it would for the real repository.

Datasets: rows made up here (seeded), in the real columns, configs and splits, written where `datasets` keeps a
prepared dataset (`HF_DATASETS_CACHE/<namespace>___<name>/<config>/0.0.0/<hash>/`), which is what
`datasets.load_dataset(id, config, split=...)` reads when the hub may not be reached. What each id is, and where its
layout was checked, is said at its entry in `DATASETS` and `_ARCHITECTURES`.

Nothing here is science: the stand-ins only let the gpu tier's code path run end to end (loading, tokenizing,
training, scoring, the verdict machinery) in seconds.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

# -- models ------------------------------------------------------------------------------------------------------
# Architecture class and tokenizer style per repository id prefix, with where each was checked.
#  - EleutherAI/pythia-*: GPTNeoXForCausalLM; checkpoints are branches step0, step1..step512 (log-spaced), step1000
#    ... step143000 (every 1000; step143000 is the final model) -- the Pythia suite's convention as the
#    EleutherAI model cards state it (huggingface.co/EleutherAI/neox-ckpt-pythia-31m-seed7, "154 checkpoints are
#    available as branches"); tokenizer GPT-NeoX BPE (byte-level), <|endoftext|> as bos/eos/unk.
#  - facebook/opt-*: OPTForCausalLM; GPT-2 byte-level BPE, "</s>" prepended as bos (shared/papers/ceilings.md).
#  - Qwen/Qwen2.5-*, Qwen/Qwen2-*: Qwen2ForCausalLM, model_type qwen2, tie_word_embeddings true, bos = eos =
#    <|endoftext|> (151643), torch_dtype bfloat16 (config.json of Qwen/Qwen2.5-0.5B as mirrored at
#    huggingface.co/osllmai-community/Qwen2.5-0.5B/blob/main/config.json, "_name_or_path": "Qwen/Qwen2.5-0.5B");
#    Qwen2Tokenizer (byte-level BPE, digits split one by one).
#  - TinyLlama/TinyLlama-1.1B-*: LlamaForCausalLM, bos 1 "<s>", eos 2 "</s>", pad 0, 22 layers x 2048, GQA 32/4 heads,
#    tie_word_embeddings false, torch_dtype float16 (its config.json as recorded by fine-tunes of it, e.g.
#    huggingface.co/Issactoto/therapist-1/blob/main/config.json, "_name_or_path":
#    "TinyLlama/TinyLlama-1.1B-Chat-v1.0"); LlamaTokenizer (SentencePiece BPE, byte fallback, "<s>" prepended).
#  - The densing paper's other targets ([unverified] here, as in its gpu.yaml): Llama-family ids as Llama, Mistral
#    as Mistral, phi-2 as Phi, gemma as Gemma, gemma-2 as Gemma2, openbmb's scaling models as Llama.
@dataclass(frozen=True)
class Architecture:
    model_type: str             # transformers' model_type (AutoConfig.for_model)
    tokenizer: str              # "gpt_neox", "gpt2", "qwen2", "llama": the tokenizer style below
    dtype: str                  # the real config's torch_dtype (loading code must not inherit it blindly)
    tied: bool = False


_ARCHITECTURES: list[tuple[str, Architecture]] = [
    ("EleutherAI/pythia-", Architecture("gpt_neox", "gpt_neox", "float16")),
    ("facebook/opt-", Architecture("opt", "gpt2", "float16", tied=True)),
    ("Qwen/Qwen2", Architecture("qwen2", "qwen2", "bfloat16", tied=True)),
    ("TinyLlama/", Architecture("llama", "llama", "float16")),
    ("huggyllama/", Architecture("llama", "llama", "float16")),
    ("meta-llama/", Architecture("llama", "llama", "bfloat16")),
    ("princeton-nlp/Sheared-LLaMA", Architecture("llama", "llama", "float32")),
    ("openbmb/DensingLaw-ScalingModels", Architecture("llama", "llama", "bfloat16")),
    ("mistralai/", Architecture("mistral", "llama", "bfloat16")),
    ("microsoft/phi-2", Architecture("phi", "gpt2", "float16")),
    ("google/gemma-2", Architecture("gemma2", "llama", "float32")),
    ("google/gemma", Architecture("gemma", "llama", "bfloat16", tied=True)),
]


def architecture(model_id: str) -> Architecture:
    for prefix, arch in _ARCHITECTURES:
        if model_id.startswith(prefix):
            return arch
    raise KeyError(f"the stand-in hub has no architecture for {model_id!r}; known prefixes: "
                   f"{[p for p, _ in _ARCHITECTURES]}")


def nominal_params(model_id: str) -> float:
    """The size in the id ("pythia-160m" -> 1.6e8, "Qwen2.5-1.5B" -> 1.5e9, "0.005B-10N" -> 5e6); 1e9 if none."""
    found = re.findall(r"(\d+(?:\.\d+)?)([mMbB])(?![a-zA-Z])", model_id.split("/")[-1])
    if not found:
        return 1e9
    value, unit = found[0]
    return float(value) * (1e6 if unit in "mM" else 1e9)


def shape(model_id: str) -> tuple[int, int]:
    """(hidden size, layers) of the stand-in: width grows by 8 with every doubling of the real size, 32 (tens of
    millions) to 112 (tens of billions), so that a family's stand-ins keep its order and distinct parameter counts
    (Pythia 70m and 160m included: students and teachers are told apart by size)."""
    steps = max(0, min(10, round(math.log2(nominal_params(model_id) / 3e7))))
    return 32 + 8 * steps, 2


def training_step(revision: str) -> int:
    """The optimizer step a revision stands for: "step33000" -> 33000; a branch like "main" -> the final 143000."""
    found = re.fullmatch(r"step(\d+)", revision)
    return int(found.group(1)) if found else 143000


def logit_scale(model_id: str, revision: str) -> float:
    """The standard deviation of the stand-in's logits: larger for smaller and earlier models (2.5 at 70M parameters
    and step 1000, 0.4 at 12B and step 143000), so that a family's held-out loss, about log(vocab) + scale^2 / 2,
    falls smoothly with size and training like a scaling law (random logits of no scale would give every checkpoint
    the same loss, and a law fitted to flat data runs to its iteration limit)."""
    return 2.5 * (nominal_params(model_id) / 7e7) ** -0.2 * (max(training_step(revision), 1) / 1000) ** -0.15


def _config(arch: Architecture, model_id: str, tokenizer_info: dict):
    from transformers import AutoConfig
    hidden, layers = shape(model_id)
    heads = hidden // 8                    # head size 8 (even, for rotary embeddings)
    common = dict(vocab_size=tokenizer_info["vocab_size"], hidden_size=hidden, num_hidden_layers=layers,
                  num_attention_heads=heads, intermediate_size=2 * hidden, max_position_embeddings=2048,
                  bos_token_id=tokenizer_info["bos_id"], eos_token_id=tokenizer_info["eos_id"],
                  pad_token_id=tokenizer_info["pad_id"], tie_word_embeddings=arch.tied)
    if arch.model_type == "opt":
        common = {**{k: v for k, v in common.items() if k not in ("intermediate_size", "num_hidden_layers")},
                  "ffn_dim": 2 * hidden, "num_hidden_layers": layers, "word_embed_proj_dim": hidden}
    if arch.model_type in ("llama", "qwen2", "mistral", "gemma", "gemma2"):
        common["num_key_value_heads"] = 1 if arch.model_type == "qwen2" else heads
    if arch.model_type in ("gemma", "gemma2"):
        common["head_dim"] = 16
    config = AutoConfig.for_model(arch.model_type, **common)
    config.architectures = [type(config).__name__.replace("Config", "ForCausalLM")]
    config.torch_dtype = arch.dtype          # the real repository's dtype: loading code must choose its own
    return config


# -- tokenizers ----------------------------------------------------------------------------------------------------
_TOKENIZER_CONFIG = {
    "gpt_neox": {"tokenizer_class": "GPTNeoXTokenizer", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                 "unk_token": "<|endoftext|>", "add_prefix_space": False, "model_max_length": 2048},
    "gpt2": {"tokenizer_class": "GPT2Tokenizer", "bos_token": "</s>", "eos_token": "</s>", "unk_token": "</s>",
             "pad_token": "<pad>", "add_bos_token": True, "model_max_length": 2048},
    "qwen2": {"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": "<|endoftext|>",
              "pad_token": "<|endoftext|>", "model_max_length": 32768},
    "llama": {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
              "add_bos_token": True, "add_eos_token": False, "legacy": False, "model_max_length": 2048},
}
_SPECIALS = {"gpt_neox": ["<|endoftext|>", "<|padding|>"], "gpt2": ["<s>", "<pad>", "</s>", "<unk>"],
             "qwen2": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "llama": ["<unk>", "<s>", "</s>"]}


def train_tokenizer(style: str, texts: Iterable[str], vocab_size: int = 1200):
    """A subword BPE trained on `texts` in the style of the real tokenizer (see the module docstring)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    specials = _SPECIALS[style]
    if style == "llama":
        tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                      special_tokens=specials + [f"<0x{i:02X}>" for i in range(256)])
        tok.train_from_iterator(texts, trainer)
        bos = tok.token_to_id("<s>")
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                           special_tokens=[("<s>", bos)])
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(texts, trainer)
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        if style == "gpt2":              # OPT prepends "</s>"
            eos = tok.token_to_id("</s>")
            tok.post_processor = processors.Sequence([processors.ByteLevel(trim_offsets=False),
                                                      processors.TemplateProcessing(
                                                          single="</s> $A", pair="</s> $A </s> $B",
                                                          special_tokens=[("</s>", eos)])])
    return tok


# -- datasets ------------------------------------------------------------------------------------------------------
_NAMES = ["Natalia", "Weng", "Betty", "Julie", "James", "Albert", "Ken", "Alexis", "Tina", "Randy", "Joy", "Mark",
          "Rosa", "Omar", "Priya", "Lena"]
_ITEMS = ["clips", "apples", "books", "pencils", "stickers", "cookies", "marbles", "cards", "shells", "coins"]
_WORDS = ("the of and in to a was is for on as by with he that at from his it an were are which this also be has "
          "had first one their its new after but who not they have her she two been other when there all during "
          "into school time may years more most only over city some world would where later up such used many can "
          "state about national out known university united then made river game season team album song film "
          "series war church station line house town north south year age history music record army early part "
          "court band final road island park life family work end day group people game number common").split()


def _gsm8k_row(rng: np.random.Generator) -> dict:
    """A made-up grade-school problem in GSM8K's layout: `question`, and `answer` = steps with calculator
    annotations <<a+b=c>>, then '#### <number>' (the card: huggingface.co/datasets/openai/gsm8k, config `main`,
    splits train/test, features question/answer, both strings -- README at commit 24cabd4 and the parquet
    conversion 2c868b8)."""
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    a, b, k = (int(x) for x in rng.integers(2, 60, size=3))
    if rng.random() < 0.5:
        total = a + b
        q = f"{name} has {a} {item} and buys {b} more. How many {item} does {name} have now?"
        steps = f"{name} has {a} + {b} = <<{a}+{b}={total}>>{total} {item} now."
    else:
        total = a * (k % 6 + 2)
        q = f"{name} sells {a} {item} each day for {k % 6 + 2} days. How many {item} does {name} sell?"
        steps = f"{name} sells {a} * {k % 6 + 2} = <<{a}*{k % 6 + 2}={total}>>{total} {item}."
    return {"question": q, "answer": f"{steps}\n#### {total}", "_total": total}


def _wikitext_rows(rng: np.random.Generator, n: int) -> list[dict]:
    """WikiText's raw layout: one row per line, `text` only; headings ' = Title = \\n', empty lines '', paragraphs
    ending ' \\n' (huggingface.co/datasets/Salesforce/wikitext, the id `wikitext` redirects there; configs
    wikitext-2-raw-v1 and wikitext-103-raw-v1, each with train/validation/test; data viewer and tree at
    commit 8aaa8b2: wikitext-2-raw-v1/{train,validation,test}-00000-of-00001.parquet)."""
    rows = []
    for i in range(n):
        if i % 12 == 0:
            rows.append({"text": f" = {' '.join(rng.choice(_WORDS, 2)).title()} = \n"})
        elif i % 12 == 1:
            rows.append({"text": ""})
        else:
            sentences = [" ".join(rng.choice(_WORDS, int(rng.integers(6, 18)))).capitalize() + " ."
                         for _ in range(int(rng.integers(2, 5)))]
            rows.append({"text": " " + " ".join(sentences) + " \n"})
    return rows


def _mmlu_rows(rng: np.random.Generator, subject: str, n: int) -> list[dict]:
    """cais/mmlu's layout: one config per subject (e.g. abstract_algebra), splits test/validation/dev, features
    question (string), subject (string), choices (sequence of 4 strings), answer (ClassLabel A-D, read as an int)
    (huggingface.co/datasets/cais/mmlu, commit 7894270 'Convert dataset to Parquet'; the same features in its
    copies hails/mmlu_no_train)."""
    rows = []
    for _ in range(n):
        a, b = (int(x) for x in rng.integers(1, 30, size=2))
        right = a + b
        wrong = sorted({right + d for d in rng.choice([-3, -2, -1, 1, 2, 3], 3, replace=False)})
        choices = [str(x) for x in [right, *wrong]]
        order = rng.permutation(4)
        rows.append({"question": f"In {subject.replace('_', ' ')}, what is {a} + {b}?", "subject": subject,
                     "choices": [choices[i] for i in order], "answer": int(np.flatnonzero(order == 0)[0])})
    return rows


def _arithmetic_rows(rng: np.random.Generator, n: int) -> list[dict]:
    """EleutherAI/arithmetic, config arithmetic_2da: split validation, features context and completion, both strings
    (huggingface.co/datasets/EleutherAI/arithmetic README at d8b04d6: arithmetic_2da, 2000 validation rows); the
    lm-evaluation-harness format 'Question: What is 98 plus 45?\\nAnswer:' -> ' 143'."""
    rows = []
    for _ in range(n):
        a, b = (int(x) for x in rng.integers(10, 100, size=2))
        rows.append({"context": f"Question: What is {a} plus {b}?\nAnswer:", "completion": f" {a + b}"})
    return rows


def _preference_rows(rng: np.random.Generator, n: int) -> list[dict]:
    """mohit-raghavendra/gsm8k-gpt4opreferences (16.8k rows, split train; the dataset exists: the author's hub page).
    Columns prompt, chosen, rejected [unverified against the card, which the project's search corpus does not hold]:
    the authors' loader (github mohit-raghavendra/balance-budget, tuning/data/gsm8k_pref.py) loads split "train"
    and passes it to DPO unchanged, which takes prompt/chosen/rejected; the prompt is taken to be the bare
    question (the gpu.yaml applies "Question: {}\\nAnswer:" to it). Solutions in the "Step n:" style."""
    rows = []
    for _ in range(n):
        row = _gsm8k_row(rng)
        total = row["_total"]
        wrong = total + int(rng.choice([-2, -1, 1, 3]))
        rows.append({"prompt": row["question"],
                     "chosen": f"Step 1: {row['answer'].splitlines()[0]}\n#### {total}",
                     "rejected": f"Step 1: The answer must be {wrong}.\n#### {wrong}"})
    return rows


def _densing_rows(rng: np.random.Generator, n: int) -> list[dict]:
    """openbmb/DensingLaw-ScalingBench, split test: fields input, output, source, all [unverified] as in the
    densing gpu.yaml."""
    rows = []
    for _ in range(n):
        row = _gsm8k_row(rng)
        rows.append({"input": row["question"], "output": row["answer"], "source": str(rng.choice(["gsm8k", "math"]))})
    return rows


def _gsm8k_split(seed: int, n: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{k: v for k, v in _gsm8k_row(rng).items() if not k.startswith("_")} for _ in range(n)]


MMLU_SUBJECTS = ("abstract_algebra", "college_mathematics", "elementary_mathematics", "high_school_mathematics",
                 "high_school_statistics")

# id -> config (None: the default one) -> split -> rows (made on first use)
DATASETS: dict[str, dict[str | None, dict[str, Callable[[], list[dict]]]]] = {
    "openai/gsm8k": {"main": {"train": lambda: _gsm8k_split(1, 200), "test": lambda: _gsm8k_split(2, 80)}},
    "wikitext": {cfg: {split: (lambda s=seed: _wikitext_rows(np.random.default_rng(s), 240))
                       for split, seed in (("train", 10), ("validation", 11), ("test", 12))}
                 for cfg in ("wikitext-2-raw-v1", "wikitext-103-raw-v1")},
    "cais/mmlu": {subject: {split: (lambda s=subject, k=i, m=n: _mmlu_rows(np.random.default_rng(100 + k), s, m))
                            for split, n in (("test", 24), ("validation", 6), ("dev", 5))}
                  for i, subject in enumerate(MMLU_SUBJECTS)},
    "EleutherAI/arithmetic": {"arithmetic_2da": {"validation": lambda: _arithmetic_rows(np.random.default_rng(7), 60)}},
    "mohit-raghavendra/gsm8k-gpt4opreferences": {None: {"train": lambda: _preference_rows(np.random.default_rng(3),
                                                                                           200)}},
    "openbmb/DensingLaw-ScalingBench": {None: {"test": lambda: _densing_rows(np.random.default_rng(4), 60)}},
}


def _corpus() -> list[str]:
    """The texts every stand-in tokenizer is trained on: all the stand-in datasets, plus prompt templates."""
    texts = []
    for configs in DATASETS.values():
        for splits in configs.values():
            for make in splits.values():
                for row in make():
                    texts += [v if isinstance(v, str) else " ".join(map(str, v)) for v in row.values()
                              if isinstance(v, (str, list))]
    return texts + ["Question: How many?\nAnswer: 12", "Q: A: ####"] * 20


def _snake(name: str) -> str:
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z\d])([A-Z])", r"\1_\2", name).lower()


def _sha(*parts: str) -> str:
    return hashlib.sha1("@".join(parts).encode()).hexdigest()


# -- the hub -------------------------------------------------------------------------------------------------------
class StandinHub:
    """A private HF_HOME holding stand-ins for what a parameter set names (see the module docstring)."""

    def __init__(self, home: str | os.PathLike):
        self.home = Path(home)
        self.hub, self.datasets = self.home / "hub", self.home / "datasets"
        self.hub.mkdir(parents=True, exist_ok=True)
        self.datasets.mkdir(parents=True, exist_ok=True)
        self._tokenizers: dict[str, tuple[Path, dict]] = {}

    def env(self) -> dict[str, str]:
        return {"HF_HOME": str(self.home), "HF_HUB_CACHE": str(self.hub), "HF_DATASETS_CACHE": str(self.datasets),
                "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

    def provide_for(self, params) -> list:
        """Stand-ins for every model and dataset `caplab.preflight.needs(params)` lists; returns those needs."""
        from caplab import preflight
        wanted = list(dict.fromkeys(preflight.needs(params)))
        for need in wanted:
            if need.kind == "model":
                self.model(need.id, need.revision or "main")
            else:
                self.dataset(need.id, need.config)
        return wanted

    # models
    def _tokenizer(self, style: str) -> tuple[Path, dict]:
        if style not in self._tokenizers:
            folder = self.home / "_tokenizers" / style
            folder.mkdir(parents=True, exist_ok=True)
            tok = train_tokenizer(style, _corpus())
            tok.save(str(folder / "tokenizer.json"))
            config = _TOKENIZER_CONFIG[style]
            (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
            ids = {name: tok.token_to_id(config[name]) if config.get(name) else None
                   for name in ("bos_token", "eos_token", "pad_token")}
            self._tokenizers[style] = (folder, {"vocab_size": tok.get_vocab_size(), "bos_id": ids["bos_token"],
                                                "eos_id": ids["eos_token"], "pad_id": ids["pad_token"]})
        return self._tokenizers[style]

    def model_path(self, model_id: str, revision: str = "main") -> Path:
        return self.hub / f"models--{model_id.replace('/', '--')}" / "snapshots" / _sha(model_id, revision)

    def model(self, model_id: str, revision: str = "main") -> Path:
        """Lay out one (id, revision): config, weights (seeded by id and revision), tokenizer, generation config."""
        snapshot = self.model_path(model_id, revision)
        repo = snapshot.parent.parent
        if (snapshot / "model.safetensors").exists():
            return snapshot
        import torch
        from transformers import AutoModelForCausalLM
        arch = architecture(model_id)
        tok_folder, tok_info = self._tokenizer(arch.tokenizer)
        config = _config(arch, model_id, tok_info)
        torch.manual_seed(int(_sha(model_id, revision)[:8], 16))
        model = AutoModelForCausalLM.from_config(config)
        with torch.no_grad():      # logits of a chosen scale (see `logit_scale`); hidden states leave the final norm
            model.get_output_embeddings().weight.normal_(0.0, logit_scale(model_id, revision) / config.hidden_size ** 0.5)
        tmp = snapshot.with_name(snapshot.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        saved = json.loads((tmp / "config.json").read_text())
        saved["dtype"] = saved["torch_dtype"] = arch.dtype       # as the real repository says (transformers 4/5)
        (tmp / "config.json").write_text(json.dumps(saved, indent=1))
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(tok_folder / name, tmp / name)
        shutil.rmtree(snapshot, ignore_errors=True)
        tmp.rename(snapshot)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / revision).write_text(snapshot.name)
        return snapshot

    # datasets
    def dataset(self, dataset_id: str, config: str | None = None) -> Path:
        """Prepare one (id, config) with all its splits, as `datasets` leaves a dataset it has loaded."""
        if dataset_id not in DATASETS:
            raise KeyError(f"the stand-in hub has no dataset {dataset_id!r}; known: {sorted(DATASETS)}")
        configs = DATASETS[dataset_id]
        if config not in configs:
            raise KeyError(f"stand-in {dataset_id} has no config {config!r}; known: {list(configs)}")
        parts = dataset_id.split("/")
        parts[-1] = _snake(parts[-1])
        name = config or "default"
        dest = self.datasets / "___".join(parts) / name / "0.0.0" / _sha(dataset_id, name)[:16]
        if dest.exists():
            return dest
        import pandas as pd
        from datasets import ClassLabel, Features, Sequence, Value
        from datasets.packaged_modules.parquet.parquet import Parquet
        src = self.home / "_parquet" / "___".join(parts) / name
        src.mkdir(parents=True, exist_ok=True)
        files = {}
        for split, make in configs[config].items():
            pd.DataFrame(make()).to_parquet(src / f"{split}.parquet")
            files[split] = str(src / f"{split}.parquet")
        features = None
        if dataset_id == "cais/mmlu":
            features = Features({"question": Value("string"), "subject": Value("string"),
                                 "choices": Sequence(Value("string")),
                                 "answer": ClassLabel(names=["A", "B", "C", "D"])})
        builder = Parquet(dataset_name=parts[-1], config_name=name, data_files=files, features=features,
                          hash=dest.name, cache_dir=str(self.home / "_build"))
        builder.download_and_prepare()
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(builder.cache_dir, dest)
        return dest
