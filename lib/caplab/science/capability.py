"""Capabilities across a model family: knowledge multiple choice, arithmetic, trends with scale, the downstream chain.

`knowledge_rows` scores multiple-choice questions at one checkpoint (one row per question, with every choice's
summed log-probability, lm-evaluation-harness style); `skill_summary` measures held-out corpus loss and
`arithmetic_rows` arithmetic per problem (greedy exact match and the answer's loss). The no-skill references a run
records beside them: `prior_guessers` (uniform chance, the corpus prior, the majority answer), `lookup_baseline`
(a lookup table of the training problems) and `bigram_floor` (next-token accuracy of a bigram model). `trend`
regresses a measure on log parameters (OLS, robust standard errors). `downstream_chain` turns per-question
log-probabilities into Schaeffer et al.'s chain log p_vocab(correct) -> p_vocab(correct) -> p_choices(correct) ->
Brier -> accuracy, and `sample_correlations` correlates each question's score with log compute across the family.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy import stats
from scipy.special import logsumexp

from caplab.stats.regression import slope
from caplab.substrate.data import TokenDataset, encode_pair
from caplab.substrate.evaluate import choice_count, choice_frame, example_losses, greedy_exact_match, mean_loss
from caplab.substrate.models import inference_autocast

CHAIN = ("log_p_vocab", "p_vocab", "p_choices", "neg_brier", "accuracy")
MASS = ("p_vocab_incorrect", "log_odds_incorrect")      # the incorrect choices' mass, absolute and relative
METHODS = ("pearson", "spearman", "kendall")           # the per-sample correlations of `sample_correlations`


def knowledge_rows(model, tokenizer, row, *, questions: pd.DataFrame, batch_size: int = 512) -> list[dict]:
    """One dict per question: question number (the questions' `question` column, else the row's position), every
    choice's log-probability, the answer, correct."""
    scored = score_choices(model, tokenizer, questions, batch_size)
    scored.insert(0, "question", questions["question"].to_numpy() if "question" in questions
                  else np.arange(len(scored)))
    return scored.drop(columns=[c for c in scored.columns if c.startswith("n_tokens_")]).to_dict("records")


def _encode_pairs(tokenizer, prompts: list[str], continuations: list[str]) -> list[tuple[list[int], list[int]]]:
    """`data.encode_pair` of every (prompt, continuation), the prompts and the whole texts tokenized in two batched
    calls (the pairs whose whole text does not start with the prompt's ids fall back to `encode_pair` itself); an
    empty context becomes <bos> (or <eos>), as `evaluate.score_multiple_choice` does."""
    contexts = tokenizer(list(prompts)).input_ids
    wholes = tokenizer([p + c for p, c in zip(prompts, continuations)]).input_ids
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    out = []
    for prompt, cont, context, whole in zip(prompts, continuations, contexts, wholes):
        if whole[:len(context)] == context and len(whole) > len(context):
            context, tail = context, whole[len(context):]
        else:
            context, tail = encode_pair(tokenizer, prompt, cont)
        if not tail:
            raise ValueError(f"choice {cont!r} has no tokens")
        out.append((context or [start], tail))
    return out


@torch.no_grad()
def score_choices(model, tokenizer, questions: pd.DataFrame, batch_size: int = 512) -> pd.DataFrame:
    """`evaluate.score_multiple_choice` (the same columns and values: each choice's summed log-probability given
    the prompt, its token count, the argmax, and with answers `answer`, `correct`, `logprob_answer`), faster: the
    pairs tokenized in batch, run in batches of similar length, the choices' tokens gathered in one operation per
    batch rather than per pair."""
    k = choice_count(questions)
    prompts = [p for p, cs in zip(questions.prompt, questions.choices) for _ in cs]
    encoded = _encode_pairs(tokenizer, prompts, [c for cs in questions.choices for c in cs])
    lengths = np.array([len(c) + len(t) for c, t in encoded])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    model.eval()
    device = next(iter(model.parameters())).device
    logprob, count = np.zeros(len(encoded)), np.array([len(t) for _, t in encoded])
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = int(lengths[rows].max())
        ids = np.full((len(rows), width), pad, dtype=np.int64)
        scored = np.zeros((len(rows), width), dtype=bool)          # positions whose next token is a choice's
        for i, r in enumerate(rows):
            context, tail = encoded[r]
            ids[i, :len(context) + len(tail)] = context + tail
            scored[i, len(context) - 1:len(context) + len(tail) - 1] = True
        ids_t = torch.from_numpy(ids).to(device)
        mask = torch.from_numpy(np.arange(width)[None] < lengths[rows][:, None]).long().to(device)
        with inference_autocast(model):
            logits = model(input_ids=ids_t, attention_mask=mask).logits
        logp = logits.float().log_softmax(-1)[:, :-1].gather(-1, ids_t[:, 1:, None])[..., 0]
        logprob[rows] = torch.where(torch.from_numpy(scored[:, :-1]), logp.cpu(), 0.0).sum(1).double().numpy()
    return choice_frame(questions, logprob.reshape(-1, k), count.reshape(-1, k))


def each_checkpoint(frame: pd.DataFrame, fn, *, args: dict, name: str) -> pd.DataFrame:
    """`family.for_each_checkpoint(frame, fn, args=args, name=name)`, its rows spread over the cores
    (`sweep.parallel`: each row's result is its own cached entry, computed in a forked single-thread process and
    read back in order; the largest models first). The same frame as the plain call."""
    from caplab.substrate.family import for_each_checkpoint
    from caplab.substrate.sweep import parallel

    if frame.empty:
        return for_each_checkpoint(frame, fn, args=args, name=name)
    rows = [frame.iloc[[i]] for i in range(len(frame))]
    costs = (frame.params_non_embedding.to_numpy(float) if "params_non_embedding" in frame
             else np.ones(len(frame))).tolist()
    parts = parallel([lambda r=r: for_each_checkpoint(r, fn, args=args, name=name) for r in rows], costs=costs)
    return pd.concat(parts, ignore_index=True)


def skill_summary(model, tokenizer, row, *, corpus: TokenDataset, batch_size: int = 64) -> dict:
    """Held-out corpus loss (arithmetic is scored per problem by `arithmetic_rows`)."""
    return {"corpus_loss": mean_loss(model, corpus, batch_size)}


def trend(frame: pd.DataFrame, y: str, x: str = "log_params", alpha: float = 0.05) -> dict:
    """Slope of `y` on `x` (OLS, HC1 standard errors) with its interval and p-value."""
    if frame[x].nunique() < 2:
        raise ValueError(f"a trend needs at least two distinct {x} values")
    return slope(frame, y, x, robust=True, alpha=alpha)


def downstream_chain(rows: pd.DataFrame) -> pd.DataFrame:
    """Add the chain's scores to per-question rows holding `logprob_0..k-1` and `answer`: log p_vocab of the correct
    choice, p_vocab, p_choices (renormalised over the choices), minus the Brier score (higher is better), accuracy,
    the probability mass (vocabulary-level) on the incorrect choices, and that mass relative to the correct choice's
    (`log_odds_incorrect` = log p_vocab(incorrect) - log p_vocab(correct), the log-odds of the incorrect choices
    after renormalising over the choices: a shift shared by every choice, format learning, leaves it unchanged)."""
    columns = sorted((c for c in rows.columns if c.startswith("logprob_") and c[8:].isdigit()), key=lambda c: int(c[8:]))
    if not columns or "answer" not in rows:
        raise ValueError("rows need logprob_0..k-1 and answer columns")
    logp = rows[columns].to_numpy(float)
    answer = rows.answer.to_numpy(int)
    pick = np.arange(len(rows))
    p_choices = np.exp(logp - logp.max(axis=1, keepdims=True))
    p_choices /= p_choices.sum(axis=1, keepdims=True)
    onehot = np.eye(len(columns))[answer]
    out = rows.copy()
    out["log_p_vocab"] = logp[pick, answer]
    out["p_vocab"] = np.exp(out.log_p_vocab)
    out["p_choices"] = p_choices[pick, answer]
    out["neg_brier"] = -((p_choices - onehot) ** 2).sum(axis=1)
    out["accuracy"] = (logp.argmax(axis=1) == answer).astype(float)
    out["p_vocab_incorrect"] = np.exp(logp).sum(axis=1) - out.p_vocab
    wrong = np.where(onehot.astype(bool), -np.inf, logp)
    out["log_p_vocab_incorrect"] = logsumexp(wrong, axis=1)
    out["log_odds_incorrect"] = out.log_p_vocab_incorrect - out.log_p_vocab.to_numpy()
    return out


def mass_covariation(chain: pd.DataFrame, sample: str = "question", methods=METHODS) -> pd.DataFrame:
    """Per sample: how the incorrect choices' mass co-varies with the correct choice's across the family's points,
    the correlations (Pearson, Spearman, Kendall) of log p_vocab(incorrect choices) with log p_vocab(correct)
    (NaN where either never varies). Positive: the incorrect mass rises and falls with the correct mass (format
    learning, say), which renormalising over the choices cancels; near 0: the incorrect mass does not follow it."""
    return sample_correlations(chain, x="log_p_vocab", scores=("log_p_vocab_incorrect",), sample=sample,
                               methods=methods)


def sample_correlations(chain: pd.DataFrame, x: str = "log_compute", scores=CHAIN + MASS,
                        sample: str = "question", methods=METHODS) -> pd.DataFrame:
    """Per sample and score: Pearson, Spearman and Kendall (tau-b) correlation of the score with `x` across the
    family's points (NaN where the score does not vary, or where `x` takes fewer than 3 values); `methods` picks
    which of the three are computed (columns). Vectorised over samples when every sample has the same number of
    points (the usual case: every question at every model)."""
    if not methods or set(methods) - set(METHODS):
        raise ValueError(f"methods must be a non-empty subset of {METHODS}, got {methods}")
    chain = chain.sort_values([sample, x], kind="stable")
    sizes = chain.groupby(sample, sort=True).size()
    if sizes.nunique() != 1:
        return pd.concat([sample_correlations(group, x, scores, sample, methods)
                          for _, group in chain.groupby(sample)], ignore_index=True)
    keys = sizes.index.to_numpy()
    n_samples, n_points = len(keys), int(sizes.iloc[0])
    xs = chain[x].to_numpy(float).reshape(n_samples, n_points)
    x_ok = 1 + (np.diff(np.sort(xs, axis=1), axis=1) != 0).sum(1) >= 3
    i, j = np.triu_indices(n_points, k=1)
    sx = np.sign(xs[:, j] - xs[:, i]) if "kendall" in methods else None
    x_ranks = stats.rankdata(xs, axis=1) if "spearman" in methods else None
    rows = []
    for score in scores:
        ys = chain[score].to_numpy(float).reshape(n_samples, n_points)
        ok = x_ok & (np.ptp(ys, axis=1) > 0)
        values = {}
        with np.errstate(invalid="ignore", divide="ignore"):
            if "pearson" in methods:
                values["pearson"] = _row_pearson(xs, ys)
            if "spearman" in methods:
                values["spearman"] = _row_pearson(x_ranks, stats.rankdata(ys, axis=1))
            if "kendall" in methods:
                sy = np.sign(ys[:, j] - ys[:, i])
                values["kendall"] = (sx * sy).sum(1) / np.sqrt((sx != 0).sum(1) * (sy != 0).sum(1))
        for v in values.values():
            v[~ok] = np.nan
        rows.append(pd.DataFrame({sample: keys, "score": score, **{m: values[m] for m in METHODS if m in values}}))
    out = pd.concat(rows, ignore_index=True)
    position = np.arange(len(out))
    return out.iloc[np.lexsort((position // n_samples, position % n_samples))].reset_index(drop=True)


def _row_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    r = (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return np.clip(r, -1.0, 1.0)


# -- how often each fact was seen -----------------------------------------------------------------------------------
def fact_mentions(texts: list[str], entities, sep: str = ":") -> np.ndarray:
    """How many training texts state a fact about each entity: texts `entity<sep>attribute`, counted by the text's
    part before the first `sep` (texts without `sep` count for no entity)."""
    from collections import Counter
    counted = Counter(t[:t.find(sep)] for t in texts if sep in t)
    return np.array([counted.get(str(e), 0) for e in entities], dtype=int)


def band_labels(edges: list[int]) -> list[str]:
    """Labels of mention-count bands with these lower edges (increasing, from 0 or more): [0, 1, 2, 4, 8, 16] gives
    "0", "1", "2-3", "4-7", "8-15", "16+"."""
    if not edges or any(b <= a for a, b in zip(edges, edges[1:])) or edges[0] < 0:
        raise ValueError(f"band edges must be increasing counts >= 0, got {edges}")
    labels = [str(a) if b - a == 1 else f"{a}-{b - 1}" for a, b in zip(edges, edges[1:])]
    return labels + [f"{edges[-1]}+"]


def mention_band(counts, edges: list[int]) -> np.ndarray:
    """The band label of each mention count (counts below the first edge get none: an empty label)."""
    labels = np.array([""] + band_labels(edges), dtype=object)
    return labels[np.searchsorted(np.asarray(edges), np.asarray(counts), side="right")]


# -- no-skill references recorded in the same run -------------------------------------------------------------------
def mention_counts(texts: list[str], values) -> dict[str, int]:
    """How often each value occurs in the training texts as a whole word (not inside a longer word or number).
    A value that is one run of letters and digits is counted among the texts' maximal such runs (one pass over the
    texts); any other value by a regular expression with the same boundaries."""
    import re
    from collections import Counter
    joined = "\n".join(texts)
    runs: Counter | None = None
    out = {}
    for value in dict.fromkeys(str(v) for v in values):
        word = value.strip()
        if not word:
            out[value] = 0
        elif re.fullmatch(r"[0-9A-Za-z]+", word):
            runs = Counter(re.findall(r"[0-9A-Za-z]+", joined)) if runs is None else runs
            out[value] = runs[word]
        else:
            out[value] = len(re.findall(r"(?<![0-9A-Za-z])" + re.escape(word) + r"(?![0-9A-Za-z])", joined))
    return out


def _argmax_credit(scores: np.ndarray, answer: np.ndarray) -> np.ndarray:
    """Expected accuracy of picking the highest-scoring choice, ties broken uniformly at random."""
    best = scores == scores.max(axis=1, keepdims=True)
    return best[np.arange(len(answer)), answer] / best.sum(axis=1)


def prior_guessers(questions: pd.DataFrame, texts: list[str]) -> pd.DataFrame:
    """Per question, the expected accuracy of guessers that know nothing about the question's fact:
    `chance` (uniform over the choices), `corpus_prior` (the choice mentioned most often in the training texts: the
    prior a language model of that corpus learns without the fact) and `answer_prior` (the choice that is most often
    the correct answer among the other questions: the majority answer, leave-one-out). Ties are split evenly."""
    choices = questions.choices.tolist()
    width = {len(c) for c in choices}
    if len(width) != 1:
        raise ValueError(f"questions have different numbers of choices: {sorted(width)}")
    answer = questions.answer.to_numpy(int)
    values, cell = np.unique(np.array(choices, dtype=str), return_inverse=True)
    grid = cell.reshape(len(choices), -1)                   # the index of each choice's value in `values`
    counts = mention_counts(texts, values)
    mentions = np.array([counts[v] for v in values], dtype=float)[grid]
    as_answer = np.bincount(grid[np.arange(len(grid)), answer], minlength=len(values)).astype(float)[grid]
    as_answer[np.arange(len(grid)), answer] -= 1            # leave the question itself out
    return pd.DataFrame({"question": np.arange(len(questions)), "chance": 1.0 / grid.shape[1],
                         "corpus_prior": _argmax_credit(mentions, answer),
                         "answer_prior": _argmax_credit(as_answer, answer)})


def lookup_baseline(texts: list[str], prompts: list[str], answers: list[str], sep: str = "=") -> np.ndarray:
    """Per problem, the exact match of a lookup table of the training texts: the answer seen after the same prompt
    in training (text `prompt + answer`, cut after the first `sep`), else the most frequent training answer."""
    table: dict[str, str] = {}
    for text in texts:
        cut = text.find(sep)
        if cut >= 0:
            table.setdefault(text[:cut + len(sep)].strip(), text[cut + len(sep):].strip())
    majority = pd.Series(list(table.values())).mode().iloc[0] if table else None
    return np.array([float(table.get(p.strip(), majority) == a.strip()) for p, a in zip(prompts, answers)])


def bigram_floor(train, held) -> pd.DataFrame:
    """Per held-out row: next-token hits of a bigram model (the most frequent next token after each token in the
    training rows; the most frequent token where a token was never seen) over the scored positions, teacher-forced
    like `token_accuracy_metric`. Columns `hits`, `scored`."""
    ids, mask = train.input_ids.numpy(), train.attention_mask.numpy().astype(bool)
    keep = mask[:, :-1] & mask[:, 1:]
    pairs = pd.DataFrame({"prev": ids[:, :-1][keep], "next": ids[:, 1:][keep]})
    if pairs.empty:
        raise ValueError("no token pairs in the training rows")
    counted = pairs.value_counts().reset_index(name="n").sort_values(["prev", "n", "next"],
                                                                       ascending=[True, False, True])
    best = counted.drop_duplicates("prev").set_index("prev")["next"]
    fallback = int(pairs["next"].value_counts().idxmax())
    held_ids, labels = held.input_ids.numpy(), held.labels.numpy()
    predicted = best.reindex(held_ids[:, :-1].ravel()).fillna(fallback).to_numpy(int).reshape(held_ids[:, :-1].shape)
    target = labels[:, 1:]
    scored = target != -100
    return pd.DataFrame({"hits": ((predicted == target) & scored).sum(1), "scored": scored.sum(1)})


def sequence_hits(logits, batch) -> pd.DataFrame:
    """Per row: teacher-forced next-token hits over the scored positions (`token_accuracy_metric`, unaveraged)."""
    predicted = logits[:, :-1].argmax(-1)
    labels = batch["labels"][:, 1:].to(predicted.device)
    scored = labels != -100
    return pd.DataFrame({"hits": ((predicted == labels) & scored).sum(1).cpu().numpy(),
                         "scored": scored.sum(1).cpu().numpy()})


def arithmetic_rows(model, tokenizer, row, *, arithmetic: TokenDataset, prompts: list[str], answers: list[str],
                    batch_size: int = 64) -> list[dict]:
    """One dict per arithmetic problem: greedy exact match and the answer's loss (teacher forced, nats per token)."""
    exact = greedy_exact_match(model, tokenizer, prompts, answers, batch_size=batch_size)
    losses = example_losses(model, arithmetic, batch_size)
    if len(losses) != len(exact):
        raise ValueError(f"{len(exact)} problems but {len(losses)} loss rows")
    return [{"problem": i, "arith_correct": float(c), "arith_loss_sum": float(s), "arith_n_tokens": int(n)}
            for i, (c, s, n) in enumerate(zip(exact.correct, losses.loss_sum, losses.n_tokens))]


def answer_hits(logits, batch) -> pd.DataFrame:
    """Per row: teacher-forced exact match of the scored (label != -100) positions (1 when every scored token is
    the argmax), the per-row form of `answer_accuracy_metric`. Column `correct`."""
    predicted = logits[:, :-1].argmax(-1)
    labels = batch["labels"][:, 1:].to(predicted.device)
    scored = labels != -100
    return pd.DataFrame({"correct": ((predicted == labels) | ~scored).all(dim=1).float().cpu().numpy()})


def answer_accuracy_metric(logits, batch) -> dict:
    """Teacher-forced exact match on the scored (label != -100) positions of each row, for attention-swap sweeps."""
    predicted = logits[:, :-1].argmax(-1)
    labels = batch["labels"][:, 1:]
    scored = labels != -100
    right = ((predicted == labels) | ~scored).all(dim=1)
    return {"accuracy": float(right.float().mean())}


def token_accuracy_metric(logits, batch) -> dict:
    """Teacher-forced next-token accuracy over the scored (label != -100) positions, for attention-swap sweeps."""
    predicted = logits[:, :-1].argmax(-1)
    labels = batch["labels"][:, 1:]
    scored = labels != -100
    return {"accuracy": float(((predicted == labels) & scored).sum() / scored.sum())}


def answer_only_loss(tokens: TokenDataset, tokenizer, marker: str = "=") -> TokenDataset:
    """A packed corpus (`data.pack_blocks`, texts separated by the tokenizer's eos) with no loss on the prompt of any
    text that holds the one-token `marker` ("=" of "12+34=64"): in such a text the tokens up to and including the
    first marker carry label -100, its answer and closing eos keep theirs; texts without the marker (facts, filler)
    keep every label. A text cut by a block boundary is judged on the part inside the block. Inputs unchanged."""
    marker_ids = tokenizer(marker, add_special_tokens=False).input_ids
    if len(marker_ids) != 1:
        raise ValueError(f"the marker {marker!r} must be one token, got {len(marker_ids)}")
    marker_id, eos_id = marker_ids[0], tokenizer.eos_token_id
    ids = tokens.input_ids
    n, width = ids.shape
    flat = ids.reshape(-1).numpy()
    start = np.zeros(flat.shape, dtype=bool)
    start[::width] = True                                   # every block starts a text part
    start[1:] |= flat[:-1] == eos_id                         # so does the token after an eos
    seg = np.cumsum(start) - 1
    is_marker = flat == marker_id
    before = np.cumsum(is_marker) - is_marker                # markers strictly before each position
    base = np.maximum.accumulate(np.where(start, before, 0))  # ... before the text part's start
    seen = before - base > 0                                 # a marker earlier in the same text part
    has_marker = np.bincount(seg, weights=is_marker, minlength=seg[-1] + 1)[seg] > 0
    labels = tokens.labels.clone().reshape(-1)
    labels[torch.from_numpy(has_marker & ~seen)] = -100
    return TokenDataset(tokens.input_ids, tokens.attention_mask, labels.reshape(n, width))
