"""The verdict rules of the ceilings claims, by claim id (merged into `caplab.report.registry.RULES`)."""
from caplab.report.rules import Above, AllOf, Below, Capped, Equivalent, Powered

NEVER_SEEN = ("the redesign of issue 14 asks about facts the models saw (bands of mention count, with a positive "
              "control): the tail questions ask about entities that never occur in the corpus, so no model can know "
              "the answers and flat, prior-only accuracy holds by construction")

RULES = {
    # Knowledge accuracy against log10 parameters at the last checkpoint, one row per question and model, the slope's
    # interval resampling questions (clustered by question): flat = equivalence, the whole interval inside +-margin
    # per decade of parameters (papers.yaml), while the correct choice's loss falls (slope interval below 0).
    # Capped: the questions are about facts never seen (issue 14).
    "ceilings.flat_knowledge": lambda c: Capped(AllOf((Equivalent("knowledge_accuracy_slope", c["margin"]),
                                                       Below("knowledge_answer_loss_slope", 0.0))), why=NEVER_SEEN),
    # The largest model's knowledge accuracy below chance AND below the recorded prior-only guesser (the choice the
    # training corpus mentions most), each a paired difference over the same questions with its interval from
    # resampling questions: below uniform chance alone is what any prior-only guesser scores when the distractors
    # are frequent values. Capped: the questions are about facts never seen (issue 14).
    "ceilings.below_chance": Capped(AllOf((Below("knowledge_largest_minus_chance", 0.0),
                                           Below("knowledge_largest_minus_prior", 0.0))), why=NEVER_SEEN),
    # Arithmetic exact match rises and the answer's loss falls with log10 parameters (one row per problem and model
    # at the last checkpoint, intervals resampling problems); judged only when the best model's exact match exceeds
    # the recorded lookup-table baseline (the training problems' answers recalled, the majority answer otherwise),
    # paired over the same problems: otherwise no model learned the procedure and scaling cannot be read.
    "ceilings.procedural_scales": Powered(
        AllOf((Above("arith_accuracy_slope", 0.0), Below("arith_answer_loss_slope", 0.0))),
        guards=(Above("arith_best_minus_lookup", 0.0),),
        why="some model's exact match exceeds a lookup table of the training problems (the procedure is learned)"),
    # Full swap of post-softmax attention (every layer, lambda 1): collapse = the recipient keeps less than 10 % of
    # its next-token accuracy above the recorded bigram floor, (swapped - floor) / (own - floor), interval resampling
    # held-out sequences; judged only where the recipient beats the floor. Capped: the donor is a checkpoint of the
    # same run (issue 14).
    "ceilings.attention_swap_collapse": Capped(Powered(
        Below("swap_retained_above_floor", 0.1), guards=(Above("swap_own_minus_floor", 0.0),),
        why="the recipient beats the bigram floor"),
        why="the redesign of issue 14 swaps in a donor trained from another seed, on a learned task: the donor is "
            "the first checkpoint of the recipient's own run, the mildest swap there is"),
}
