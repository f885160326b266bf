"""Check the reference answers when a data set loads.

A reference answer that the verifier cannot read makes its problem unlearnable: no completion
can ever be graded right, so its group only ever adds zero-variance noise, and a benchmark
counts it as a failure of the model. ``check_references`` asks math-verify to parse every
reference (plain numbers and words are read without it), reports how many cannot be parsed,
and drops them on request (``--drop-unparseable-references`` in the trainers and evaluate.py).
"""

from __future__ import annotations

from data_prep.problems import Problem


def unparseable_references(problems: list[Problem]) -> list[Problem]:
    """The problems whose reference answer math-verify cannot parse (open-ended ones are skipped)."""
    from rewards import default_pool

    graded = [p for p in problems if p.answer is not None]
    readable = default_pool().references_parse([p.answer for p in graded])
    return [p for p, ok in zip(graded, readable) if not ok]


def check_references(problems: list[Problem], name: str, drop: bool = False) -> list[Problem]:
    """Report the unparseable references of ``name`` (one line); return ``problems``, without them if ``drop``."""
    bad = unparseable_references(problems)
    if not bad:
        return problems
    examples = ", ".join(f"{p.id} ({p.answer!r})" for p in bad[:3])
    action = "dropped" if drop else "kept; --drop-unparseable-references drops them"
    print(f"{name}: {len(bad)} of {len(problems)} reference answers cannot be parsed by math-verify, e.g. {examples} ({action})")
    if not drop:
        return problems
    ids = {p.id for p in bad}
    return [p for p in problems if p.id not in ids]
