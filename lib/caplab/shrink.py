"""Shrinking a tier's counts: the same parameter file, every model, dataset, revision and setting kept, only the
counts made small, so that a whole tier runs end to end in a minute or two (the gpu tier on the test suite's
stand-in models, or a check of a real gpu run's pipeline before its hours).

One table, `RULES`, keyed by parameter name at any depth of the parameters (a key means the same thing wherever it
appears: `steps` is an optimizer step count in every settings dict). Three kinds of rule:

- `cap(n)`: an integer becomes min(value, n) (`steps`, `max_rows`, `eval_blocks`, `n_boot`, ...);
- `spread(k)`: a list keeps k of its items, the first, the last and evenly between (`shares`: 7 -> 4);
- `scale(f, k)`: a list of counts keeps k items (spread) and each is divided by f, rounded up (`budgets`:
  [100, 300, 1000, 3000] -> [2, 60]).

Everything else is left as the file says: model ids, dataset ids, configs and splits, prompt templates, learning
rates, the lists that define the experiment's design (noise levels, bit widths, reuse factors). A hub family's
revisions are thinned to 4 real ones (shannon's grid is 7 models x 10 revisions, each scanned with a dozen
perturbations) and repeated seeds to 2 (kappa's 6 seeds x 7 arms). Used by `python -m caplab run --shrink` and by the tests of the gpu tier on stand-ins
(tests/test_gpu_standin.py); a run made so records `"shrunk": true` with its parameters.

    shrink({"grpo": {"steps": 200, "lr": 1e-6}, "n_boot": 1000})  ->  {"grpo": {"steps": 3, "lr": 1e-6}, "n_boot": 50}
"""
from __future__ import annotations

import math
from typing import Any, Callable

Rule = Callable[[Any], Any]


def cap(n: int) -> Rule:
    def rule(value):
        return min(value, n) if isinstance(value, int) and not isinstance(value, bool) else value
    rule.describe = f"at most {n}"
    return rule


def _spread(items: list, k: int) -> list:
    if len(items) <= k:
        return list(items)
    picks = sorted({round(i * (len(items) - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]
    return [items[i] for i in picks]


def spread(k: int) -> Rule:
    def rule(value):
        return _spread(value, k) if isinstance(value, list) else value
    rule.describe = f"{k} items: first, last and evenly between"
    return rule


def scale(divisor: int, k: int) -> Rule:
    def rule(value):
        if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
            return value
        return list(dict.fromkeys(max(1, math.ceil(v / divisor)) for v in _spread(value, k)))
    rule.describe = f"{k} items, each divided by {divisor} (rounded up)"
    return rule


RULES: dict[str, Rule] = {
    # training and evaluation lengths
    "steps": cap(3), "reuse_steps": cap(3), "max_tokens": cap(1024), "warmup_steps": cap(1),
    "eval_every": cap(2), "eval_every_tokens": cap(2048), "max_new_tokens": cap(16),
    "max_completion_length": cap(16), "max_length": cap(256), "block_size": cap(32),
    # data sizes
    "max_rows": cap(48), "eval_blocks": cap(4), "control_eval_blocks": cap(4), "fit_sample": cap(32),
    "prompts_per_update": cap(4), "num_generations": cap(4), "batch_size": cap(4),
    # statistics
    "n_boot": cap(50), "bootstrap_samples": cap(50), "fit_bootstrap": cap(2), "fit_starts": cap(2),
    "fit_maxiter": cap(200), "starts": cap(4), "n_perm": cap(50), "mc_matrices": cap(20), "mc_dim": cap(16),
    "max_dim_size_to_analyze": cap(256), "k_tensors": cap(4),
    # the budget paper's grid (annotation budgets in examples, SFT shares)
    "budgets": scale(50, 2), "ratio_budgets": scale(50, 1), "shares": spread(4),
    # a hub family's checkpoint grid: every model kept, 4 of its revisions (real ones: first, last, between), and the
    # extrapolation's fit-up-to index inside them; two training seeds where a design repeats runs over seeds
    "revisions": spread(4), "extrapolation_checkpoint": cap(2), "seeds": spread(2),
    # the budget paper's fixed step counts, DPO sweep and training seeds
    "fixed_steps": cap(3), "held_out_pairs": cap(8), "dpo_sweep_start": cap(8), "dpo_sweep_pairs": cap(8),
    "dpo_sweep_lrs": spread(1), "dpo_sweep_betas": spread(1), "train_seeds": spread(1),
}


def shrink(params: Any, rules: dict[str, Rule] | None = None) -> Any:
    """`params` (plain data: dicts, lists, scalars) with every key in `rules` shrunk, at any depth; a new object."""
    rules = RULES if rules is None else rules
    if isinstance(params, dict):
        return {key: rules[key](shrink(value, rules)) if key in rules else shrink(value, rules)
                for key, value in params.items()}
    if isinstance(params, list):
        return [shrink(item, rules) for item in params]
    return params


def describe(rules: dict[str, Rule] | None = None) -> str:
    """The table as text (for --help and the report)."""
    rules = RULES if rules is None else rules
    return "; ".join(f"{key}: {getattr(rule, 'describe', '?')}" for key, rule in rules.items())
