"""Controls of the kappa claims: the entropy Monte Carlo, the selector check, and simulated `forgetting_at_fit`
tables pushed through the notebook's functions (`caplab.science.kappa`, `caplab.papers.kappa.forgetting_evidence`)
and the registry's rules.

Forgetting noise, from the cpu tier (6 seeds; the standard deviations over seeds of the paired differences,
lowest-kappa minus each arm, at the matched fit below the format-only floor): per (arm, seed) forgetting = the
arm's mean + a seed effect shared by the arms (the seed sets every arm's data order) + an arm's own noise
(`ARM_SD`, set so that the simulated paired differences have the cpu tier's spread). The paper's effect, scaled:
Mixtral's control perplexity 13.98 before, 13.78 after KappaTune, 26.68 after plain LoRA, i.e. forgetting
ln(13.78 / 13.98) = -0.014 nats per token for the selective arm and ln(26.68 / 13.98) = +0.646 for plain LoRA; the
analogue's control loss is also in nats per token, so the planted world takes those numbers as they are: the
lowest-kappa arm forgets -0.014, every other arm +0.646 (the paper gives no number for full fine-tuning, random or
the highest-kappa tensors: they are planted like plain LoRA).

Measured (`python -m caplab controls kappa --write`, 200 null and 100 planted draws, 6 seeds): less_forgetting
false-positive rate 0.000, power 0.97; low_beats_high 0.000 and 1.00. The null worlds put every arm at one mean;
the planted world is the paper's gap, large against this noise, so power is high; an effect of the size the cpu
tier measures between lowest and shape-matched arms (0.15-0.4 nats) would be found less often.

Bootstrap and Monte Carlo sizes here (documented, smaller than the notebook's): the entropy claim uses
`MC_MATRICES` = 100 matrices (the cpu tier: 400) and `N_BOOT` = 200 resamples (2000); a smaller n widens the null's
spread of rho, so the false-positive rate measured here bounds the notebook's.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pandas as pd
import yaml
from torch import nn

from caplab.controls import Control
from caplab.papers import kappa as exp
from caplab.paths import notebooks_dir
from caplab.science import kappa

ARMS = tuple(kappa.ARMS.values())
# the cpu tier (6 seeds, 2026-11-30): standard deviation over seeds of lowest-kappa minus each arm at the matched fit
# (the whole-model highest-kappa arm never reached it: its spread is set like the shape-matched one's)
DIFF_SD = {kappa.ARMS["high_matched"]: 0.137, kappa.ARMS["random_matched"]: 0.251, kappa.ARMS["high_whole"]: 0.137,
           kappa.ARMS["full"]: 0.326, kappa.ARMS["lora"]: 0.222, kappa.ARMS["kappatune_lora"]: 0.099}
LOW_SD, SEED_SD = 0.09, 0.1     # the lowest arm's own noise and the shared seed effect (its sd over seeds: 0.136)
ARM_SD = {kappa.ARMS["lowest"]: LOW_SD, **{arm: math.sqrt(sd ** 2 - LOW_SD ** 2) for arm, sd in DIFF_SD.items()}}
NULL_FORGETTING = 0.5
KAPPATUNE, PLAIN_LORA = math.log(13.78 / 13.98), math.log(26.68 / 13.98)
MC_MATRICES, N_BOOT = 100, 200


@lru_cache(maxsize=1)
def cpu_params() -> dict:
    return yaml.safe_load((notebooks_dir() / "params" / "kappa" / "cpu.yaml").read_text())


def forgetting_table(rng, means: dict, n_seeds: int) -> pd.DataFrame:
    """The notebook's `forgetting_at_fit` table: one row per (arm, seed)."""
    before, shared = 3.0, rng.normal(0, SEED_SD, n_seeds)
    rows = []
    for arm in ARMS:
        forgot = means[arm] + shared + rng.normal(0, ARM_SD[arm], n_seeds)
        rows += [{"arm": arm, "seed": s, "target_fit_b": 0.43, "reached": True, "control_before": before,
                  "control_at_fit": before + f, "tokens_to_fit": 30000.0, "forgetting": f, "exact_at_fit": 0.3,
                  "trainable": 30000} for s, f in enumerate(forgot)]
    return pd.DataFrame(rows)


def forgetting_world(rng, planted: bool, n_seeds: int | None = None):
    """Null: every arm forgets alike (0.5 nats) with the cpu tier's seed noise. Planted: the paper's effect."""
    n_seeds = len(cpu_params()["seeds"]) if n_seeds is None else n_seeds
    means = {arm: (KAPPATUNE if arm == "lowest-kappa" else PLAIN_LORA) if planted else NULL_FORGETTING
             for arm in ARMS}
    return exp.forgetting_evidence(forgetting_table(rng, means, n_seeds))


def entropy_world(rng, planted: bool):
    """Planted: the theory, by the library's Monte Carlo. Null: the same matrices with their entropies permuted
    (entropy independent of kappa)."""
    seed = int(rng.integers(2**31))
    mc = kappa.entropy_monte_carlo(n=MC_MATRICES, dim=cpu_params()["mc_dim"], seed=seed)
    if not planted:
        mc["entropy"] = rng.permutation(mc["entropy"].to_numpy())
    relation = kappa.entropy_relation(mc, n_boot=N_BOOT, seed=seed)
    return {"entropy_log_kappa_spearman": (relation["rho"], relation["ci_low"], relation["ci_high"])}


@lru_cache(maxsize=1)
def _tokenizer():
    from caplab.substrate.models import get_model
    return get_model(cpu_params()["base_model"])[1]


def selector_world(rng, planted: bool):
    """A tiny model of the cpu tier's shape at a fresh random initialisation (no training), the notebook's budget
    (an explicit module count, k_tensors). Planted: our selector against PEFT's. Null: k random linear modules (in
    model order, as `select_tensors(how="random")` returns them) against PEFT's."""
    from caplab.substrate.models import tiny_model
    params = cpu_params()
    model, _ = tiny_model({**params["base_model"], "seed": int(rng.integers(2**31))}, tokenizer=_tokenizer())
    linear = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    k = params["k_tensors"]
    theirs = kappa.peft_selection(model, num_modules=k)
    if planted:
        ours = kappa.select_modules_like_peft(model, num_modules=k)
    else:
        ours = [linear[i] for i in np.sort(rng.choice(len(linear), size=k, replace=False))]
    return {"selection_equals_peft": bool(kappa.selection_agreement(ours, theirs)["equal"])}


FORGETTING_NULL = ("every arm forgets alike (0.5 nats at the matched fit); cpu design, 6 seeds, seed noise from the "
                   "cpu tier's paired differences (sd of lowest minus full 0.33, minus LoRA 0.22, minus random 0.25, "
                   "minus highest of the same shapes 0.14)")
PLANTED = ("the paper's Mixtral numbers in nats per token: lowest-kappa forgets ln(13.78/13.98) = -0.014, the other "
           "arms (plain LoRA; full, random and highest-kappa planted alike) ln(26.68/13.98) = +0.646; same noise, "
           "6 seeds")

CONTROLS = [
    Control("kappa.entropy_theory",
            null_world=f"the Monte Carlo's entropies permuted across its {MC_MATRICES} matrices (entropy independent "
                       f"of kappa); {N_BOOT} bootstrap resamples",
            planted_effect=f"the theory: the library's Monte Carlo ({MC_MATRICES} matrices of the cpu tier's size)",
            simulate=entropy_world),
    Control("kappa.less_forgetting", null_world=FORGETTING_NULL, planted_effect=PLANTED, simulate=forgetting_world),
    Control("kappa.low_beats_high", null_world=FORGETTING_NULL, planted_effect=PLANTED, simulate=forgetting_world),
    Control("kappa.selector_agrees",
            null_world="k random linear modules of a freshly initialised model of the cpu tier's shape against "
                       "PEFT's selection (must not read equal)",
            planted_effect="our selector against PEFT's find_kappa_target_modules on the same fresh model",
            simulate=selector_world),
]
