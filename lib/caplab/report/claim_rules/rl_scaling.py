"""The verdict rules of the rl_scaling claims, by claim id (merged into `caplab.report.registry.RULES`)."""
from caplab.report.rules import Above, AllOf, Below, Requires

RULES = {
    # RL scaling. At the geometric middle of the compute (data) range every size covers, each size's fitted
    # log10 error; the OLS slope on log10 N with its 95 % interval: negative means bigger models are lower.
    "rl_scaling.bigger_is_more_efficient": AllOf((Below("error_vs_n_slope_compute", 0.0),
                                                  Below("error_vs_n_slope_data", 0.0))),
    # log10 L = -k log10 X + E0 per size and X: the worst in-sample R^2 (log space) over sizes and both X.
    "rl_scaling.power_law": Above("rl_fit_r2_min", 0.9),
    # k(N) against compute: rises with N (Spearman over sizes) and the saturating law has a lower AIC than both
    # the power law and the line in log N (same data, same loss); judged only when the best law leads the
    # runner-up by at least 2 AIC units (otherwise the three are not told apart: inconclusive).
    "rl_scaling.k_saturates": Requires("k_law_aic_margin", 2.0, AllOf((
        Above("k_spearman_n", 0.0), Below("k_aic_saturating_minus_best_other", 0.0)))),
    # Final held-out error at reuse factor 25 minus at 1 (fixed total of prompts), paired bootstrap over test
    # prompts: stable means less than 5 points worse. Judged only if RL measurably lowered the error at tau = 1
    # (the lower end of the paired interval of the gain in pass@1 above 0).
    "rl_scaling.reuse_ok": Requires("reuse_tau1_gain_lower", 1e-9, Below("reuse_error_tau25_minus_tau1", 0.05)),
}
