"""Seeded synthetic tasks and their conversion to token tensors.

Generators (deterministic for a seed; all text uses the default char-tokenizer alphabet):
- `zipf_language`: sentences of made-up words, drawn with Zipfian frequency inside a small grammar;
- `facts`: entity -> attribute pairs mentioned with Zipfian frequency (the fact table and the training text);
- `arithmetic`: multi-digit problems as prompt/answer strings;
- `multiple_choice`: questions over the facts with distractors.
Tensors: `pack_blocks` (pre-training: concatenated texts cut into fixed-length blocks) and `pad_examples`
(prompt/completion pairs, right-padded, loss on the completion only). Both give a `TokenDataset` whose `labels`
are -100 wherever no loss is taken, the Hugging Face convention.
"""
from __future__ import annotations

import dataclasses
import string

import numpy as np
import pandas as pd
import torch

_CONSONANTS = "bcdfghjklmnprstvwz"
_VOWELS = "aeiou"


def zipf_probs(n: int, exponent: float = 1.0) -> np.ndarray:
    """p(rank k) proportional to k**-exponent, k = 1..n."""
    if n < 1 or exponent < 0:
        raise ValueError(f"need n >= 1 and exponent >= 0, got n={n}, exponent={exponent}")
    weights = np.arange(1, n + 1, dtype=float) ** -exponent
    return weights / weights.sum()


def made_up_words(n: int, rng: np.random.Generator, syllables: tuple[int, int] = (1, 3)) -> list[str]:
    """`n` distinct pronounceable words (consonant-vowel syllables)."""
    words: dict[str, None] = {}
    for _ in range(100 * n + 1000):
        k = rng.integers(syllables[0], syllables[1] + 1)
        words.setdefault("".join(rng.choice(list(_CONSONANTS)) + rng.choice(list(_VOWELS)) for _ in range(k)))
        if len(words) == n:
            return list(words)
    raise ValueError(f"cannot make {n} distinct words of {syllables} syllables")


# -- a Zipfian language ------------------------------------------------------------------------------------
_TEMPLATES = [("det", "noun", "verb", "det", "noun"), ("det", "adj", "noun", "verb"),
              ("det", "noun", "verb", "det", "adj", "noun"), ("det", "noun", "verb")]


def zipf_language(n_sentences: int, vocab_size: int = 500, exponent: float = 1.0, seed: int = 0) -> list[str]:
    """Sentences like "ta boku meri ta zo." from a Zipfian vocabulary split into word classes."""
    if vocab_size < 8:
        raise ValueError(f"vocab_size must be at least 8, got {vocab_size}")
    rng = np.random.default_rng(seed)
    words = made_up_words(vocab_size, rng)
    classes = {"det": words[:3], "noun": words[3::3], "verb": words[4::3], "adj": words[5::3]}
    probs = {name: zipf_probs(len(ws), exponent) for name, ws in classes.items()}
    sentences = []
    for template in (_TEMPLATES[i] for i in rng.integers(len(_TEMPLATES), size=n_sentences)):
        picks = [classes[c][rng.choice(len(classes[c]), p=probs[c])] for c in template]
        sentences.append(" ".join(picks) + ".")
    return sentences


# -- facts -------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Facts:
    """`table`: one row per entity (entity, attribute, rank, prob, mentions); `texts`: the training mentions."""
    table: pd.DataFrame
    texts: list[str]
    template: str

    def prompt(self, entity: str) -> str:
        return self.template.split("{attribute}")[0].format(entity=entity)


def facts(n_entities: int = 1000, n_attributes: int = 32, n_mentions: int = 20000, exponent: float = 1.0,
          template: str = "{entity}:{attribute}", name_length: int = 6, seed: int = 0) -> Facts:
    """Random entity -> attribute facts; each training mention picks an entity with Zipfian probability."""
    if "{entity}" not in template or not template.rstrip().endswith("{attribute}"):
        raise ValueError(f"template must contain {{entity}} and end with {{attribute}}, got {template!r}")
    if n_entities > 26 ** name_length // 2:
        raise ValueError(f"too many entities ({n_entities}) for names of {name_length} letters")
    rng = np.random.default_rng(seed)
    names: dict[str, None] = {}
    while len(names) < n_entities:
        names.setdefault("".join(rng.choice(list(string.ascii_lowercase), size=name_length)))
    attributes = made_up_words(n_attributes, rng, syllables=(2, 3))
    attr_probs = zipf_probs(n_attributes, 0.5)                 # some attribute values are common
    table = pd.DataFrame({"entity": list(names),
                          "attribute": [attributes[i] for i in rng.choice(n_attributes, n_entities, p=attr_probs)],
                          "rank": np.arange(1, n_entities + 1),
                          "prob": zipf_probs(n_entities, exponent)})
    picks = rng.choice(n_entities, size=n_mentions, p=table["prob"].to_numpy())
    table["mentions"] = np.bincount(picks, minlength=n_entities)
    texts = [template.format(entity=table.entity[i], attribute=table.attribute[i]) for i in picks]
    return Facts(table=table, texts=texts, template=template)


def multiple_choice(fact_set: Facts, n_choices: int = 4, entities: list[str] | None = None,
                    distractors: str = "frequent", seed: int = 0) -> pd.DataFrame:
    """Questions (prompt, choices, answer index) over facts; distractors are other attribute values, the most
    frequent ones (`"frequent"`, the hard case) or uniformly drawn (`"random"`)."""
    if distractors not in ("frequent", "random"):
        raise ValueError(f"distractors must be 'frequent' or 'random', got {distractors!r}")
    table = fact_set.table.set_index("entity")
    values = table.attribute.value_counts().index.tolist()     # most frequent first
    if len(values) < n_choices:
        raise ValueError(f"only {len(values)} attribute values for {n_choices} choices")
    rng = np.random.default_rng(seed)
    rows = []
    for entity in entities if entities is not None else table.index:
        answer = table.attribute[entity]
        others = [v for v in values if v != answer]
        wrong = others[:n_choices - 1] if distractors == "frequent" else list(rng.choice(others, n_choices - 1,
                                                                                            replace=False))
        choices = wrong + [answer]
        order = rng.permutation(n_choices)
        choices = [choices[i] for i in order]
        rows.append({"entity": entity, "prompt": fact_set.prompt(entity), "choices": choices,
                     "answer": int(np.flatnonzero(order == n_choices - 1)[0])})
    return pd.DataFrame(rows)


# -- arithmetic --------------------------------------------------------------------------------------------
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def held_out_problem(a, b, share: float) -> np.ndarray:
    """Whether problem (a, b) lies in the held-out part of the problem space: a fixed hash of the operands below
    `share` (the same problem is held out in every seed and every call, so training and evaluation sets drawn with
    `arithmetic(..., held_out=share, part=...)` never share a problem)."""
    a, b = np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = (a * np.uint64(0x9E3779B97F4A7C15)) ^ (b * np.uint64(0xC2B2AE3D27D4EB4F) + np.uint64(0x165667B19E3779F9))
        h ^= h >> np.uint64(29)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(32)
    return (h >> np.uint64(11)).astype(float) / 2.0 ** 53 < share


def arithmetic(n: int, n_digits: int | tuple[int, int] = 3, op: str = "+", reverse_answer: bool = False,
               seed: int = 0, held_out: float = 0.0, part: str = "all") -> pd.DataFrame:
    """`n` problems: columns a, b, prompt ("123+456="), answer ("579"; digits reversed if `reverse_answer`).

    `held_out` > 0 with `part` "train" or "held" splits the problem space by `held_out_problem`: "train" draws only
    problems outside the held-out share, "held" only inside it, and without repeats (an evaluation set); "all"
    (the default) draws from the whole space, as before."""
    if op not in _OPS:
        raise ValueError(f"op must be one of {list(_OPS)}, got {op!r}")
    lo, hi = (n_digits, n_digits) if isinstance(n_digits, int) else n_digits
    if not 1 <= lo <= hi <= 18:
        raise ValueError(f"n_digits must be in 1..18, got {n_digits}")
    if part not in ("all", "train", "held"):
        raise ValueError(f"part must be 'all', 'train' or 'held', got {part!r}")
    if part != "all" and not 0.0 < held_out < 1.0:
        raise ValueError(f"part {part!r} needs 0 < held_out < 1, got {held_out}")
    rng = np.random.default_rng(seed)
    if part == "all":
        digits = rng.integers(lo, hi + 1, size=(n, 2))
        a = [int(rng.integers(10 ** (d - 1) if d > 1 else 0, 10 ** d)) for d in digits[:, 0]]
        b = [int(rng.integers(10 ** (d - 1) if d > 1 else 0, 10 ** d)) for d in digits[:, 1]]
    else:
        a, b = _split_operands(rng, n, lo, hi, held_out, part)
    results = [str(_OPS[op](x, y)) for x, y in zip(a, b)]
    answers = [r[::-1] if reverse_answer else r for r in results]
    return pd.DataFrame({"a": a, "b": b, "prompt": [f"{x}{op}{y}=" for x, y in zip(a, b)], "answer": answers})


def _split_operands(rng, n: int, lo: int, hi: int, share: float, part: str) -> tuple[list[int], list[int]]:
    """Operands of `n` problems from one part of the problem space (see `arithmetic`)."""
    if hi > 9:
        raise ValueError(f"a held-out split takes at most 9 digits, got {hi}")
    space = sum(9 * 10 ** (d - 1) + (d == 1) for d in range(lo, hi + 1)) ** 2
    want = share if part == "held" else 1 - share
    if part == "held" and n > 0.8 * want * space:
        raise ValueError(f"{n} distinct held-out problems asked of about {want * space:.0f}: raise held_out")
    a: list[int] = []
    b: list[int] = []
    seen: set[tuple[int, int]] = set()
    while len(a) < n:
        k = max(64, int(2 * (n - len(a)) / want))
        digits = rng.integers(lo, hi + 1, size=(k, 2))
        xs = rng.integers(np.where(digits > 1, 10 ** (digits - 1), 0), 10 ** digits)
        keep = held_out_problem(xs[:, 0], xs[:, 1], share) == (part == "held")
        for x, y in xs[keep].tolist():
            if part == "held":
                if (x, y) in seen:
                    continue
                seen.add((x, y))
            a.append(x)
            b.append(y)
            if len(a) == n:
                break
    return a, b


# -- tensors -----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class TokenDataset:
    """Rows of token ids with attention mask and labels (-100 = no loss), all `[n, length]` long tensors."""
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def batch(self, index) -> dict[str, torch.Tensor]:
        """Rows `index`, trimmed to the longest row (right padding), as model keyword arguments."""
        mask = self.attention_mask[index]
        width = int(mask.sum(1).max())
        return {"input_ids": self.input_ids[index, :width], "attention_mask": mask[:, :width],
                "labels": self.labels[index, :width]}

    def head(self, n: int) -> "TokenDataset":
        """The first `n` rows (all of them if there are fewer)."""
        return TokenDataset(self.input_ids[:n], self.attention_mask[:n], self.labels[:n])

    def loss_tokens(self) -> int:
        """Positions that carry a loss (after the shift by one)."""
        return int((self.labels[:, 1:] != -100).sum())


def pack_blocks(texts: list[str], tokenizer, block_size: int, separator: str | None = "eos") -> TokenDataset:
    """Concatenate texts (each with the tokenizer's special tokens, then `<eos>`), cut into full blocks."""
    if block_size < 2:
        raise ValueError(f"block_size must be at least 2, got {block_size}")
    ids: list[int] = []
    for row in tokenizer(list(texts)).input_ids:
        ids.extend(row)
        if separator == "eos":
            ids.append(tokenizer.eos_token_id)
    n_blocks = len(ids) // block_size
    if n_blocks == 0:
        raise ValueError(f"{len(ids)} tokens do not fill one block of {block_size}")
    blocks = torch.tensor(ids[:n_blocks * block_size]).view(n_blocks, block_size)
    return TokenDataset(blocks, torch.ones_like(blocks), blocks.clone())


def encode_pair(tokenizer, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids) of one prompt/completion pair, the parts tokenized separately as TRL does for
    preference pairs: the prompt as the tokenizer encodes it alone (with its special tokens, e.g. <bos>), which is
    the context a model sees at inference; the completion as its continuation. Subword tokenizers can merge across
    the boundary ("Answer: " + "72": the prompt alone ends in " ", the whole text has " 72"), so the tokens of
    prompt + completion need not start with the prompt's. The completion's ids are then the whole text's ids after
    the prompt's where the prompt's are a prefix of them (always with a character tokenizer; the common case for
    BPE), else the completion encoded as a continuation (`encode_continuation`: a SentencePiece tokenizer such as
    Llama's would give the completion encoded alone a leading space that is not in the text). The multiple-choice
    scorer (`evaluate`) and the supervised datasets (`pad_examples`) both use this one encoding."""
    context = tokenizer(prompt).input_ids
    whole = tokenizer(prompt + completion).input_ids
    if whole[:len(context)] == context and len(whole) > len(context):
        return context, whole[len(context):]
    return context, encode_continuation(tokenizer, completion)


def encode_continuation(tokenizer, text: str, anchor: str = "\n") -> list[int]:
    """The ids of `text` as it continues other text, without special tokens: encoded after `anchor` with the
    anchor's own ids removed, where they are a prefix (they are unless the anchor merges into the text). Encoded
    alone, a SentencePiece tokenizer with a prepended space (Llama's "▁") starts `text` with a space it does not
    have; byte-level BPE gives the same ids either way."""
    anchor_ids = tokenizer(anchor, add_special_tokens=False).input_ids
    joined = tokenizer(anchor + text, add_special_tokens=False).input_ids
    if anchor_ids and joined[:len(anchor_ids)] == anchor_ids and len(joined) > len(anchor_ids):
        return joined[len(anchor_ids):]
    return tokenizer(text, add_special_tokens=False).input_ids


def pad_examples(prompts: list[str], completions: list[str], tokenizer, loss_on: str = "completion",
                 add_eos: bool = True, max_length: int | None = None) -> TokenDataset:
    """Prompt + completion (+ `<eos>`) per row, right-padded; loss on the completion (or on `"all"` tokens). The
    parts are tokenized by `encode_pair` (never assuming the tokens of prompt + completion start with the
    prompt's)."""
    if loss_on not in ("completion", "all"):
        raise ValueError(f"loss_on must be 'completion' or 'all', got {loss_on!r}")
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    rows, masks = [], []
    for prompt_text, completion_text in zip(prompts, completions):
        prompt, completion = encode_pair(tokenizer, prompt_text, completion_text)
        if not completion:
            raise ValueError(f"completion {completion_text!r} has no tokens")
        full = prompt + completion + ([tokenizer.eos_token_id] if add_eos else [])
        rows.append(full)
        masks.append([loss_on == "all"] * len(prompt) + [True] * (len(full) - len(prompt)))
    width = max(len(r) for r in rows)
    if max_length is not None and width > max_length:
        raise ValueError(f"longest example has {width} tokens, more than max_length={max_length}")
    pad = tokenizer.pad_token_id
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (row, mask) in enumerate(zip(rows, masks)):
        input_ids[i, :len(row)] = torch.tensor(row)
        attention[i, :len(row)] = 1
        labels[i, :len(row)] = torch.where(torch.tensor(mask), torch.tensor(row), -100)
    return TokenDataset(input_ids, attention, labels)


def concat(datasets: list[TokenDataset], pad_token_id: int) -> TokenDataset:
    """Rows of several datasets in one (right-padded to the widest), e.g. facts blocks and arithmetic examples."""
    width = max(d.input_ids.shape[1] for d in datasets)

    def padded(t, value):
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)
    return TokenDataset(torch.cat([padded(d.input_ids, pad_token_id) for d in datasets]),
                        torch.cat([padded(d.attention_mask, 0) for d in datasets]),
                        torch.cat([padded(d.labels, -100) for d in datasets]))
