"""Measure the policy update's speed and memory: float32 vs bf16 autocast, with and without
gradient checkpointing, on the same batch in one run, and print the ratios.

    python scripts/bench_train_step.py                  # the embedded model, 16 x (48 prompt + 64 completion) tokens
    python scripts/bench_train_step.py --model Qwen/Qwen2.5-0.5B-Instruct --batch 8

Forward + backward of ``completion_logprobs`` (the training step without the optimizer), after
one warm-up pass, best of ``--repeats``. The arithmetic bound for comparison is about
6 x parameters flop per token; a 2048 x 2048 bf16 matrix product ran at 408 GFLOP/s on the 2 cores
of the machine where the README's figures were measured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from reasoning_rl.cli import run
from reasoning_rl.config import parse_config
from reasoning_rl.logprobs import completion_logprobs, pack
from reasoning_rl.models import load_policy, load_tokenizer, resolve_model


@dataclass
class Config:
    model: str = "smollm2-135m-instruct"
    """Model to time."""
    batch: int = 16
    """Sequences per forward/backward (the trainer's micro_batch_size)."""
    prompt_tokens: int = 48
    """Prompt length."""
    completion_tokens: int = 64
    """Completion length."""
    repeats: int = 3
    """Timed repetitions per setting (the best is reported)."""


def time_step(model, ids, attention, T, autocast: bool, repeats: int) -> float:
    best = float("inf")
    for i in range(repeats + 1):
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        logps, _ = completion_logprobs(model, ids, attention, T, autocast=autocast)
        logps.sum().backward()
        if i > 0:  # the first pass is a warm-up
            best = min(best, time.perf_counter() - start)
    return best


def main(cfg: Config) -> dict:
    path = resolve_model(cfg.model)
    tokenizer, model = load_tokenizer(path), load_policy(path)
    model.train()
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(100, 1000, (cfg.batch, cfg.prompt_tokens), generator=g).tolist()
    completions = torch.randint(100, 1000, (cfg.batch, cfg.completion_tokens), generator=g).tolist()
    ids, attention, mask = pack(prompts, completions, tokenizer.pad_token_id)
    tokens = ids.numel()
    params = sum(p.numel() for p in model.parameters())
    results = {}
    for checkpointing in (False, True):
        if checkpointing:
            model.gradient_checkpointing_enable()
        for autocast in (False, True):
            seconds = time_step(model, ids, attention, mask.shape[1], autocast, cfg.repeats)
            name = f"{'bf16 autocast' if autocast else 'float32'}{' + checkpointing' if checkpointing else ''}"
            results[name] = tokens / seconds
            print(f"{name:32s} {tokens / seconds:8.0f} tokens/s  ({6 * params * tokens / seconds / 1e9:.0f} GFLOP/s)")
    base = results["float32"]
    print("\nspeed relative to float32: " + ", ".join(f"{k} {v / base:.2f}x" for k, v in results.items()))
    return results


if __name__ == "__main__":
    run(main, Config, __doc__)
