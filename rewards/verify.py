"""Decide whether a completion's final answer equals a reference answer.

``grade(completion, reference, timeout)`` is the whole verdict, in this order:

1. extract the final answer (``rewards.extract``); none found -> ``no_answer``;
2. cheap exact checks: the normalized strings are equal (``exact``), both are plain numbers or
   simple fractions and equal as exact fractions (``numeric``), or both are words ("Even", a
   choice letter) and equal ignoring case (``exact``);
3. when the reference is a number, an answer that is not written as one (``\\log_2 64``,
   ``2^6``: an operation still to carry out, often the question restated) -> ``unevaluated``;
   a cheap screen for answers that would make sympy work for minutes (power towers,
   factorials of huge numbers, deeply nested fractions, answers over ``MAX_ANSWER_CHARS``)
   -> scored 0 as ``screened``;
4. math-verify's parser and ``verify`` (sympy under the hood) -> ``symbolic``.

``grade`` runs math-verify in the calling process and relies on its signal-based timeouts, so
it must run in a main thread: the trainer and the harness call it through the worker pool in
``rewards.pool``, which adds a hard timeout from outside (a killed worker scores ``timeout``).
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import asdict, dataclass
from fractions import Fraction

from rewards.extract import extract_final, repair_escapes

EVAL_TIMEOUT = float(os.environ.get("REASONING_RL_VERIFY_TIMEOUT", "5"))  # benchmarks: be patient
TRAIN_TIMEOUT = 1.0  # training: a policy must not stall a step by writing expensive answers
MAX_ANSWER_CHARS = 1000  # longer "answers" are garbage, not math; never sent to sympy
MAX_NESTING = 40  # brace depth beyond which an answer is screened (2,000 nested \frac would hang sympy)
MAX_DIGITS = 10_000  # numbers longer than this (a power tower's value) are screened


@dataclass
class Verdict:
    correct: bool
    method: str  # exact | numeric | rounded | symbolic | unevaluated | no_answer | screened | timeout | error
    answer: str | None = None  # the extracted final answer
    source: str | None = None  # where it was found: heading | boxed | answer_tag | hashes | answer_is | latex | last_number
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# --- normalization and the cheap checks ----------------------------------------------------

_STRIP = [r"\left", r"\right", r"\!", r"\,", r"\;", r"\:", r"\displaystyle", "$", "^\\circ", "^{\\circ}", "\\%", "%"]
_TEXT_RE = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_COMMA_NUMBER_RE = re.compile(r"^-?(?:[1-9]\d{0,2}|0(?=\.))(,\d{3})+(\.\d+)?$")  # 7,425,000 (not 0,111: a decimal comma)
_SPACED_THOUSANDS_RE = re.compile(r"(?<![\d.])(\d{1,3})((?:(?:\s|\\[ ,;]|~|\{,\}|,\\!)\d{3})+)(?![\d])")
_REPEATING_RE = re.compile(r"^(-?)(\d*)\.(\d*)\\overline\{?(\d+)\}?$")
_FRAC_RE = re.compile(r"^(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}$|^(-?)\\frac(\d)(\d)$")
_CHOICE_RE = re.compile(r"^\(?([A-Za-z])\)$|^\(([A-Za-z])\)?$")
_BASE_RE = re.compile(r"^[0-9A-Fa-f]+_\{?\d+\}?$")
_WORD_RE = re.compile(r"^[A-Za-z][A-Za-z' -]*[A-Za-z]$")


def exact_part(answer: str) -> str:
    """``\\frac{\\sqrt3}{3} \\approx 0.577`` -> ``\\frac{\\sqrt3}{3}``: the exact value is the answer; but
    ``x \\approx 11`` -> ``11``: before the sign stands only the variable, after it the value."""
    parts = re.split(r"\\approx|≈", answer)
    if len(parts) > 1 and re.fullmatch(r"\s*(?:[A-Za-z](?:_\{?\w+\}?)?)?\s*", parts[0]):
        return parts[-1]
    return parts[0]


def join_thousands(s: str) -> str:
    """``1 000`` / ``1\\,000`` / ``1{,}000`` / ``5,\\!525`` -> ``1000`` (groups of exactly three digits only)."""
    return _SPACED_THOUSANDS_RE.sub(lambda m: m.group(1) + re.sub(r"\D", "", m.group(2)), s)


def normalize(answer: str) -> str:
    """A canonical string form: no spaces, dollars, \\left/\\right, \\text{} wrappers, degrees or approximations."""
    s = exact_part(repair_escapes(answer).strip().rstrip("."))
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\cfrac", "\\frac")
    s = join_thousands(_TEXT_RE.sub(r"\1", s))
    for token in _STRIP:
        s = s.replace(token, "")
    s = "".join(s.split())
    if _COMMA_NUMBER_RE.match(s):
        s = s.replace(",", "")
    if choice := _CHOICE_RE.match(s):  # "(C)" -> "C"
        s = choice.group(1) or choice.group(2)
    return s


def as_number(s: str) -> Fraction | None:
    """A normalized string that is a plain integer, decimal or simple fraction, as an exact Fraction."""
    try:
        if re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)", s):
            return Fraction(s)
        if re.fullmatch(r"-?\d+/-?\d+", s):
            return Fraction(s)
        if m := _REPEATING_RE.match(s):  # 0.1\overline{6} = 1/6 (math-verify reads it as 0.1)
            sign, whole, fixed, repeat = m.groups()
            value = int(whole or 0) + (Fraction(int(fixed or 0)) + Fraction(int(repeat), 10 ** len(repeat) - 1)) / 10 ** len(fixed)
            return -value if sign else value
        if m := _FRAC_RE.match(s):
            sign, num, den = (m.group(1), m.group(2), m.group(3)) if m.group(2) else (m.group(4), m.group(5), m.group(6))
            value = Fraction(int(num), int(den))
            return -value if sign else value
    except (ValueError, ZeroDivisionError):
        return None
    return None


_COMMAND_WORD_RE = re.compile(r"^(?:sqrt|frac|pi|infty|sin|cos|tan|log|ln|exp)$")


def is_word(s: str) -> bool:
    """A text answer ("Even", "Monday", "no solution"), which sympy would read as a product of symbols; not two
    letters ("xy" is a product) nor a function's name."""
    return bool(_WORD_RE.match(s)) and (len(s) > 2 or " " in s) and not _COMMAND_WORD_RE.match(s)


def cheap_compare(pred: str, gold: str) -> tuple[bool, str] | None:
    """(equal, method) when string and number checks decide; None when sympy is needed."""
    p, g = normalize(pred), normalize(gold)
    if not p or not g:
        return False, "exact"
    if p == g:
        return True, "exact"
    p_num, g_num = as_number(p), as_number(g)
    if p_num is not None and g_num is not None:
        return p_num == g_num, "numeric"  # exact: 11111111101 is not 11111111100
    if _BASE_RE.match(p) and _BASE_RE.match(g):  # numbers in base n (52_8): sympy would drop the base
        return p.replace("{", "").replace("}", "") == g.replace("{", "").replace("}", ""), "exact"
    if len(g) == 1 and g.isalpha() and (len(p) == 1 or is_word(p)):  # a choice letter: E is not e (Euler's number)
        return p == g, "exact"
    if is_word(g):  # a text answer must match as text ("Even", "even")
        return p.replace(" ", "").lower() == g.replace(" ", "").lower(), "exact"
    return None


# --- answers that would make sympy work for minutes ----------------------------------------

_TOWER_RE = re.compile(r"\d+(?:\s*\^\s*\{?\s*\(?\s*\d+)+")
_FACTORIAL_RE = re.compile(r"(\d+)\s*!|([)}])\s*!")


def _tower_digits(numbers: list[int]) -> float:
    """Decimal digits of ``a ^ (b ^ (c ^ ...))``, stopping early once it is astronomically large."""
    exponent = float(numbers[-1])
    for base in reversed(numbers[1:-1]):
        if base > 1 and exponent * math.log10(base) > 15:
            return math.inf
        exponent = float(base) ** exponent
    return exponent * math.log10(numbers[0]) if numbers[0] > 1 else 0.0


def too_costly(answer: str) -> bool:
    """True for answers that no math problem has and that would stall sympy (screened, scored 0)."""
    if len(answer) > MAX_ANSWER_CHARS:
        return True
    depth = deepest = 0
    for char in answer:
        depth += (char == "{") - (char == "}")
        deepest = max(deepest, depth)
    if deepest > MAX_NESTING:
        return True
    for tower in _TOWER_RE.finditer(answer):
        if _tower_digits([int(n) for n in re.findall(r"\d+", tower.group())]) > MAX_DIGITS:
            return True
    for fact in _FACTORIAL_RE.finditer(answer):
        if fact.group(1) is not None and int(fact.group(1)) > 10_000:
            return True
        if fact.group(2) is not None:  # (expression)!: only when the expression is a power or huge
            opening = "(" if fact.group(2) == ")" else "{"
            inner = answer[answer.rfind(opening, 0, fact.start(2)) + 1 : fact.start(2)]
            if "^" in inner or "!" in inner or any(len(n) > 4 for n in re.findall(r"\d+", inner)):
                return True
    return False


# --- math-verify ---------------------------------------------------------------------------

def parse_boxed(latex: str, timeout: float) -> list:
    """math-verify's parse of ``latex`` as the content of a ``\\boxed{}`` (sympy objects, then the string)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    return parse(f"\\boxed{{{latex}}}", extraction_config=config, parsing_timeout=max(1, math.ceil(timeout)))


def symbolic_equal(pred: str, gold: str, timeout: float) -> bool:
    """math-verify: parse both as the content of ``\\boxed{}`` and ``verify`` them (signal timeouts)."""
    from math_verify import verify

    gold_parsed, pred_parsed = parse_boxed(gold, timeout), parse_boxed(pred, timeout)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=max(1, math.ceil(timeout))))


def _for_sympy(answer: str) -> str:
    """What math-verify reads: no approximation after the exact value, thousands joined (``5,\\!525``)."""
    return join_thousands(exact_part(answer).strip())


def reference_readable(reference: str, timeout: float = EVAL_TIMEOUT) -> bool:
    """Can the verifier read this reference answer: a number, a word, or something math-verify parses?"""
    normal = normalize(reference)
    if as_number(normal) is not None or is_word(normal) or _BASE_RE.match(normal):
        return True
    return any(not isinstance(p, str) for p in parse_boxed(_for_sympy(reference), timeout))


_ASSIGNMENT_RE = re.compile(r"^\s*([A-Za-z](?:_\{?\w+\}?)?)\s*=(?!=)\s*(.+)$", re.DOTALL)


def drop_assignment(pred: str, gold: str) -> str:
    """``x = p - q`` -> ``p - q`` when the reference is an expression that does not mention ``x``."""
    match = _ASSIGNMENT_RE.match(pred)
    if match is None or "=" in gold or re.search(rf"(?<![A-Za-z\\]){re.escape(match.group(1))}(?![A-Za-z])", gold):
        return pred
    return match.group(2)


_UNIT_RE = re.compile(r"\\(?:text|textbf|mbox|mathrm|operatorname)\s*\{[^{}]*\}(?:\^\{?\d\}?)?")
_MIXED_RE = re.compile(r"^-?\d+\\frac\{\d+\}\{\d+\}$|^-?\d+\\frac\d\d$")
_SCIENTIFIC_RE = re.compile(r"^-?\d+(?:\.\d+)?(?:\\times|\\cdot|\*|x)10\^\{?-?\d+\}?$")


def number_like(answer: str) -> bool:
    """Is ``answer`` written as a number (with units, a currency sign, a mixed number or a power of ten)?

    ``\\log_2 64``, ``2^6``, ``3 + 3`` and ``\\frac{21}{2^2 \\cdot 5^7}`` are not: they are still
    operations to carry out, often the question's own expression restated.
    """
    s = _UNIT_RE.sub("", answer).replace("\\$", "")
    s = re.sub(r"(?<=\d)\s*[A-Za-z][A-Za-z .]*$", "", normalize(s))  # "6cm", "18dollars"
    if s.startswith("(") and s.endswith(")"):
        s = s[1:-1]
    return as_number(s) is not None or bool(_MIXED_RE.match(s) or _SCIENTIFIC_RE.match(s))


# --- how numbers are written ------------------------------------------------------------------
#
# A comma between digits, with no space after it, groups thousands when the first group has one to three digits
# (not a leading 0) and every later group exactly three (7,425,000; 1,000.99). Otherwise, against a reference that
# is one number, it is a decimal comma (1,22 = 1.22; 0,111; 1000,99). "1, 22" (a space after the comma) is a list.
_DECIMAL_COMMA_RE = re.compile(r"^(-?\d+),(\d+)$")
# A unit glued to a number ("1,000.99m²", "12cm", "5kg."): the number is the answer when the reference is one.
_GLUED_UNIT_RE = re.compile(r"^(-?[\d.,]*\d)\s*(?:[A-Za-z]{1,6}[²³]?|[²³])\.?$")


_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_WORD_VALUES = {**{w: i for i, w in enumerate(_ONES)}, **{w: 20 + 10 * i for i, w in enumerate(_TENS)}}


def words_to_number(text: str) -> int | None:
    """``twelve`` -> 12, ``twenty-one`` -> 21, ``three hundred and five`` -> 305 (up to the millions); else None."""
    words = [w for w in re.split(r"[\s-]+", text.strip().lower().rstrip(".")) if w and w != "and"]
    if not words:
        return None
    total = current = 0
    for word in words:
        if word in _WORD_VALUES:
            current += _WORD_VALUES[word]
        elif word == "hundred" and current:
            current *= 100
        elif word in ("thousand", "million") and current:
            total += current * (1000 if word == "thousand" else 1_000_000)
            current = 0
        else:
            return None
    return total + current


def as_written_number(pred: str) -> str:
    """``pred`` as a plain number where it is one written with a glued unit or a decimal comma (see above), or in
    words ("twelve")."""
    if (spelled := words_to_number(pred)) is not None:
        return str(spelled)
    s = pred.strip().strip("$").strip()
    if unit := _GLUED_UNIT_RE.match(s):
        s = unit.group(1)
    if (comma := _DECIMAL_COMMA_RE.match(s)) and not _COMMA_NUMBER_RE.match(s):
        s = f"{comma.group(1)}.{comma.group(2)}"
    return s if s != pred.strip().strip("$").strip() else pred


# --- a decimal for an exact value ---------------------------------------------------------------
#
# A decimal stands for an exact value whose expansion does not end within the digits written (1/12, 1/3, sqrt 17)
# when it is that value rounded or cut off at its last digit, with at least two significant digits: 0.0833 and 0.33
# for 1/12 and 1/3, 4.123105625617661 for sqrt 17; not 0.34 for 1/3 (wrong in the digits written), not 0.3 (one
# digit), and never 12.8 for 12.75 (a value that ends must be written in full).
_DECIMAL_RE = re.compile(r"^-?\d*\.(\d+)$")


def _decimal_digits(s: str) -> int | None:
    """Digits after the point of a plain decimal with at least two significant digits, else None."""
    m = _DECIMAL_RE.match(s)
    return len(m.group(1)) if m and len(s.lstrip("-0.").replace(".", "")) >= 2 else None


def rounded_equal(pred: str, gold: str, timeout: float) -> bool:
    """Is one side a decimal that rounds or cuts off the other's exact value at its last digit (see above)?"""
    p, g = normalize(pred), normalize(gold)
    for decimal, exact in ((p, g), (g, p)):
        digits = _decimal_digits(decimal)
        if digits is None or _decimal_digits(exact) is not None and as_number(exact) is not None:
            continue  # not a decimal, or both decimals: a value that ends is compared exactly
        value = as_number(exact)
        if value is None:
            value = _real_value(exact, timeout)
        if value is None or (value * 10**digits).denominator == 1:
            continue  # not a real number, or it ends within the digits written: exact comparison only
        scaled, written = value * 10**digits, Fraction(decimal) * 10**digits
        if written in (Fraction(math.floor(scaled + Fraction(1, 2))), Fraction(math.trunc(scaled))):
            return True
    return False


def _real_value(latex: str, timeout: float) -> Fraction | None:
    """The exact side as a Fraction precise to 40 digits (sympy, through math-verify's parse), or None."""
    if too_costly(latex):
        return None
    parsed = [p for p in parse_boxed(_for_sympy(latex), timeout) if not isinstance(p, str)]
    try:
        value = parsed[0].evalf(45) if parsed and parsed[0].is_number and parsed[0].is_real else None
        return Fraction(str(value)) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None


# --- sets written as inequalities ---------------------------------------------------------------

_BOUND = r"(\\le(?:q)?|\\lt|<|≤|\\ge(?:q)?|\\gt|>|≥)"
_CHAIN_RE = re.compile(rf"^(.+?)\s*{_BOUND}\s*([A-Za-z])\s*{_BOUND}\s*(.+)$")
_MEMBER_RE = re.compile(r"^\s*[A-Za-z]\s*\\in\s*(.+)$")


def as_interval(answer: str) -> str:
    """``-2 \\le x \\le 7`` -> ``[-2, 7]``, ``x \\in (0, 1]`` -> ``(0, 1]``; anything else unchanged."""
    if member := _MEMBER_RE.match(answer):
        return member.group(1).strip()
    chain = _CHAIN_RE.match(answer.strip())
    if not chain:
        return answer
    low, op1, _, op2, high = chain.groups()
    if not all(o.lstrip("\\").startswith(("le", "lt")) or o in "<≤" for o in (op1, op2)):
        return answer  # a descending chain (7 \ge x \ge -2) or a mixed one: left as written
    opening = "[" if ("le" in op1 or op1 == "≤") else "("
    closing = "]" if ("le" in op2 or op2 == "≤") else ")"
    return f"{opening}{low.strip()}, {high.strip()}{closing}"


def compare(pred: str, gold: str, timeout: float = EVAL_TIMEOUT) -> tuple[bool, str]:
    """(equal, method) for two answer strings; method is exact, numeric, rounded, unevaluated, screened or
    symbolic."""
    pred, gold = as_interval(drop_assignment(pred, gold)), as_interval(gold)
    gold_number = as_number(normalize(gold)) is not None
    if gold_number:
        pred = as_written_number(pred)
    decided = cheap_compare(pred, gold)
    if decided is not None:
        if not decided[0] and decided[1] == "numeric" and rounded_equal(pred, gold, timeout):
            return True, "rounded"
        return decided
    if gold_number:  # a number is asked for
        if "=" in pred and "," not in pred:  # "f^{-1}(f^{-1}(6)) = 1": the last side is the value claimed
            pred = pred.rsplit("=", 1)[1].strip()
        if not number_like(pred):
            if rounded_equal(pred, gold, timeout):  # "\\sqrt{17}" for 4.123105625617661
                return True, "rounded"
            return False, "unevaluated"
    if too_costly(pred):
        return False, "screened"
    return symbolic_equal(_for_sympy(pred), _for_sympy(gold), timeout), "symbolic"


def grade(completion: str, reference: str, timeout: float = EVAL_TIMEOUT) -> Verdict:
    """The verdict on one completion (see the module docstring). Never raises."""
    start = time.perf_counter()
    try:
        found = extract_final(completion)
        if found is None:
            verdict = Verdict(False, "no_answer")
        else:
            correct, method = compare(found.answer, reference, timeout)
            answer, source = found.answer, found.source
            if method == "unevaluated" and found.later_number is not None:  # "$3 + 9$ is 12": the number stated
                answer, source = found.later_number, "last_number"
                correct, method = compare(answer, reference, timeout)
            verdict = Verdict(correct, method, answer, source)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # a verifier must never crash a run (math-verify's timeout is a BaseException)
        verdict = Verdict(False, "timeout" if type(error).__name__ == "TimeoutException" else "error")
    verdict.seconds = time.perf_counter() - start
    return verdict


def audit_metrics(verdicts: list[Verdict]) -> dict[str, float]:
    """The verifier audit of a batch: fractions of verdicts per outcome and the mean time per verdict."""
    if not verdicts:
        return {}
    n = len(verdicts)
    return {
        "verifier/no_answer": sum(v.method == "no_answer" for v in verdicts) / n,
        "verifier/symbolic": sum(v.method == "symbolic" for v in verdicts) / n,
        "verifier/timeout": sum(v.method == "timeout" for v in verdicts) / n,
        "verifier/screened": sum(v.method == "screened" for v in verdicts) / n,
        "verifier/unevaluated": sum(v.method == "unevaluated" for v in verdicts) / n,
        "verifier/fallback_last_number": sum(v.source == "last_number" for v in verdicts) / n,
        "verifier/seconds_mean": sum(v.seconds for v in verdicts) / n,
    }
