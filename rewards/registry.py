"""The reward registry: a plain dict from name to ``(completion, answer) -> float``.

A reward file registers its function with ``@register("name")`` (or ``REWARDS["name"] = fn``).
This module imports nothing else from the package, so any reward file can import it, and any
other reward (``from rewards.accuracy import accuracy_reward``), without an import cycle.
"""

from __future__ import annotations

from typing import Callable

REWARDS: dict[str, Callable[[str, str], float]] = {}


def register(name: str, format_reward: bool = False, whole_text: bool = False):
    """Decorator: ``@register("brevity")`` puts the function into ``REWARDS["brevity"]``. ``format_reward=True``
    marks a reward for the completion's shape: the trainer scores it 0 for a completion cut off at the token limit
    (a format is earned by a finished answer, not by writing boxes until the tokens run out). With tools, a reward
    reads the text after the last tool output (where the answer is); ``whole_text=True`` gives it the whole
    completion, code and outputs included (``tool_format``)."""

    def add(fn):
        if name in REWARDS and REWARDS[name] is not fn:
            raise ValueError(f"a reward named {name!r} is already registered ({REWARDS[name].__module__})")
        fn.format_reward, fn.whole_text = format_reward, whole_text
        REWARDS[name] = fn
        return fn

    return add
