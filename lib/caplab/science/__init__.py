"""One module per mechanism the papers share: fitting laws, attention swap, perturbations, kappa selection, distillation, post-training."""
