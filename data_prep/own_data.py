"""Training data of your own: any JSONL file or Hugging Face data set of problems with reference answers.

    python scripts/train_grpo.py --task jsonl --data-path my_math.jsonl

Fields (the first one present, or the one named by ``--question-field`` / ``--answer-field``):

* question: ``question``, ``problem``, ``prompt``;
* answer: ``answer``, ``solution``. A worked solution is reduced to its final answer: the number after
  ``####`` (GSM8K's style), else the last ``\\boxed{}``. Anything else is the reference as written
  (``12``, ``$12``, ``8 apples``, ``x = 7``, ``3/4``); the verifier grades against it.
* ``id`` (optional) names the row; ``split`` (optional, ``train`` or ``test``) assigns it.

Held-out problems, evaluated before and after training and never trained on, come from (in order):
``--heldout-path`` (a second file), the rows whose ``split`` is ``test`` (or ``heldout``, ``validation``),
else a seeded share of the file (``--heldout-fraction``, at least ``MIN_HELDOUT`` rows) chosen by a hash of
each row's id: disjoint from the training rows, and the same in every run with that seed.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from data_prep.problems import Problem, read_jsonl
from rewards.extract import boxed_answer

MIN_HELDOUT = 3  # a carved held-out set has at least this many rows (while the training set keeps at least as many)
QUESTION_FIELDS = ("question", "problem", "prompt")
ANSWER_FIELDS = ("answer", "solution")
TRAIN_SPLITS = ("train", "training")
HELDOUT_SPLITS = ("test", "heldout", "held_out", "validation", "val", "eval", "dev")


@dataclass(frozen=True)
class OwnData:
    path: str  # a JSONL file or a Hub data set name
    heldout_path: str | None = None
    heldout_fraction: float = 0.1
    question_field: str | None = None
    answer_field: str | None = None
    seed: int = 0

    @property
    def label(self) -> str:
        """How results are named: the file's stem, or the Hub data set's name."""
        return label_of(self.path)


def label_of(path: str) -> str:
    return Path(path).stem if str(path).endswith(".jsonl") else str(path).rstrip("/").split("/")[-1]


def reduce_reference(text: str) -> str:
    """The final answer of a reference: after ``####``, else the last ``\\boxed{}``, else the text as written."""
    if "####" in text:
        return text.split("####")[-1].strip().replace(",", "").removesuffix(".0")
    return boxed_answer(text) or text.strip()


def convert_row(row: dict, i: int, data: OwnData, label: str) -> Problem:
    """One row as a ``Problem``; a ``KeyError``/``ValueError`` (reported with its file and line) when it has no
    question, no answer, or a ``split`` that is neither training nor held-out."""
    question = _field(row, (data.question_field,) if data.question_field else QUESTION_FIELDS, "question")
    answer = reduce_reference(_field(row, (data.answer_field,) if data.answer_field else ANSWER_FIELDS, "answer"))
    split = str(row.get("split") or "").lower()
    if split and split not in TRAIN_SPLITS + HELDOUT_SPLITS:
        raise ValueError(f"split {row['split']!r} is neither a training split ({', '.join(TRAIN_SPLITS)}) nor a held-out "
                         f"one ({', '.join(HELDOUT_SPLITS)})")
    meta = {"split": "test" if split in HELDOUT_SPLITS else "train"} if split else {}
    return Problem(f"{label}/{row.get('id', i)}", question, answer, label, meta)


def _field(row: dict, names: tuple[str, ...], what: str) -> str:
    for name in names:
        value = row.get(name)
        if value is not None and str(value).strip():  # 0 is an answer
            return str(value)
    raise KeyError(f"no {what}: none of the fields {', '.join(names)} holds one")


def read_rows(path: str, data: OwnData, label: str) -> list[Problem]:
    """Every usable row of a local JSONL file or a Hub data set (its train split); a ``ValueError`` naming the file
    and the fields it needs when there is none."""
    local = Path(path)
    if local.exists():
        rows = list(read_jsonl(local, lambda row, i: convert_row(row, i, data, label)))
    elif str(path).endswith(".jsonl") or local.is_absolute() or str(path).startswith("."):
        raise FileNotFoundError(f"{path} does not exist (the training data of --task jsonl)")
    else:
        import datasets

        rows = [convert_row(dict(row), i, data, label) for i, row in enumerate(datasets.load_dataset(path, split="train"), 1)]
    if not rows:
        fields = f"a question ({', '.join(QUESTION_FIELDS)}) and an answer ({', '.join(ANSWER_FIELDS)})"
        raise ValueError(f"{path}: no usable rows (each needs {fields}, or --question-field / --answer-field)")
    return rows


def carve_heldout(problems: list[Problem], fraction: float, seed: int) -> tuple[list[Problem], list[Problem]]:
    """``(train, heldout)``: ``round(fraction * n)`` rows, at least ``MIN_HELDOUT`` and at most half, chosen by a seeded
    hash of each id (so adding rows to the file does not reshuffle the others)."""
    if len(problems) < 2:
        raise ValueError(f"{len(problems)} usable row(s): at least 2 are needed to hold one out")
    k = min(max(MIN_HELDOUT, round(fraction * len(problems))), len(problems) // 2)
    ranked = sorted(problems, key=lambda p: hashlib.sha256(f"{seed}/{p.id}".encode()).hexdigest())
    heldout = {p.id for p in ranked[:k]}
    return [p for p in problems if p.id not in heldout], [p for p in problems if p.id in heldout]


def load_own(data: OwnData, split: str) -> list[Problem]:
    """The training (``split="train"``) or held-out (``"test"``) problems of ``data``."""
    train, heldout = split_own(data)
    return list(train if split == "train" else heldout)


@functools.lru_cache(maxsize=4)
def split_own(data: OwnData) -> tuple[tuple[Problem, ...], tuple[Problem, ...]]:
    """``(train, heldout)``, read once per ``OwnData`` (the trainer asks for both splits; a file's malformed rows are
    reported once)."""
    problems = read_rows(data.path, data, data.label)
    if data.heldout_path:
        train, heldout = problems, read_rows(data.heldout_path, data, label_of(data.heldout_path))
    elif any(p.meta.get("split") == "test" for p in problems):
        train = [p for p in problems if p.meta.get("split") != "test"]
        heldout = [p for p in problems if p.meta.get("split") == "test"]
    else:
        train, heldout = carve_heldout(problems, data.heldout_fraction, data.seed)
    if not train:
        raise ValueError(f"{data.path}: every usable row is held out; nothing is left to train on")
    return tuple(train), tuple(heldout)


def describe(data: OwnData, train: list[Problem], heldout: list[Problem]) -> str:
    """One line saying where the held-out problems came from, with the sizes."""
    if data.heldout_path:
        return f"held-out: the {len(heldout)} rows of {data.heldout_path}; training on the {len(train)} rows of {data.path}"
    if any(p.meta.get("split") for p in train):
        return f"held-out: the {len(heldout)} rows of {data.path} whose split is test; training on the other {len(train)}"
    return (f"held-out: {len(heldout)} of the {len(train) + len(heldout)} rows of {data.path}, chosen at random (seed "
            f"{data.seed}, --heldout-fraction {data.heldout_fraction:g}) and never trained on; training on the other "
            f"{len(train)}")
