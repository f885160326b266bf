"""Training on your own problems: the field mapping, the held-out carving, and the README's journey (file, train,
evaluate, compare) run as written on a 12-row file, with a tiny model and few steps added."""

import json
import re
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT
from data_prep.own_data import MIN_HELDOUT, OwnData, carve_heldout, load_own, reduce_reference

ROWS = [  # plain question/answer rows as a user writes them: no '####', answers with units and words
    {"question": "Tom has 5 apples and buys 7 more. How many apples does he have?", "answer": "12"},
    {"question": "What is half of 3/2?", "answer": "3/4"},
    {"question": "A pen costs $3. What do 4 pens cost?", "answer": "$12"},
    {"question": "Solve x + 2 = 9.", "answer": "x = 7"},
    {"question": "How many legs do 2 spiders have?", "answer": "16 legs"},
    {"question": "What is 9 squared?", "answer": 81},
    {"question": "Is 7 even or odd?", "answer": "odd"},
    {"question": "What is 100 - 37?", "answer": "63"},
    {"question": "What is 6 * 7?", "answer": "42"},
    {"question": "What is 0 + 0?", "answer": 0},
    {"question": "What is 2 to the power 5?", "answer": "32"},
    {"question": "What is 15 divided by 3?", "answer": "5"},
]


def write_rows(path, rows=ROWS):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_references_are_reduced_only_when_they_are_worked_solutions():
    assert reduce_reference("She has 5 + 7 = 12 apples.\n#### 12") == "12"
    assert reduce_reference("#### 1,000") == "1000"
    assert reduce_reference("so the answer is $\\boxed{\\frac{3}{4}}$") == "\\frac{3}{4}"
    assert reduce_reference("8 apples") == "8 apples" and reduce_reference(" x = 7 ") == "x = 7"


def test_the_carved_heldout_set_is_disjoint_seeded_and_at_least_a_few_rows(tmp_path):
    path = write_rows(tmp_path / "my_math.jsonl")
    data = OwnData(str(path))
    train, heldout = load_own(data, "train"), load_own(data, "test")
    assert len(heldout) == MIN_HELDOUT and len(train) == 12 - MIN_HELDOUT  # 10 % of 12 is 1: at least 3
    assert not {p.id for p in train} & {p.id for p in heldout}
    assert {p.source for p in train + heldout} == {"my_math"}
    assert [p.id for p in load_own(OwnData(str(path), seed=1), "test")] != [p.id for p in heldout]  # seeded
    assert [p.id for p in load_own(OwnData(str(path)), "test")] == [p.id for p in heldout]  # and repeatable
    # adding rows to the file does not move the rows already held out out of it
    more = write_rows(tmp_path / "more.jsonl", ROWS + [{"question": f"What is {i} + 1?", "answer": i + 1} for i in range(40)])
    _, bigger = carve_heldout(load_own(OwnData(str(more), heldout_fraction=0.5), "train")
                              + load_own(OwnData(str(more), heldout_fraction=0.5), "test"), 0.1, 0)
    assert len(bigger) == 5


def test_split_field_heldout_file_and_field_names(tmp_path):
    rows = [{"q": r["question"], "a": r["answer"], "split": "test" if i < 2 else "train"} for i, r in enumerate(ROWS)]
    path = write_rows(tmp_path / "mapped.jsonl", rows)
    data = OwnData(str(path), question_field="q", answer_field="a")
    assert [p.problem for p in load_own(data, "test")] == [ROWS[0]["question"], ROWS[1]["question"]]
    assert len(load_own(data, "train")) == 10
    other = write_rows(tmp_path / "other.jsonl", rows[:4])  # the same field names in the held-out file
    assert len(load_own(OwnData(str(path), str(other), question_field="q", answer_field="a"), "test")) == 4
    with pytest.raises(ValueError, match="no usable rows"):  # the default field names are not there
        load_own(OwnData(str(path)), "train")


def readme_journey() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Training on your own problems")
    block = re.search(r"```bash\n(.*?)```", readme[start:], re.DOTALL).group(1)
    return [line for line in block.replace("\\\n", " ").splitlines() if "scripts/" in line]


def test_the_readmes_journey_trains_on_a_12_row_file_and_evaluates_its_heldout_rows(tiny_model, tmp_path):
    commands = readme_journey()
    assert [c.split()[1] for c in commands] == ["scripts/train_grpo.py", "scripts/evaluate.py", "scripts/evaluate.py",
                                               "scripts/report/compare_evals.py"]
    write_rows(tmp_path / "my_math.jsonl")
    fast = {  # the tiny model and the hf back end, a few steps: the commands themselves are the README's
        "train_grpo.py": ["--model", str(tiny_model), "--backend", "hf", "--steps", "2", "--prompts-per-step", "2",
                          "--group-size", "4", "--max-new-tokens", "8", "--eval-samples", "0", "--no-tensorboard"],
        "evaluate.py": ["--backend", "hf", "--max-new-tokens", "8"],
    }
    for command in commands:
        argv = shlex.split(command.replace("step_000024", "step_000002"))
        script = argv[1]
        extra = fast.get(script.rsplit("/", 1)[-1], [])
        if script.endswith("evaluate.py") and "--model" not in argv:
            extra = ["--model", str(tiny_model), *extra]
        result = subprocess.run([sys.executable, str(ROOT / script), *argv[2:], *extra], cwd=tmp_path,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
        if script.endswith("train_grpo.py"):
            assert "held-out: 3 of the 12 rows of my_math.jsonl" in result.stdout, result.stdout

    run = tmp_path / "runs" / "my_math"
    heldout = [json.loads(line) for line in (run / "my_math_heldout.jsonl").read_text().splitlines()]
    trained_on = {json.loads(line)["id"] for line in (run / "completions.jsonl").read_text().splitlines()}
    assert len(heldout) == 3 and not {f"my_math/{r['id']}" for r in heldout} & trained_on
    assert json.loads((run / "results.json").read_text())["tasks"] == ["my_math"]  # named after the file
    summary = json.loads((tmp_path / "runs" / "my_math_eval_trained" / "summary.json").read_text())
    assert "my_math_heldout" in json.dumps(summary) and (tmp_path / "runs" / "my_math_compare" / "comparison.md").exists()
