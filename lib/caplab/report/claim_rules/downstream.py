"""The verdict rules of the downstream claims, by claim id (merged into `caplab.report.registry.RULES`)."""
from caplab.report.rules import Above, AllOf, Requires

RULES = {
    # Share of questions whose score correlates with log compute above 0.75 (Spearman), for log p_vocab(correct)
    # minus for the step, over the questions where both correlations are defined (a score that never varies has
    # none; that share is recorded), paired bootstrap over questions: the correlation degrades at the renormalisation
    # over choices (p_choices) and at accuracy, both intervals above 0. Accuracy's 0/1 steps alone lower its
    # correlation; the renormalisation step can only degrade if the incorrect choices' mass moves.
    # Judged only when at least 30 questions have both correlations defined at each step.
    "downstream.correlation_degrades": Requires("corr_questions_defined", 30,
                                                AllOf((Above("corr_share_drop_loglik_to_choices", 0.0),
                                                       Above("corr_share_drop_loglik_to_accuracy", 0.0)))),
    # Share of questions whose incorrect choices' mass moves with log compute (|Spearman| > 0.5) both at the
    # vocabulary level and relative to the correct choice's mass (log-odds after renormalising over the choices),
    # bootstrap over questions: reproduced when the whole interval lies above a quarter of the questions. Format
    # learning (every choice moves together) leaves the relative mass still; learning the correct answer alone leaves
    # the incorrect mass still (either gives ~5 %). A quarter: the paper's drop from ~90 % to ~40 % of questions
    # correlating above 0.75 after renormalising says the incorrect mass reorders about half the questions; the rule
    # asks for at least half of that.
    "downstream.incorrect_mass_moves": Above("incorrect_mass_share_moving_relative", 0.25),
}
