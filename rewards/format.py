"""Format rewards: does the completion have the shape the prompt asked for?"""

import re

from rewards.extract import last_boxed, repair_escapes
from rewards.registry import register

_R1_RE = re.compile(r"^\s*(?:<think>)?.*?</think>\s*<answer>.+?</answer>\s*$", re.DOTALL)


@register("think_format")
def think_format_reward(completion: str, answer: str | None = None) -> float:
    """1.0 for ``<think>...</think> <answer>...</answer>`` and nothing after it (R1-Zero).

    The opening ``<think>`` may be missing because the R1-Zero template ends the prompt with it.
    """
    if completion.count("</think>") != 1 or completion.count("<answer>") != 1:
        return 0.0
    return 1.0 if _R1_RE.match(completion) else 0.0


@register("boxed_format")
def boxed_format_reward(completion: str, answer: str | None = None) -> float:
    """1.0 when the completion puts a non-empty final answer in ``\\boxed{}``."""
    return 1.0 if last_boxed(repair_escapes(completion)) else 0.0
