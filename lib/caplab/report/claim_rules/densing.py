"""The verdict rules of the densing claims, by claim id (merged into `caplab.report.registry.RULES`)."""
from caplab.report.rules import Above, AllOf, Below, Holds, Powered, Requires

RULES = {
    # Densing. Growth: over the growth targets whose density is defined (at least 5), the envelope law's rate A
    # (bootstrap interval over envelope points, as the paper) above 0, and the slope of ln density on date over all
    # of them steeper than under shuffled dates (one-sided permutation p < 0.025): the envelope alone rises even for
    # noise. At p < 0.05 the null world read "reproduced" in 6.0 % of 200 draws (the test sits at its level, and the
    # measured rate's own sampling error is 1.5 points); 0.025 leaves that margin at no cost in power.
    # Judged only on real release dates: the cpu tier's targets carry dates the design chose (denser interventions
    # later), so there the growth holds by construction and checks the method (a positive control), not the claim.
    "densing.exponential_growth": Powered(Requires("growth_models_defined", 5, AllOf((
        Above("growth_rate_per_day", 0.0), Below("growth_permutation_p", 0.025)))),
        guards=(Holds("growth_dates_real"),),
        why="the growth targets carry their real release dates (synthetic dates plant the growth)"),
    # Two steps: judged only when the step-2 fit set spans at least 0.1 in score (else the sigmoid is not
    # identified); then the held-out largest models' scores are predicted from their loss better than by the fit
    # set's mean score (paired item bootstrap, both steps refitted), and a model trained with the reference recipe
    # on D0 tokens has density within a factor 2 of 1 (ln density interval inside (-ln 2, ln 2)).
    "densing.two_step_estimates": Requires("sigmoid_fit_score_span", 0.1, AllOf((
        Below("heldout_error_minus_constant", 0.0), Above("reference_recipe_log_density", -0.6931471805599453),
        Below("reference_recipe_log_density", 0.6931471805599453)))),
    # Compression: mean over (pruned, source) pairs of ln density(pruned) - ln density(source), paired item
    # bootstrap with refits; judged only if at least one pair has both densities defined.
    "densing.compression_lowers_density": Requires("compression_pairs_defined", 1,
                                                   Below("pruned_minus_source_log_density", 0.0)),
}
