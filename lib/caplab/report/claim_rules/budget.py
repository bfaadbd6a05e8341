"""The verdict rules of the budget claims, by claim id (merged into `caplab.report.registry.RULES`).

Every number is a difference of accuracy over the same test questions with a paired bootstrap interval (one set of
question resamples; the best arm of a set chosen again on every resample), from `caplab.papers.budget.
claim_evidence`; with several training seeds, a t interval over seeds as well, its variance moderated across arms
(`caplab.stats.moderation`). The no-skill references are recorded in the same run and scored per question: the majority-answer guesser and the first-step guesser (solves only the first
operation); "chance" is the better of the two (the base model, which never writes the answer format, scores below
both)."""
from caplab.report.rules import Above, AllOf, Below, Powered

RULES = {
    # SFT alone minus the best other share, at every small budget (below the tier's `small_budget`: the paper's
    # 1,000; 300 in the cpu analogue, whose SFT saturates near 100 examples) (the smallest difference), above 0;
    # judged only if at every such budget some allocation beats chance (paired): comparing arms that all sit at chance
    # says nothing about allocation (inconclusive).
    "budget.sft_wins_small": Powered(
        Above("sft_only_minus_best_mix_small", 0.0),
        guards=(Above("small_budgets_best_minus_chance", 0.0),),
        why="some allocation beats the better no-skill guesser at every small budget (paired)"),
    # At the largest budget: the best share strictly between 0 and 1 (arms at chance dropped) minus SFT alone,
    # above 0. Judged only if the experiment can show a mix winning: DPO measurably improves on its own SFT start
    # (the best mix at the largest budget minus the same run scored before DPO, paired), and SFT alone has
    # plateaued (its gain from the budget before the largest lies wholly below the margin in papers.yaml).
    "budget.mix_wins_large": lambda c: Powered(
        Above("best_mix_minus_sft_only_large", 0.0),
        guards=(Above("dpo_gain_large", 0.0), Below("sft_only_last_step_gain", c["margin"])),
        why="DPO measurably improves on its SFT start and SFT alone has plateaued at the largest budget"),
    # At the largest budget: DPO on the base gives answers in the format less than half the time, and is less
    # accurate than the best share in (0, 0.1] (paired); judged only if that small-SFT arm beats chance (paired):
    # beating a DPO arm that sits at zero with an arm below chance says nothing about the cold start.
    "budget.cold_start": Powered(
        AllOf((Below("cold_start_format_rate", 0.5), Below("cold_start_minus_small_sft", 0.0))),
        guards=(Above("small_sft_minus_chance", 0.0),),
        why="the best <= 10 % SFT arm beats the better no-skill guesser (paired)"),
    # At the largest budget: the best share in (0, 0.1] minus share 0, above 0; judged only if that arm beats
    # chance (paired): an arm below chance has fixed nothing.
    "budget.small_sft_fixes": Powered(
        Above("small_sft_gain", 0.0),
        guards=(Above("small_sft_minus_chance", 0.0),),
        why="the best <= 10 % SFT arm beats the better no-skill guesser (paired)"),
}
