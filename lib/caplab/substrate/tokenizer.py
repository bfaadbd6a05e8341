"""A character-level tokenizer built locally, wrapped as a `PreTrainedTokenizerFast`.

Every character of the alphabet is one token; four special tokens come first (`<pad>`, `<bos>`, `<eos>`, `<unk>`).
Like Llama's tokenizer it prepends `<bos>` when special tokens are requested (the default of `tok(text)`), and adds
no `<eos>`: training data appends it explicitly. Because it is an ordinary fast tokenizer, TRL, PEFT and
`save_pretrained` / `AutoTokenizer.from_pretrained` accept it as they would any hub tokenizer.

    tok = char_tokenizer()                        # default alphabet: lowercase, uppercase, digits, punctuation
    tok("12+3=").input_ids                        # [1, ...]: <bos> then one id per character
"""
from __future__ import annotations

import os
import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import AutoTokenizer, PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
DEFAULT_ALPHABET = " \n" + string.ascii_lowercase + string.ascii_uppercase + string.digits + "+-*/=:;?!.,'()[]_#|<>"


def char_tokenizer(alphabet: str = DEFAULT_ALPHABET, model_max_length: int = 1024) -> PreTrainedTokenizerFast:
    """A fast tokenizer with one token per character of `alphabet` (after the four special tokens)."""
    if not alphabet:
        raise ValueError("alphabet must not be empty")
    duplicates = sorted({c for c in alphabet if alphabet.count(c) > 1})
    if duplicates:
        raise ValueError(f"alphabet has repeated characters: {duplicates!r}")
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({char: len(SPECIAL_TOKENS) + i for i, char in enumerate(alphabet)})

    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")   # any char, "\n" too
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>",
        model_max_length=model_max_length, padding_side="right", clean_up_tokenization_spaces=False)


def load_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerFast:
    """A tokenizer saved with `save_pretrained` (ours or any other), read from a local folder."""
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def check_covers(tokenizer, texts) -> None:
    """Raise if some character of `texts` would map to `<unk>` (a typo in a generator, not a silent unknown)."""
    vocab = tokenizer.get_vocab()
    missing = sorted({c for text in texts for c in text if c not in vocab})
    if missing:
        raise ValueError(f"characters not in the tokenizer's alphabet: {missing!r}")
