"""The char tokenizer round-trips every generated corpus and survives save/load."""
import pytest

from caplab.substrate import data
from caplab.substrate.tokenizer import SPECIAL_TOKENS, char_tokenizer, check_covers, load_tokenizer


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def corpus():
    f = data.facts(50, 8, 200, seed=1)
    mc = data.multiple_choice(f)
    return (data.zipf_language(200, seed=1) + f.texts + data.arithmetic(50, (1, 4), op="*").prompt.tolist()
            + [c for cs in mc.choices for c in cs] + ["Line one.\nLine two: (x) [y] #3 |z| a'b!"])


def test_round_trip_and_one_token_per_char():
    tok = char_tokenizer()
    texts = corpus()
    check_covers(tok, texts)
    for text in texts:
        ids = tok(text).input_ids
        assert ids[0] == tok.bos_token_id and len(ids) == len(text) + 1
        assert tok.decode(ids, skip_special_tokens=True) == text
    assert [tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token] == list(SPECIAL_TOKENS)
    assert tok("a~", add_special_tokens=False).input_ids[1] == tok.unk_token_id


def test_save_load_same_ids(tmp_path):
    tok = char_tokenizer()
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    text = "\n".join(corpus()[:50])
    assert again(text).input_ids == tok(text).input_ids
    assert (again.pad_token_id, again.eos_token_id) == (tok.pad_token_id, tok.eos_token_id)


def test_bad_alphabet_and_uncovered_text():
    with pytest.raises(ValueError, match="repeated"):
        char_tokenizer("abca")
    with pytest.raises(ValueError, match="not in the tokenizer"):
        check_covers(char_tokenizer("ab "), ["abc"])
