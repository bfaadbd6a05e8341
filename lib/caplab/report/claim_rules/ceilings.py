"""The verdict rules of the ceilings claims, by claim id (merged into `caplab.report.registry.RULES`)."""
from caplab.report.rules import Above, AllOf, Below, Equivalent, Powered

# The positive control of both knowledge claims: on the most-seen facts (the last band of training mentions)
# accuracy rises with size faster than on the facts no model saw (the zero-mention band, whose rise is the prior and
# the format, not knowledge): the difference of the two slopes, the same models, bands resampled independently,
# interval above 0. Without it the family is too weak to learn any fact and a flat or low accuracy in the tail says
# nothing about a ceiling.
POSITIVE_CONTROL = Above("knowledge_control_minus_zero_accuracy_slope", 0.0)
CONTROL_WHY = "the positive control holds: accuracy on the most-seen facts rises with size beyond the zero band's"

RULES = {
    # Knowledge accuracy against log10 parameters at the last checkpoint in the rarely seen tail (facts seen once in
    # training), one row per question and model, the slope's interval resampling questions (clustered by question),
    # read as the tail's slope minus the zero-mention band's (facts no model saw rise too, 0.02 per decade in the
    # cpu run: the prior and the format, not knowledge; the same models, bands resampled independently): flat
    # knowledge = equivalence, the whole interval of the difference inside +-margin per decade of parameters
    # (papers.yaml), while the tail's correct-choice loss falls (slope interval below 0). Judged only when the
    # positive control holds.
    "ceilings.flat_knowledge": lambda c: Powered(
        AllOf((Equivalent("knowledge_tail_minus_zero_accuracy_slope", c["margin"]),
               Below("knowledge_tail_answer_loss_slope", 0.0))),
        guards=(POSITIVE_CONTROL,), why=CONTROL_WHY),
    # In the same tail, the largest model's accuracy below chance AND below the recorded prior-only guesser (the
    # choice the training corpus mentions most), each a paired difference over the same questions with its interval
    # from resampling questions: below uniform chance alone is what any prior-only guesser scores when the
    # distractors are frequent values. Judged only when the positive control holds.
    "ceilings.below_chance": Powered(
        AllOf((Below("knowledge_tail_largest_minus_chance", 0.0), Below("knowledge_tail_largest_minus_prior", 0.0))),
        guards=(POSITIVE_CONTROL,), why=CONTROL_WHY),
    # Arithmetic exact match rises and the answer's loss falls with log10 parameters (one row per held-out problem,
    # never in training, and model at the last checkpoint, intervals resampling problems); judged only when the best
    # model's exact match exceeds the recorded lookup-table baseline, paired over the same problems: otherwise no
    # model learned the procedure and scaling cannot be read.
    "ceilings.procedural_scales": Powered(
        AllOf((Above("arith_accuracy_slope", 0.0), Below("arith_answer_loss_slope", 0.0))),
        guards=(Above("arith_best_minus_lookup", 0.0),),
        why="some model's exact match exceeds a lookup table of the training problems (the procedure is learned)"),
    # Full swap of post-softmax attention (every layer, lambda 1) from a donor of the same shape trained from another
    # seed, on held-out arithmetic exact match: collapse = the recipient keeps less than 10 % of its margin over the
    # recorded floor (uniform attention in every layer), (swapped - floor) / (own - floor), interval resampling
    # problems. The recipient of a tiny family is chosen before the swap by a stated rule: its largest model whose
    # held-out exact match reaches swap_learned (50 %, issue 14's bar for learned arithmetic). Judged only where both
    # sides have learned the skill: the recipient's and the donor's exact match each at least 0.4 above the floor
    # (whole interval; the floor is near 0). A barely learned skill collapses under any perturbation, and a donor
    # without the skill has no attention worth swapping: neither says anything about what attention carries.
    "ceilings.attention_swap_collapse": Powered(
        Below("swap_retained_above_floor", 0.1),
        guards=(Above("swap_own_minus_floor", 0.4), Above("swap_donor_minus_floor", 0.4)),
        why="recipient and donor have learned the skill (each exact match at least 0.4 above the uniform-attention "
            "floor)"),
}
