"""Seeded synthetic arithmetic with exact answers and difficulty levels.

The levels run from single-digit additions (the embedded 135M model gets about half right
greedily) to two-step word problems. Train and test problems never overlap: a problem's
split is fixed by a hash of its text, so any seed gives disjoint sets.
"""

from __future__ import annotations

import hashlib
import random

from data_prep.problems import Problem


def _add(lo1, hi1, lo2, hi2):
    def make(rng: random.Random):
        a, b = rng.randint(lo1, hi1), rng.randint(lo2, hi2)
        return f"What is {a} + {b}?", a + b
    return make


def _sub(lo, hi):
    def make(rng: random.Random):
        a, b = sorted((rng.randint(lo, hi), rng.randint(lo, hi)), reverse=True)
        return f"What is {a} - {b}?", a - b
    return make


def _mul(lo1, hi1, lo2, hi2):
    def make(rng: random.Random):
        a, b = rng.randint(lo1, hi1), rng.randint(lo2, hi2)
        return f"What is {a} * {b}?", a * b
    return make


def _word(rng: random.Random):
    name = rng.choice(["Tom", "Mia", "Sam", "Ana", "Leo", "Ivy"])
    thing = rng.choice(["apples", "marbles", "stickers", "books", "coins"])
    a, b = rng.randint(5, 30), rng.randint(2, 20)
    c = rng.randint(1, a + b - 1)
    return f"{name} has {a} {thing}. {name} gets {b} more and then gives away {c}. How many {thing} does {name} have now?", a + b - c


# Ordered from easiest to hardest; a curriculum walks this list.
LEVELS = {
    "add_1d": _add(1, 9, 1, 9),
    "add_20": _add(1, 20, 1, 20),
    "add_2d1d": _add(10, 99, 1, 9),
    "add_2d": _add(10, 99, 10, 99),
    "sub_2d": _sub(10, 99),
    "mul_1d": _mul(2, 9, 2, 9),
    "word_2step": _word,
    "mul_2d1d": _mul(10, 99, 2, 9),
    "add_3d": _add(100, 999, 100, 999),
}


def in_test_split(text: str, test_fraction: float = 0.2) -> bool:
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:4], "big") < test_fraction * 2**32


def make_arithmetic(level: str, n: int, seed: int = 0, split: str = "train") -> list[Problem]:
    """``n`` problems of ``level`` from ``split`` ("train" or "test"), reproducible from ``seed``.

    Problems may repeat within a split when the level has few distinct problems (``add_1d`` has 81).
    """
    if level not in LEVELS:
        raise ValueError(f"unknown arithmetic level {level!r}; choose from {', '.join(LEVELS)}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    rng, make, problems = random.Random(f"{level}/{seed}/{split}"), LEVELS[level], []
    for _ in range(1000 * n):
        if len(problems) == n:
            break
        text, answer = make(rng)
        if in_test_split(text) == (split == "test"):
            problems.append(Problem(f"arith/{level}/{split}/{seed}/{len(problems)}", text, str(answer), f"arith/{level}"))
    return problems


def make_mixture(levels: list[str], n: int, seed: int = 0, split: str = "train") -> list[Problem]:
    """``n`` problems drawn evenly from several levels, shuffled."""
    per_level = -(-n // len(levels))
    problems = [p for level in levels for p in make_arithmetic(level, per_level, seed, split)]
    random.Random(seed).shuffle(problems)
    return problems[:n]
