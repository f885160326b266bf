"""Scored batches waiting to be trained on: ``--rollout-staleness k``.

With k = 0 every batch is generated and trained in the same step (on-policy, up to the engine/trainer
mismatch). With k > 0 generation runs k batches ahead of training: the batch trained at step t was
sampled with the weights of step t - k. That is what asynchronous training does when the generation
of the next batches overlaps the update (the engine syncs k steps late). Here the generation still
runs in the loop, right before the update; a background generator would fill the same buffer.

The pending batches are saved in every checkpoint (every rank's, by rank 0), so a resumed run trains
on the batches the interrupted one had generated.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Callable

import torch

from runtime.distributed import Dist

FILE = "rollout_buffer.pt"


class RolloutBuffer:
    def __init__(self, staleness: int, batches: list | None = None):
        self.staleness = staleness
        self.batches = deque(batches or [])  # oldest first; each a sampling.Batch

    def next(self, collect: Callable[[], object]):
        """The batch to train on now: the oldest pending one, after ``collect()`` has topped the buffer up to
        ``staleness + 1`` batches (one call per step once it is full; ``staleness + 1`` calls at the first step)."""
        while len(self.batches) <= self.staleness:
            self.batches.append(collect())
        return self.batches.popleft()

    @staticmethod
    def save(folder: Path, every_rank: list[list]) -> None:
        """Every rank's pending batches into a checkpoint folder (nothing when none is pending)."""
        if any(every_rank):
            torch.save(every_rank, folder / FILE)

    @classmethod
    def load(cls, checkpoint: Path | None, staleness: int, dist: Dist) -> "RolloutBuffer":
        """This rank's pending batches from ``checkpoint``; an empty buffer for a new run, or when the checkpoint was
        written by another number of ranks (then the first steps after the resume are sampled afresh)."""
        path = checkpoint / FILE if checkpoint else None
        if path is None or not path.exists():
            return cls(staleness)
        every_rank = torch.load(path, weights_only=False)
        if len(every_rank) != dist.world:
            dist.print(f"note: {path} holds the pending rollouts of {len(every_rank)} ranks, not {dist.world}: "
                       "the buffer is refilled from the current weights")
            return cls(staleness)
        return cls(staleness, every_rank[dist.rank])
