"""The answer-correctness reward: is the completion's final answer the reference answer?"""

from __future__ import annotations

from rewards.pool import default_pool
from rewards.registry import register
from rewards.verify import EVAL_TIMEOUT, Verdict


def accuracy_verdicts(completions: list[str], answers: list[str], timeout: float = EVAL_TIMEOUT,
                      budget: float | None = None) -> list[Verdict]:
    """The verdicts behind ``accuracy_reward`` for a batch, graded in parallel by the worker pool."""
    return default_pool().grade(completions, answers, timeout, budget)


def is_equivalent(pred: str, gold: str, timeout: float = EVAL_TIMEOUT) -> bool:
    """True when the answer strings ``pred`` and ``gold`` are the same answer (through the worker pool)."""
    return default_pool().equivalent(pred, gold, timeout)


@register("accuracy")
def accuracy_reward(completion: str, answer: str, timeout: float = EVAL_TIMEOUT) -> float:
    """1.0 when the completion's final answer is equivalent to ``answer``, else 0.0.

    The final answer is found by ``rewards.extract`` (a marker such as ``\\boxed{}``, else the
    last LaTeX expression, else for plain prose the last number); equivalence is decided by
    ``rewards.verify`` (exact, numeric, then math-verify/sympy) in a worker process under a hard
    timeout. Never raises. For many completions at once use ``accuracy_verdicts``.
    """
    return float(default_pool().grade([completion], [answer], timeout)[0].correct)


# The batched form (``(completions, answers, timeout, budget) -> list[Verdict]``): the trainer
# grades a whole batch in parallel with it and logs the verifier audit. A reward without one
# (or one replaced in REWARDS) is called once per completion.
accuracy_reward.verdicts = accuracy_verdicts
