"""The verdict rules of the shannon claims, by claim id (merged into `caplab.report.registry.RULES`)."""
from caplab.report.rules import Above, AllOf, Below

RULES = {
    # Series of perturbed losses (along tokens for one model, or along models at one checkpoint) whose minimum is
    # interior and whose end lies above it by more than 2 standard errors: how many were found.
    "shannon.u_shape": Above("perturbed_basins", 0),
    # Per perturbation setting, AIC(Shannon) - the best baseline's AIC; the median over settings with a bootstrap
    # interval over settings: negative means Shannon fits better after paying for its parameters.
    "shannon.fit_beats_baselines": Below("aic_shannon_minus_best_baseline", 0.0),
    # Fit on the smaller models and earlier checkpoints, predict the largest model later on (R^2 of log loss,
    # pooled over settings): Shannon predicts (R^2 > 0.5) and better than the best baseline.
    "shannon.extrapolates": AllOf((Above("extrapolation_r2_shannon", 0.5),
                                   Above("extrapolation_r2_shannon_minus_best_baseline", 0.0))),
    # Slope of the 2-bit damage (quantized minus clean loss) against log tokens, a fixed effect per model (OLS).
    "shannon.quantization_hurts_overtrained": Above("quant2_damage_slope_log_tokens", 0.0),
    # delta - beta of the Shannon law fitted to the pooled perturbed losses, bootstrap interval.
    "shannon.exponents": Above("shannon_delta_minus_beta", 0.0),
}
