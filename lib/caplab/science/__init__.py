"""Mechanisms the papers share: attention swap, perturbations and their scans, kappa selection, forgetting,
distillation, post-training (SFT, DPO) and RL (GRPO)."""
