"""The verdict rules of the kappa claims, by claim id (merged into `caplab.report.registry.RULES`)."""
from caplab.report.rules import AllOf, Below, Capped, Holds

RULES = {
    # Spearman correlation between log kappa and the Gaussian output entropy, over random matrices at a fixed
    # Frobenius norm, with a bootstrap interval: the theory says strongly negative.
    "kappa.entropy_theory": Below("entropy_log_kappa_spearman", -0.5),
    # Forgetting (rise of control-task loss at a matched new-task loss), lowest-kappa arm minus the broad arms,
    # paired over seeds (t interval 95 %): negative means the lowest-kappa arm forgets less. Capped: with 3 seeds
    # the LoRA comparison finds the paper's effect in under half the draws, and the matched fit lies above what
    # the answer format alone reaches (no new knowledge needed there).
    "kappa.less_forgetting": Capped(AllOf((Below("forgetting_low_minus_full", 0.0),
                                           Below("forgetting_low_minus_lora", 0.0))),
                                    why="needs >= 6 seeds and a matched fit below the format-only floor (issue 16)"),
    # Lowest-kappa minus highest-kappa forgetting, paired over seeds. Capped: here the lowest-kappa tensors are all
    # MLP matrices and the highest all attention matrices, of other sizes: the contrast is one of shape classes.
    "kappa.low_beats_high": Capped(Below("forgetting_low_minus_high", 0.0),
                                   why="needs lowest- and highest-kappa tensors within one shape class and >= 6 "
                                       "seeds (issue 16)"),
    # An implementation check: our selection equals PEFT's (same modules, same order).
    "kappa.selector_agrees": Holds("selection_equals_peft"),
}
