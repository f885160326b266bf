"""Benchmark metrics: unbiased pass@k, majority vote, confidence intervals."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n (c correct) is correct.

    The unbiased estimator of Chen et al. 2021 (arXiv 2107.03374, eq. 1):
        pass@k = 1 - C(n - c, k) / C(n, k)
    computed exactly with integers. Example: n=5, c=2, k=2 -> 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs 1 <= k <= n samples per problem, but n={n}")
    return float(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))


def majority_answer(answers: list[str | None], same: Callable[[str, str], bool]) -> str | None:
    """The answer given most often, counting answers that ``same`` finds equivalent as one.

    Ties go to the answer seen first; ``None`` (nothing extracted) never wins.
    """
    clusters: list[list[str]] = []
    for answer in answers:
        if answer is None:
            continue
        for cluster in clusters:
            if same(cluster[0], answer):
                cluster.append(answer)
                break
        else:
            clusters.append([answer])
    return max(clusters, key=len)[0] if clusters else None


def maj_at_k(answers: list[str | None], reference: str, k: int, same: Callable[[str, str], bool]) -> float:
    """1.0 when the majority answer of the first ``k`` samples is equivalent to ``reference``."""
    if not 1 <= k <= len(answers):
        raise ValueError(f"maj@{k} needs 1 <= k <= n samples per problem, but n={len(answers)}")
    winner = majority_answer(answers[:k], same)
    return 1.0 if winner is not None and same(winner, reference) else 0.0


def mean_ci95(values: list[float]) -> tuple[float, float, float]:
    """Mean and a normal-approximation 95 % confidence interval over problems."""
    n = len(values)
    if n == 0:
        return 0.0, 0.0, 0.0
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    half = 1.96 * math.sqrt(var / n)
    return mean, max(0.0, mean - half), min(1.0, mean + half)


def wilson_ci95(correct: int, n: int) -> tuple[float, float]:
    """Wilson's 95 % interval for a proportion ``correct / n`` (better than the normal one near 0 and 1)."""
    if n == 0:
        return 0.0, 1.0
    z, p = 1.96, correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_difference(base: list[float], other: list[float]) -> dict:
    """``other - base`` on the same problems (per-problem pass@1 in each run, in the same order).

    The mean difference gets a paired normal-approximation 95 % interval (the spread of the per-problem
    differences, tighter than two independent intervals when both runs solve the same easy problems), and
    McNemar's exact test counts the problems only one run solved (for 0/1 scores): under "no difference"
    each of the d discordant problems is equally likely to go either way, so the two-sided
    p = min(1, 2 * P[Binomial(d, 1/2) <= min(only_base, only_other)]).
    """
    if len(base) != len(other):
        raise ValueError(f"paired runs need the same problems, got {len(base)} and {len(other)}")
    n = len(base)
    deltas = [o - b for b, o in zip(base, other)]
    diff = sum(deltas) / n if n else 0.0
    half = 1.96 * math.sqrt(sum((x - diff) ** 2 for x in deltas) / (n - 1) / n) if n > 1 else 0.0
    only_base = sum(1 for b, o in zip(base, other) if b == 1 and o == 0)
    only_other = sum(1 for b, o in zip(base, other) if b == 0 and o == 1)
    d = only_base + only_other
    p = min(1.0, 2 * sum(math.comb(d, i) for i in range(min(only_base, only_other) + 1)) / 2**d) if d else 1.0
    return {"problems": n, "difference": diff, "difference_ci95": [diff - half, diff + half], "only_base": only_base,
            "only_other": only_other, "mcnemar_p": p}
