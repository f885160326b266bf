"""The weight sync into the engines, from whole models (DDP) and from FSDP2 shards (streamed): seconds and memory.

    .venv/bin/torchrun --nproc-per-node 2 scripts/bench/bench_sync.py --shard ddp --output runs/bench_sync/ddp.json
    .venv/bin/torchrun --nproc-per-node 2 scripts/bench/bench_sync.py --shard fsdp --output runs/bench_sync/fsdp.json

Every rank loads the embedded model (float32, as the trainer does), shards it with ``--shard fsdp``, starts its own
vLLM engine, and syncs the weights ``--repeats`` times. For each sync: the seconds, and how far the process's resident
memory rose above what it held before the sync (the kernel's high-water mark, reset before each sync): the copy of
the weights a sync holds beyond the engine's own. From whole models the state dict is the model's own tensors; from
shards each tensor is gathered in full, handed to the engine and dropped, so at most one gathered tensor is extra.
Rank 0 writes the JSON (every rank's figures).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from reasoning_rl.cli import run
from reasoning_rl.tracking import step_memory_gib


@dataclass
class Config:
    shard: str = "ddp"
    """ddp (whole models) or fsdp (shards, streamed)."""
    repeats: int = 5
    """Syncs timed (after one untimed)."""
    output: str = "runs/bench_sync/sync.json"
    """Where rank 0 writes the figures."""


def main(cfg: Config) -> dict:
    from reasoning_rl.generation import VLLMGenerator
    from reasoning_rl.models import load_policy, resolve_model
    from runtime.distributed import Dist

    dist = Dist.start(cfg.shard)
    path = resolve_model("smollm2-135m-instruct")
    policy = dist.shard_model(load_policy(path))
    engine = VLLMGenerator(path, memory_fraction=0.05, max_model_len=512, dist=dist)
    engine.sync_weights(policy)  # the first one warms up vLLM's loader
    seconds, extra = [], []
    for _ in range(cfg.repeats):
        dist.barrier()
        before = step_memory_gib()["memory/rss_gib"]  # also resets the high-water mark
        seconds.append(engine.sync_weights(policy))
        extra.append(step_memory_gib()["memory/step_peak_gib"] - before)
    biggest = max(p.numel() * p.element_size() for p in load_policy(path).parameters()) / 2**30
    mine = {"rank": dist.rank, "sync_seconds": seconds, "extra_gib": extra}
    every = dist.gather(mine)
    result = {"command": f"torchrun --nproc-per-node {dist.world} scripts/bench/bench_sync.py --shard {cfg.shard}",
              "shard": cfg.shard, "processes": dist.world, "largest_tensor_gib": biggest, "ranks": every,
              "median_seconds": sorted(s for r in every for s in r["sync_seconds"])[len(every) * cfg.repeats // 2],
              "max_extra_gib": max(e for r in every for e in r["extra_gib"])}
    if dist.is_main:
        Path(cfg.output).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.output).write_text(json.dumps(result, indent=2))
        print(f"--shard {cfg.shard}: sync {result['median_seconds']:.2f} s (median), resident memory above the "
              f"pre-sync level at most {result['max_extra_gib']:.3f} GiB (largest tensor {biggest:.3f} GiB)")
    return result


if __name__ == "__main__":
    run(main, Config, __doc__)
