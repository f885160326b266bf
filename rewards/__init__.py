"""Rule-based verifier rewards.

A reward is a plain function ``(completion: str, answer: str) -> float`` kept by name in
``REWARDS`` (``rewards/registry.py``). To add one, write it in a file of this package with
``@register("name")`` and import that file at the end of this one (see the README). The trainer
combines rewards as a weighted sum and logs each one as ``reward/<name>``.
"""

from rewards.accuracy import accuracy_reward, accuracy_verdicts, is_equivalent
from rewards.extract import Extracted, extract_answer, extract_final, last_boxed, last_number, repair_escapes
from rewards.format import boxed_format_reward, think_format_reward
from rewards.length import soft_overlong_penalty
from rewards.pool import VerifierPool, default_pool
from rewards.registry import REWARDS, register
from rewards.verify import EVAL_TIMEOUT, TRAIN_TIMEOUT, Verdict, audit_metrics


def parse_weights(spec: str) -> dict[str, float]:
    """``"accuracy=1.0,boxed_format=0.1"`` -> ``{"accuracy": 1.0, "boxed_format": 0.1}`` (weight 1 if omitted)."""
    weights = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, weight = item.partition("=")
        if name not in REWARDS:
            raise ValueError(f"unknown reward {name!r} in {spec!r}; known: {', '.join(sorted(REWARDS))}")
        try:
            weights[name] = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"reward weight {weight!r} of {name!r} is not a number") from None
    if not weights:
        raise ValueError("no reward given")
    return weights


def trl_reward(name: str):
    """Adapt ``REWARDS[name]`` to TRL's ``(prompts, completions, **kwargs) -> list[float | None]``.

    The reference answers come from the data set's ``answer`` column; a row without one
    scores ``None`` (TRL then leaves it to the other reward functions).
    """
    fn = REWARDS[name]

    def reward(prompts, completions, answer=None, **kwargs):
        answers = answer if answer is not None else [None] * len(completions)
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [None if a is None else fn(t, a) for t, a in zip(texts, answers)]

    reward.__name__ = f"{name}_reward"
    return reward


__all__ = [
    "REWARDS", "register", "accuracy_reward", "accuracy_verdicts", "Verdict", "VerifierPool", "default_pool", "Extracted", "extract_final",
    "EVAL_TIMEOUT", "TRAIN_TIMEOUT", "audit_metrics", "boxed_format_reward", "think_format_reward", "soft_overlong_penalty",
    "extract_answer", "last_boxed", "last_number", "repair_escapes", "is_equivalent", "parse_weights", "trl_reward",
]


# More reward files: importing one registers its rewards. Add a line per new file, e.g.
# from rewards import brevity  # noqa: E402,F401
