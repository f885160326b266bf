"""Rule-based verifier rewards.

A reward is a plain function ``(completion: str, answer: str) -> float`` kept by name in
``REWARDS``. To add one, write the function and add it to the dict (see the README). The
trainer combines rewards as a weighted sum and logs each one as ``reward/<name>``.
"""

from rewards.extract import Extracted, extract_answer, extract_final, last_boxed, last_number, repair_escapes
from rewards.format import boxed_format_reward, think_format_reward
from rewards.length import soft_overlong_penalty
from rewards.pool import VerifierPool, default_pool
from rewards.verify import EVAL_TIMEOUT, TRAIN_TIMEOUT, Verdict, audit_metrics, is_equivalent


def accuracy_reward(completion: str, answer: str, timeout: float = EVAL_TIMEOUT) -> float:
    """1.0 when the completion's final answer is equivalent to ``answer``, else 0.0.

    The final answer is found by ``rewards.extract`` (a marker such as ``\\boxed{}``, else the
    last LaTeX expression, else for plain prose the last number); equivalence is decided by
    ``rewards.verify`` (exact, numeric, then math-verify/sympy) in a worker process under a hard
    timeout. Never raises. For many completions at once use ``accuracy_verdicts``.
    """
    return float(default_pool().grade([completion], [answer], timeout)[0].correct)


def accuracy_verdicts(completions: list[str], answers: list[str], timeout: float = EVAL_TIMEOUT,
                      budget: float | None = None) -> list[Verdict]:
    """The verdicts behind ``accuracy_reward`` for a batch, graded in parallel by the worker pool."""
    return default_pool().grade(completions, answers, timeout, budget)


REWARDS = {
    "accuracy": accuracy_reward,
    "think_format": think_format_reward,
    "boxed_format": boxed_format_reward,
}

# A reward may carry a batched form as its ``verdicts`` attribute: ``(completions, answers,
# timeout, budget) -> list[Verdict]``. The trainer then grades a whole batch in parallel and
# logs the verifier audit; a reward without one (or one replaced in REWARDS) is called per row.
accuracy_reward.verdicts = accuracy_verdicts


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
    "REWARDS", "accuracy_reward", "accuracy_verdicts", "Verdict", "VerifierPool", "default_pool", "Extracted", "extract_final",
    "EVAL_TIMEOUT", "TRAIN_TIMEOUT", "audit_metrics", "boxed_format_reward", "think_format_reward", "soft_overlong_penalty",
    "extract_answer", "last_boxed", "last_number", "repair_escapes", "is_equivalent", "parse_weights", "trl_reward",
]
