"""TRL post-training wrappers on a tiny model: SFT learns its completions, DPO moves the preference margin, runs are
cached, settings reject unknown keys."""
import pytest
import torch

from caplab.science import posttrain
from caplab.substrate import chains
from caplab.substrate.evaluate import continuation_logprobs
from caplab.substrate.models import get_model

TINY = {"family": "llama", "d_model": 32, "n_layer": 1, "n_head": 2, "max_seq_len": 96, "seed": 0}


def _logprob(spec, prompts, completions):
    model, tok = get_model(spec)
    return torch.tensor([float(x[0]) for x in continuation_logprobs(model, tok, list(zip(prompts, completions)))])


def test_settings_reject_unknown_keys_and_count_steps():
    with pytest.raises(ValueError, match="unknown key .learning_rate. of SFTSettings"):
        posttrain.SFTSettings.from_dict({"learning_rate": 1e-3})
    assert posttrain.SFTSettings(batch_size=16).steps(100) == 13            # 2 epochs (the paper's default)
    assert posttrain.DPOSettings(min_steps=50).steps(10) == 50
    assert posttrain.DPOSettings().beta == 1.0 and posttrain.DPOSettings().lr == 5e-6


def test_sft_learns_its_completions_and_is_cached(tmp_path):
    data = chains.problems(32, 1, seed=0)
    settings = {"lr": 1e-2, "batch_size": 8, "min_steps": 40, "warmup_ratio": 0.0}
    before = _logprob(TINY, data.prompt, data.solution).mean()
    spec = posttrain.sft(TINY, data.prompt.tolist(), data.solution.tolist(), settings)
    after = _logprob(spec, data.prompt, data.solution).mean()
    assert after > before + 10                      # nats per completion: it learned them
    again = posttrain.sft(TINY, data.prompt.tolist(), data.solution.tolist(), settings)
    assert again == spec
    assert posttrain.sft(TINY, [], [], settings) == TINY


def test_dpo_raises_chosen_over_rejected_against_the_reference():
    prefs = chains.preferences(32, 1, seed=1)
    start = posttrain.sft(TINY, prefs.prompt.tolist(), prefs.chosen.tolist(),
                          {"lr": 1e-2, "batch_size": 8, "min_steps": 20})

    def margin(spec):
        return (_logprob(spec, prefs.prompt, prefs.chosen) - _logprob(spec, prefs.prompt, prefs.rejected)).mean()

    tuned = posttrain.dpo(start, prefs.prompt.tolist(), prefs.chosen.tolist(), prefs.rejected.tolist(),
                          {"lr": 3e-3, "beta": 0.1, "batch_size": 8, "min_steps": 30})
    assert margin(tuned) > margin(start) + 1.0
    with pytest.raises(ValueError, match="as many chosen"):
        posttrain.dpo(start, ["a"], ["b", "c"], ["d"], {})


def test_fixed_steps_equalise_optimisation_and_a_model_ranks_pairs_against_itself_at_half():
    assert posttrain.SFTSettings(fixed_steps=40).steps(5) == 40 == posttrain.SFTSettings(fixed_steps=40).steps(5000)
    with pytest.raises(ValueError):
        posttrain.DPOSettings(fixed_steps=-1)
    prompts, chosen, rejected = ["Question: 1+2\nAnswer:"] * 3, [" Step 1: 1+2=3\n#### 3"] * 3, [" #### 4"] * 3
    assert posttrain.preference_accuracy(TINY, TINY, prompts, chosen, rejected) == 0.5
    with pytest.raises(ValueError):
        posttrain.preference_accuracy(TINY, TINY, prompts, chosen, rejected[:1])
