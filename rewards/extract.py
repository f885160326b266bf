"""Find the final answer in a completion, the way models actually write it.

``extract_final(text)`` returns an ``Extracted(answer, source)`` or None. The order (the first
that matches wins):

1. Only the text after the last ``</think>`` counts (R1-style grading): an answer inside the
   reasoning is not the final answer.
2. ``heading``: under a heading line ("# Answer", "**Final Answer**", "Final answer:" alone on its
   line), the answer found in the text after it (by the rules below), not in the reasoning above.
3. An explicit final-answer marker:
   - ``boxed``: the last ``\\boxed{...}`` (or ``\\fbox``); boxed answers joined only by commas,
     "and", "or", LaTeX spacing or part labels (``\\boxed{2} \\quad \\text{and} \\quad \\boxed{-3}``;
     "(a) ... and for part (b) it is") form one answer list, as in math-verify;
   - ``answer_tag``: the last ``<answer>...</answer>`` block;
   - ``hashes``: GSM8K's ``#### n``;
   - ``answer_is``: the last "the answer is X", "final answer: X", "Answer: X", "the final answer of X"; X is a formula kept
     whole ("The answer is: (-1,6)."), the number stated after an expression ("Final Answer: The
     largest $n$ is 34."), or the last number of prose.
4. ``latex``: the last mathematical expression: ``$...$``, ``$$...$$``, ``\\(...\\)``,
   ``\\[...\\]``, or bare LaTeX such as ``\\frac13`` or ``\\sqrt3`` in the prose.
5. ``last_number``: only for prose without any mathematics, the last number that stands on
   its own (a digit inside a word such as ``x2y`` is not a number).

The string returned is handed to math-verify's parser (``rewards.verify``), never cut down
further by a regex: ``$\\frac{1}{3}$`` stays ``\\frac{1}{3}``, not ``3``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Extracted:
    answer: str  # the final answer as written (LaTeX or text)
    source: str  # heading | boxed | answer_tag | hashes | answer_is | latex | last_number
    later_number: str | None = None  # latex only: a number stated in the prose after the expression ("$3 + 9$ is 12")


# LaTeX written inside a non-raw Python or JSON string loses its backslash to an escape:
# "\frac" becomes form feed + "rac", "\boxed" backspace + "oxed", "\times" tab + "imes".
_MANGLED = {"\x08": "\\b", "\x0c": "\\f", "\x07": "\\a", "\x0b": "\\v"}
# Tab and carriage return are only repaired before the LaTeX commands they commonly eat.
_MANGLED_TAB = re.compile(r"\t(?=ext|imes|heta|frac|an|au|ilde|riangle|o\b)")
_MANGLED_CR = re.compile(r"\r(?=ight|ho|angle|m\b|mathrm)")


def repair_escapes(text: str) -> str:
    """Put back the backslashes that string escapes turned into control characters."""
    for char, latex in _MANGLED.items():
        text = text.replace(char, latex)
    return _MANGLED_CR.sub(r"\\r", _MANGLED_TAB.sub(r"\\t", text))


def after_thinking(text: str) -> str:
    """The text after the last ``</think>`` (all of it when there is none)."""
    return text.rsplit("</think>", 1)[-1]


# --- explicit markers ---------------------------------------------------------------------

_BOX_RE = re.compile(r"\\(?:boxed|fbox)")
_BARE_BOX_RE = re.compile(r"\s+([^\s$]+)")
# What may stand between boxed answers that together are one answer ("\boxed{2} and \boxed{3}",
# "\boxed{(2, 2)} \quad \text{and} \quad \boxed{(6, 2)}", "(a) \boxed{3} and for part (b) it is \boxed{5}"):
# LaTeX spacing, \text{} wrappers, punctuation, part labels and a few connecting words, one of them a joiner.
_LATEX_SPACE_RE = re.compile(r"\\(?:quad|qquad|[,;: !]|hspace\{[^{}]*\})|~|\\text\{([^{}]*)\}|\$")
_PART_LABEL_RE = re.compile(r"\(?(?:[a-h]|[ivx]{1,4}|\d)\)")
_JOINER_WORDS = {"and", "or", "for", "part", "parts", "case", "it", "is", "are", "the", "answer", "answers", "also",
                 "respectively"}


def _joins_boxes(between: str) -> bool:
    """Is the text between two boxed answers only a joiner, so that the two are one answer list?"""
    text = _LATEX_SPACE_RE.sub(lambda m: f" {m.group(1) or ''} ", between)
    has_label = bool(_PART_LABEL_RE.search(text))
    text = _PART_LABEL_RE.sub(" ", text)
    words = re.findall(r"[A-Za-z]+", text)
    if re.sub(r"[A-Za-z\s,.;:]", "", text) or len(words) > 8 or any(w.lower() not in _JOINER_WORDS for w in words):
        return False
    return "," in text or ";" in text or has_label or any(w.lower() in ("and", "or") for w in words)


def _balanced(text: str, i: int) -> int | None:
    """Index of the brace closing the one at ``text[i]``, or None when it never closes."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return None


def boxed_spans(text: str) -> list[tuple[int, int, str]]:
    """Every ``\\boxed{...}`` / ``\\fbox{...}`` / ``\\boxed 5`` as (start, end, content), in order."""
    spans = []
    for match in _BOX_RE.finditer(text):
        rest = text[match.end():]
        if not rest.lstrip().startswith("{"):  # the brace-less form: the next word
            bare = _BARE_BOX_RE.match(rest)
            if bare:
                spans.append((match.start(), match.end() + bare.end(), bare.group(1)))
            continue
        i = match.end() + len(rest) - len(rest.lstrip())
        j = _balanced(text, i)
        if j is not None:  # unbalanced: cut off inside the box
            spans.append((match.start(), j + 1, text[i + 1 : j].strip()))
    return spans


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` or ``\\fbox{...}`` (nested braces balanced), or of ``\\boxed 5``."""
    spans = boxed_spans(text)
    return spans[-1][2] if spans else None


def boxed_answer(text: str) -> str | None:
    """The last boxed answer, with the boxed answers listed right before it ("\\boxed{2} and \\boxed{3}")."""
    spans = [s for s in boxed_spans(text) if s[2]]
    if not spans:
        return None
    answers = [spans[-1]]
    for prev in reversed(spans[:-1]):
        if not _joins_boxes(text[prev[1] : answers[0][0]]):
            break
        answers.insert(0, prev)
    return ", ".join(a[2] for a in answers)


_ANSWER_TAG_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_HASHES_RE = re.compile(r"####\s*([^\n]+)")
# "the answer is X", "Answer: X", "answer = X", and "the final answer of X" when X is a number or formula at once
_ANSWER_IS_RE = re.compile(r"(?:answer is|answer\s*:|answer\s*=|answer of(?=\s*[-$\\\d(]))[:\s]*", re.IGNORECASE)
# A heading line after which the final answer stands on the next lines: "# Answer", "**Final Answer**",
# "Final answer:" (PRM800K's GPT-4 writes "# Answer\n\n42").
_HEADING_RE = re.compile(r"^[ \t]*(?:#+[ \t]*(?:final[ \t]+)?answer[ \t]*:?|\*\*[ \t]*(?:final[ \t]+)?answer[ \t]*:?[ \t]*\*\*"
                         r"[ \t]*:?|(?:final[ \t]+)?answer[ \t]*:)[ \t]*$", re.IGNORECASE | re.MULTILINE)
# A phrase that is a formula, not prose: no word of two letters or more but a function's name ("(-1,6)", "x^2+2x+1",
# "y = 3x", "1,22"); "each of them gets 7 apples" is prose.
_FUNCTION_NAMES = r"sqrt|sin|cos|tan|log|ln|exp|pi|frac|cdot|times|le|ge|leq|geq|infty|mod"
_PROSE_WORD_RE = re.compile(rf"(?<![A-Za-z\\])(?!(?:{_FUNCTION_NAMES})(?![A-Za-z]))[A-Za-z]{{2,}}")
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)|\n\s*\n")


def _clean(answer: str) -> str:
    """Without surrounding spaces, dollars, code quotes and a full stop: "`4 + 4 = 8`." -> "4 + 4 = 8"."""
    return answer.strip().strip("$`*\"").strip().rstrip(".").strip().strip("$`*\"").strip()


def answer_tag(text: str) -> str | None:
    matches = _ANSWER_TAG_RE.findall(text)
    if not matches:
        return None
    inner = matches[-1].strip()
    return boxed_answer(inner) or last_math(inner) or _clean(inner) or None


def answer_phrase(text: str) -> str | None:
    """The X of the last "the answer is X" / "Answer: X" (the last one: a text may say it twice, the final statement
    counts), up to the end of its sentence."""
    starts = list(_ANSWER_IS_RE.finditer(text))
    if not starts:
        return None
    rest = text[starts[-1].end():]
    math_first = _MATH_RE.match(rest.lstrip())
    if math_first:  # "the answer is $3.5$." -- the expression itself, whatever punctuation follows
        return math_first.group(math_first.lastindex).strip() or None
    if starts[-1].group(0).lower().startswith("answer of"):  # "the final answer of 36, but ...": the number itself
        number = _NUMBER_RE.match(rest)
        return number.group(0).replace(" ", "") if number else None
    phrase = _SENTENCE_END_RE.split(rest, maxsplit=1)[0].strip()
    if not phrase:
        return None
    if _has_math(phrase):
        answer, end = last_math_span(phrase) or (_clean(phrase), len(phrase))
        after = phrase[end:]  # "The largest $n$ is 34": the number stated after the expression
        return (last_number(after) if not _has_math(after) else None) or answer
    if not _PROSE_WORD_RE.search(phrase):  # a formula: "(-1,6)", "x^2+2x+1", "1,22" -- whole, not its last number
        return _clean(phrase)
    # "the answer is that each of them gets 7 apples" -> "7"; "Even" stays
    return last_number(phrase) or _clean(phrase)


def after_heading(text: str) -> str | None:
    """The text after the last answer heading ("# Answer", "**Final Answer**", "Final answer:" on its own line),
    or None when there is none or nothing follows it."""
    headings = list(_HEADING_RE.finditer(text))
    if not headings:
        return None
    return text[headings[-1].end():].strip() or None


# --- the last mathematical expression ------------------------------------------------------

# $$...$$, \[...\], \(...\), $...$ (an escaped \$ is a dollar sign, not a delimiter). Inline math
# never spans a blank line: a lone dollar must not turn the paragraphs after it into "math".
_INLINE = r"(?:(?!\n\s*\n).)+?"
_MATH_RE = re.compile(rf"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\(({_INLINE})\\\)|(?<!\\)\$((?:\\\$|(?!\n\s*\n)[^$])+?)(?<!\\)\$", re.DOTALL)
_MATH_COMMANDS = (r"frac|dfrac|tfrac|cfrac|sqrt|pi|infty|pm|mp|cdot|times|div|le|leq|ge|geq|neq|in|cup|cap|"
                  r"left|right|begin|end|text|mathrm|mathbf|sin|cos|tan|log|ln|exp|binom|circ|approx|emptyset|"
                  r"varnothing|alpha|beta|gamma|theta|lambda|mu|sigma|omega|phi|dots|ldots|cdots|mathbb|boxed")
_COMMAND_RE = re.compile(rf"\\(?:{_MATH_COMMANDS})(?![A-Za-z])")
_LIST_JOINER_RE = re.compile(r"^\s*(?:,|,?\s*\band\b|,?\s*\bor\b)\s*$")
_TOKEN_RE = re.compile(r"\\[A-Za-z]+|\\.|[A-Za-z]+|\d+(?:\.\d+)?|\s+|.", re.DOTALL)


def _has_math(text: str) -> bool:
    return bool(_MATH_RE.search(text) or _COMMAND_RE.search(text))


def bare_latex(text: str) -> tuple[str, int] | None:
    """The last run of LaTeX written without delimiters ("so it is \\frac13."), with where it ends, or None.

    A run grows from the last math command over anything mathematical (commands, braces,
    digits, operators, single-letter variables) and stops at a word of prose.
    """
    anchors = list(_COMMAND_RE.finditer(text))
    if not anchors:
        return None
    tokens = [(m.start(), m.group()) for m in _TOKEN_RE.finditer(text)]
    at = next(i for i, (start, _) in enumerate(tokens) if start >= anchors[-1].start())

    def prose(i: int, depth: int) -> bool:
        tok = tokens[i][1]
        return depth == 0 and (tok.isalpha() and len(tok) > 1 or tok in ".;!?\n" or tok == ":" and i + 1 < len(tokens)
                               and not tokens[i + 1][1].strip().isdigit())

    lo, depth = at, 0
    while lo > 0:
        tok = tokens[lo - 1][1]
        depth += tok == "}"
        depth -= tok == "{"
        if depth < 0 or prose(lo - 1, depth):
            break
        lo -= 1
    hi, depth = at, 0
    while hi < len(tokens):
        tok = tokens[hi][1]
        depth += tok == "{"
        depth -= tok == "}"
        if depth < 0 or prose(hi, depth):
            break
        hi += 1
    run = "".join(tok for _, tok in tokens[lo:hi]).strip(" ,=")
    end = tokens[hi][0] if hi < len(tokens) else len(text)
    return (run, end) if run else None


def last_math_span(text: str) -> tuple[str, int] | None:
    """The last mathematical expression of ``text`` and the index where it ends, or None.

    The content of the last ``$...$``/``$$...$$``/``\\(...\\)``/``\\[...\\]`` (with the expressions listed
    right before it: "$x = 2$, $x = -3$", as math-verify does), unless bare LaTeX comes after it.
    """
    matches = list(_MATH_RE.finditer(text))
    delimited = matches[-1] if matches else None
    bare_from = delimited.end() if delimited else 0
    if bare := bare_latex(text[bare_from:]):  # bare LaTeX after the last delimited expression is the later one
        return bare[0], bare_from + bare[1]
    if delimited:
        listed = [delimited]
        for prev in reversed(matches[:-1]):
            if len(listed) == 6 or not _LIST_JOINER_RE.match(text[prev.end() : listed[0].start()]):
                break
            listed.insert(0, prev)
        inner = ", ".join(m.group(m.lastindex).strip().rstrip(".,").strip() for m in listed)
        return (inner, delimited.end()) if inner else None
    return None


def last_math(text: str) -> str | None:
    """The last mathematical expression of ``text`` (see ``last_math_span``), or None."""
    span = last_math_span(text)
    return span[0] if span else None


# --- prose ---------------------------------------------------------------------------------

# A number standing on its own: not glued to letters or digits ("x2y", "2nd" are not numbers), but a unit may follow
# it directly ("12kg", "5cm").
_UNITS = r"kg|mg|g|km|cm|mm|m|ml|l|L|s|ms|h|hr|hrs|min|lb|lbs|oz|ft|mi|mph|km/h|m/s|cm²|m²|km²|cm2|m2"
# Thousands may be grouped with commas or spaces ("1,000", "1 000"); "a/b", "11:21" and "3:4" stay whole; ".4" is
# a number (0.4).
_NUMBER_RE = re.compile(r"(?<![A-Za-z_\d.^])-?(?:\d{1,3}(?:[, ]\d{3})+(?!\d)|\d+|(?=\.\d))(?:\.\d+)?(?:\s*/\s*\d+|:\d+)?"
                        rf"(?:(?![A-Za-z_\d])|(?=(?:{_UNITS})(?![A-Za-z\d])))")


# a number that is an operand of an operation written out, not a result: "2 * 3 * 4" holds no stated 4 ("= 12" does)
_OPERATOR_BEFORE_RE = re.compile(r"(?:[-+*/×÷^]|\\times|\\cdot)\s*\Z")
_OPERATOR_AFTER_RE = re.compile(r"\s*(?:[-+*/×÷^=]|\\times|\\cdot)\s*[\d(]")


def last_number(text: str) -> str | None:
    """The last number of ``text`` that is stated, not an operand: in "so 3 + 9 = 12" it is 12, in "the expression
    2 * 3 * 4, and" there is none."""
    for match in reversed(list(_NUMBER_RE.finditer(text))):
        if not (_OPERATOR_BEFORE_RE.search(text, 0, match.start()) or _OPERATOR_AFTER_RE.match(text, match.end())):
            return match.group(0).replace(" ", "")
    return None


def extract_final(text: str) -> Extracted | None:
    """The final answer of ``text`` with where it came from, or None when there is none."""
    text = after_thinking(repair_escapes(text))
    if (tail := after_heading(text)) is not None and (found := extract_final(tail)) is not None:
        return Extracted(found.answer, "heading", found.later_number)  # what stands under "# Answer"
    for source, find in (("boxed", boxed_answer), ("answer_tag", answer_tag)):
        if (answer := find(text)) is not None:
            return Extracted(answer, source)
    if matches := _HASHES_RE.findall(text):
        return Extracted(_clean(matches[-1]), "hashes")
    if (answer := answer_phrase(text)) is not None:
        return Extracted(answer, "answer_is")
    if _has_math(text):
        if (span := last_math_span(text)) is None:
            return None
        answer, end = span
        tail = text[end:]  # a number stated after the expression ("$3 + 9$ is 12")
        return Extracted(answer, "latex", None if _has_math(tail) else last_number(tail))
    if (answer := last_number(text)) is not None:
        return Extracted(answer, "last_number")
    return None


def extract_answer(text: str) -> str | None:
    """The final answer of ``text`` as a string, or None when there is none."""
    found = extract_final(text)
    return found.answer if found else None
