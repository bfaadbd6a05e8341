"""Benchmark items whose target is written reasoning followed by the answer (the densing paper's loss items).

Two seeded generators, each returning a frame with `prompt` and `target` (and the `answer` alone):

- `choice_items`: multiple choice over four two-digit options, "largest" or "smallest"; the target is a short
  written analysis (a scan of pairwise comparisons keeping the running best) and then the option label:

      Q: largest? A)37 B)52 C)18 D)44
      A: 37<52 52>18 52>44 so B

- `chain_items`: multi-step arithmetic (`caplab.substrate.chains`), target = the written steps and "#### answer".

`decisions(kind, target)` gives the character positions of the target where something is decided (a comparison
sign and the label; each step's result and the final answer), the rest being copied from the prompt or the
format: an item is scored correct when the model's argmax is right at every decision given the written target
before it (teacher forcing), a graded score that tiny models move on before they write whole targets unaided.

`items(kind, n, seed, exclude)` is the one door; `exclude` holds prompts to skip, so a training pool never contains
a test item unless it is put there on purpose (contamination).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from caplab.substrate import chains

LABELS = "ABCD"
KINDS = ("choice", "chain")


def _choice(values: list[int], largest: bool) -> tuple[str, str, str]:
    prompt = f"Q: {'largest' if largest else 'smallest'}? " + " ".join(
        f"{label}){value}" for label, value in zip(LABELS, values)) + "\nA:"
    best, steps = 0, []
    for j in range(1, 4):
        a, b = values[best], values[j]
        wins = (b > a) if largest else (b < a)
        steps.append(f"{a}{'<' if a < b else '>'}{b}")
        best = j if wins else best
    return prompt, " " + " ".join(steps) + f" so {LABELS[best]}", LABELS[best]


def choice_items(n: int, seed: int = 0, exclude: set[str] | None = None) -> pd.DataFrame:
    """`n` distinct multiple-choice items (prompt, target, answer) not among `exclude`."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng, seen, rows = np.random.default_rng(seed), set(exclude or ()), []
    draws = rng.integers(10, 100, size=(2 * n + 1000, 5))        # four option values and the question's kind
    for row in draws.tolist():
        if len(rows) == n:
            break
        values = row[:4]
        if len(set(values)) < 4:
            continue
        prompt, target, answer = _choice(values, row[4] % 2 == 0)
        if prompt not in seen:
            seen.add(prompt)
            rows.append({"prompt": prompt, "target": target, "answer": answer})
    if len(rows) < n:
        raise ValueError(f"could not draw {n} distinct choice items")
    return pd.DataFrame(rows, columns=["prompt", "target", "answer"])


def chain_items(n: int, seed: int = 0, exclude: set[str] | None = None, n_ops=(1, 3),
                modulus: int = 10) -> pd.DataFrame:
    """`n` distinct chain-arithmetic items (prompt, target = written steps and '#### answer', answer)."""
    questions = {p.removeprefix("Question: ").removesuffix("\nAnswer:") for p in exclude or ()}
    made = chains.problems(n, n_ops=n_ops, modulus=modulus, seed=seed, exclude=questions)
    return pd.DataFrame({"prompt": made.prompt, "target": made.solution, "answer": made.answer})


def decisions(kind: str, target: str) -> list[int]:
    """Character positions in `target` that carry a decision (see the module docstring)."""
    if kind == "choice":
        return [i for i, ch in enumerate(target) if ch in "<>"] + [len(target) - 1]
    if kind == "chain":
        marks = [i + 1 for i, ch in enumerate(target) if ch == "="]
        answer = target.rindex("#### ") + 5
        return marks + list(range(answer, len(target)))
    raise ValueError(f"item kind must be one of {KINDS}, got {kind!r}")


def items(kind: str, n: int, seed: int = 0, exclude: set[str] | None = None) -> pd.DataFrame:
    """`n` items of `kind` ('choice' or 'chain') with a `benchmark` column."""
    if kind not in KINDS:
        raise ValueError(f"item kind must be one of {KINDS}, got {kind!r}")
    made = choice_items(n, seed, exclude) if kind == "choice" else chain_items(n, seed, exclude)
    return made.assign(benchmark=kind, decisions=[decisions(kind, t) for t in made.target])
