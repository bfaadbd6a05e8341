"""The verdict rules of the downstream claims, by claim id (merged into `caplab.report.registry.RULES`)."""
from caplab.report.rules import Above, AllOf, Requires

RULES = {
    # Over the seen-fact questions whose five chain correlations with log compute (Spearman) are all defined (the
    # share undefined is recorded per step), the share above 0.75 declines along the chain log p_vocab(correct) ->
    # p_vocab -> p_choices -> Brier -> accuracy: log p_vocab minus accuracy above 0, AND the largest drop is at the
    # renormalisation over choices (its drop minus the largest drop at another step above 0); intervals from one
    # paired bootstrap over questions. Judged only when at least 30 questions have every correlation defined.
    "downstream.correlation_degrades": Requires("corr_questions_defined", 30,
                                                AllOf((Above("corr_share_drop_loglik_to_accuracy", 0.0),
                                                       Above("corr_drop_renorm_minus_largest_other", 0.0)))),
    # Per question, the incorrect choices' mass co-varies with the correct choice's across compute (Spearman of
    # log p_vocab(incorrect) with log p_vocab(correct) above 0.5): the mass renormalising divides by moves with the
    # correct answer's (the paper's mechanism). Reproduced when the share of such questions has its whole interval
    # above a quarter, bootstrap over questions. If only the correct answer were learned (incorrect mass still) the
    # share would be a few percent. A quarter: the paper's drop from ~90 % to ~40 % of questions correlating above
    # 0.75 after renormalising says the incorrect mass follows the correct one for about half the questions; the
    # rule asks for at least half of that.
    "downstream.incorrect_mass_moves": Above("incorrect_mass_share_covarying", 0.25),
}
