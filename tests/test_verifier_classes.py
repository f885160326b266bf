"""The answer styles of issue 22, each class with an accepting and a rejecting case (written for this project, not
copied from any public verifier's test suite)."""

import pytest

from rewards.verify import grade

CASES = [
    # Minerva / lm-evaluation-harness endings
    ("minerva", "So we add them.\nFinal Answer: The final answer is $10,455$. I hope it is correct.", "10455", True),
    ("minerva", "So we add them.\nFinal Answer: The final answer is $10,455$. I hope it is correct.", "10456", False),
    ("minerva", "Trying values, $n=34$ works.\nFinal Answer: The largest $n$ is 34.", "34", True),
    ("minerva", "Trying values, $n=34$ works.\nFinal Answer: The largest $n$ is 34.", "35", False),
    # an answer under a heading: the reasoning above it holds other numbers and expressions
    ("heading", "We compute $3+4=7$, then double it.\n\n# Answer\n\n14", "14", True),
    ("heading", "We compute $3+4=7$, then double it.\n\n# Answer\n\n14", "7", False),
    ("heading", "Here $x = 5$ and $y = 7$.\n\n**Final Answer**\n\n12", "12", True),
    ("heading", "Here $x = 5$ and $y = 7$.\n\n**Final Answer**\n\n12", "7", False),
    ("heading", "Both halves are $\\frac{1}{4}$.\nFinal answer:\n\\[ \\frac{1}{2} \\]", "\\frac{1}{2}", True),
    ("heading", "Both halves are $\\frac{1}{4}$.\nFinal answer:\n\\[ \\frac{1}{2} \\]", "\\frac{1}{4}", False),
    # MetaMath's "The answer is: X": a tuple kept whole, and the last statement wins
    ("metamath", "Solving both equations gives the point.\nThe answer is: (-1,6).", "(-1,6)", True),
    ("metamath", "Solving both equations gives the point.\nThe answer is: (-1,6).", "6", False),
    ("metamath", "I first thought the answer is 5. After checking the carry, the answer is 7.", "7", True),
    ("metamath", "I first thought the answer is 5. After checking the carry, the answer is 7.", "5", False),
    # "the final answer of X" (an answer phrase without "is"); "the answer of the question" is not one
    ("answer_of", "Adding the rows, you reach the final answer of 36, but the shirt earned 23.", "36", True),
    ("answer_of", "Adding the rows, you reach the final answer of 36, but the shirt earned 23.", "23", False),
    # a number that is an operand of a written-out operation is not a stated result
    ("operand", "So we can have the expression 2 * 3 * 4, and the number itself cannot be", "4", False),
    ("operand", "Multiplying the sides, 2 * 3 * 4 = 24 blocks.", "24", True),
    # several boxes that are one answer, and boxes that are not
    ("boxes", "$\\boxed{(2, 2)} \\quad \\text{and} \\quad \\boxed{(6, 2)}$", "(2, 2), (6, 2)", True),
    ("boxes", "$\\boxed{(2, 2)} \\quad \\text{and} \\quad \\boxed{(6, 2)}$", "(6, 2)", False),
    ("boxes", "$\\boxed{-2} \\quad \\text{and} \\quad \\boxed{1}$", "-2, 1", True),
    ("boxes", "For part (a) the answer is \\boxed{3} and for part (b) it is \\boxed{5}.", "3, 5", True),
    ("boxes", "At first I got \\boxed{2}, which is wrong; the answer is \\boxed{3}.", "2, 3", False),
    ("boxes", "At first I got \\boxed{2}, which is wrong; the answer is \\boxed{3}.", "3", True),
    # decimal commas against thousands separators, leading-dot decimals, glued units
    ("decimal_comma", "The answer is 1,22", "1.22", True),
    ("decimal_comma", "The answer is 1,22", "122", False),
    ("decimal_comma", "The answer is 0,111", "0.111", True),
    ("decimal_comma", "The answer is 1000,99", "1000.99", True),
    ("thousands", "The answer is 7,425,000", "7425000", True),
    ("thousands", "The answer is 7,425,000", "7.425", False),
    ("leading_dot", "The answer is .4", "0.4", True),
    ("leading_dot", "The answer is .185", "0.185", True),
    ("leading_dot", "The answer is .185", "0.85", False),
    ("glued_unit", "The answer is 1,000.99m²", "1000.99", True),
    ("glued_unit", "The answer is 1,000.99m²", "1000", False),
    # approximations
    ("approx", "$x \\approx 11$", "11", True),
    ("approx", "$x \\approx 11$", "12", False),
    ("rounded", "The answer is 0.0833333333333333", "\\frac{1}{12}", True),
    ("rounded", "The answer is 0.33", "\\frac{1}{3}", True),
    ("rounded", "The answer is 0.34", "\\frac{1}{3}", False),  # wrong in the digits written
    ("rounded", "The answer is 0.3", "\\frac{1}{3}", False),  # one significant digit
    ("rounded", "The answer is 12.8", "12.75", False),  # a value that ends must be written in full
    ("rounded", "$\\sqrt{17}$", "4.123105625617661", True),
    ("rounded", "$\\sqrt{17}$", "4.2", False),
    # plain-text algebra
    ("plain_algebra", "The answer is x^2+2x+1", "x^2 + 2*x + 1", True),
    ("plain_algebra", "The answer is x^2+2x+1", "x^2 + 2*x + 2", False),
    ("plain_algebra", "The answer is (r+5)(r+5)", "(r+5)^2", True),
    ("plain_algebra", "The answer is (r+5)(r+5)", "(r+5)^3", False),
    ("plain_algebra", "The answer is y = x^2+2x+1", "x^2+2x+1", True),
    # letters in wrappers; \text{} around a number counts as the number (the choice written in docs/verifier.md)
    ("wrapper", "The choice is $\\mathrm{E}$", "E", True),
    ("wrapper", "The choice is $\\mathrm{E}$", "A", False),
    ("wrapper", "The choice is $\\textbf{A}$", "A", True),
    ("wrapper", "So it is $\\text{5}$", "5", True),
    ("wrapper", "So it is $\\text{5}$", "6", False),
    # an inequality chain against an interval
    ("chain", "So $-2 \\le x \\le 7$", "x \\in [-2,7]", True),
    ("chain", "So $-2 \\le x \\le 7$", "(-2,7)", False),
    ("chain", "So $-2 < x \\le 7$", "(-2, 7]", True),
    ("chain", "So $-2 < x \\le 7$", "[-2, 7]", False),
]


@pytest.mark.parametrize("cls, completion, reference, expected", CASES,
                         ids=[f"{c[0]}-{'accept' if c[3] else 'reject'}-{i}" for i, c in enumerate(CASES)])
def test_answer_style(cls, completion, reference, expected):
    verdict = grade(completion, reference, timeout=5)
    assert verdict.correct == expected, verdict


def test_every_class_has_an_accepting_and_a_rejecting_case():
    classes = {c[0] for c in CASES}
    for cls in classes - {"decimal_comma", "thousands"}:
        assert {c[3] for c in CASES if c[0] == cls} == {True, False}, cls
    # the pair that must not be confused: a decimal comma accepted, a thousands separator kept
    assert any(c[0] == "decimal_comma" and c[3] for c in CASES) and any(c[0] == "thousands" and c[3] for c in CASES)
