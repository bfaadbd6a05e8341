"""The verdict rules of the kappa claims, by claim id (merged into `caplab.report.registry.RULES`)."""
from caplab.report.rules import AllOf, Below, Holds

RULES = {
    # Spearman correlation between log kappa and the Gaussian output entropy, over random matrices at a fixed
    # Frobenius norm, with a bootstrap interval: the theory says strongly negative.
    "kappa.entropy_theory": Below("entropy_log_kappa_spearman", -0.5),
    # Forgetting (rise of control-task loss at a matched new-task loss), lowest-kappa arm minus the broad arms,
    # with 95 % intervals over seeds: negative means the lowest-kappa arm forgets less.
    "kappa.less_forgetting": AllOf((Below("forgetting_low_minus_full", 0.0),
                                    Below("forgetting_low_minus_lora", 0.0))),
    "kappa.low_beats_high": Below("forgetting_low_minus_high", 0.0),
    "kappa.selector_agrees": Holds("selection_equals_peft"),
}
