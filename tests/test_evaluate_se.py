"""The loss with its standard error: the same mean as `mean_loss`, the SE of the per-block losses."""
import numpy as np
import pytest

from caplab.substrate.evaluate import example_losses, mean_loss, mean_loss_with_se
from caplab.substrate.models import get_model
from caplab.substrate.tasks import load_task


def test_mean_loss_with_se_matches_mean_loss_and_block_spread():
    model, tok = get_model({"family": "gpt_neox", "d_model": 32, "n_layer": 1, "n_head": 2, "seed": 0})
    blocks = load_task({"kind": "zipf_language", "n_sentences": 60, "vocab_size": 30, "seed": 0}).tokens(
        tok, block_size=16)
    mean, se = mean_loss_with_se(model, blocks, batch_size=7)
    assert mean == pytest.approx(mean_loss(model, blocks))
    per_block = example_losses(model, blocks).loss.to_numpy()
    assert se == pytest.approx(per_block.std(ddof=1) / np.sqrt(len(per_block))) and se > 0
