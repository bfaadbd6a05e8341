"""Evaluation of causal LMs: loss, multiple-choice log-probabilities, exact match of greedy generations.

- `example_losses` / `mean_loss`: teacher-forced cross-entropy on the positions a `TokenDataset` labels (all tokens,
  or the answer only), with per-example "every answer token is the argmax" accuracy.
- `score_multiple_choice`: each choice scored by the summed log-probability of its tokens given the prompt (the
  lm-evaluation-harness convention); returns the per-choice log-probabilities, not only accuracy.
- `greedy_exact_match`: batched greedy generation with left padding, compared to reference answers.
Any model whose call `model(input_ids=..., attention_mask=...)` returns `.logits` works, tiny or pretrained.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from caplab.substrate.data import TokenDataset, encode_pair
from caplab.substrate.models import inference_autocast


def _device(model) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def example_losses(model, dataset: TokenDataset, batch_size: int = 64) -> pd.DataFrame:
    """Per row: summed loss, number of scored tokens, mean loss, and whether every scored token is the argmax."""
    model.eval()
    device, rows = _device(model), []
    for start in range(0, len(dataset), batch_size):
        batch = {k: v.to(device) for k, v in dataset.batch(slice(start, start + batch_size)).items()}
        with inference_autocast(model):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        logits, labels = logits[:, :-1], batch["labels"][:, 1:]
        scored = labels != -100
        nll = F.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none") * scored
        hit = (logits.argmax(-1) == labels) | ~scored
        for total, count, correct in zip(nll.sum(1).tolist(), scored.sum(1).tolist(), hit.all(1).tolist()):
            rows.append({"loss_sum": total, "n_tokens": count, "loss": total / max(count, 1),
                         "all_correct": bool(correct) and count > 0})
    return pd.DataFrame(rows)


def mean_loss_with_se(model, dataset: TokenDataset, batch_size: int = 64) -> tuple[float, float]:
    """Per-token loss over the scored positions, and its standard error over rows (evaluation blocks)."""
    per_row = example_losses(model, dataset, batch_size)
    mean = float(per_row.loss_sum.sum() / per_row.n_tokens.sum())
    se = float(per_row.loss.std(ddof=1) / len(per_row) ** 0.5) if len(per_row) > 1 else float("nan")
    return mean, se


def mean_loss(model, dataset: TokenDataset, batch_size: int = 64) -> float:
    """Cross-entropy (nats per token) averaged over every scored token of the dataset."""
    frame = example_losses(model, dataset, batch_size)
    if frame.n_tokens.sum() == 0:
        raise ValueError("the dataset labels no token (all labels are -100)")
    return float(frame.loss_sum.sum() / frame.n_tokens.sum())


def _context_and_continuation(tokenizer, prompt: str, choice: str) -> tuple[list[int], list[int]]:
    context, continuation = encode_pair(tokenizer, prompt, choice)     # the training datasets' encoding too
    if not context:                             # nothing to condition on: start from <bos> (or <eos>)
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        context = [start]
    if not continuation:
        raise ValueError(f"choice {choice!r} has no tokens")
    return context, continuation


@torch.no_grad()
def continuation_logprobs(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int = 32
                          ) -> list[tuple[float, int, bool]]:
    """For each (context, continuation): summed log p(continuation tokens | context), the token count, and
    whether greedy decoding would produce the continuation."""
    model.eval()
    device, pad = _device(model), tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoded = [_context_and_continuation(tokenizer, p, c) for p, c in pairs]
    out = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start:start + batch_size]
        width = max(len(c) + len(k) for c, k in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, (c, k) in enumerate(chunk):
            ids[i, :len(c) + len(k)] = torch.tensor(c + k)
            mask[i, :len(c) + len(k)] = 1
        with inference_autocast(model):
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        logp = logits.float().log_softmax(-1).cpu()
        for i, (c, k) in enumerate(chunk):
            rows = logp[i, len(c) - 1:len(c) + len(k) - 1]
            target = torch.tensor(k)
            out.append((float(rows.gather(1, target[:, None]).sum()), len(k), bool((rows.argmax(1) == target).all())))
    return out


def score_multiple_choice(model, tokenizer, questions: pd.DataFrame, batch_size: int = 32) -> pd.DataFrame:
    """Score questions with columns `prompt`, `choices` (list of strings), optional `answer` (index).

    Returns one row per question: `logprob_0..k-1` (summed log-probability of each choice given the prompt),
    `n_tokens_0..k-1`, `pred` (argmax), and with answers `answer`, `correct`, `logprob_answer`."""
    k = choice_count(questions)
    pairs = [(p, c) for p, cs in zip(questions.prompt, questions.choices) for c in cs]
    scores = np.array([s[:2] for s in continuation_logprobs(model, tokenizer, pairs, batch_size)]).reshape(-1, k, 2)
    return choice_frame(questions, scores[:, :, 0], scores[:, :, 1].astype(int))


def choice_count(questions: pd.DataFrame) -> int:
    """The number of choices every question has (columns `prompt`, `choices`); ValueError before any scoring."""
    missing = {"prompt", "choices"} - set(questions.columns)
    if missing:
        raise ValueError(f"questions lack columns {sorted(missing)}")
    n_choices = {len(c) for c in questions.choices}
    if len(n_choices) != 1:
        raise ValueError(f"every question needs the same number of choices, got {sorted(n_choices)}")
    return n_choices.pop()


def choice_frame(questions: pd.DataFrame, logprob: np.ndarray, n_tokens: np.ndarray) -> pd.DataFrame:
    """The multiple-choice result frame from per-(question, choice) summed log-probabilities and token counts,
    both (n, k): `logprob_j`, `n_tokens_j`, `pred`, and with answers `answer`, `correct`, `logprob_answer`."""
    k = logprob.shape[1]
    frame = pd.DataFrame({f"logprob_{j}": logprob[:, j] for j in range(k)}, index=questions.index)
    for j in range(k):
        frame[f"n_tokens_{j}"] = n_tokens[:, j]
    frame["pred"] = logprob.argmax(1)
    if "answer" in questions.columns:
        answer = questions.answer.to_numpy().astype(int)
        frame["answer"] = answer
        frame["correct"] = frame.pred.to_numpy() == answer
        frame["logprob_answer"] = logprob[np.arange(len(answer)), answer]
    return frame


@torch.no_grad()
def generate_texts(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int = 64,
                   **sampling) -> list[str]:
    """Completions of `prompts` (batched, left-padded), cut at `<eos>`, decoded without special tokens.
    `sampling`: `model.generate` options, e.g. do_sample=True, temperature=0.7 (default: greedy)."""
    model.eval()
    device, eos = _device(model), tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    sampling = {"do_sample": False, **sampling}
    texts = []
    for start in range(0, len(prompts), batch_size):
        encoded = [tokenizer(p).input_ids for p in prompts[start:start + batch_size]]
        width = max(len(e) for e in encoded)
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded])
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
        with inference_autocast(model):
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=eos, **sampling)
        for row in out[:, width:].tolist():
            row = row[:row.index(eos)] if eos in row else row
            texts.append(tokenizer.decode(row, skip_special_tokens=True))
    return texts


def greedy_exact_match(model, tokenizer, prompts: list[str], answers: list[str], max_new_tokens: int | None = None,
                       batch_size: int = 64, stop: str | None = "\n") -> pd.DataFrame:
    """Greedy generations (batched, left-padded) cut at `<eos>` and at `stop`, compared to `answers` (stripped)."""
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    if max_new_tokens is None:
        max_new_tokens = max(len(tokenizer(a, add_special_tokens=False).input_ids) for a in answers) + 2
    generations = [text.split(stop)[0] if stop else text
                   for text in generate_texts(model, tokenizer, prompts, max_new_tokens, batch_size)]
    return pd.DataFrame({"prompt": prompts, "answer": answers, "generation": generations,
                         "correct": [g.strip() == a.strip() for g, a in zip(generations, answers)]})


def answer_accuracy(model, tokenizer, prompts: list[str], references: list[str], max_new_tokens: int = 64,
                    batch_size: int = 256) -> pd.DataFrame:
    """Greedy generations scored on the answer after "####" (GSM8K's convention, and our chains'): one row per
    prompt with generation, answer (read from the reference), correct, and formatted (the output has an answer)."""
    from caplab.substrate.chains import answer_of

    answers = [answer_of(r) for r in references]
    if any(a is None for a in answers):
        raise ValueError("every reference needs an answer after '####'")
    out = greedy_exact_match(model, tokenizer, prompts, answers, max_new_tokens=max_new_tokens,
                             batch_size=batch_size, stop=None)
    got = [answer_of(g) for g in out.generation]
    out["formatted"] = [g is not None for g in got]
    out["correct"] = [g is not None and g == a for g, a in zip(got, answers)]
    return out
