import json
import warnings

import pytest

from data_prep import LEVELS, MalformedRowError, load_problems, make_arithmetic, render_prompt
from data_prep.templates import R1_ZERO


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_gsm8k_answer_is_number_after_hashes(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [{"question": "q?", "answer": "work\n#### 1,234"}])
    [p] = load_problems("gsm8k", path=path)
    assert (p.answer, p.problem, p.source) == ("1234", "q?", "gsm8k")


def test_math_answer_is_last_boxed_when_missing(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [{"problem": "p", "solution": "\\boxed{1} then \\boxed{\\frac{a}{b}}", "unique_id": "u1"}])
    [p] = load_problems("math", path=path)
    assert (p.answer, p.id) == ("\\frac{a}{b}", "u1")


def test_malformed_rows_are_skipped_and_reported(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [
        {"question": "ok", "answer": "#### 1"},
        "{not json",
        {"question": "no hashes", "answer": "42"},
        {"answer": "#### 3"},
        {"question": "ok2", "answer": "#### 2"},
    ])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problems = load_problems("gsm8k", path=path)
    assert [p.answer for p in problems] == ["1", "2"]
    [warning] = caught
    assert "skipped 3 malformed row(s)" in str(warning.message) and f"{path}:2" in str(warning.message)
    with pytest.raises(MalformedRowError, match=f"{path}:2"):
        load_problems("gsm8k", path=path, strict=True)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_problems("gsm8k", path=tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="unknown benchmark"):
        load_problems("gsm9k")


def test_shared_benchmarks_load(shared_data):
    expected = {"gsm8k": 1319, "math": 5000, "math500": 500, "aime24": 30, "amc23": 40, "minerva_math": 272, "olympiadbench": 675}
    for name, count in expected.items():
        problems = load_problems(name, path=shared_data)
        assert len(problems) == count, name
        assert all(p.answer for p in problems), name
    assert load_problems("amc23", path=shared_data)[0].answer == "27"  # "27.0" in the file


@pytest.mark.parametrize("level", list(LEVELS))
def test_synthetic_levels_are_exact_seeded_and_disjoint(level):
    train = make_arithmetic(level, 200, seed=1, split="train")
    test = make_arithmetic(level, 50, seed=1, split="test")
    assert make_arithmetic(level, 200, seed=1, split="train") == train
    assert not {p.problem for p in train} & {p.problem for p in test}
    for p in train[:20]:
        if p.problem.startswith("What is"):
            expression = p.problem.removeprefix("What is ").rstrip("?")
            assert str(eval(expression)) == p.answer  # the generator's answers are exact


def test_templates(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    assert render_prompt("What is 1 + 1?", "r1_zero") == R1_ZERO.format(problem="What is 1 + 1?")
    chat = render_prompt("What is 1 + 1?", "chat_boxed", tokenizer)
    assert "What is 1 + 1?" in chat and "\\boxed{}" in chat and chat.endswith("<|im_start|>assistant\n")
    assert render_prompt("Q", "few_shot").endswith("Question: Q\nAnswer:")
    with pytest.raises(ValueError, match="needs a tokenizer"):
        render_prompt("Q", "chat")


def test_tasks(shared_data):
    from reasoning_rl.tasks import PromptStream, load_task

    assert len(load_task("gsm8k", "train", 10, data_path=str(shared_data))) == 7473
    assert len(load_task("math500", "test", 10, data_path=str(shared_data))) == 10
    with pytest.raises(ValueError, match="only a test split"):
        load_task("math500", "train", 10, data_path=str(shared_data))
    problems = load_task("arith:add_20,sub_2d", "train", 40)
    assert {p.source for p in problems} == {"arith/add_20", "arith/sub_2d"}
    # the sampler's whole state is its cursor: a fresh sampler at cursor 5 continues the same order
    first = PromptStream(problems, seed=3)
    order = [p.id for p in first.take(50)]
    resumed = PromptStream(problems, seed=3, cursor=5)
    assert [p.id for p in resumed.take(45)] == order[5:]
