"""The verdict rules of the downstream claims, by claim id (merged into `caplab.report.registry.RULES`)."""
from caplab.report.rules import Above

RULES = {
    # Share of questions whose score correlates with log compute above 0.75 (Spearman): for log p_vocab(correct)
    # minus for accuracy, bootstrap over questions; positive means the correlation degrades along the chain.
    "downstream.correlation_degrades": Above("corr_share_drop_loglik_to_accuracy", 0.0),
    # Share of questions whose probability mass on the incorrect choices moves with log compute (|Spearman| > 0.5),
    # bootstrap over questions: reproduced when most questions' incorrect mass moves.
    "downstream.incorrect_mass_moves": Above("incorrect_mass_share_moving", 0.5),
}
