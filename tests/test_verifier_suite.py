"""The robustness suite: MATH-500 and OlympiadBench references in the forms models write them."""

from collections import Counter, defaultdict

import pytest

from data_prep.benchmarks import default_data_dir
from eval.verifier_suite import build_suite, equivalent_forms, wrong_forms
from rewards import accuracy_verdicts

pytestmark = pytest.mark.skipif(default_data_dir() is None, reason="needs the data folder (../shared/data)")


def test_every_reference_has_six_equivalent_and_three_wrong_forms():
    cases = build_suite()
    per_reference = defaultdict(Counter)
    for c in cases:
        per_reference[c.source][c.equivalent] += 1
    assert len(per_reference) == 500 + 675
    assert min(n[True] for n in per_reference.values()) >= 6
    assert min(n[False] for n in per_reference.values()) >= 3


def test_forms_of_one_reference():
    assert set(equivalent_forms("\\frac{1}{2}")) >= {"boxed", "dollar_end", "paren", "display", "in_sentence", "answer_tag",
                                                    "assign", "dfrac", "frac_short", "decimal"}
    assert "0.5" in equivalent_forms("\\frac{1}{2}")["decimal"]
    assert wrong_forms("[2, 5)")["swapped_ends"] == "(2, 5]"
    assert wrong_forms("x \\geq 5")["flipped_inequality"] == "x \\leq 5"
    assert wrong_forms("1, 2, 3")["missing_element"] == "1, 2"
    assert wrong_forms("\\pi")["plus_one"] == "\\pi + 1"


def test_suite_acceptance_rates():
    cases = build_suite()
    verdicts = accuracy_verdicts([c.completion for c in cases], [c.reference for c in cases])
    equivalent = [v.correct for c, v in zip(cases, verdicts) if c.equivalent]
    wrong = [v.correct for c, v in zip(cases, verdicts) if not c.equivalent]
    failures = [(c.form, c.reference, v.answer) for c, v in zip(cases, verdicts) if v.correct != c.equivalent]
    assert sum(equivalent) / len(equivalent) >= 0.99, failures[:20]
    assert 1 - sum(wrong) / len(wrong) >= 0.995, failures[:20]
