"""Real tokenizers and real-model loading, without a GPU and without the hub: prompt/completion boundaries with a
subword BPE that merges across spaces, fp32 loading whatever the hub config says, fp32 master weights that move on
the first step, and the device every load and trainer picks when a GPU is visible."""
import pytest
import torch
from transformers import PreTrainedTokenizerFast

from caplab.substrate import data, evaluate, models, train
from caplab.substrate.tokenizer import char_tokenizer
from standin_hub import train_tokenizer

PROMPT, COMPLETION = "Question: How many clips?\nAnswer: ", "72 clips"


@pytest.fixture(scope="module")
def bpe():
    """A GPT-2-style byte-level BPE (Pythia's, Qwen's kind): words carry their leading space."""
    core = train_tokenizer("gpt_neox", [PROMPT + COMPLETION, "Answer: 72", "How many clips are there?"] * 30,
                           vocab_size=400)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>", pad_token="<|padding|>")


def test_the_bpe_merges_across_the_boundary(bpe):
    """The case the character tokenizer never shows: prompt + completion does not start with the prompt's tokens."""
    prompt, whole = bpe(PROMPT).input_ids, bpe(PROMPT + COMPLETION).input_ids
    assert whole[:len(prompt)] != prompt


def test_pad_examples_tokenizes_the_parts(bpe):
    ds = data.pad_examples([PROMPT, "Answer:"], [COMPLETION, " 72"], bpe)
    row = ds.input_ids[0][ds.attention_mask[0].bool()].tolist()
    prompt = bpe(PROMPT).input_ids
    assert row[:len(prompt)] == prompt                       # the context a model sees at inference, unchanged
    labelled = [t for t in ds.labels[0].tolist() if t != -100]
    assert labelled == row[len(prompt):]                     # loss on the completion and <eos>, nothing else
    assert bpe.decode(labelled[:-1]) == COMPLETION and labelled[-1] == bpe.eos_token_id
    # no merge across the boundary: the completion's tokens are those of the whole text (the natural tokenization)
    second = ds.input_ids[1][ds.attention_mask[1].bool()].tolist()
    assert second[:-1] == bpe("Answer: 72").input_ids


def test_scorer_and_training_data_encode_pairs_alike(bpe):
    context, continuation = evaluate._context_and_continuation(bpe, PROMPT, COMPLETION)
    assert (context, continuation) == data.encode_pair(bpe, PROMPT, COMPLETION)
    ds = data.pad_examples([PROMPT], [COMPLETION], bpe, add_eos=False)
    assert ds.input_ids[0].tolist() == context + continuation


def test_character_tokenizer_datasets_are_unchanged():
    """With one token per character the parts and the whole text agree: the cpu tier's data are as before."""
    tok = char_tokenizer()
    prompts, completions = ["12+3=", "7*8="], ["15", "56"]
    ds = data.pad_examples(prompts, completions, tok)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        expected = tok(p + c).input_ids + [tok.eos_token_id]
        assert ds.input_ids[i, :len(expected)].tolist() == expected
        assert (ds.labels[i] != -100).sum() == len(c) + 1


def test_hub_models_load_in_fp32_on_the_default_device(standin_env):
    """Pythia's config says float16 (Qwen2.5's bfloat16): loading takes fp32 unless a dtype is asked for."""
    standin_env.model("EleutherAI/pythia-70m-deduped", "step143000")
    standin_env.model("Qwen/Qwen2.5-0.5B", "main")
    model, tok = models.load_pretrained("EleutherAI/pythia-70m-deduped", "step143000")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert next(model.parameters()).device.type == models.default_device()
    assert {p.dtype for p in models.get_model({"pretrained": "Qwen/Qwen2.5-0.5B", "dtype": "bfloat16"})[0]
            .parameters()} == {torch.bfloat16}
    with pytest.raises(ValueError, match="unknown dtype"):
        models.resolve_dtype("float17")


def test_half_precision_weights_are_trained_as_fp32_masters_and_move():
    """A model handed over in bf16 is trained with fp32 master weights: at lr 1e-6 a pure bf16 step would leave most
    elements unchanged (bf16 has 8 bits of mantissa); in fp32 every trained matrix moves on the first step."""
    model, tok = models.tiny_model({"d_model": 32, "n_layer": 1, "n_head": 2, "max_seq_len": 32})
    model.to(torch.bfloat16)
    before = {n: p.detach().float().clone() for n, p in model.named_parameters()}
    blocks = data.pack_blocks(["ab cd ef gh " * 20] * 4, tok, 16)
    train.train(model, blocks, train.TrainConfig(steps=1, batch_size=4, lr=1e-6, warmup_steps=0, device="cpu"))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    matrices = [n for n, p in model.named_parameters() if p.dim() == 2 and "embed" not in n]
    moved = [float((p.detach() != before[n]).float().mean()) for n, p in model.named_parameters() if n in matrices]
    assert min(moved) > 0.9, moved


def test_devices_and_precision_flags_when_a_gpu_is_visible(monkeypatch):
    assert models.resolve_device("auto").type == models.resolve_device(None).type == models.default_device()
    assert train.mixed_precision("cpu") == {"bf16": False, "fp16": False}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert models.resolve_device("auto") == torch.device("cuda")
    assert train.mixed_precision("auto") == {"bf16": True, "fp16": False}      # bf16 autocast, never fp16


def test_every_checkpoint_and_trained_run_loads_on_the_gpu(monkeypatch, tmp_path):
    """`for_each_checkpoint` and `TrainedRun.load` ask for the GPU by default (they used to load on the CPU)."""
    from caplab.substrate import family
    import pandas as pd
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    asked = []
    monkeypatch.setattr(family, "get_model", lambda spec: asked.append(spec) or (None, None))
    family.for_each_checkpoint(pd.DataFrame({"pretrained": ["x/y"], "revision": ["main"]}), lambda m, t, row: {"v": 1},
                               name="probe")
    assert asked == [{"pretrained": "x/y", "revision": "main", "device": "cuda"}]
    loads = []
    monkeypatch.setattr(train, "load_local", lambda path, device=None: loads.append(device))
    train.TrainedRun(tmp_path).load()
    assert models.resolve_device(loads[0]) == torch.device("cuda")


@pytest.fixture(scope="module")
def llama_bpe():
    """A SentencePiece-style BPE (Llama's, TinyLlama's kind): "▁" for spaces, prepended to the text's first word."""
    core = train_tokenizer("llama", [PROMPT + COMPLETION, "Answer: 72", "How many clips are there?"] * 30,
                           vocab_size=400)
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="</s>")


def test_a_completion_gets_no_space_the_text_does_not_have(llama_bpe):
    """Encoded alone, Llama's tokenizer starts "72 clips" with "▁72" (a space); as the prompt's continuation it has
    none, and prompt + completion spell the original text."""
    alone = llama_bpe("72 clips", add_special_tokens=False).input_ids
    assert llama_bpe.convert_ids_to_tokens(alone)[0].startswith("▁")            # the defect being avoided
    context, completion = data.encode_pair(llama_bpe, PROMPT, COMPLETION)
    assert not llama_bpe.convert_ids_to_tokens(completion)[0].startswith("▁")
    assert llama_bpe.decode(context + completion, skip_special_tokens=True) == PROMPT + COMPLETION
    assert data.encode_continuation(llama_bpe, " clips") == llama_bpe("x clips", add_special_tokens=False).input_ids[-1:]


def test_byte_level_continuations_equal_the_text_alone(bpe):
    for text in ("72 clips", " 72", "clips\n"):
        assert data.encode_continuation(bpe, text) == bpe(text, add_special_tokens=False).input_ids
