"""Tiny models and tokenizers, real-model loading, synthetic tasks, training, evaluation, the cache."""
