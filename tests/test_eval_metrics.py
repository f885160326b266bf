import pytest

from eval import maj_at_k, majority_answer, mean_ci95, pass_at_k
from eval.metrics import paired_difference, wilson_ci95
from rewards import is_equivalent


def test_pass_at_k_values():
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(4, 0, 2) == 0.0
    assert pass_at_k(4, 4, 1) == 1.0
    assert pass_at_k(4, 3, 2) == 1.0  # fewer than k wrong samples: every k-subset has a right one


def test_pass_at_k_rejects_k_above_n():
    with pytest.raises(ValueError, match="pass@5 needs"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_maj_at_k_groups_equivalent_answers():
    answers = ["0.5", "\\frac{1}{2}", "3", "3", "1/2"]
    # 0.5, \frac{1}{2} and 1/2 are one answer (3 votes) against "3" (2 votes)
    assert majority_answer(answers, is_equivalent) == "0.5"
    assert maj_at_k(answers, "\\frac12", 5, is_equivalent) == 1.0
    # the first 4: {0.5, 1/2} 2 votes and {3} 2 votes: a tie goes to the answer seen first
    assert maj_at_k(answers, "3", 4, is_equivalent) == 0.0
    assert maj_at_k([None, None, "3"], "3", 3, is_equivalent) == 1.0
    with pytest.raises(ValueError):
        maj_at_k(answers, "3", 6, is_equivalent)


def test_ci95():
    # 8 problems, half solved: sd = sqrt(8 * 0.25 / 7) = 0.5345; half width = 1.96 * 0.5345 / sqrt(8) = 0.3704
    mean, low, high = mean_ci95([1.0, 0.0] * 4)
    assert mean == 0.5
    assert (low, high) == (pytest.approx(0.1296, abs=1e-4), pytest.approx(0.8704, abs=1e-4))
    # the interval is clipped to [0, 1]
    assert mean_ci95([1.0, 0.0, 1.0, 0.0])[1] == 0.0


def test_wilson_interval():
    # 107 of 128: p = 0.836, centre (p + z^2/2n) / (1 + z^2/n), half z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n)
    low, high = wilson_ci95(107, 128)
    assert (low, high) == (pytest.approx(0.7622, abs=1e-4), pytest.approx(0.8901, abs=1e-4))
    assert wilson_ci95(0, 10)[0] == 0.0 and 0.0 < wilson_ci95(0, 10)[1] < 0.35  # not empty at 0, unlike the normal one
    assert wilson_ci95(0, 0) == (0.0, 1.0)


def test_paired_difference_interval_and_mcnemar():
    # deltas [1, 0, 0, 0]: mean 0.25, sample variance 0.25, standard error sqrt(0.25 / 4) = 0.25
    r = paired_difference([0, 1, 1, 0], [1, 1, 1, 0])
    assert r["difference"] == 0.25 and r["difference_ci95"] == pytest.approx([0.25 - 1.96 * 0.25, 0.25 + 1.96 * 0.25])
    assert (r["only_base"], r["only_other"]) == (0, 1) and r["mcnemar_p"] == 1.0  # one discordant problem: 2 * 1/2
    # 9 problems only the new run solves, 1 only the base: p = 2 * (C(10,0) + C(10,1)) / 2^10
    base, other = [0] * 9 + [1] + [1] * 5 + [0] * 85, [1] * 9 + [0] + [1] * 5 + [0] * 85
    r = paired_difference(base, other)
    assert (r["only_base"], r["only_other"], r["problems"]) == (1, 9, 100)
    assert r["mcnemar_p"] == pytest.approx(2 * 11 / 1024) and r["difference"] == pytest.approx(0.08)
    assert r["difference_ci95"][0] > 0  # 8 points on 100 problems, all from the discordant ten
    same = paired_difference(base, base)
    assert same["difference"] == 0 and same["difference_ci95"] == [0, 0] and same["mcnemar_p"] == 1.0
    with pytest.raises(ValueError, match="same problems"):
        paired_difference([0, 1], [1])
