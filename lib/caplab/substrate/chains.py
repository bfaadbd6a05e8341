"""Chain arithmetic: multi-step modular problems with a verifiable answer and a step-by-step solution.

A problem is a start value and a few operations modulo m, asked as "Question: 4+7-2\\nAnswer:". Its solution
works one operation per step, in the format of the budget paper's GSM8K data (Raghavendra et al. 2025):

    Question: 4+7-2
    Answer: Step 1: 4+7=1
    Step 2: 1-2=9
    #### 9

Everything a solver needs is single-step facts ("4+7=1"); `fact_corpus` gives them as pre-training text that never
shows the question or the step format, so that the format has to come from fine-tuning. `worked_corpus` gives the
multi-step skill itself in another surface form, worked chains such as "7-3+5: 7-3=4, 4+5=9 => 9" (never
"Question:", "Step k:" or "####"), so that fine-tuning has a skill to elicit; `worked_prompt` / `worked_answer`
ask and read that form, and `first_step_answer` is the answer of a guesser that solves only the first step. `corrupt` gives a wrong
chain for preference pairs: one step's result is changed and the chain continues correctly from the wrong value,
so the final answer is wrong too (every step is a bijection of the running value). `answer_of` reads the answer
after "####", the same for our chains and for GSM8K solutions, and `correct_reward` is the binary RL reward.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

PROMPT = "Question: {question}\nAnswer:"
_OPS = ("+", "-")
_ANSWER = re.compile(r"####\s*([-0-9.,]+)")


def _apply(a: int, op: str, b: int, modulus: int, wrap: bool) -> int:
    result = a + b if op == "+" else a - b
    return result % modulus if wrap else result


def _operand(rng: np.random.Generator, value: int, modulus: int, wrap: bool) -> tuple[str, int]:
    """An operation for the running `value`: any (op, b) when results wrap modulo m, else one whose result stays in
    0..m-1 (so that no single-digit fact is modular: each operand alone tells something about the result)."""
    op = _OPS[int(rng.integers(2))]
    if wrap:
        return op, int(rng.integers(modulus))
    return op, int(rng.integers(modulus - value)) if op == "+" else int(rng.integers(value + 1))


def _steps(start: int, ops: list[tuple[str, int]], modulus: int, wrap: bool, wrong_at: int | None = None,
           rng: np.random.Generator | None = None) -> tuple[list[str], int]:
    value, lines = start, []
    for i, (op, b) in enumerate(ops):
        result = _apply(value, op, b, modulus, wrap)
        if i == wrong_at:
            result = (result + int(rng.integers(1, modulus))) % modulus
        lines.append(f"Step {i + 1}: {value}{op}{b}={result}")
        value = result
    return lines, value


def solution_text(lines: list[str], answer: int) -> str:
    return " " + "\n".join(lines) + f"\n#### {answer}"


def problems(n: int, n_ops: int | tuple[int, int] = (1, 3), modulus: int = 10, seed: int = 0,
             exclude: set[str] | None = None, wrap: bool = False) -> pd.DataFrame:
    """`n` distinct problems: question ("4+7-2"), prompt, solution (step by step, "#### answer"), answer (a
    string), n_ops. Questions in `exclude` are skipped (so a test set never overlaps a training set)."""
    lo, hi = (n_ops, n_ops) if isinstance(n_ops, int) else n_ops
    if not 1 <= lo <= hi:
        raise ValueError(f"n_ops must be >= 1 (or a range lo <= hi), got {n_ops}")
    if modulus < 2:
        raise ValueError(f"modulus must be at least 2, got {modulus}")
    rng = np.random.default_rng(seed)
    rows, seen = [], set(exclude or ())
    possible = sum(modulus * (2 * modulus) ** k for k in range(lo, hi + 1))
    if n > possible - len(seen):
        raise ValueError(f"only {possible} distinct problems with n_ops={n_ops}, modulus={modulus}; asked for {n}")
    for _ in range(1000 * n + 10000):
        if len(rows) == n:
            break
        k = int(rng.integers(lo, hi + 1))
        start = int(rng.integers(modulus))
        ops, value = [], start
        for _ in range(k):
            ops.append(_operand(rng, value, modulus, wrap))
            value = _apply(value, *ops[-1], modulus, wrap)
        question = f"{start}" + "".join(f"{op}{b}" for op, b in ops)
        if question in seen:
            continue
        seen.add(question)
        lines, answer = _steps(start, ops, modulus, wrap)
        rows.append({"question": question, "prompt": PROMPT.format(question=question),
                     "solution": solution_text(lines, answer), "answer": str(answer), "n_ops": k})
    if len(rows) < n:
        raise ValueError(f"could not draw {n} distinct problems with n_ops={n_ops}, modulus={modulus}")
    return pd.DataFrame(rows)


def _parse(question: str) -> tuple[int, list[tuple[str, int]]]:
    parts = re.findall(r"[+-]|\d+", question)
    return int(parts[0]), [(parts[i], int(parts[i + 1])) for i in range(1, len(parts), 2)]


def corrupt(question: str, modulus: int, rng: np.random.Generator, wrap: bool = False) -> tuple[str, str]:
    """A wrong chain for `question`: (solution, its wrong answer), with the error at a random step."""
    start, ops = _parse(question)
    lines, answer = _steps(start, ops, modulus, wrap, wrong_at=int(rng.integers(len(ops))), rng=rng)
    return solution_text(lines, answer), str(answer)


def preferences(n: int, n_ops: int | tuple[int, int] = (1, 3), modulus: int = 10, seed: int = 0,
                exclude: set[str] | None = None, wrap: bool = False) -> pd.DataFrame:
    """Preference pairs: prompt, chosen (the correct chain), rejected (a chain with one injected error)."""
    made = problems(n, n_ops, modulus, seed, exclude, wrap)
    rng = np.random.default_rng(seed + 7919)
    rejected = [corrupt(q, modulus, rng, wrap)[0] for q in made.question]
    return made.assign(chosen=made.solution, rejected=rejected)


def fact_corpus(n_lines: int, modulus: int = 10, facts_per_line: int = 8, seed: int = 0,
                wrap: bool = False) -> list[str]:
    """Pre-training text of single-step facts ("4+3=7 8-5=3 ..."), drawn as the problems' steps are; no question,
    no step format."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n_lines):
        facts = []
        for a in rng.integers(modulus, size=facts_per_line).tolist():
            op, b = _operand(rng, a, modulus, wrap)
            facts.append(f"{a}{op}{b}={_apply(a, op, b, modulus, wrap)}")
        lines.append(" ".join(facts))
    return lines


WORKED_FORMS = (
    "{question}: {steps} => {answer}",                  # 7-3+5: 7-3=4, 4+5=9 => 9
    "Work out {question}.\n{lines}\nSo it is {answer}.",  # one step a line
    "{question} gives {semis}; the result is {answer}.",
    "Question: {question}\nAnswer: {steps} => {answer}",  # the question as fine-tuning asks it, answered worked
)
"""The surface forms of worked chains in pre-training text; none is the fine-tuning answer format ("Step k:" lines
and "#### answer"), so a base model asked "Question: ...\nAnswer:" answers in a worked form that scores 0. Form 0 is
the one the base model's skill is measured in (`worked_prompt`, `worked_answer`)."""


def worked_text(question: str, modulus: int = 10, wrap: bool = False, form: int = 0) -> str:
    """The worked chain of `question` in pre-training form `form` (0: "7-3+5: 7-3=4, 4+5=9 => 9")."""
    start, ops = _parse(question)
    lines, answer = _steps(start, ops, modulus, wrap)
    steps = [line.split(": ", 1)[1] for line in lines]
    return WORKED_FORMS[form].format(question=question, steps=", ".join(steps), lines="\n".join(steps),
                                     semis="; ".join(steps), answer=answer)


def worked_prompt(question: str) -> str:
    """The prompt of the pre-training form ("7-3+5:"), whose continuation is the worked chain."""
    return f"{question}:"


_WORKED = re.compile(r"=>\s*(-?\d+)")


def worked_answer(text: str) -> str | None:
    """The answer after the first "=>" of a worked chain, or None when there is none."""
    found = _WORKED.search(text)
    return found.group(1) if found else None


def worked_corpus(n_lines: int, n_ops: int | tuple[int, int] = (1, 3), modulus: int = 10, seed: int = 0,
                  exclude: set[str] | None = None, wrap: bool = False, n_forms: int = 1) -> list[str]:
    """Pre-training text of `n_lines` worked chains, one per line, drawn as `problems` draws them but with
    repeats (a skill is practised, not a list learned), each in one of the first `n_forms` `WORKED_FORMS` at
    random (several forms make the skill less tied to one layout); questions in `exclude` are never drawn, so that
    held-out questions are never seen worked."""
    if not 1 <= n_forms <= len(WORKED_FORMS):
        raise ValueError(f"n_forms must be in 1..{len(WORKED_FORMS)}, got {n_forms}")
    lo, hi = (n_ops, n_ops) if isinstance(n_ops, int) else n_ops
    if not 1 <= lo <= hi or modulus < 2:
        raise ValueError(f"need 1 <= n_ops (or a range lo <= hi) and modulus >= 2; got {n_ops}, {modulus}")
    rng, skip, lines = np.random.default_rng(seed), set(exclude or ()), []
    for _ in range(100 * n_lines + 10000):
        if len(lines) == n_lines:
            return lines
        start = int(rng.integers(modulus))
        ops, value = [], start
        for _ in range(int(rng.integers(lo, hi + 1))):
            ops.append(_operand(rng, value, modulus, wrap))
            value = _apply(value, *ops[-1], modulus, wrap)
        question = f"{start}" + "".join(f"{op}{b}" for op, b in ops)
        form = int(rng.integers(n_forms))
        if question not in skip:
            lines.append(worked_text(question, modulus, wrap, form))
    raise ValueError(f"could not draw {n_lines} worked chains outside the {len(skip)} excluded questions")


def question_of(prompt: str) -> str:
    """The question of a prompt "Question: 4+7-2\nAnswer:" ("4+7-2")."""
    found = re.match(r"Question: (.*)\nAnswer:", prompt)
    if not found:
        raise ValueError(f"not a chain prompt: {prompt!r}")
    return found.group(1)


def first_step_answer(question: str, modulus: int = 10, wrap: bool = False) -> str:
    """What a guesser that solves only the first operation answers (right on every one-step question)."""
    start, ops = _parse(question)
    return str(_apply(start, *ops[0], modulus, wrap))


def answer_of(text: str) -> str | None:
    """The answer after the first "####" (commas dropped, as in GSM8K), or None when there is none."""
    found = _ANSWER.search(text)
    return found.group(1).replace(",", "").rstrip(".") if found else None


def is_correct(completion: str, answer: str) -> bool:
    got = answer_of(completion)
    return got is not None and got == str(answer).strip()


def correct_reward(completions: list, answer: list, **_) -> list[float]:
    """The binary reward of Tan et al. 2025: 1 when the answer after "####" equals the reference, else 0. The
    signature is TRL's reward-function signature (extra dataset columns arrive as keyword arguments)."""
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [float(is_correct(t, a)) for t, a in zip(texts, answer)]
