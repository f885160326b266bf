"""Format rewards: does the completion have the shape the prompt asked for?

A format reward must not be farmable: it pays for the shape of one final answer, not for repeating
it. ``boxed_format`` pays only for exactly one box, at the end of the completion, holding an answer
that parses; and a format reward (``@register(..., format_reward=True)``) scores 0 for a completion
cut off at the token limit (``rollout.score_rollouts``), so a policy cannot earn it by writing boxes
until it runs out of tokens (the GSM8K run that went from 1 % to 94 % boxed answers, in loops such
as ``\\boxed{2x} \\boxed{2x} ...``).
"""

import re

from rewards.extract import after_thinking, boxed_spans, extract_answer, last_number, repair_escapes
from rewards.registry import register

# a python block, then at once the output block the sandbox appended (tools/format.py), then its body
_TOOL_CALL_RE = re.compile(r"```(?:python|py)[ \t]*\n.*?```[ \t]*\n```output\n(.*?)\n```", re.DOTALL)
_ERROR_LINE_RE = re.compile(r"(?:^|\n)[\w.]*(?:Error|Exception|Interrupt)\b[^\n]*\s*\Z")
_R1_RE = re.compile(r"^\s*(?:<think>)?.*?</think>\s*<answer>.+?</answer>\s*$", re.DOTALL)
# What may follow the final box: closing math delimiters, punctuation and a few words ("$. I hope it is correct.")
_AFTER_BOX_MAX_CHARS = 40


@register("think_format", format_reward=True)
def think_format_reward(completion: str, answer: str | None = None) -> float:
    """1.0 for ``<think>...</think> <answer>...</answer>`` and nothing after it (R1-Zero).

    The opening ``<think>`` may be missing because the R1-Zero template ends the prompt with it.
    """
    if completion.count("</think>") != 1 or completion.count("<answer>") != 1:
        return 0.0
    return 1.0 if _R1_RE.match(completion) else 0.0


@register("boxed_format", format_reward=True)
def boxed_format_reward(completion: str, answer: str | None = None) -> float:
    """1.0 when the completion ends with exactly one ``\\boxed{}`` holding an answer that parses (nothing but
    delimiters and a few words after it); 0 for no box, several, one in the middle, or an empty or unreadable one."""
    text = after_thinking(repair_escapes(completion))
    spans = boxed_spans(text)
    if len(spans) != 1 or len(text[spans[0][1]:].strip()) > _AFTER_BOX_MAX_CHARS:
        return 0.0
    return 1.0 if _parses(spans[0][2]) else 0.0


def _parses(content: str) -> bool:
    """Is a box's content an answer math-verify can read (a number, a word, an expression)?"""
    from rewards.verify import reference_readable, too_costly

    return bool(content.strip()) and not too_costly(content) and reference_readable(content, timeout=1.0)


@register("tool_format", format_reward=True, whole_text=True)
def tool_format_reward(completion: str, answer: str | None = None) -> float:
    """1.0 when a code block ran without an error and the completion goes on after the last output (an answer
    follows the tool's result); for training with ``--tools python``. The output blocks are the sandbox's: generation
    stops at each code block's closing fence, so a model cannot write one itself."""
    calls = list(_TOOL_CALL_RE.finditer(completion))
    if not calls or not completion[calls[-1].end():].strip():
        return 0.0
    return 1.0 if any(not _ERROR_LINE_RE.search(call.group(1)) for call in calls) else 0.0


@register("tool_answer", format_reward=True, whole_text=True)
def tool_answer_reward(completion: str, answer: str | None = None) -> float:
    """1.0 when the answer after the last tool output states the number that output printed last: the model reads
    its tool's result back as its answer (right or wrong; ``accuracy`` says which). It never looks at the reference,
    so it teaches the use of a result, not the result; for training with ``--tools python``."""
    calls = list(_TOOL_CALL_RE.finditer(completion))
    if not calls or _ERROR_LINE_RE.search(calls[-1].group(1)):
        return 0.0
    printed, stated = last_number(calls[-1].group(1)), extract_answer(completion[calls[-1].end():])
    if printed is None or stated is None:
        return 0.0
    try:
        return 1.0 if abs(float(printed.replace(",", "")) - float(stated.replace(",", ""))) < 1e-9 else 0.0
    except ValueError:
        return 0.0
