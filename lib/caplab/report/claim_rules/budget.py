"""The verdict rules of the budget claims, by claim id (merged into `caplab.report.registry.RULES`)."""
from caplab.report.rules import Above, AllOf, Below, Requires

RULES = {
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
}
