"""Find the final answer in a completion.

Order of preference (the first that matches wins): the last ``\\boxed{...}`` (or ``\\fbox``),
the last ``<answer>...</answer>`` block, GSM8K's ``#### n``, "the answer is X", and as a
fallback the last number in the text. Each extractor is a pure string function.
"""

from __future__ import annotations

import re

_NUMBER = r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+"
_NUMBER_RE = re.compile(_NUMBER)
_ANSWER_TAG_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_HASHES_RE = re.compile(r"####\s*([^\n]+)")
_BARE_BOX_RE = re.compile(r"\s+([^\s$]+)")
_ANSWER_IS_RE = re.compile(r"answer is[:\s]*([^\n]+)", re.IGNORECASE)


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


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` or ``\\fbox{...}`` (nested braces balanced), or of ``\\boxed 5``."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    rest = text[start:].removeprefix("\\boxed").removeprefix("\\fbox")
    if not rest.lstrip().startswith("{"):  # the brace-less form: the next word
        match = _BARE_BOX_RE.match(rest)
        return match.group(1) if match else None
    i = len(text) - len(rest.lstrip())  # the opening brace
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip()
    return None  # unbalanced: the completion was cut off inside the box


def last_number(text: str) -> str | None:
    matches = _NUMBER_RE.findall(text)
    return matches[-1].rstrip(".") if matches else None


def answer_tag(text: str) -> str | None:
    matches = _ANSWER_TAG_RE.findall(text)
    if not matches:
        return None
    inner = matches[-1].strip()
    return last_boxed(inner) or inner


def extract_answer(text: str) -> str | None:
    """The final answer of ``text`` as a string, or None when there is none."""
    text = repair_escapes(text)
    if (boxed := last_boxed(text)) is not None:
        return boxed
    if (tagged := answer_tag(text)) is not None:
        return tagged
    if matches := _HASHES_RE.findall(text):
        return matches[-1].strip()
    if matches := _ANSWER_IS_RE.findall(text):
        phrase = re.split(r"\.(?:\s|$)", matches[-1])[0].strip().strip("$ ")
        # "the answer is 42" -> "42"; "the answer is that each of them gets 7 apples" -> "7"
        return phrase if len(phrase) <= 30 else (last_number(phrase) or phrase)
    return last_number(text)
