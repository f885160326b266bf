"""Preference pairs (a prompt, a chosen and a rejected response) for reward models and DPO.

Two row layouts are read, from JSONL files or Hub data sets:

* explicit: ``{"prompt": ..., "chosen": ..., "rejected": ...}`` (TRL's layout);
* implicit, as in Anthropic's hh-rlhf: ``{"chosen": dialogue, "rejected": dialogue}``, two whole
  dialogues that share everything up to the last ``"\\n\\nAssistant:"``; the shared part is
  the prompt and what follows it the response.

``load_preference_pairs()`` with no source reads the hh-rlhf harmlessness split in
``../shared/data`` (2312 pairs). ``heldout_split()`` splits pairs by a hash of their id, so the
held-out part does not change when the data set grows or is read in another order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from data_prep.benchmarks import default_data_dir
from data_prep.problems import MalformedRowError, Problem, read_jsonl

ASSISTANT = "\n\nAssistant:"
HUMAN = "\n\nHuman:"


@dataclass(frozen=True)
class PreferencePair:
    id: str
    prompt: str  # ends where the responses start (for hh-rlhf: with "\n\nAssistant:")
    chosen: str
    rejected: str


def split_dialogues(chosen: str, rejected: str) -> tuple[str, str, str]:
    """``(prompt, chosen_response, rejected_response)`` from two dialogues with a shared prefix."""
    cut = chosen.rfind(ASSISTANT)
    if cut < 0:
        raise ValueError("the chosen dialogue has no '\\n\\nAssistant:' turn")
    prompt = chosen[: cut + len(ASSISTANT)]
    if not rejected.startswith(prompt):
        raise ValueError("chosen and rejected dialogues differ before the last assistant turn")
    return prompt, chosen[len(prompt) :], rejected[len(prompt) :]


def _pair(row: dict, i: int, name: str) -> PreferencePair:
    chosen, rejected = row["chosen"], row["rejected"]
    if not (isinstance(chosen, str) and isinstance(rejected, str)):
        raise ValueError("chosen and rejected must be strings")
    if "prompt" in row:
        prompt = row["prompt"]
    else:
        prompt, chosen, rejected = split_dialogues(chosen, rejected)
    if not chosen.strip() or not rejected.strip():
        raise ValueError("an empty response")
    if chosen == rejected:
        raise ValueError("chosen and rejected are identical")
    return PreferencePair(f"{name}/{i}", prompt, chosen, rejected)


def load_preference_pairs(source: str | None = None, split: str = "test", limit: int | None = None,
                          strict: bool = False) -> list[PreferencePair]:
    """Pairs from a JSONL file, a folder holding ``<split>.jsonl``, or a Hub data set name.

    Malformed rows (missing fields, identical responses, dialogues that do not share a prompt)
    are skipped with one warning naming the file and lines, or raise ``MalformedRowError`` with
    ``strict``.
    """
    if source is None:
        data = default_data_dir()
        if data is None or not (data / "hh_rlhf_harmless").is_dir():
            source = "Anthropic/hh-rlhf"
        else:
            source = str(data / "hh_rlhf_harmless")
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / f"{split}.jsonl"
    if path.suffix == ".jsonl" or path.exists():
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such preference file")
        pairs = list(read_jsonl(path, lambda row, i: _pair(row, i, path.stem), strict))
    else:
        from datasets import load_dataset

        pairs = []
        for i, row in enumerate(load_dataset(source, split=split)):
            try:
                pairs.append(_pair(row, i, source))
            except (KeyError, ValueError) as error:
                if strict:
                    raise MalformedRowError(f"{source}[{split}] row {i}: {error}") from error
    if not pairs:
        raise ValueError(f"{source}: no usable preference pairs")
    return pairs[:limit] if limit else pairs


def heldout_split(pairs: list[PreferencePair], fraction: float, seed: int = 0) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """``(train, heldout)``: a pair is held out when the hash of its id falls below ``fraction``."""
    def score(pair: PreferencePair) -> float:
        digest = hashlib.sha256(f"{seed}/{pair.id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    train = [p for p in pairs if score(p) >= fraction]
    heldout = [p for p in pairs if score(p) < fraction]
    return train, heldout


def open_ended_problems(pairs: list[PreferencePair]) -> list[Problem]:
    """Prompts without a reference answer (``answer=None``): scored by a reward model in training.

    The first human turn of each dialogue becomes the question; the chat template is applied
    later, as for every other problem.
    """
    problems = []
    for pair in pairs:
        first = pair.prompt.split(ASSISTANT)[0].removeprefix(HUMAN).strip()
        if first:
            problems.append(Problem(pair.id, first, None, "open_ended", {"dialogue": pair.prompt}))
    return problems
