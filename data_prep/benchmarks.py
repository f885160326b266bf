"""Loaders for the math benchmarks: local JSONL (default ../shared/data) or the Hugging Face Hub.

``load_problems("gsm8k", split="test")`` returns a list of ``Problem`` records with the
reference answer in the form the verifiers expect (GSM8K: the number after ``####`` with
commas removed; MATH and Minerva: the boxed answer of the solution, several boxed answers joined
as one list). ``check_references=True`` also reports (and ``drop_unparseable=True`` drops) the
rows whose reference math-verify cannot parse (``data_prep.checks``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from data_prep import checks
from data_prep.own_data import label_of
from data_prep.problems import Problem, read_jsonl
from rewards.extract import boxed_answer

# The data folder beside the repository (this file is <repo>/data_prep/benchmarks.py).
_SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def default_data_dir() -> Path | None:
    if env := os.environ.get("REASONING_RL_DATA"):
        return Path(env)
    return _SHARED if _SHARED.is_dir() else None


def _text(row: dict, *keys: str) -> str:
    for key in keys:
        if isinstance(row.get(key), str) and row[key].strip():
            return row[key]
    raise KeyError(f"none of the fields {keys} holds text")


def _gsm8k(row: dict, i: int, split: str) -> Problem:
    solution = _text(row, "answer")
    if "####" not in solution:
        raise ValueError("answer has no '#### <number>' line")
    answer = solution.split("####")[-1].strip().replace(",", "")
    return Problem(f"gsm8k/{split}/{i}", _text(row, "question"), answer, "gsm8k")


def _math(source: str):
    def convert(row: dict, i: int, split: str) -> Problem:
        # MATH's reference is the boxed answer of its solution; several boxed answers joined by "and"
        # or commas form one list ("$\\boxed{-2}$ and $\\boxed{1}$"), which the local file's added
        # ``answer`` field (the last box only) truncates. MATH-500's answers are the official ones.
        boxed = boxed_answer(row["solution"]) if isinstance(row.get("solution"), str) else None
        answer = (boxed if source == "math" else None) or row.get("answer") or boxed
        if not answer:
            raise ValueError("no answer field and no \\boxed{} in the solution")
        meta = {"subject": row.get("subject") or row.get("type"), "level": row.get("level")}
        return Problem(str(row.get("unique_id") or f"{source}/{split}/{i}"), _text(row, "problem"), answer, source, meta)

    return convert


def _competition(source: str):
    def convert(row: dict, i: int, split: str) -> Problem:
        answer = row["answer"]
        if isinstance(answer, (int, float)) or (isinstance(answer, str) and answer.endswith(".0")):
            answer = str(answer).removesuffix(".0")  # amc23 writes "27.0"
        return Problem(f"{source}/{row.get('id', i)}", _text(row, "problem", "question"), str(answer), source)

    return convert


def _minerva(row: dict, i: int, split: str) -> Problem:
    answer = boxed_answer(_text(row, "solution"))
    if not answer:
        raise ValueError("no \\boxed{} in the solution")
    return Problem(f"minerva_math/{row.get('idx', i)}", _text(row, "problem"), answer, "minerva_math", {"subject": row.get("type")})


def _olympiad(row: dict, i: int, split: str) -> Problem:
    final = row["final_answer"]
    # the answers hold stray math delimiters ("$69$,$84$", "(-\infty, 0) \cup\{1\}$."): drop them
    items = final if isinstance(final, list) else [final]
    answer = ", ".join(re.sub(r"(?<!\\)\$", "", str(a)).strip().rstrip(".").strip() for a in items)
    if not answer:
        raise ValueError("empty final_answer")
    return Problem(f"olympiadbench/{row.get('id', i)}", _text(row, "question"), answer, "olympiadbench", {"subject": row.get("subfield")})


def _any_jsonl(source: str):
    """A data set of your own: ``question`` (or ``problem``/``prompt``) and ``answer`` per row.

    The answer is the reference as the verifier should see it (``7``, ``\\frac{1}{2}``); a GSM8K-style
    worked answer ending in ``#### 7`` is reduced to ``7``. An ``id`` field, if present, names the row.
    """
    def convert(row: dict, i: int, split: str) -> Problem:
        question = _text(row, "question", "problem", "prompt")
        answer = "" if row.get("answer") is None else str(row["answer"]).strip()  # 0 is an answer
        if not answer:
            raise ValueError("no 'answer' field")
        if "####" in answer:  # a GSM8K-style worked answer: the number after ####
            answer = answer.split("####")[-1].strip().removesuffix(".0")
        return Problem(f"{source}/{row.get('id', i)}", question, answer, source)

    return convert


# name -> (converter, Hub data set, Hub config); "jsonl" is any file or Hub data set of your own (--data-path)
BENCHMARKS = {
    "gsm8k": (_gsm8k, "openai/gsm8k", "main"),
    "math": (_math("math"), "EleutherAI/hendrycks_math", None),
    "math500": (_math("math500"), "HuggingFaceH4/MATH-500", None),
    "aime24": (_competition("aime24"), "HuggingFaceH4/aime_2024", None),
    "amc23": (_competition("amc23"), "math-ai/amc23", None),
    "minerva_math": (_minerva, "math-ai/minervamath", None),
    "olympiadbench": (_olympiad, "Hothan/OlympiadBench", None),
    "jsonl": (None, None, None),
}
FIELDS = {
    "gsm8k": "'question' and an 'answer' ending in '#### <number>'",
    "jsonl": "a 'question' (or 'problem') and an 'answer'",
}


def load_problems(
    name: str, split: str = "test", path: str | os.PathLike | None = None, limit: int | None = None, strict: bool = False,
    check_references: bool = False, drop_unparseable: bool = False,
) -> list[Problem]:
    """Load benchmark ``name``.

    ``path`` may be a JSONL file, a folder holding ``<name>/<split>.jsonl``, or a Hub data set
    name (read with ``datasets``). Without it, the local data folder is used when it exists
    (``$REASONING_RL_DATA`` or ``../shared/data``), else the Hub data set in ``BENCHMARKS``.
    ``check_references`` prints how many reference answers math-verify cannot parse;
    ``drop_unparseable`` also drops those rows.
    """
    problems = _load(name, split, path, limit, strict)
    if check_references or drop_unparseable:
        problems = checks.check_references(problems, f"{name} ({split})", drop_unparseable)
    return problems


def data_label(name: str, path) -> str:
    """How results are named: the benchmark, or for ``jsonl`` the file's stem or the Hub data set's name."""
    return name if name != "jsonl" else label_of(str(path))


def _load(name: str, split: str, path, limit: int | None, strict: bool) -> list[Problem]:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)} (jsonl: a file of your own)")
    convert, hub_name, hub_config = BENCHMARKS[name]
    if name == "jsonl":
        if path is None:
            raise ValueError("--benchmark jsonl reads a data set of your own: pass --data-path FILE.jsonl (or a Hub data set)")
        convert = _any_jsonl(data_label(name, path))
    location = Path(path) if path is not None else default_data_dir()
    if location is not None and location.is_dir():
        location = location / name / f"{split}.jsonl"
    if location is not None and location.exists():
        rows = read_jsonl(location, lambda row, i: convert(row, i, split), strict=strict)
        problems = []
        for problem in rows:
            problems.append(problem)
            if limit is not None and len(problems) >= limit:
                break
        rows.close()  # reports the skipped rows now, even when --limit stopped early
        if not problems:
            hint = ("; for a file of plain question/answer rows use jsonl as the task (--task jsonl, to train) or the "
                    "benchmark (--benchmark jsonl, to evaluate)" if name != "jsonl" and path is not None else "")
            raise ValueError(f"{location}: no usable {name} rows (each needs {FIELDS.get(name, 'the fields of ' + name)}){hint}")
        return problems
    if path is not None and (str(path).endswith(".jsonl") or Path(path).is_absolute() or str(path).startswith(".")):
        raise FileNotFoundError(f"{location} does not exist (benchmark {name!r}, split {split!r})")
    return _load_hub(name, str(path) if path is not None else hub_name, hub_config, split, limit, convert)


def _load_hub(name, hub_name, hub_config, split, limit, convert) -> list[Problem]:
    import datasets

    data = datasets.load_dataset(hub_name, hub_config, split=split)
    if limit is not None:
        data = data.select(range(min(limit, len(data))))
    return [convert(dict(row), i, split) for i, row in enumerate(data, start=1)]
