"""The verifier on answers written the way models write them: each answer form, right and wrong."""

import time

import pytest

from rewards import VerifierPool, accuracy_reward, accuracy_verdicts, extract_final
from rewards.verify import audit_metrics, grade, too_costly

# (answer form, completion, reference, expected reward)
FORMS = [
    # fractions in every spelling, and mixed numbers
    ("frac", "so the result is $\\frac{1}{3}$.", "\\frac13", 1.0),
    ("frac", "so the result is $\\frac{1}{4}$.", "\\frac13", 0.0),
    ("dfrac", "We get $\\dfrac{3}{6}$", "\\frac{1}{2}", 1.0),
    ("tfrac", "We get $\\tfrac{2}{3}$", "\\frac{1}{2}", 0.0),
    ("cfrac", "We get \\(\\cfrac{4}{8}\\)", "0.5", 1.0),
    ("a/b", "Each share is 3/4 of the cake", "\\frac{3}{4}", 1.0),
    ("a/b", "Each share is 3/5 of the cake", "\\frac{3}{4}", 0.0),
    ("mixed number", "It takes $918\\frac{1}{2}$ hours.", "918.5", 1.0),
    ("mixed number", "It takes $918\\frac{1}{3}$ hours.", "918.5", 0.0),
    ("frac13", "so it is \\frac13.", "\\frac{1}{3}", 1.0),
    # roots
    ("root", "The side is $\\sqrt3$.", "\\sqrt{3}", 1.0),
    ("root", "The side is $2\\sqrt{2}$.", "\\sqrt{8}", 1.0),
    ("root", "The side is $\\sqrt{2}$.", "\\sqrt{3}", 0.0),
    # intervals: open and closed ends are different answers
    ("interval", "Thus $x \\in [-2,7]$.", "[-2,7]", 1.0),
    ("interval", "The domain is $[0,9)$", "(0,9)", 0.0),
    ("interval", "The domain is $(-\\infty, 3]$", "(-\\infty,3]", 1.0),
    ("interval", "The domain is $(-\\infty, 3)$", "(-\\infty,3]", 0.0),
    # inequalities in either direction
    ("inequality", "So $x \\geq 5$.", "5 \\leq x", 1.0),
    ("inequality", "So $x \\leq 5$.", "5 \\leq x", 0.0),
    ("inequality", "So $3 > y$.", "y < 3", 1.0),
    # sets, lists of solutions, tuples
    ("set", "The roots are $\\boxed{2}$ and $\\boxed{-3}$.", "-3, 2", 1.0),
    ("set", "The roots are $x = 2$ and $x = -3$.", "-3, 2", 1.0),
    ("set", "The roots are $\\boxed{2}$ and $\\boxed{3}$.", "-3, 2", 0.0),
    ("set", "The set is $\\{2, 1\\}$", "\\{1,2\\}", 1.0),
    ("set", "The set is $\\{2\\}$", "\\{1,2\\}", 0.0),
    ("tuple", "The point is $(3, \\frac{\\pi}{2})$.", "\\left( 3, \\frac{\\pi}{2} \\right)", 1.0),
    ("tuple", "The point is $(\\frac{\\pi}{2}, 3)$.", "\\left( 3, \\frac{\\pi}{2} \\right)", 0.0),
    # matrices
    ("pmatrix", "$\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}$", "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}", 1.0),
    ("bmatrix", "$\\begin{bmatrix}1&2\\\\3&5\\end{bmatrix}$", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", 0.0),
    ("array", "$\\left(\\begin{array}{cc}1&2\\\\3&4\\end{array}\\right)$", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", 1.0),
    ("array", "$\\left(\\begin{array}{cc}1&2\\\\4&3\\end{array}\\right)$", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", 0.0),
    # equations written differently
    ("equation", "The line is $y = -x/2 + 3/4$", "2x + 4y - 3 = 0", 1.0),
    ("equation", "The line is $y = -x/2 + 3/2$", "2x + 4y - 3 = 0", 0.0),
    # x = ... and k = ...
    ("x =", "Solving, $x = 5$.", "5", 1.0),
    ("k =", "Therefore $k = 3$.", "3", 1.0),
    ("k =", "Therefore $k = 4$.", "3", 0.0),
    ("x = expr", "Solving, $x = p - q$.", "p - q", 1.0),
    ("chain", "So we need $f^{-1}(f^{-1}(6)) = 1$.", "1", 1.0),
    ("stated after", "Adding, $3 + 9$ is 12.", "12", 1.0),
    ("stated after", "Adding, $3 + 9$ is 13.", "12", 0.0),
    ("chain", "So we need $f^{-1}(f^{-1}(6)) = 2$.", "1", 0.0),
    ("scientific", "It is $6.72 \\times 10^{-5}$", "0.0000672", 1.0),
    ("repeating decimal", "It is $0.\\overline{3}$", "\\frac{1}{3}", 1.0),
    ("repeating decimal", "It is $0.\\overline{6}$", "\\frac{1}{3}", 0.0),
    ("scientific", "It is $6.72 \\times 10^{-6}$", "0.0000672", 0.0),
    # ratios and times
    ("ratio", "The ratio is 11:21", "11:21", 1.0),
    ("ratio", "The ratio is 11:20", "11:21", 0.0),
    ("time", "They meet at 12:00.", "12:00", 1.0),
    ("time", "They meet at 12:30.", "12:00", 0.0),
    # text and choice answers
    ("choice", "The answer is \\text{(E)}.", "\\text{E}", 1.0),
    ("choice", "The answer is $\\mathrm{E}$.", "\\text{E}", 1.0),
    ("choice", "The answer is (D).", "\\text{E}", 0.0),
    ("word", "The answer is Even.", "\\text{Even}", 1.0),
    ("word", "The answer is Odd.", "\\text{Even}", 0.0),
    ("word", "The answer is $\\text{neve}$.", "\\text{Even}", 0.0),  # sympy would call e*v*e*n equal
    # units and \text{} after a number
    ("unit", "The answer is 5 \\text{ cm}.", "5", 1.0),
    ("unit", "The area is $\\boxed{12\\text{ cm}^2}$", "12", 1.0),
    ("unit", "The area is $\\boxed{13\\text{ cm}^2}$", "12", 0.0),
    # thousands written with spaces (and MATH's ,\!)
    ("thousands", "total 1 000 apples", "1000", 1.0),
    ("thousands", "so $\\boxed{1\\,000}$", "1000", 1.0),
    ("thousands", "so $\\boxed{\\frac{12}{5525}}$", "\\frac{12}{5,\\!525}", 1.0),
    ("thousands", "total 1 001 apples", "1000", 0.0),
    ("thousands", "the count is 11,111,111,101", "11,\\! 111,\\! 111,\\! 100", 0.0),  # exact, not isclose
    # a reference that carries an approximation
    ("approx", "$\\frac{\\sqrt3}{3}$", "\\frac{\\sqrt3}{3} \\approx 0.577", 1.0),
    ("approx", "$\\frac{\\sqrt3}{2}$", "\\frac{\\sqrt3}{3} \\approx 0.577", 0.0),
    # numbers in another base keep their base
    ("base", "so the answer is $\\boxed{52_8}$", "52_8", 1.0),
    ("base", "so the answer is $\\boxed{52_9}$", "52_8", 0.0),
]


@pytest.mark.parametrize("form,completion,reference,expected", FORMS, ids=[f"{f[0]}-{i}" for i, f in enumerate(FORMS)])
def test_answer_forms(form, completion, reference, expected):
    assert accuracy_reward(completion, reference) == expected


def test_every_listed_form_has_a_right_and_a_wrong_case():
    rights = {f for f, _, _, e in FORMS if e == 1.0}
    wrongs = {f for f, _, _, e in FORMS if e == 0.0}
    listed = {"frac", "mixed number", "root", "interval", "inequality", "set", "tuple", "equation", "k =", "ratio",
              "time", "choice", "word", "unit", "thousands", "approx"}
    assert listed <= rights & wrongs


# Cases a verifier can get wrong by accident.
ACCIDENTS = [
    ("a gibberish string with a digit", "asdf2qwer zx", "2"),
    ("a digit glued to words", "kj2h3 sdf", "3"),
    ("the last number inside a non-answer expression", "We get $\\frac{1+\\sqrt{5}}{2}$", "2"),
    ("LaTeX cut to its last digit", "The matrix is $\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}$", "4"),
    ("a boxed answer inside <think>", "<think>maybe \\boxed{42}</think> I am not sure, it could be 41", "42"),
    ("a closed interval for an open one", "so $[0,9)$", "(0,9)"),
    ("the question's expression restated", "To evaluate $\\log_2 64$, we look at powers of two.", "6"),
    ("an unevaluated power for a number", "The answer is $\\boxed{2^6}$.", "64"),
]


@pytest.mark.parametrize("name,completion,reference", ACCIDENTS, ids=[a[0] for a in ACCIDENTS])
def test_accidental_matches_are_rejected(name, completion, reference):
    assert accuracy_reward(completion, reference) == 0.0


@pytest.mark.parametrize("text,answer,source", [
    ("\\boxed{1} and then \\boxed{2}", "2", "boxed"),  # not a list: words in between
    ("\\boxed{1}, \\boxed{2}", "1, 2", "boxed"),
    ("<think>\\boxed{9}</think><answer>$\\frac{1}{2}$</answer>", "\\frac{1}{2}", "answer_tag"),
    ("so\n#### 1,234", "1,234", "hashes"),
    ("The final answer is: $x^2$.", "x^2", "answer_is"),
    ("Hence\n\\[\\sqrt{2}\\]", "\\sqrt{2}", "latex"),
    ("We have $x=1$, so $y = x + 1 = 2$ finally", "y = x + 1 = 2", "latex"),
    ("3 + 4 = 7, then add 1 to get 8", "8", "last_number"),
    ("no answer here", None, None),
    ("<think>\\boxed{5}</think>", None, None),  # nothing after the thinking
])
def test_extraction_order(text, answer, source):
    found = extract_final(text)
    assert (found.answer, found.source) == (answer, source) if answer else found is None


def test_the_number_stated_after_the_last_expression_is_found_also_after_a_list():
    assert extract_final("Adding, $3 + 9$ is 12.").later_number == "12"
    found = extract_final("We get $a+b$, $c+d$, which is 7 in all")  # the listed expressions are one answer
    assert (found.answer, found.later_number) == ("a+b, c+d", "7")
    assert extract_final("so $x$ is $5$").later_number is None  # nothing after the last expression


def test_verdict_records_how_it_was_decided():
    assert grade("\\boxed{7}", "7").method == "exact"
    assert grade("\\boxed{0.5}", "\\frac12").method == "numeric"
    assert grade("\\boxed{x^2+2x+1}", "(x+1)^2").method == "symbolic"
    assert grade("nothing", "7").method == "no_answer"
    assert grade("\\boxed{9^{9^{9^{9}}}}", "x^2").method == "screened"
    assert grade("\\boxed{9^{9^{9^{9}}}}", "7").method == "unevaluated"  # a number is asked for
    assert grade("it is 7", "7").source == "last_number"


@pytest.mark.parametrize("answer,costly", [
    ("9^{9^{9^{9^{9}}}}", True), ("(10^{10})!", True), ("100000!", True), ("\\frac{1}{1+" * 60 + "1" + "}" * 60, True),
    ("x" * 2000, True), ("2^{2^{2}}", False), ("e^{x^2}", False), ("10!", False), ("(n+1)!", False), ("2^{10}", False),
])
def test_costly_answers_are_screened_before_sympy(answer, costly):
    assert too_costly(answer) is costly


ADVERSARIAL = [
    "\\boxed{" + "9^{" * 30 + "9" + "}" * 30 + "}",
    "\\boxed{9^{9^{9^{9^{9}}}}}",
    "\\boxed{(10^{10})!}",
    "\\boxed{" + "\\frac{1}{1+" * 2000 + "1" + "}" * 2000 + "}",
    "\\boxed{" + "1+" * 50_000 + "1}",  # 100 kB
    "$" + "x" * 100_000 + "$",
    "7 " * 50_000,
    "\\frac{" * 5000,
]


def test_adversarial_batch_scores_zero_without_stalling():
    pool = VerifierPool(workers=2)
    completions = [ADVERSARIAL[i % len(ADVERSARIAL)] for i in range(64)]
    start = time.perf_counter()
    verdicts = pool.grade(completions, ["5"] * 64, timeout=1.0)
    elapsed = time.perf_counter() - start
    pool.close()
    assert [v.correct for v in verdicts] == [False] * 64
    assert elapsed < 60  # scripts/bench/bench_verifier.py measures it (a few seconds); this only guards against a hang


def test_a_worker_past_its_timeout_is_killed_and_replaced():
    pool = VerifierPool(workers=1)
    pool.grade(["\\boxed{1}"], ["1"])  # start the worker outside the timed part
    slow = "\\boxed{(x+1)^{300}(y+2)^{300}}"  # not screened, but sympy expands it for many seconds
    start = time.perf_counter()
    verdict, = pool.grade([slow], ["(x+2)^{300}(y+1)^{300}"], timeout=0.5)
    assert time.perf_counter() - start < 1.5
    assert (verdict.correct, verdict.method) == (False, "timeout")
    assert pool.grade(["\\boxed{\\frac{10}{14}}"], ["\\frac{5}{7}"])[0].correct  # a fresh worker took over
    pool.close()


def test_batch_budget_marks_the_rest_as_timeouts():
    pool = VerifierPool(workers=1)
    pool.grade(["\\boxed{1}"], ["1"])
    verdicts = pool.grade(["\\boxed{2}"] * 50, ["2"] * 50, budget=0.0)
    assert all(v.method == "timeout" and not v.correct for v in verdicts)
    pool.close()


def test_parallel_verdicts_equal_serial_ones():
    completions = [c for _, c, _, _ in FORMS]
    references = [r for _, _, r, _ in FORMS]
    one, two = VerifierPool(workers=1), VerifierPool(workers=2)
    serial = [(v.correct, v.method, v.answer) for v in one.grade(completions, references)]
    parallel = [(v.correct, v.method, v.answer) for v in two.grade(completions, references)]
    one.close(), two.close()
    assert serial == parallel


def test_audit_metrics():
    verdicts = accuracy_verdicts(["\\boxed{1}", "nothing", "it is 3", "\\boxed{x^2+2x+1}"], ["1", "1", "3", "(x+1)^2"])
    m = audit_metrics(verdicts)
    assert m["verifier/no_answer"] == 0.25
    assert m["verifier/fallback_last_number"] == 0.25
    assert m["verifier/symbolic"] == 0.25
    assert m["verifier/timeout"] == 0.0
    assert m["verifier/seconds_mean"] > 0


def test_unparseable_references_are_reported_and_dropped(capsys):
    from data_prep import Problem
    from data_prep.checks import check_references

    problems = [Problem("a", "q", "\\frac{1}{2}", "t"), Problem("b", "q", "np.arcsin(10/13)", "t"),
                Problem("c", "q", "\\text{Even}", "t"), Problem("d", "q", "7", "t")]
    kept = check_references(problems, "toy")
    assert kept == problems
    assert "toy: 1 of 4 reference answers cannot be parsed" in capsys.readouterr().out
    assert [p.id for p in check_references(problems, "toy", drop=True)] == ["a", "c", "d"]
