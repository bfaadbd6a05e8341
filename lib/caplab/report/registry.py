"""The claim registry: every paper caplab replicates, every claim of each, and the rule that decides it.

The papers and their claims (statement, the paper's value and where it is stated, the tiers that can test it) are
data, in `papers.yaml`, taken from the fact sheets. The rules are code, here, keyed by claim id: a claim whose
experiment is not built yet carries `NotImplementedYet` and is always "not run". Tests and plug-ins may `register`
further papers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from caplab.report.rules import (AllOf, Above, Below, Brackets, Holds, NOT_RUN, NotImplementedYet, Requires, Rule,
                                 Verdict)

TIERS = ("smoke", "cpu", "gpu")

# ---- the rules, one per claim with an experiment --------------------------------------------------------------
RULES: dict[str, Rule] = {
    # Spearman correlation between log kappa and the Gaussian output entropy, over random matrices at a fixed
    # Frobenius norm, with a bootstrap interval: the theory says strongly negative.
    "kappa.entropy_theory": Below("entropy_log_kappa_spearman", -0.5),
    # Forgetting (rise of control-task loss at a matched new-task loss), lowest-kappa arm minus the broad arms,
    # with 95 % intervals over seeds: negative means the lowest-kappa arm forgets less.
    "kappa.less_forgetting": AllOf((Below("forgetting_low_minus_full", 0.0),
                                    Below("forgetting_low_minus_lora", 0.0))),
    "kappa.low_beats_high": Below("forgetting_low_minus_high", 0.0),
    "kappa.selector_agrees": Holds("selection_equals_peft"),
    # Series of perturbed losses (along tokens for one model, or along models at one checkpoint) whose minimum is
    # interior and whose end lies above it by more than 2 standard errors: how many were found.
    "shannon.u_shape": Above("perturbed_basins", 0),
    # Per perturbation setting, AIC(Shannon) - the best baseline's AIC; the median over settings with a bootstrap
    # interval over settings: negative means Shannon fits better after paying for its parameters.
    "shannon.fit_beats_baselines": Below("aic_shannon_minus_best_baseline", 0.0),
    # Fit on the smaller models and earlier checkpoints, predict the largest model later on (R^2 of log loss,
    # pooled over settings): Shannon predicts (R^2 > 0.5) and better than the best baseline.
    "shannon.extrapolates": AllOf((Above("extrapolation_r2_shannon", 0.5),
                                   Above("extrapolation_r2_shannon_minus_best_baseline", 0.0))),
    # Slope of the 2-bit damage (quantized minus clean loss) against log tokens, a fixed effect per model (OLS).
    "shannon.quantization_hurts_overtrained": Above("quant2_damage_slope_log_tokens", 0.0),
    # delta - beta of the Shannon law fitted to the pooled perturbed losses, bootstrap interval.
    "shannon.exponents": Above("shannon_delta_minus_beta", 0.0),
    # Students whose loss against log teacher size has a convex quadratic fit with its vertex inside the grid,
    # whose best observed teacher is neither the smallest nor the largest, and for whom the largest teacher is worse
    # than the best by more than two combined standard errors of the evaluation.
    # Inconclusive when no student's loss differs across teachers by more than that noise at all.
    "capacity_gap.optimal_teacher_exists": Requires("students_with_teacher_effect", 1,
                                                    Above("students_with_interior_optimum", 0)),
    # log T* = log r + k log S over the students with a readable optimum (at least 3): linear means k = 1 (and not
    # 0, no dependence on S); bootstrap interval over students.
    # Accuracy on tail-fact multiple choice against log parameters at the last checkpoint (OLS, 95 % interval):
    # flat = the slope's interval contains 0, while the correct choice's loss falls (slope interval below 0).
    "ceilings.flat_knowledge": AllOf((Brackets("knowledge_accuracy_slope", 0.0),
                                      Below("knowledge_answer_loss_slope", 0.0))),
    # The largest model's knowledge accuracy (Wilson 95 % interval) against chance, 1/4.
    "ceilings.below_chance": Below("knowledge_accuracy_largest", 0.25),
    # Arithmetic exact match rises and the answer loss falls with log parameters; judged only if some model at the
    # last checkpoint reaches 10 % exact match (otherwise no model learned the procedure and scaling cannot be read).
    "ceilings.procedural_scales": Requires("arith_accuracy_best", 0.1, AllOf((Above("arith_accuracy_slope", 0.0),
                                                                             Below("arith_answer_loss_slope", 0.0)))),
    # Full swap of post-softmax attention from a donor of the same shape: the recipient keeps less than 10 % of its
    # own arithmetic accuracy (only judged where it has at least 20 % to lose).
    "ceilings.attention_swap_collapse": Requires("swap_recipient_accuracy", 0.2,
                                                 Below("swap_accuracy_retained", 0.1)),
    # Share of questions whose score correlates with log compute above 0.75 (Spearman): for log p_vocab(correct)
    # minus for accuracy, bootstrap over questions; positive means the correlation degrades along the chain.
    "downstream.correlation_degrades": Above("corr_share_drop_loglik_to_accuracy", 0.0),
    # Share of questions whose probability mass on the incorrect choices moves with log compute (|Spearman| > 0.5),
    # bootstrap over questions: reproduced when most questions' incorrect mass moves.
    "downstream.incorrect_mass_moves": Above("incorrect_mass_share_moving", 0.5),
    # RL scaling. At the geometric middle of the compute (data) range every size covers, each size's fitted
    # log10 error; the OLS slope on log10 N with its 95 % interval: negative means bigger models are lower.
    "rl_scaling.bigger_is_more_efficient": AllOf((Below("error_vs_n_slope_compute", 0.0),
                                                  Below("error_vs_n_slope_data", 0.0))),
    # log10 L = -k log10 X + E0 per size and X: the worst in-sample R^2 (log space) over sizes and both X.
    "rl_scaling.power_law": Above("rl_fit_r2_min", 0.9),
    # k(N) against compute: rises with N (Spearman over sizes) and the saturating law has a lower AIC than both
    # the power law and the line in log N (same data, same loss); judged only when the best law leads the
    # runner-up by at least 2 AIC units (otherwise the three are not told apart: inconclusive).
    "rl_scaling.k_saturates": Requires("k_law_aic_margin", 2.0, AllOf((
        Above("k_spearman_n", 0.0), Below("k_aic_saturating_minus_best_other", 0.0)))),
    # Final held-out error at reuse factor 25 minus at 1 (fixed total of prompts), paired bootstrap over test
    # prompts: stable means less than 5 points worse. Judged only if RL measurably lowered the error at tau = 1
    # (the lower end of the paired interval of the gain in pass@1 above 0).
    "rl_scaling.reuse_ok": Requires("reuse_tau1_gain_lower", 1e-9, Below("reuse_error_tau25_minus_tau1", 0.05)),
    # Budget (equal cost): accuracy differences over the same test questions, paired bootstrap intervals.
    # SFT alone minus the best other share, at every budget below 1,000 (the smallest difference); judged only
    # if some allocation at those budgets beats chance (the majority answer) by its whole Wilson interval:
    # comparing arms that all sit at chance says nothing about allocation (inconclusive).
    "budget.sft_wins_small": Requires("small_budgets_learned", 1e-9, Above("sft_only_minus_best_mix_small", 0.0)),
    # At the largest budget: the best share strictly between 0 and 1 minus SFT alone.
    "budget.mix_wins_large": Above("best_mix_minus_sft_only_large", 0.0),
    # At the largest budget: DPO on the base gives answers in the format less than half the time, and is less
    # accurate than the best share in (0, 0.1].
    "budget.cold_start": AllOf((Below("cold_start_format_rate", 0.5), Below("cold_start_minus_small_sft", 0.0))),
    # At the largest budget: the best share in (0, 0.1] minus share 0.
    "budget.small_sft_fixes": Above("small_sft_gain", 0.0),
    # Densing. Growth: over the growth targets whose density is defined (at least 5), the envelope law's rate A
    # (bootstrap interval over envelope points, as the paper) above 0, and the slope of ln density on date over all
    # of them steeper than under shuffled dates (permutation p < 0.05): the envelope alone rises even for noise.
    "densing.exponential_growth": Requires("growth_models_defined", 5, AllOf((
        Above("growth_rate_per_day", 0.0), Below("growth_permutation_p", 0.05)))),
    # Two steps: judged only when the step-2 fit set spans at least 0.1 in score (else the sigmoid is not
    # identified); then the held-out largest models' scores are predicted from their loss better than by the fit
    # set's mean score (paired item bootstrap, both steps refitted), and a model trained with the reference recipe
    # on D0 tokens has density within a factor 2 of 1 (ln density interval inside (-ln 2, ln 2)).
    "densing.two_step_estimates": Requires("sigmoid_fit_score_span", 0.1, AllOf((
        Below("heldout_error_minus_constant", 0.0), Above("reference_recipe_log_density", -0.6931471805599453),
        Below("reference_recipe_log_density", 0.6931471805599453)))),
    # Compression: mean over (pruned, source) pairs of ln density(pruned) - ln density(source), paired item
    # bootstrap with refits; judged only if at least one pair has both densities defined.
    "densing.compression_lowers_density": Requires("compression_pairs_defined", 1,
                                                   Below("pruned_minus_source_log_density", 0.0)),
    "capacity_gap.linear_law": Requires("students_with_interior_optimum", 3,
                                        Brackets("t_star_log_slope", 1.0, exclude=0.0)),
}


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    paper_value: str
    tiers: tuple[str, ...] = TIERS
    rule: Rule = field(default_factory=NotImplementedYet)

    @property
    def paper(self) -> str:
        return self.id.split(".", 1)[0]

    def judge(self, evidence, tier: str) -> Verdict:
        """The verdict of this claim on a run's evidence at `tier`."""
        if tier not in self.tiers:
            return Verdict(NOT_RUN, f"tested at the {'/'.join(self.tiers)} tier only")
        return self.rule.apply(evidence)

    def as_dict(self) -> dict:
        return {"id": self.id, "statement": self.statement, "paper_value": self.paper_value,
                "tiers": list(self.tiers), "rule": self.rule.describe()}


@dataclass(frozen=True)
class Paper:
    id: str
    title: str
    arxiv: str
    notebook: str            # the notebook (stem) that tests this paper's claims
    claims: tuple[Claim, ...]


_EXTRA: dict[str, Paper] = {}


@lru_cache(maxsize=1)
def _builtin() -> dict[str, Paper]:
    data = yaml.safe_load((Path(__file__).with_name("papers.yaml")).read_text())
    papers = {}
    for p in data["papers"]:
        claims = tuple(Claim(c["id"], c["statement"], c["paper_value"], tuple(c["tiers"]),
                             RULES.get(c["id"], NotImplementedYet())) for c in p["claims"])
        papers[p["id"]] = Paper(p["id"], p["title"], str(p["arxiv"]), p["notebook"], claims)
    unknown = set(RULES) - {c.id for p in papers.values() for c in p.claims}
    if unknown:
        raise RuntimeError(f"rules for claims that are not in papers.yaml: {sorted(unknown)}")
    return papers


def register(paper: Paper) -> None:
    """Add a paper (used by test fixtures and extensions)."""
    _EXTRA[paper.id] = paper


def papers() -> dict[str, Paper]:
    return {**_builtin(), **_EXTRA}


def claims_for_notebook(notebook: str) -> list[Claim]:
    """All claims tested by one notebook (a notebook may serve several papers: ceilings also tests downstream)."""
    return [c for p in papers().values() if p.notebook == notebook for c in p.claims]


def claim(claim_id: str) -> Claim:
    for p in papers().values():
        for c in p.claims:
            if c.id == claim_id:
                return c
    raise KeyError(f"unknown claim {claim_id!r}")
