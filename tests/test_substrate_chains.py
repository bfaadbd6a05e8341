"""Chain arithmetic: solutions are right, corrupted chains are wrong in one place, answers are read as GSM8K's."""
import re

import numpy as np
import pytest

from caplab.substrate import chains


def _truth(question: str) -> int:
    return eval(question)       # digits with + and -: Python's arithmetic is the reference  # noqa: S307


def test_solutions_follow_the_arithmetic_and_stay_single_digit():
    made = chains.problems(300, (1, 3), seed=0)
    assert made.question.is_unique
    for row in made.itertuples():
        assert int(row.answer) == _truth(row.question)
        assert chains.answer_of(row.solution) == row.answer
        for a, op, b, c in re.findall(r"(\d+)([+-])(\d+)=(\d+)", row.solution):
            assert int(c) == (int(a) + int(b) if op == "+" else int(a) - int(b))
            assert 0 <= int(c) <= 9
        assert row.solution.count("Step") == row.n_ops


def test_wrapping_problems_are_modular():
    made = chains.problems(100, 2, modulus=7, wrap=True, seed=1)
    assert all(int(a) == _truth(q) % 7 for q, a in zip(made.question, made.answer))


def test_exclude_keeps_sets_disjoint_and_too_many_is_an_error():
    train = chains.problems(200, (1, 2), seed=0)
    test = chains.problems(50, (1, 2), seed=1, exclude=set(train.question))
    assert not set(train.question) & set(test.question)
    with pytest.raises(ValueError, match="distinct problems"):
        chains.problems(10_000, 1, seed=0)


def test_rejected_chains_have_one_wrong_step_and_a_wrong_answer():
    prefs = chains.preferences(200, (1, 3), seed=2)
    for row in prefs.itertuples():
        good = re.findall(r"=(\d+)", row.chosen)
        bad = re.findall(r"=(-?\d+)", row.rejected)
        first = next(i for i, (g, b) in enumerate(zip(good, bad)) if g != b)
        step = re.findall(r"(-?\d+)([+-])(\d+)=(-?\d+)", row.rejected)[first]
        a, op, b, c = int(step[0]), step[1], int(step[2]), int(step[3])
        assert c != (a + b if op == "+" else a - b)          # the injected error
        assert chains.answer_of(row.rejected) != chains.answer_of(row.chosen)


def test_fact_corpus_is_true_facts_without_the_question_format():
    lines = chains.fact_corpus(50, seed=3)
    facts = [f for line in lines for f in line.split()]
    assert len(facts) == 50 * 8
    for fact in facts:
        a, op, b, c = re.fullmatch(r"(\d)([+-])(\d)=(\d)", fact).groups()
        assert int(c) == (int(a) + int(b) if op == "+" else int(a) - int(b))
    assert not any("Step" in line or "####" in line or "Question" in line for line in lines)


def test_answers_are_read_as_gsm8k_writes_them_and_rewarded_binary():
    assert chains.answer_of("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 1,072") == "1072"
    assert chains.answer_of("no answer here") is None
    assert chains.correct_reward([" Step 1: 2+3=5\n#### 5", "#### 4", "5"], ["5", "5", "5"]) == [1.0, 0.0, 0.0]
    assert chains.correct_reward([[{"role": "assistant", "content": "#### 7"}]], ["7"]) == [1.0]
    assert np.isclose(sum(chains.correct_reward(["#### 3"] * 4, ["3", "3", "2", "3"])), 3.0)


def test_worked_corpus_practises_the_skill_in_other_forms_and_skips_held_out_questions():
    assert chains.worked_text("7-3+5") == "7-3+5: 7-3=4, 4+5=9 => 9"
    assert chains.worked_answer(" 7-3=4, 4+5=9 => 9") == "9" and chains.worked_answer("7-3=4") is None
    held = set(chains.problems(150, (1, 2), seed=2).question)
    lines = chains.worked_corpus(2000, (1, 2), seed=5, exclude=held, n_forms=4)
    assert len(lines) == 2000 and len({line.split("\n")[0][:9] for line in lines}) > 4
    for line in lines:
        assert "Step" not in line and "####" not in line
        question = re.split(r": |\.\n| gives |\nAnswer", line.removeprefix("Work out ").removeprefix("Question: "))[0]
        assert question not in held
        start, ops = chains._parse(question)
        value = start
        for op, b in ops:
            value = value + b if op == "+" else value - b
        assert line.rstrip(".").endswith(str(value))
    with pytest.raises(ValueError):
        chains.worked_corpus(10, n_forms=9)


def test_first_step_guesser_and_question_of():
    assert chains.first_step_answer("7-3+5") == "4" and chains.first_step_answer("2+6") == "8"
    assert chains.question_of("Question: 7-3+5\nAnswer:") == "7-3+5"
    with pytest.raises(ValueError):
        chains.question_of("7-3+5:")
