"""The verifier robustness suite: each reference answer written the ways a model writes it.

Built from the reference answers of MATH-500 and OlympiadBench (read from the data folder,
never copied into the repository). For each reference ``r``:

- equivalent forms (at least 6), which the verifier must accept: ``\\boxed{r}``, ``$r$`` at the
  end of a sentence, ``\\(r\\)``, ``\\[r\\]``, ``$r$`` inside a sentence, an ``<answer>`` tag,
  and where they apply ``x = r`` (``x \\in r`` for an interval), the ``\\dfrac`` and ``\\frac13``
  spellings, and the exact decimal of a fraction;
- wrong forms (at least 3), which it must reject: a changed number (last and first),
  swapped interval ends, a flipped inequality, a missing list element, another word or choice
  letter, and where fewer than 3 of these apply ``r + 1``, ``r - 1``, ``2r`` or an extra element.

``python scripts/report/verify_quality.py --suite`` runs it; ``tests/test_verifier_suite.py`` asserts
the acceptance rates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from data_prep import load_problems
from rewards.verify import as_number, normalize


@dataclass(frozen=True)
class Case:
    completion: str
    reference: str
    equivalent: bool  # should the verifier accept it?
    form: str  # how the answer was written
    source: str  # problem id


def _top_level_split(answer: str) -> list[str]:
    """Split on commas that are not inside braces or brackets."""
    parts, depth, current = [], 0, ""
    for char in answer:
        depth += char in "{([" and 1 or 0
        depth -= char in "})]" and 1 or 0
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [p.strip() for p in parts + [current]]


_RELATION_RE = re.compile(r"\\le(?:q|qslant)?(?![a-z])|\\ge(?:q|qslant)?(?![a-z])|<|>|\\neq|=|\\in(?![a-z])")
_NUM_RE = re.compile(r"(?<![\d.])\d+(?:\.\d+)?(?![\d.])")


def _bare(r: str) -> str:
    """Without ``\\left`` / ``\\right`` around the outer brackets."""
    return re.sub(r"\\right\s*(?=[\])]$)", "", r.strip().removeprefix("\\left").strip())


def is_interval(r: str) -> bool:
    """``[a, b)``, ``(-\\infty, 3]``...: two ends, at least one closed or infinite ((1, 2) could be a pair)."""
    s = _bare(r)
    if not (s[:1] in "[(" and s[-1:] in "])" and len(_top_level_split(s[1:-1])) == 2):
        return False
    return s[0] == "[" or s[-1] == "]" or "\\infty" in s


def equivalent_forms(r: str) -> dict[str, str]:
    forms = {
        "boxed": f"So the final answer is $\\boxed{{{r}}}$.",
        "dollar_end": f"Putting everything together, we get ${r}$.",
        "paren": f"Therefore \\({r}\\).",
        "display": f"Hence\n\\[{r}\\]",
        "in_sentence": f"We conclude that ${r}$ is what we were looking for.",
        "answer_tag": f"<think>Work it out step by step.</think> <answer>${r}$</answer>",
    }
    single = len(_top_level_split(r)) == 1
    if is_interval(r):
        forms["assign"] = f"This gives $x \\in {r}$."
    elif single and not _RELATION_RE.search(r) and not re.search(r"\\text|\\mathrm", r):
        forms["assign"] = f"Solving, $x = {r}$."
    if "\\frac" in r:
        forms["dfrac"] = f"The value is $\\boxed{{{r.replace(chr(92) + 'frac', chr(92) + 'dfrac')}}}$."
        short = re.sub(r"\\frac\{(\d)\}\{(\d)\}", r"\\frac\1\2", r)
        if short != r:
            forms["frac_short"] = f"The value is ${short}$."
    value = as_number(normalize(r))
    if value is not None and value.denominator != 1 and _terminates(value):
        forms["decimal"] = f"Numerically, the answer is ${_decimal(value)}$."
    return forms


def _terminates(value: Fraction) -> bool:
    d = value.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def _decimal(value: Fraction) -> str:
    digits = 0
    while (value * 10**digits).denominator != 1:
        digits += 1
    return f"{float(value):.{digits}f}"


def _bump(r: str, match: re.Match) -> str:
    """An integer plus one; a decimal with its last digit changed (0.45 -> 0.46)."""
    number = match.group()
    changed = str(int(number) + 1) if "." not in number else number[:-1] + str((int(number[-1]) + 1) % 10)
    return r[: match.start()] + changed + r[match.end():]


def wrong_forms(r: str) -> dict[str, str]:
    """Answers that differ from ``r``; at least 3 for any reference."""
    out = {}
    stripped = r.strip()
    if is_interval(r):  # flip each finite end between open and closed
        s = _bare(r)
        low, high = _top_level_split(s[1:-1])
        left = s[0] if "infty" in low else {"[": "(", "(": "["}[s[0]]
        right = s[-1] if "infty" in high else {"]": ")", ")": "]"}[s[-1]]
        out["swapped_ends"] = f"{left}{low}, {high}{right}"
    flipped = {"<": ">", ">": "<", "\\le": "\\ge", "\\ge": "\\le", "\\leq": "\\geq", "\\geq": "\\leq"}
    relations = re.findall(r"\\leq|\\geq|\\le(?![a-z])|\\ge(?![a-z])|<|>", r)
    if relations:
        out["flipped_inequality"] = re.sub(r"\\leq|\\geq|\\le(?![a-z])|\\ge(?![a-z])|<|>", lambda m: flipped[m.group()], r)
    parts = _top_level_split(r)
    if len(parts) > 1:
        out["missing_element"] = ", ".join(parts[:-1])
    inner = re.match(r"^(\\left)?\s*([\[({]|\\\{)(.*)(\\right)?\s*([\])}]|\\\})$", stripped)
    if inner and len(_top_level_split(inner.group(3))) > 1 and "missing_element" not in out:
        elems = _top_level_split(inner.group(3))
        out["missing_element"] = stripped.replace(inner.group(3), ", ".join(elems[:-1]))
    unit = re.search(r"\\(?:text|mbox|mathrm)\s*\{\s*~?\s*[A-Za-z]", r)  # numbers in "inches}^2" are the unit's
    ints = [m for m in _NUM_RE.finditer(r) if unit is None or m.start() < unit.start()]
    if ints:
        out["changed_last_number"] = _bump(r, ints[-1])
        if len(ints) > 1:
            out["changed_first_number"] = _bump(r, ints[0])
    words = re.fullmatch(r"\\(?:text|mathrm)\{\s*\(?([A-Za-z]+)\)?\s*\}|\(?([A-Za-z]{2,})\)?", stripped)
    if words:
        word = words.group(1) or words.group(2)
        other = chr(ord("A") + (ord(word.upper()[0]) - ord("A") + 1) % 26) if len(word) == 1 else "not " + word
        out["other_word"] = f"\\text{{{other}}}"
    if len(out) < 3 and len(parts) == 1 and "\\infty" not in r:  # "x = 5 + 1", "\\pi - 1": shifted values
        out["plus_one"] = f"{r} + 1"
        out["minus_one"] = f"{r} - 1"
        if not relations and "=" not in r and as_number(normalize(r)) != 0:  # 2 * 0 is 0
            out["doubled"] = f"2\\left({r}\\right)"
    if len(out) < 3 and r.count("=") == 1 and len(parts) == 1:  # f(n) = n -> f(n) = 2(n)
        lhs, rhs = r.split("=")
        out["doubled_rhs"] = f"{lhs}=2\\left({rhs}\\right)" if as_number(normalize(rhs)) != 0 else f"{lhs}=1"
    if len(out) < 3 and len(parts) > 1:
        out["extra_element"] = f"{r}, 1000003"
        out["last_element_plus_one"] = ", ".join(parts[:-1] + [f"{parts[-1]} + 1"])
    return out


_WRONG_TEMPLATES = [
    "So the final answer is $\\boxed{{{}}}$.",
    "Putting everything together, we get ${}$.",
    "We conclude that ${}$ is what we were looking for.",
]


def references(data_path=None) -> list[tuple[str, str]]:
    """(problem id, reference answer) of MATH-500 and OlympiadBench."""
    refs = []
    for benchmark in ("math500", "olympiadbench"):
        refs += [(p.id, p.answer) for p in load_problems(benchmark, "test", data_path)]
    return refs


def build_suite(data_path=None) -> list[Case]:
    cases = []
    for k, (source, r) in enumerate(references(data_path)):
        for form, text in equivalent_forms(r).items():
            cases.append(Case(text, r, True, form, source))
        for j, (form, wrong) in enumerate(wrong_forms(r).items()):
            if normalize(wrong) != normalize(r):
                cases.append(Case(_WRONG_TEMPLATES[(k + j) % 3].format(wrong), r, False, form, source))
    return cases
