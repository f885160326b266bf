"""Where a step's memory goes: the peak resident memory of one policy update on a GSM8K-shaped batch, by the number
of groups trained, for each way of encoding the shared prompts.

    python scripts/bench/bench_step_memory.py --output docs/results_step_memory.json
    python scripts/bench/bench_step_memory.py --groups 2 8 --completion-tokens 64      # a quick look

The batch has the GSM8K preset's shape: ``--prompts`` groups of ``--group-size`` completions, prompts of
``--prompt-tokens`` tokens and completions of random tokens, uniform in [completion-tokens / 2, 3 / 2 x
completion-tokens]; ``g`` of the groups have mixed rewards (trained), the others all-equal rewards (skipped, as the
trainer does with beta = 0). Each update runs the trainer's own ``PolicyGradient`` in a fresh process, so that one
measurement's allocator state cannot leak into the next, and reports the process's resident high-water mark during
the update alone (``tracking.step_memory_gib``), above what the process held before it.

``--shared-prompt-scope step`` holds every trained group's prompt encoding (its autograd graph) from the first
micro-batch to the last; ``micro_batch`` encodes each micro-batch's own prompts in its forward and frees them with
its backward. The first grows with the number of groups trained, the second is bounded by the micro-batch.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from reasoning_rl.cli import run

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Config:
    model: str = "smollm2-135m-instruct"
    """Model to measure."""
    prompts: int = 16
    """Groups in the batch (the GSM8K preset's 16)."""
    group_size: int = 8
    """Completions per group (the preset's 8)."""
    prompt_tokens: int = 160
    """Tokens per prompt (a GSM8K question in the chat_boxed template: about 130 to 200)."""
    completion_tokens: int = 200
    """Mean completion length (the preset allows 320)."""
    micro_batch_size: int = 8
    """Rows per forward and backward."""
    groups: tuple[int, ...] = (2, 4, 8, 16)
    """Numbers of trained (mixed-reward) groups to measure."""
    scopes: tuple[str, ...] = ("step", "micro_batch")
    """--shared-prompt-scope values to measure."""
    output: str | None = None
    """Write the results as JSON here."""


def measure(cfg: Config, trained: int, scope: str) -> dict:
    """One update in this process: the memory before it and the peak during it, in GiB, and its seconds."""
    import time

    from reasoning_rl.advantage_estimators import GroupRelative
    from reasoning_rl.models import load_policy, load_tokenizer, resolve_model
    from reasoning_rl.optim import make_optimizer
    from reasoning_rl.policy_gradient import PolicyGradient, PolicyGradientConfig
    from reasoning_rl.rollout import Rollouts
    from reasoning_rl.tracking import step_memory_gib

    path = resolve_model(cfg.model)
    tokenizer, policy = load_tokenizer(path), load_policy(path).train()
    options = PolicyGradientConfig(micro_batch_size=cfg.micro_batch_size, shared_prompt_scope=scope)
    update = PolicyGradient(options, GroupRelative())
    optimizer, _ = make_optimizer(policy, options.lr, 0.0, 0)
    update.setup(policy, None, tokenizer, optimizer, path)
    rng, n = random.Random(0), cfg.prompts * cfg.group_size
    prompt_ids = [[rng.randrange(100, 10000) for _ in range(cfg.prompt_tokens)] for _ in range(cfg.prompts)]
    lo, hi = cfg.completion_tokens // 2, cfg.completion_tokens * 3 // 2
    completions = [[rng.randrange(100, 10000) for _ in range(rng.randint(lo, hi))] for _ in range(n)]
    rewards = [float(j % 2) if g < trained else 0.0 for g in range(cfg.prompts) for j in range(cfg.group_size)]
    rollouts = Rollouts([], [""] * cfg.prompts, [ids for ids in prompt_ids for _ in range(cfg.group_size)], completions,
                        [""] * n, torch.zeros(n, dtype=torch.bool), cfg.group_size, torch.tensor(rewards))
    update(rollouts, 0)  # a warm-up: AdamW's state and the allocator's first shapes
    before = step_memory_gib()["memory/rss_gib"]
    start = time.perf_counter()
    metrics = update(rollouts, 1)
    seconds = time.perf_counter() - start
    after = step_memory_gib()
    return {"groups_trained": trained, "scope": scope, "rows_trained": n - metrics["train/rows_skipped"],
            "resident_before_gib": before, "step_peak_gib": after["memory/step_peak_gib"],
            "step_extra_gib": after["memory/step_peak_gib"] - before, "resident_after_gib": after["memory/rss_gib"],
            "heap_in_use_after_gib": after.get("memory/heap_in_use_gib"),
            "heap_free_held_after_gib": after.get("memory/heap_free_held_gib"), "seconds": seconds}


def main(cfg: Config) -> dict:
    rows = []
    print(f"{cfg.prompts} groups x {cfg.group_size}, prompts of {cfg.prompt_tokens} tokens, completions of "
          f"{cfg.completion_tokens // 2}-{cfg.completion_tokens * 3 // 2}, micro-batches of {cfg.micro_batch_size}\n")
    print(f"{'scope':>12} {'groups trained':>15} {'peak GiB':>9} {'above start':>12} {'after':>6} {'in use':>7} "
          f"{'free held':>10} {'seconds':>8}")
    for scope in cfg.scopes:
        for trained in cfg.groups:
            code = (f"import json, sys; sys.path.insert(0, {str(ROOT / 'scripts' / 'bench')!r}); "
                    f"from bench_step_memory import Config, measure; "
                    f"print(json.dumps(measure(Config(**json.loads(sys.argv[1])), {trained}, {scope!r})))")
            settings = json.dumps({k: v for k, v in vars(cfg).items() if k not in ("groups", "scopes", "output")})
            done = subprocess.run([sys.executable, "-c", code, settings], capture_output=True, text=True, cwd=ROOT)
            if done.returncode != 0:
                raise SystemExit(f"the measurement ({scope}, {trained} groups) failed:\n{done.stderr[-3000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{scope:>12} {trained:15d} {row['step_peak_gib']:9.2f} {row['step_extra_gib']:12.2f} "
                  f"{row['resident_after_gib']:6.2f} {row['heap_in_use_after_gib'] or 0:7.2f} "
                  f"{row['heap_free_held_after_gib'] or 0:10.2f} {row['seconds']:8.1f}", flush=True)
    results = {"command": " ".join(sys.argv), "config": {k: v for k, v in vars(cfg).items() if k != "output"},
               "malloc_environment": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}, "rows": rows}
    if cfg.output:
        Path(cfg.output).write_text(json.dumps(results, indent=2))
        print(f"\nwritten to {cfg.output}")
    return results


if __name__ == "__main__":
    run(main, Config, __doc__)
