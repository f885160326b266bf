"""Why the project's verdict differs from raw math-verify's: the named rules of the differential harness.

Raw math-verify (``verify(parse("$ref$"), parse(completion))``, its default extraction) is the floor: wherever the
project's verdict differs from it, one of the rules below must say why, or the disagreement is a defect (listed as
``unexplained`` by ``scripts/report/verify_quality.py --differential``). Each rule is a predicate on the completion,
the reference and the two verdicts; the first that holds names the disagreement. Each has a test in
``tests/test_differential.py``.

Where math-verify accepts and the project rejects, the rule is a reason math-verify is wrong to accept:

- ``question_restated``: a number is asked for, and what math-verify took is an operation still to carry out
  (``4 + 13``, ``\\log_2 64``): very often the question's own expression restated, never finished;
- ``think_block``: what math-verify took stands only inside ``<think>...</think>`` (R1-style grading: the reasoning
  is not the answer);
- ``digit_in_word``: what math-verify took is a number that in the text is glued to letters (``x2y``, ``2nd``);
- ``later_final_answer``: the project's answer is a final statement (a heading, "the answer is", a box) that comes
  after what math-verify took;
- ``screened``: the project did not send the answer to sympy (too costly) or it timed out.

On either side:

- ``unmarked_text``: the completion marks no final answer (no box, heading, answer phrase, answer tag or ``####``):
  the project reads its last typeset expression (else the last standalone number of plain prose), math-verify
  another number of the text. Neither is an answer the completion states; both are guesses at unmarked text, and
  the project's is its documented one. Found only in noise (the untrained 135M model at temperature 1 on MATH-500);
  a real completion states its answer, and the marker rules above decide.

Where the project accepts and math-verify rejects, the rule is the project's own reading that math-verify lacks:

- ``heading``, ``answer_phrase``, ``boxed_list``, ``answer_tag``, ``hashes``: the final answer found by that marker
  (``rewards.extract``), where math-verify took another part of the text or nothing;
- ``number_after_expression``: "$3 + 9$ is 12": the number stated after an unevaluated expression;
- ``number_form``: a number written with a decimal comma, a glued unit, thousands grouped by spaces, a leading dot,
  a repeating decimal or in words ("twelve"), or a decimal for a value that does not end (``rounded``);
- ``interval_or_assignment``: an inequality chain for an interval, ``x \\in S`` for ``S``, ``x = v`` for ``v``;
- ``text_answer``: a word or choice letter compared as text ("Even", ``\\mathrm{E}``);
- ``last_number``: prose without mathematics, whose last standalone number is the answer.
"""

from __future__ import annotations

import re
from typing import Callable

from rewards import Verdict
from rewards.extract import after_thinking, repair_escapes
from rewards.verify import as_number, is_word, normalize, number_like, words_to_number

Rule = Callable[[str, str, Verdict, Verdict], bool]


def _position(text: str, answer: str | None) -> int:
    """Where ``answer`` last stands in ``text`` (-1 when it does not)."""
    return text.rfind(answer.strip()) if answer else -1


def question_restated(completion: str, reference: str, ours: Verdict, raw: Verdict) -> bool:
    return as_number(normalize(reference)) is not None and raw.answer is not None and not number_like(
        raw.answer.rsplit("=", 1)[-1] if "=" in raw.answer else raw.answer)


def think_block(completion: str, reference: str, ours: Verdict, raw: Verdict) -> bool:
    if "</think>" not in completion or raw.answer is None:
        return False
    return _position(after_thinking(repair_escapes(completion)), raw.answer) < 0


def digit_in_word(completion: str, reference: str, ours: Verdict, raw: Verdict) -> bool:
    if raw.answer is None or not re.fullmatch(r"-?\d+(?:\.\d+)?", raw.answer.strip()):
        return False
    number = re.escape(raw.answer.strip())
    standalone = re.search(rf"(?<![A-Za-z\d.]){number}(?![A-Za-z\d])", completion)
    return standalone is None and re.search(rf"[A-Za-z]{number}|{number}[A-Za-z]", completion) is not None


def later_final_answer(completion: str, reference: str, ours: Verdict, raw: Verdict) -> bool:
    if ours.source not in ("heading", "answer_is", "boxed", "answer_tag", "hashes") or ours.answer is None:
        return False
    text = after_thinking(repair_escapes(completion))
    return _position(text, ours.answer) > _position(text, raw.answer) or raw.answer is None


def screened(completion: str, reference: str, ours: Verdict, raw: Verdict) -> bool:
    return ours.method in ("screened", "timeout")


def _source(*sources: str) -> Rule:
    return lambda completion, reference, ours, raw: ours.source in sources


def boxed_list(completion: str, reference: str, ours: Verdict, raw: Verdict) -> bool:
    return ours.source == "boxed" and ours.answer is not None and completion.count("boxed") > 1


def number_after_expression(completion: str, reference: str, ours: Verdict, raw: Verdict) -> bool:
    return ours.source == "last_number" and raw.answer is not None and not number_like(raw.answer)


def number_form(completion: str, reference: str, ours: Verdict, raw: Verdict) -> bool:
    if ours.method == "rounded":
        return True
    answer = (ours.answer or "").strip()
    if words_to_number(answer) is not None:
        return True
    return bool(re.search(r"\d,\d(?!\d{2}(?:\D|$))|\d\s*[A-Za-z²³]+\.?$|(?<!\d)\.\d|\\overline|\d(?:\s|\\[ ,;])\d{3}",
                          answer))


def interval_or_assignment(completion: str, reference: str, ours: Verdict, raw: Verdict) -> bool:
    return bool(re.search(r"\\le|\\ge|<|>|\\in|=", ours.answer or ""))


def text_answer(completion: str, reference: str, ours: Verdict, raw: Verdict) -> bool:
    gold = normalize(reference)
    return ours.method == "exact" and (is_word(gold) or len(gold) == 1 and gold.isalpha())


# (name, side, predicate): side "raw" for math-verify accepts / project rejects, "project" for the converse
RULES: list[tuple[str, str, Rule]] = [
    ("screened", "raw", screened),
    ("think_block", "raw", think_block),
    ("question_restated", "raw", question_restated),
    ("digit_in_word", "raw", digit_in_word),
    ("later_final_answer", "raw", later_final_answer),
    ("number_form", "project", number_form),
    ("text_answer", "project", text_answer),
    ("boxed_list", "project", boxed_list),
    ("heading", "project", _source("heading")),
    ("interval_or_assignment", "project", interval_or_assignment),
    ("answer_phrase", "project", _source("answer_is")),
    ("answer_tag", "project", _source("answer_tag")),
    ("hashes", "project", _source("hashes")),
    ("number_after_expression", "project", number_after_expression),
    ("last_number", "project", _source("last_number")),
    ("unmarked_text", "raw", _source("latex", "last_number")),
    ("unmarked_text", "project", _source("latex")),  # (last_number on this side: the rule above)
]


def explain(completion: str, reference: str, ours: Verdict, raw: Verdict) -> str | None:
    """The rule that explains why ``ours`` and ``raw`` differ, or None (unexplained); None too when they agree."""
    if ours.correct == raw.correct:
        return None
    side = "project" if ours.correct else "raw"
    for name, rule_side, rule in RULES:
        if rule_side == side and rule(completion, reference, ours, raw):
            return name
    return None
