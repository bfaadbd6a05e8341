"""The verdict rules of the ceilings claims, by claim id (merged into `caplab.report.registry.RULES`)."""
from caplab.report.rules import Above, AllOf, Below, Brackets, Requires

RULES = {
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
}
