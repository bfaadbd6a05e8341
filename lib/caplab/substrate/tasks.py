"""Tasks by spec: what a notebook parameter like `{"kind": "arithmetic", "n": 4000}` means, for every tier.

A task is either a text corpus (language-model loss on every token: pre-training, control sets) or prompt /
completion pairs (loss on the completion: fine-tuning). Synthetic kinds come from `caplab.substrate.data`; the
`hf_text` and `hf_pairs` kinds load a Hugging Face dataset through `datasets.load_dataset`, from its cache when
offline, so the gpu tier differs from the cpu tier only in parameters.

    load_task({"kind": "zipf_language", "n_sentences": 20000, "seed": 0})
    load_task({"kind": "fact_questions", "n_entities": 2000, "n_attributes": 32, "seed": 1})
    load_task({"kind": "hf_text", "path": "wikitext", "name": "wikitext-2-raw-v1", "split": "test"})
    load_task({"kind": "hf_pairs", "path": "openai/gsm8k", "name": "main", "split": "train",
               "prompt_field": "question", "completion_field": "answer", "prompt_template": "Q: {}\\nA: "})
"""
from __future__ import annotations

import dataclasses
import os
from typing import Annotated, Any

import numpy as np

from caplab.substrate import chains, data

def _fact_questions(args: dict[str, Any]):
    """Each fact once, as a question: prompt "entity:" -> completion "attribute" (knowledge to be learned)."""
    made = data.facts(**args)
    return made.table.assign(prompt=[made.prompt(e) for e in made.table.entity], answer=made.table.attribute)


_SYNTHETIC = {
    "zipf_language": ("texts", lambda a: data.zipf_language(**a)),
    "facts": ("texts", lambda a: data.facts(**a).texts),
    "fact_questions": ("pairs", _fact_questions),
    "arithmetic": ("pairs", lambda a: data.arithmetic(**a)),
    "chain_facts": ("texts", lambda a: chains.fact_corpus(**a)),
    "chain_worked": ("texts", lambda a: chains.worked_corpus(**a)),
    "chain_problems": ("pairs", lambda a: chains.problems(**a).assign(answer=lambda f: f.solution)),
}
_HF_LOAD_KEYS = ("path", "name", "split", "revision", "data_files")


@dataclasses.dataclass
class Task:
    """`texts` for a corpus, or `prompts` with `completions` for a supervised task."""

    name: str
    texts: list[str] | None = None
    prompts: list[str] | None = None
    completions: list[str] | None = None

    @property
    def is_corpus(self) -> bool:
        return self.texts is not None

    def __len__(self) -> int:
        return len(self.texts if self.is_corpus else self.prompts)

    def subset(self, index) -> "Task":
        pick = lambda xs: None if xs is None else [xs[i] for i in index]  # noqa: E731
        return Task(self.name, pick(self.texts), pick(self.prompts), pick(self.completions))

    def split(self, held_out: float | int, seed: int = 0) -> tuple["Task", "Task"]:
        """(train, held-out): a seeded random split; `held_out` is a fraction or a row count."""
        n = len(self)
        k = int(round(held_out * n)) if isinstance(held_out, float) else int(held_out)
        if not 0 < k < n:
            raise ValueError(f"held-out size {k} must be between 0 and {n} rows")
        order = np.random.default_rng(seed).permutation(n)
        return self.subset(sorted(order[k:])), self.subset(sorted(order[:k]))

    def tokens(self, tokenizer, *, block_size: int | None = None) -> data.TokenDataset:
        """Token tensors: a corpus packed into blocks of `block_size`; pairs padded, loss on the completion."""
        if self.is_corpus:
            if block_size is None:
                raise ValueError(f"task {self.name!r} is a text corpus: give block_size")
            return data.pack_blocks(self.texts, tokenizer, block_size)
        return data.pad_examples(self.prompts, self.completions, tokenizer)


def _load_hf(load_args: dict[str, Any]):
    import datasets
    try:
        return datasets.load_dataset(**load_args)
    except Exception as exc:  # offline and not cached, a wrong id, ...: say what was asked and how to get it
        offline = os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = (" Running offline: download it first on a machine with network (`datasets.load_dataset(...)` with "
                "the same arguments fills the cache under HF_HOME) or set HF_DATASETS_OFFLINE=0 HF_HUB_OFFLINE=0."
                if offline else "")
        raise FileNotFoundError(f"dataset {load_args} could not be loaded: {type(exc).__name__}: {exc}.{hint}") \
            from exc


def load_task(spec: dict[str, Any]) -> Task:
    """The task a spec names; unknown kinds, keys or types are rejected (`TASK`) before anything is generated or
    loaded."""
    TASK.check(spec, "task spec", "")
    args = dict(spec)
    kind = args.pop("kind")
    if kind == "mixture":
        return _mixture(args)
    if kind in _SYNTHETIC:
        shape, make = _SYNTHETIC[kind]
        try:
            made = make(args)
        except TypeError as exc:
            raise ValueError(f"task kind {kind!r}: {exc}") from exc
        if shape == "texts":
            return Task(kind, texts=list(made))
        return Task(kind, prompts=made.prompt.tolist(), completions=made.answer.tolist())
    rows = _load_hf({k: args[k] for k in _HF_LOAD_KEYS if k in args})
    if args.get("max_rows"):
        rows = rows.select(range(min(int(args["max_rows"]), len(rows))))
    label = f"{args['path']}:{args.get('name') or ''}:{args['split']}"
    if kind == "hf_text":
        field = args.get("field", "text")
        texts = [t for t in rows[field] if len(t.strip()) >= args.get("min_chars", 1)]
        return Task(label, texts=texts)
    prompt_t, completion_t = args.get("prompt_template", "{}"), args.get("completion_template", "{}")
    return Task(label, prompts=[prompt_t.format(x) for x in rows[args["prompt_field"]]],
                completions=[completion_t.format(x) for x in rows[args["completion_field"]]])


def _mixture(args: dict[str, Any]) -> Task:
    """{"kind": "mixture", "parts": [spec, ...], "seed": 0}: one corpus of every part's texts (pairs become
    prompt + completion), shuffled with the seed."""
    if not args.get("parts"):
        raise ValueError("a mixture needs a non-empty list of parts")
    texts: list[str] = []
    for part in (load_task(p) for p in args["parts"]):
        texts += part.texts if part.is_corpus else [p + c for p, c in zip(part.prompts, part.completions)]
    order = np.random.default_rng(args.get("seed", 0)).permutation(len(texts))
    return Task("mixture", texts=[texts[i] for i in order])


def disjoint_pools(test_prompts, *pools: "pd.DataFrame") -> list["pd.DataFrame"]:
    """Each pool (a frame with a `prompt` column) without the rows whose prompt is a test prompt."""
    held = set(test_prompts)
    return [pool[~pool.prompt.isin(held)].reset_index(drop=True) for pool in pools]


def load_preferences(spec: dict[str, Any]) -> "pd.DataFrame":
    """Preference pairs (prompt, chosen, rejected) by spec: {"kind": "chain_preferences", <chains.preferences
    arguments>}, or {"kind": "hf_preferences", "path": ..., "split": ..., "prompt_field", "chosen_field",
    "rejected_field", "prompt_template", "max_rows"} from a Hugging Face dataset."""
    import pandas as pd

    PREFERENCES.check(spec, "preference spec", "")
    args = dict(spec)
    kind = args.pop("kind", None)
    if kind == "chain_preferences":
        try:
            return chains.preferences(**args)[["prompt", "chosen", "rejected"]]
        except TypeError as exc:
            raise ValueError(f"preference kind 'chain_preferences': {exc}") from exc
    rows = _load_hf({k: args[k] for k in _HF_LOAD_KEYS if k in args})
    if args.get("max_rows"):
        rows = rows.select(range(min(int(args["max_rows"]), len(rows))))
    template = args.get("prompt_template", "{}")
    return pd.DataFrame({"prompt": [template.format(x) for x in rows[args.get("prompt_field", "prompt")]],
                         "chosen": [" " + x.strip() for x in rows[args.get("chosen_field", "chosen")]],
                         "rejected": [" " + x.strip() for x in rows[args.get("rejected_field", "rejected")]]})


def load_questions(spec: dict[str, Any]) -> "pd.DataFrame":
    """Multiple-choice questions (prompt, choices, answer index) by spec, for every tier:
    {"kind": "fact_questions_mc", <data.facts arguments>, "tail": 300, "n_choices": 4, "distractors": "frequent"}
    asks about the `tail` least-mentioned facts of the same fact set a corpus spec {"kind": "facts", ...} with the
    same arguments was built from; {"kind": "hf_multiple_choice", "path": "cais/mmlu", "names": [subjects],
    "split": "test", "question_field": "question", "choices_field": "choices", "answer_field": "answer"} reads a
    Hugging Face dataset (prompt "<question>\\nAnswer:", choices " <choice>")."""
    import pandas as pd

    QUESTIONS.check(spec, "question spec", "")
    args = dict(spec)
    kind = args.pop("kind", None)
    if kind == "fact_questions_mc":
        picks = {k: args.pop(k) for k in ("tail", "n_choices", "distractors") if k in args}
        made = data.facts(**args)
        tail = made.table.sort_values("mentions", kind="stable").entity.head(picks.get("tail", 300)).tolist()
        return data.multiple_choice(made, n_choices=picks.get("n_choices", 4), entities=tail,
                                    distractors=picks.get("distractors", "frequent"), seed=args.get("seed", 0))
    frames = []
    for name in args.get("names") or [None]:
        rows = _load_hf({k: v for k, v in {"path": args["path"], "name": name, "split": args["split"],
                                           "revision": args.get("revision"),
                                           "data_files": args.get("data_files")}.items() if v is not None})
        frames.append(pd.DataFrame({
            "prompt": [f"{q}\nAnswer:" for q in rows[args.get("question_field", "question")]],
            "choices": [[f" {c}" for c in cs] for cs in rows[args.get("choices_field", "choices")]],
            "answer": [int(a) for a in rows[args.get("answer_field", "answer")]]}))
    return pd.concat(frames, ignore_index=True)


# -- the specs' schemas, checked by `caplab validate` before anything runs (caplab.params) ----------------------
def _schemas():
    from caplab.params import Fields, Kinds, Signature

    load = {"path": str, "name": str | None, "split": str, "revision": str | None, "data_files": Any}
    hf_text = Fields({**load, "field": str, "max_rows": int, "min_chars": int}, name="hf_text",
                     required=("path", "split"), partial=False)
    hf_pairs = Fields({**load, "prompt_field": str, "completion_field": str, "prompt_template": str,
                       "completion_template": str, "max_rows": int}, name="hf_pairs",
                      required=("path", "split", "prompt_field", "completion_field"), partial=False)
    synthetic = {"zipf_language": Signature(data.zipf_language), "facts": Signature(data.facts),
                 "fact_questions": Signature(data.facts, name="fact_questions"),
                 "arithmetic": Signature(data.arithmetic), "chain_facts": Signature(chains.fact_corpus),
                 "chain_worked": Signature(chains.worked_corpus, exclude=("exclude",)),
                 "chain_problems": Signature(chains.problems, exclude=("exclude",))}
    task = Kinds({}, name="task spec")
    mixture = Fields({"parts": list[Annotated[dict, task]], "seed": int}, name="mixture", required=("parts",),
                     partial=False)
    task.kinds.update({**synthetic, "hf_text": hf_text, "hf_pairs": hf_pairs, "mixture": mixture})
    preferences = Kinds({
        "chain_preferences": Signature(chains.preferences, exclude=("exclude",)),
        "hf_preferences": Fields({**load, "prompt_field": str, "chosen_field": str, "rejected_field": str,
                                  "prompt_template": str, "max_rows": int}, name="hf_preferences",
                                 required=("path", "split"), partial=False)}, name="preference spec")
    questions = Kinds({
        "fact_questions_mc": Signature(data.facts, name="fact_questions_mc",
                                       extra={"tail": int, "n_choices": int, "distractors": str}),
        "hf_multiple_choice": Fields({"path": str, "names": list[str] | None, "split": str, "revision": str | None,
                                      "data_files": Any, "question_field": str, "choices_field": str,
                                      "answer_field": str}, name="hf_multiple_choice", required=("path", "split"),
                                     partial=False)}, name="question spec")
    return task, preferences, questions


TASK, PREFERENCES, QUESTIONS = _schemas()
"""Schemas of a task spec (`load_task`), a preference spec (`load_preferences`) and a question spec
(`load_questions`): `Annotated[dict, TASK]` in a paper's parameters."""
