"""The state a run carries from step to step: saved in every checkpoint as ``trainer_state.json``.

Everything else a resumed run needs is either in the checkpoint's own files (weights, optimizer,
scheduler, random generators, PPO's critic) or rebuilt from the configuration (data, engine).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

STATE_VERSION = 2  # 1: the untyped dict of the first checkpoints (no "version" key); 2: this dataclass


@dataclass
class TrainState:
    step: int = 0  # steps finished
    level: int = 0  # the curriculum's current level (0 without a curriculum)
    level_start: int = 0  # the step after which the current level began
    recent_accuracy: list[float] = field(default_factory=list)  # the curriculum's window of level accuracies
    cursors: list[int] = field(default_factory=list)  # per level: prompts its PromptStream has drawn
    record: dict[str, list[float]] = field(default_factory=dict)  # PromptRecord.to_json(): per prompt id
    before: dict[str, dict[str, float]] = field(default_factory=dict)  # held-out accuracy of the untrained policy, per task
    after: dict[str, dict[str, float]] = field(default_factory=dict)  # of the trained policy (set on the last step)
    sampled_total: int = 0  # completions sampled so far, over all ranks
    version: int = STATE_VERSION

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, blob: dict) -> "TrainState":
        """A state from ``trainer_state.json``, of this version or an older one (version 1 had the same keys,
        some optional; ``after`` could be missing or null)."""
        version = blob.get("version", 1)
        if version > STATE_VERSION:
            raise ValueError(f"trainer_state.json has version {version}; this code reads up to {STATE_VERSION}: "
                             "update the project to resume this run")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in blob.items() if k in known and v is not None}
        return cls(**{**values, "version": STATE_VERSION})
