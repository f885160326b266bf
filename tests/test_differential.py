"""The differential harness (issue 22): every disagreement with raw math-verify is named by a rule, each rule has a
case, and on the project's own labelled corpus nothing is unexplained."""

import json
import shutil

import pytest

from conftest import ROOT
from eval.differential import RULES, explain
from reasoning_rl.config import parse_config
from rewards._verify_worker import raw_math_verify
from rewards.verify import grade

# (rule, completion, reference): a disagreement that the rule, and no earlier one, explains
RULE_CASES = [
    ("think_block", "<think>so it is 9</think> I am not sure.", "9"),
    ("question_restated", "To find the sum we compute $13 + 29$.", "42"),
    ("digit_in_word", "Round 2nd place.", "2"),
    ("later_final_answer", "At first I thought the answer is 20, but then I recounted and it is 19.", "20"),
    ("number_form", "So the ratio is 0.33.", "\\frac{1}{3}"),
    ("number_form", "Counting again, the answer is twelve.", "12"),
    ("boxed_list", "For part (a) the answer is $\\boxed{12}$, and for part (b) it is $\\boxed{7}$.", "12, 7"),
    ("heading", "# Answer\n\nthe value \\frac34", "\\frac{3}{4}"),
    ("interval_or_assignment", "Hence $-2 \\le x \\le 7$.", "[-2, 7]"),
    ("answer_phrase", "Factoring gives the answer is (r+5)(r+5)", "(r+5)^2"),
    ("unmarked_text", "We multiply by $8$ and then finish the parentheses with 1. Yes, it is.", "1"),
    ("unmarked_text", "So, $\\frac{3}{20}$ is a decimal representation of 6, or 0.6.", "0.15"),
]


@pytest.mark.parametrize("rule, completion, reference", RULE_CASES, ids=[c[0] for c in RULE_CASES])
def test_each_rule_names_its_disagreement(rule, completion, reference):
    ours, raw = grade(completion, reference, 5), raw_math_verify(completion, reference, 5)
    assert ours.correct != raw.correct, (ours, raw)  # a real disagreement with raw math-verify
    assert explain(completion, reference, ours, raw) == rule


def test_a_verdict_the_project_did_not_reach_is_screened():
    """A completion screened or timed out (1 s in training) that math-verify, given 5 s, accepted."""
    from rewards import Verdict

    assert explain("$2^{2^{2^{2^{2^{2}}}}}$", "4", Verdict(False, "timeout"), Verdict(True, "math_verify", "4")) == "screened"


def test_agreement_needs_no_rule_and_every_rule_is_named_once_per_side():
    ours = grade("The answer is 7.", "7", 5)
    assert explain("The answer is 7.", "7", ours, raw_math_verify("The answer is 7.", "7", 5)) is None
    names = [(name, side) for name, side, _ in RULES]
    assert len(names) == len(set(names)) and {side for _, side, _ in RULES} == {"raw", "project"}


def test_the_labelled_corpus_has_no_unexplained_disagreement(tmp_path):
    import verify_quality

    corpus = tmp_path / "verifier_corpus.jsonl"
    shutil.copy(ROOT / "tests" / "data" / "verifier_corpus.jsonl", corpus)
    result = verify_quality.main(parse_config(verify_quality.Config, ["--differential", str(corpus)]))
    assert result["completions"] == len(corpus.read_text().splitlines()) and result["disagreements"] > 0
    assert result["unexplained"] == 0, (tmp_path / "verifier_corpus.differential.md").read_text()
    assert result["project_agrees_with_labels"] >= result["math_verify_agrees_with_labels"]
    styles = {json.loads(line)["style"] for line in corpus.read_text().splitlines()}
    assert {"minerva", "heading", "think", "boxed", "gsm8k", "metamath", "decimal", "european"} <= styles


def test_the_sampled_corpus_has_no_unexplained_disagreement_and_the_project_matches_every_label(tmp_path):
    """Completions the embedded model wrote in five prompt styles, with perturbed final-answer endings
    (tests/data/sample_verifier_corpus.py)."""
    import verify_quality

    corpus = tmp_path / "verifier_corpus_sampled.jsonl"
    shutil.copy(ROOT / "tests" / "data" / "verifier_corpus_sampled.jsonl", corpus)
    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    result = verify_quality.main(parse_config(verify_quality.Config, ["--differential", str(corpus)]))
    assert result["unexplained"] == 0, (tmp_path / "verifier_corpus_sampled.differential.md").read_text()
    assert result["disagreements"] > 0 and result["project_agrees_with_labels"] == 1.0
    assert result["project_agrees_with_labels"] > result["math_verify_agrees_with_labels"]
    sampled = [r for r in rows if r.get("kind", "sampled") == "sampled"]
    assert len(sampled) >= 100 and {r["style"] for r in sampled} == {"minerva", "r1_think", "boxed", "answer_colon",
                                                                       "gsm8k_few_shot"}
    assert {"decimal_for_fraction", "wrong_rounding", "thousands", "glued_unit", "changed"} <= {r.get("kind") for r in rows}
