"""How code and its output appear in a completion: the tool-integrated reasoning (TIR) format of ToRA and
Qwen2.5-Math, with fenced blocks.

The model writes a code block; generation stops at its closing fence (``STOP``), the code runs, and its output is
appended as an output block, after which the model goes on::

    Let me compute it.
    ```python
    print(78 * 6)
    ```
    ```output
    468
    ```
    So 78 * 6 = 468.

The answer is graded in the text after the last output block (``reasoning_rl/tool_use.py``), so that a number the
tool printed is not taken for the model's answer.
"""

from __future__ import annotations

import re

STOP = "```\n"  # the closing fence and its newline; the opening ```python is not matched by it
OUTPUT_OPEN = "```output\n"

_OPEN = re.compile(r"```(?:python|py)[ \t]*\n")
_BODY = re.compile(r"(.*?)\n?```[ \t]*\n?\s*\Z", re.DOTALL)  # the code, then the closing fence as the last thing


def pending_code(text: str) -> str | None:
    """The code of the python block that ``text`` ends with (its closing fence last), or None: no such block (the
    text stopped at another fence, or ended without one)."""
    return _pending(text)[1]


def before_pending_code(text: str) -> str:
    """``text`` without the python block it ends with (a call that was not run is not an answer)."""
    start, code = _pending(text)
    return text if code is None else text[:start]


def _pending(text: str) -> tuple[int, str | None]:
    opening = None
    for opening in _OPEN.finditer(text):
        pass
    if opening is None:
        return len(text), None
    body = _BODY.fullmatch(text, opening.end())
    if body is None or "```" in body.group(1):  # another fence between: this block was closed earlier
        return len(text), None
    return opening.start(), body.group(1)


def output_block(output: str) -> str:
    """The output block appended after a code block: what the code printed, or its error's last line."""
    body = output.rstrip("\n") or "(no output)"
    return f"{OUTPUT_OPEN}{body}\n```\n"
