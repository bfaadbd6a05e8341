"""The verdict rules of the shannon claims, by claim id (merged into `caplab.report.registry.RULES`)."""
from caplab.report.rules import Above, AllOf, Below, Capped, Powered

ISSUE_17_NOISE = "needs at least two perturbation draws per setting, so that a draw's own variance is in the " \
                 "standard errors the basins are tested against (issue 17)"
ISSUE_17_EXPONENTS = "needs a family with more tokens per parameter, where the d D^delta term carries a measurable " \
                     "share of the loss so that delta is identified, and cached warm-started per-fit bootstraps " \
                     "(issue 17)"

ISSUE_17_FITS = "needs a family with more tokens per parameter (the largest model at 1.6 tokens per parameter, each " \
                "setting's extrapolation resting on 3 nearly flat points) and cached fits, so that the law " \
                "comparison's controls can refit 200 simulated worlds (issue 17)"

RULES = {
    # Each series of losses (along tokens for one model, or along models at one checkpoint) gets a p-value of "this
    # series is monotone" (a flat mean with the series' own standard errors is the least favourable null; a fall
    # from the first point and a rise to the last, union bound); basins are the Benjamini-Hochberg discoveries at
    # 5 % among the perturbed series (and, separately, among the clean series). At least one perturbed basin, and
    # more than the clean series' discovery rate predicts for as many series. Capped: the perturbed series'
    # standard errors hold the evaluation noise only, not the perturbation draw's own variance (one draw per
    # setting), so their p-values are anti-conservative.
    "shannon.u_shape": Capped(AllOf((Above("perturbed_basins", 0.0), Above("basin_excess_over_clean", 0.0))),
                              why=ISSUE_17_NOISE),
    # AIC(Shannon) - AIC(best of Kaplan, Chinchilla), as per-point log-likelihood differences with the model as the
    # cluster (t interval): the mean over perturbed settings must be negative (Shannon fits better after paying for
    # its parameters), and more negative than on the clean setting of the same run (the advantage is specific to
    # perturbation, not the law's flexibility).
    # Capped: its controls need a few seconds of fitting per simulated world (issue 17: cached fits).
    "shannon.fit_beats_baselines": Capped(AllOf((Below("aic_gap_perturbed", 0.0),
                                                 Below("aic_gap_perturbed_minus_clean", 0.0))), why=ISSUE_17_FITS),
    # Fit on the smaller models and earlier checkpoints, predict the largest model later on. Judged only if some
    # law extrapolates the clean setting (R^2 > 0.5: the protocol has room to succeed); then, pooled over the
    # perturbed settings' held-out rows (paired bootstrap over those rows), Shannon's R^2 of log loss lies above 0.5
    # and above the best baseline's. Capped: on this family the protocol has no room to succeed (issue 17).
    "shannon.extrapolates": Capped(Powered(AllOf((Above("extrapolation_r2_shannon", 0.5),
                                                  Above("extrapolation_r2_shannon_minus_best_baseline", 0.0))),
                                           guards=(Above("extrapolation_r2_clean_best", 0.5),),
                                           why="some law extrapolates the clean setting (positive control, R^2 > "
                                               "0.5)"), why=ISSUE_17_FITS),
    # The 2-bit damage (quantized minus clean loss) against log tokens: one slope per model, the mean slope's t
    # interval over models lies above 0.
    "shannon.quantization_hurts_overtrained": Above("quant2_damage_slope_log_tokens", 0.0),
    # delta - beta of the Shannon fits, per-fit bootstrap intervals: the median over perturbed settings lies above 0
    # and above the clean setting's (perturbation, not the fitting, orders the exponents). Capped: delta is not
    # identified where the d D^delta term is negligible (the clean fit also reads delta > beta).
    "shannon.exponents": Capped(AllOf((Above("shannon_delta_minus_beta", 0.0),
                                       Above("shannon_delta_minus_beta_perturbed_minus_clean", 0.0))),
                                why=ISSUE_17_EXPONENTS),
}
