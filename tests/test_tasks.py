"""Tasks by spec: synthetic kinds, the Hugging Face loading path on local data, clear errors."""
import json

import pytest

from caplab.substrate.tasks import load_task
from caplab.substrate.tokenizer import char_tokenizer


def test_synthetic_tasks_are_deterministic_and_split():
    a = load_task({"kind": "arithmetic", "n": 50, "n_digits": 2, "seed": 3})
    b = load_task({"kind": "arithmetic", "n": 50, "n_digits": 2, "seed": 3})
    assert a.prompts == b.prompts and not a.is_corpus
    assert all(int(p[:-1].split("+")[0]) + int(p[:-1].split("+")[1]) == int(c) for p, c in zip(a.prompts, a.completions))
    train, held = a.split(0.2, seed=0)
    assert len(held) == 10 and len(train) == 40 and not set(held.prompts) & set(train.prompts) - set(a.prompts)
    questions = load_task({"kind": "fact_questions", "n_entities": 20, "n_attributes": 4, "seed": 2})
    assert len(questions) == 20 and questions.prompts[0].endswith(":") and len(set(questions.completions)) <= 4
    corpus = load_task({"kind": "zipf_language", "n_sentences": 30, "vocab_size": 40, "seed": 1})
    assert corpus.is_corpus and len(corpus) == 30
    blocks = corpus.tokens(char_tokenizer(), block_size=16)
    assert blocks.input_ids.shape[1] == 16


def test_hf_path_loads_local_data_files(tmp_path):
    rows = [{"question": f"what is {i}?", "answer": str(i), "text": f"line {i}"} for i in range(7)]
    path = tmp_path / "toy.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    pairs = load_task({"kind": "hf_pairs", "path": "json", "data_files": str(path), "split": "train",
                       "prompt_field": "question", "completion_field": "answer", "prompt_template": "Q: {}\nA: ",
                       "max_rows": 5})
    assert pairs.prompts[2] == "Q: what is 2?\nA: " and pairs.completions[2] == "2" and len(pairs) == 5
    texts = load_task({"kind": "hf_text", "path": "json", "data_files": str(path), "split": "train"})
    assert texts.texts[-1] == "line 6"


def test_missing_dataset_offline_names_it():
    with pytest.raises(FileNotFoundError, match="caplab-no-such/dataset.*offline"):
        load_task({"kind": "hf_text", "path": "caplab-no-such/dataset", "split": "test"})


@pytest.mark.parametrize("spec, message", [
    ({"kind": "poetry"}, "kind 'poetry' is not one of"),
    ({"kind": "hf_text", "path": "wikitext", "split": "test", "colour": 1}, "colour: unknown key 'colour'"),
    ({"kind": "arithmetic", "n": 5, "digits": 2}, "digits: unknown key 'digits' of arithmetic"),
    ({"kind": "arithmetic", "n": "5"}, "n: must be int"),
    ({"n": 5}, "kind None is not one of"),
])
def test_bad_specs_rejected(spec, message):
    with pytest.raises(ValueError, match=message):
        load_task(spec)


def test_questions_by_spec(tmp_path):
    from caplab.substrate.tasks import load_questions
    facts = {"n_entities": 40, "n_attributes": 6, "n_mentions": 200, "seed": 0}
    mc = load_questions({"kind": "fact_questions_mc", **facts, "tail": 10, "n_choices": 4})
    corpus = load_task({"kind": "facts", **facts})
    assert len(mc) == 10 and all(len(c) == 4 for c in mc.choices)
    mentions = {t.split(":")[0] for t in corpus.texts}
    rare = [p[:-1] for p in mc.prompt if p[:-1] not in mentions]
    assert len(rare) >= 1                      # the tail includes facts never mentioned in the corpus
    path = tmp_path / "mmlu.jsonl"
    path.write_text('{"question": "1+1?", "choices": ["1", "2", "3", "4"], "answer": 1}\n')
    hf = load_questions({"kind": "hf_multiple_choice", "path": "json", "data_files": str(path), "split": "train"})
    assert hf.prompt[0] == "1+1?\nAnswer:" and hf.choices[0][1] == " 2" and hf.answer[0] == 1
    with pytest.raises(ValueError, match="question spec kind"):
        load_questions({"kind": "trivia"})
