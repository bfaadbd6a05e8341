"""The verdict rules of the shannon claims, by claim id (merged into `caplab.report.registry.RULES`)."""
from caplab.report.rules import Above, AllOf, Below, Capped, Powered

# The fit-based controls (`caplab.controls.shannon`: every law fitted to convergence in every simulated world, each
# from its own population optimum; clean plus three perturbed settings) take seconds a draw: `make test` replays
# a few of their recorded draws, the nightly build all of them. fit_beats_baselines and extrapolates are judged
# since the cpu tier has six sizes (session 31: five fitted model clusters instead of three); exponents stays
# capped.
FALSE_EXPONENTS = "a rule within the false-positive bound (issue 17): in null worlds where delta = beta it reads " \
                  "reproduced in 6.5 % of 200 draws (bound 5 %; power 31 % of 100), since the fitted law's modes alone " \
                  "put delta - beta above 0 in some worlds; identifying delta under a multimodal fit is the redesign"

RULES = {
    # Basins that noise cannot fake (`caplab.science.basin_test`): in every series (one model along checkpoints, or
    # one checkpoint along sizes) the minimum is located on half of the evaluation blocks and the first half of a
    # random perturbation's draws, and its depth (the smaller rise from it to the series' two ends) is measured on
    # the other blocks and draws. A series' p-value is the larger of "depth > 0" and "depth > the same clean
    # series' depth" (paired bootstrap over blocks plus the between-draw variance); a setting's p-value combines its
    # series (Simes); basins are the Benjamini-Hochberg discoveries at 5 % over the perturbed settings. Reproduced
    # when at least one perturbed setting is discovered; not reproduced when none is.
    "shannon.u_shape": Above("basin_settings", 0.0),
    # AIC(Shannon) - AIC(best baseline: Kaplan, Chinchilla, and the perturbation-aware QiD, Precision and Chinchilla
    # plus a perturbation term, fitted on the same rows), as per-point log-likelihood differences with the model as
    # the cluster (t interval): the mean over perturbed settings must be negative (Shannon fits better after paying
    # for its parameters), and more negative than on the clean setting of the same run (the advantage is specific to
    # perturbation, not the law's flexibility).
    "shannon.fit_beats_baselines": AllOf((Below("aic_gap_perturbed", 0.0), Below("aic_gap_perturbed_minus_clean", 0.0))),
    # Fit on the smaller models and earlier checkpoints, predict the largest model later on. Judged only if some
    # law extrapolates the clean setting (R^2 > 0.5: the protocol has room to succeed); then, pooled over the
    # perturbed settings' held-out rows (paired bootstrap over those rows), Shannon's R^2 of log loss lies above 0.5
    # and above the best baseline's, and its RMSE of log loss lies below that of carrying the largest model's last
    # fitted loss forward.
    "shannon.extrapolates": Powered(AllOf((Above("extrapolation_r2_shannon", 0.5),
                                           Above("extrapolation_r2_shannon_minus_best_baseline", 0.0),
                                           Below("extrapolation_log_rmse_shannon_minus_carry_forward", 0.0))),
                                    guards=(Above("extrapolation_r2_clean_best", 0.5),),
                                    why="some law extrapolates the clean setting (positive control, R^2 > 0.5)"),
    # The 2-bit damage (quantized minus clean loss) against log tokens, post-warm-up checkpoints: one slope per
    # model, the mean slope's t interval over models lies above 0.
    "shannon.quantization_hurts_overtrained": Above("quant2_damage_slope_log_tokens", 0.0),
    # delta - beta of the Shannon fits, per-fit bootstrap intervals: judged only where the d D^delta term is
    # identified (at least one perturbed setting where the law beats the same law without that term in a
    # likelihood-ratio test, p < 0.05 with 2 df; the term's share of the loss never bit: 0.57 perturbed vs 0.59 clean);
    # then the median over those settings lies above 0 and above the clean setting's (the fitted law's modes alone
    # put delta - beta above 0 in 20 % of null worlds where delta = beta; with the clean comparison 15 % of 20
    # draws, and 6.5 % of 200 when measured in full)
    "shannon.exponents": Capped(Powered(AllOf((Above("shannon_delta_minus_beta", 0.0),
                                               Above("shannon_delta_minus_beta_perturbed_minus_clean", 0.0))),
                                        guards=(Above("d_term_identified_settings", 0.0),),
                                        why="the d D^delta term is identified in some perturbed setting (likelihood-"
                                            "ratio test against the law without it)"), why=FALSE_EXPONENTS),
}
