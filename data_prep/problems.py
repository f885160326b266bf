"""The record every loader yields, and reading JSONL without losing bad rows silently."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator


@dataclass(frozen=True)
class Problem:
    id: str  # unique within its source, e.g. "gsm8k/test/17" or "test/algebra/1.json"
    problem: str  # the question as shown to the model (before any prompt template)
    answer: str | None  # reference final answer; None for open-ended prompts (no verifier)
    source: str  # "gsm8k", "math500", "arith/add_20", ...
    meta: dict = field(default_factory=dict, compare=False)  # subject, level, ...


class MalformedRowError(ValueError):
    pass


def read_jsonl(
    path: Path, convert: Callable[[dict, int], Problem], strict: bool = False
) -> Iterator[Problem]:
    """Yield ``convert(row, line_number)`` for each line of ``path``.

    A row that is not JSON or that ``convert`` rejects (KeyError/ValueError) raises
    ``MalformedRowError`` naming the file and line when ``strict``; otherwise it is skipped and
    counted, and one warning with the count and the first few places is emitted when reading
    stops: at the end of the file, or when the reader closes the generator early (``--limit``),
    so every bad row it passed is reported.
    """
    skipped: list[str] = []
    try:
        with open(path, encoding="utf-8") as f:
            for line_number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise ValueError("row is not a JSON object")
                    problem = convert(row, line_number)
                except (json.JSONDecodeError, KeyError, ValueError, TypeError) as error:
                    where = f"{path}:{line_number}: {type(error).__name__}: {str(error).strip(chr(39))}"
                    if strict:
                        raise MalformedRowError(where) from error
                    skipped.append(where)
                    continue
                yield problem
    finally:
        if skipped:
            warnings.warn(f"skipped {len(skipped)} malformed row(s) in {path}: " + "; ".join(skipped[:5]), stacklevel=2)
