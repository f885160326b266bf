"""Which prompts to sample: a record of each prompt's observed rewards, and difficulty-aware selection.

GRPO learns nothing from a group whose completions all get the same reward: its advantages are all 0.
Early in training most groups of a hard task are all wrong; late, most groups of an easy one are all
right. DAPO's dynamic sampling (``--dynamic-sampling``) generates such groups and then throws them
away. Selection spends the generation on informative prompts in the first place, using what the run
has already seen:

* ``PromptRecord`` keeps, per prompt id, the completions sampled, their summed accuracy (the
  ``accuracy`` reward, else the total reward) and the pass rate of its latest group. Whether a prompt
  is informative now is judged on the latest group: the policy changes, and a prompt once half right
  is soon always right (its lifetime mean would stay in between for ever and keep drawing it). It
  lives in the trainer state, is saved with every checkpoint and comes back with ``--resume``.
* ``select_prompts`` draws a step's prompts: a fraction ``explore`` comes from the prompt stream (the
  seeded walk over the pool: unseen prompts first, epoch after epoch); the rest is drawn without
  replacement, in proportion to weight, from the prompts already seen, weight 1 for an informative
  one (latest pass rate strictly between 0 and 1) and ``retry_weight`` for a saturated one (latest
  pass rate 0 or 1), and from unseen
  prompts at weight 1. So a saturated prompt is drawn about ``retry_weight`` times as often as an
  informative or an unseen one (0.1: a tenth), but never not at all: a prompt the policy could not solve
  comes back now and then, and once some of its completions are right it is informative again, at full
  weight.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import torch


@dataclass
class PromptRecord:
    """``{problem id: [completions sampled, summed accuracy, pass rate of the latest group]}`` over the run."""

    counts: dict[str, list[float]] = field(default_factory=dict)

    def update(self, ids: list[str], accuracy: torch.Tensor, group_size: int) -> None:
        """Add one step's groups: ``ids [B]`` and their completions' ``accuracy [B * G]`` (in [0, 1])."""
        for k, pid in enumerate(ids):
            hits = float(accuracy[k * group_size : (k + 1) * group_size].sum())
            n, total, _ = self.counts.get(pid, (0, 0.0, 0.0))
            self.counts[pid] = [n + group_size, total + hits, hits / group_size]

    def informative(self, pid: str) -> bool:
        """Its latest group had right and wrong answers: GRPO would have a gradient there."""
        return 0 < self.counts[pid][2] < 1

    def summary(self) -> dict[str, int]:
        """Prompts seen; informative (latest group mixed); solved (latest group all right); never solved (no right
        answer in any completion so far)."""
        entries = self.counts.values()
        return {"prompts/seen": len(entries), "prompts/informative": sum(0 < last < 1 for _, _, last in entries),
                "prompts/solved": sum(last >= 1 for _, _, last in entries),
                "prompts/never_solved": sum(total <= 0 for _, total, _ in entries)}

    def to_json(self) -> dict:
        return self.counts

    @classmethod
    def from_json(cls, counts: dict | None) -> "PromptRecord":
        return cls({k: list(v) for k, v in (counts or {}).items()})


def select_prompts(stream, record: PromptRecord, pool: dict[str, object], k: int, explore: float, retry_weight: float,
                   rng: random.Random) -> list:
    """``k`` distinct prompts from ``pool`` (id -> problem).

    ``round(explore * k)`` come from ``stream`` (its seeded walk over the pool). The rest are drawn without
    replacement, in proportion to their weights, from the seen prompts (1 informative, ``retry_weight``
    saturated) and from as many unseen ones as could be needed (weight 1 each: nothing is known of them; those
    drawn are the stream's next ones). The weighted draw uses Efraimidis-Spirakis keys ``u ** (1 / w)``: the
    ``n`` largest keys are a sample where each prompt's chance at every pick is proportional to its weight.
    """
    n_rest = k - round(explore * k)
    seen = [pid for pid in record.counts if pid in pool]

    def key(weight: float) -> float:  # the log of u ** (1 / w), u uniform in (0, 1]: the same order, no underflow
        return math.log(1.0 - rng.random()) / weight

    keyed = [(key(1.0 if record.informative(pid) else retry_weight), pid) for pid in seen]
    keyed += [(key(1.0), None) for _ in range(min(n_rest, len(pool) - len(seen)))]  # unseen prompts: None
    chosen = [pool[pid] for _, pid in sorted(keyed, key=lambda x: x[0], reverse=True)[:n_rest] if pid is not None]
    taken = {p.id for p in chosen}
    while len(chosen) < k:  # the explored share and the unseen prompts drawn
        problem = stream.take(1)[0]
        if problem.id not in taken or len(taken) >= len(pool):
            chosen.append(problem)
            taken.add(problem.id)
    return chosen
