"""The verdict rules of the budget claims, by claim id (merged into `caplab.report.registry.RULES`).

Every number is a difference of accuracy over the same test questions with a paired bootstrap interval (one set of
question resamples; the best arm of a set chosen again on every resample), from `caplab.papers.budget.
claim_evidence`. The no-skill reference is recorded in the same run: the majority-answer guesser, scored per
question (the base model, which never writes the answer format, scores below it)."""
from caplab.report.rules import Above, AllOf, Below, Powered

RULES = {
    # SFT alone minus the best other share, at every budget below 1,000 (the smallest difference), above 0; judged
    # only if at every such budget some allocation beats the majority answer (paired): comparing arms that all sit
    # at chance says nothing about allocation (inconclusive).
    "budget.sft_wins_small": Powered(
        Above("sft_only_minus_best_mix_small", 0.0),
        guards=(Above("small_budgets_best_minus_majority", 0.0),),
        why="some allocation beats the majority answer at every budget below 1,000 (paired over test questions)"),
    # At the largest budget: the best share strictly between 0 and 1 minus SFT alone, above 0. Judged only if the
    # experiment can show a mix winning: DPO measurably improves on its own SFT start (the best DPO run at the
    # largest budget minus the run it started from, paired), and SFT alone has plateaued (its gain from the
    # budget before the largest lies wholly below the margin in papers.yaml).
    "budget.mix_wins_large": lambda c: Powered(
        Above("best_mix_minus_sft_only_large", 0.0),
        guards=(Above("dpo_gain_large", 0.0), Below("sft_only_last_step_gain", c["margin"])),
        why="DPO measurably improves on its SFT start and SFT alone has plateaued at the largest budget"),
    # At the largest budget: DPO on the base gives answers in the format less than half the time, and is less
    # accurate than the best share in (0, 0.1] (paired); judged only if that small-SFT arm beats the majority
    # answer (paired): beating a DPO arm that sits at zero with an arm below chance says nothing about the cold
    # start.
    "budget.cold_start": Powered(
        AllOf((Below("cold_start_format_rate", 0.5), Below("cold_start_minus_small_sft", 0.0))),
        guards=(Above("small_sft_minus_majority", 0.0),),
        why="the best <= 10 % SFT arm beats the majority answer (paired over test questions)"),
    # At the largest budget: the best share in (0, 0.1] minus share 0, above 0; judged only if that arm beats the
    # majority answer (paired): an arm below chance has fixed nothing.
    "budget.small_sft_fixes": Powered(
        Above("small_sft_gain", 0.0),
        guards=(Above("small_sft_minus_majority", 0.0),),
        why="the best <= 10 % SFT arm beats the majority answer (paired over test questions)"),
}
