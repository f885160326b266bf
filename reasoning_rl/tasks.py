"""Training tasks: which problems to train on, in which order, and held-out problems to test on.

A task name is ``arith:<level>`` / ``arith:<level>,<level>`` (synthetic arithmetic, see
``data_prep.synthetic.LEVELS``), a benchmark name (``gsm8k``, ``math``; training uses its train
split, held-out evaluation its test split), ``jsonl``: a file or Hub data set of your own
(``--data-path``; ``data_prep.own_data`` maps its fields and holds part of it out), or ``hh_rlhf``:
open-ended prompts without a reference answer (the first human turns of the hh-rlhf pairs), which
need a reward model.
Tasks joined with ``+`` are mixed: ``arith:add_20+hh_rlhf`` draws from both pools, in
proportion to their sizes.
"""

from __future__ import annotations

import random

from data_prep import BENCHMARKS, Problem, load_problems, make_arithmetic, make_mixture
from data_prep.checks import check_references
from data_prep.own_data import OwnData, load_own


def load_task(task: str, split: str, n: int, seed: int = 0, data_path: str | None = None,
              drop_unparseable: bool = False, own: OwnData | None = None) -> list[Problem]:
    """The problems of ``task``; a benchmark's reference answers are checked as they load (``data_prep.checks``).
    ``own`` describes the data of the ``jsonl`` task (default: ``data_path`` with the default field mapping)."""
    if "+" in task:
        return [p for part in task.split("+") for p in load_task(part, split, n, seed, data_path, drop_unparseable, own)]
    if task == "jsonl":
        if data_path is None and own is None:
            raise ValueError("--task jsonl trains on a data set of your own: pass --data-path FILE.jsonl (or a Hub data set)")
        problems = load_own(own or OwnData(data_path, seed=seed), split)
        problems = problems[:n] if split == "test" else problems
        return check_references(problems, f"{problems[0].source} ({split})", drop_unparseable) if problems else problems
    if task == "hh_rlhf":
        if split != "train":
            return []  # open-ended prompts have no answer to evaluate against
        from data_prep.preferences import heldout_split, load_preference_pairs, open_ended_problems

        _, heldout = heldout_split(load_preference_pairs(), 0.2, seed)  # the reward model's split: it never saw these
        return open_ended_problems(heldout)
    if task.startswith("arith:"):
        levels = task.removeprefix("arith:").split(",")
        return make_arithmetic(levels[0], n, seed, split) if len(levels) == 1 else make_mixture(levels, n, seed, split)
    if task in BENCHMARKS:
        if split == "train" and task not in ("gsm8k", "math"):
            raise ValueError(f"{task} has only a test split; train on gsm8k, math, arith:... or a file of your own "
                             f"(--task jsonl --data-path FILE) and evaluate on {task}")
        problems = load_problems(task, split=split, path=data_path)
        problems = problems[:n] if split == "test" else problems
        return check_references(problems, f"{task} ({split})", drop_unparseable)
    raise ValueError(f"unknown task {task!r}: use arith:<level>[,<level>...], hh_rlhf, jsonl (a file of your own, "
                     f"--data-path) or one of {', '.join(b for b in BENCHMARKS if b != 'jsonl')}")


class PromptStream:
    """Walks a problem list in a seeded random order, epoch after epoch.

    Its whole state is ``cursor`` (problems drawn so far), so a resumed run draws exactly the
    prompts it would have drawn.
    """

    def __init__(self, problems: list[Problem], seed: int, cursor: int = 0):
        if not problems:
            raise ValueError("the task has no training problems")
        self.problems, self.seed, self.cursor = problems, seed, cursor
        self._epoch, self._order = -1, []

    def take(self, k: int) -> list[Problem]:
        out = []
        for _ in range(k):
            epoch, index = divmod(self.cursor, len(self.problems))
            if epoch != self._epoch:
                self._order = list(range(len(self.problems)))
                random.Random(f"{self.seed}/{epoch}").shuffle(self._order)
                self._epoch = epoch
            out.append(self.problems[self._order[index]])
            self.cursor += 1
        return out
