"""Measure the policy update's speed: the plain update, with zero-advantage rows skipped, with each
group's prompt encoded once (shared prompt), and with both, on the same GRPO batch in one run;
then float32 against bf16 autocast and gradient checkpointing for the plain forward + backward.

    python scripts/bench/bench_train_step.py                  # the embedded model, the main job's batch shape
    python scripts/bench/bench_train_step.py --model Qwen/Qwen2.5-0.5B-Instruct --completion-tokens 256

The batch is the main job's: 8 real "What is a + b?" prompts in the chat template (about 35
tokens) x 8 completions of random tokens, ``--completion-tokens`` long on average (uniform within
+-50 %), with ``--informative-groups`` of the 8 groups having mixed rewards and the others all-equal
rewards (late in the main job about half are all-equal). Each setting runs the trainer's own
``PolicyGradient`` update (forward, backward, AdamW step; bf16 autocast, GRPO, beta = 0), one
warm-up and ``--repeats`` timed, best kept.

Tokens/s counts every token of the batch (prompts and completions of all rows: the work the plain
update does) per second of update, so a setting that avoids work shows as more tokens/s. The
fraction of peak is ``6 x parameters x tokens/s`` over the bf16 matrix-product rate measured in the
same run (2048 x 2048, the machine's arithmetic ceiling); above 100 % means the setting skipped
more work than the hardware could have done.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from data_prep import Problem, make_arithmetic, render_prompt
from reasoning_rl.advantage_estimators import GroupRelative
from reasoning_rl.cli import run
from reasoning_rl.logprobs import completion_logprobs, pack
from reasoning_rl.models import load_policy, load_tokenizer, resolve_model
from reasoning_rl.optim import make_optimizer
from reasoning_rl.policy_gradient import PolicyGradient, PolicyGradientConfig
from reasoning_rl.rollout import Rollouts


@dataclass
class Config:
    model: str = "smollm2-135m-instruct"
    """Model to time."""
    prompts: int = 8
    """Groups in the batch (B)."""
    group_size: int = 8
    """Completions per prompt (G)."""
    completion_tokens: int = 24
    """Mean completion length (the main job's completions shrink from about 50 to 11 tokens)."""
    informative_groups: int = 4
    """Groups with mixed rewards; the others have all-equal rewards (advantage 0)."""
    micro_batch_size: int = 16
    """Sequences per forward/backward (the trainer's default)."""
    repeats: int = 3
    """Timed repetitions per setting (the best is reported)."""
    precision: bool = True
    """Also time float32 / bf16 autocast / gradient checkpointing on the plain forward + backward."""
    output: str | None = None
    """Write the results as JSON here (e.g. docs/results_train_step.json)."""


def bf16_peak(size: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a bf16 ``size x size`` matrix product (best of ``repeats``): the machine's ceiling for training."""
    a, b = torch.randn(size, size, dtype=torch.bfloat16), torch.randn(size, size, dtype=torch.bfloat16)
    a @ b  # warm-up
    best = min(timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def grpo_batch(tokenizer, cfg: Config) -> Rollouts:
    """Real prompts, random completion tokens, rewards mixed in ``informative_groups`` groups and all-equal elsewhere."""
    rng = random.Random(0)
    problems: list[Problem] = make_arithmetic("add_20", cfg.prompts, 0, "train")
    prompts = [render_prompt(p.problem, "chat", tokenizer) for p in problems]
    prompt_ids = [tokenizer(text, add_special_tokens=False).input_ids for text in prompts]
    lo, hi = max(1, cfg.completion_tokens // 2), max(1, cfg.completion_tokens * 3 // 2)
    n = cfg.prompts * cfg.group_size
    completions = [[rng.randrange(100, 10000) for _ in range(rng.randint(lo, hi))] for _ in range(n)]
    rewards = []
    for g in range(cfg.prompts):
        if g < cfg.informative_groups:
            rewards += [float(j % 2) for j in range(cfg.group_size)]  # half right, half wrong
        else:
            rewards += [float(g % 2)] * cfg.group_size  # all right or all wrong: advantage 0
    return Rollouts(problems, prompts, [ids for ids in prompt_ids for _ in range(cfg.group_size)], completions,
                    [""] * n, torch.zeros(n, dtype=torch.bool), cfg.group_size, torch.tensor(rewards))


def time_update(path: str, tokenizer, rollouts: Rollouts, cfg: Config, skip: bool, shared: bool) -> float:
    """Best seconds of the trainer's update (forward, backward, AdamW step) on ``rollouts``."""
    policy = load_policy(path).train()
    options = PolicyGradientConfig(skip_zero_advantage=skip, shared_prompt=shared, micro_batch_size=cfg.micro_batch_size)
    update = PolicyGradient(options, GroupRelative())
    optimizer, _ = make_optimizer(policy, options.lr, 0.0, 0)
    update.setup(policy, None, tokenizer, optimizer, path)
    seconds = [timed(lambda: update(rollouts, step)) for step in range(cfg.repeats + 1)]
    return min(seconds[1:])  # the first is a warm-up


def time_forward_backward(model, ids, attention, T, autocast: bool, repeats: int) -> float:
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
    tokenizer = load_tokenizer(path)
    params = sum(p.numel() for p in load_policy(path).parameters())
    peak = bf16_peak()
    rollouts = grpo_batch(tokenizer, cfg)
    tokens = sum(map(len, rollouts.prompt_ids)) + sum(map(len, rollouts.completion_ids))
    print(f"bf16 matrix-product peak: {peak / 1e9:.0f} GFLOP/s; batch: {len(rollouts)} rows, {tokens} tokens "
          f"(prompts {sum(map(len, rollouts.prompt_ids)) // len(rollouts)} tokens, completions "
          f"{sum(map(len, rollouts.completion_ids)) / len(rollouts):.0f} on average), "
          f"{cfg.informative_groups} of {cfg.prompts} groups with mixed rewards\n")
    print(f"{'update (bf16 autocast, AdamW)':34s} {'seconds':>8s} {'tokens/s':>9s} {'of peak':>8s} {'speed-up':>9s}")
    updates = {}
    for name, skip, shared in [("plain", False, False), ("skip zero-advantage rows", True, False),
                               ("shared prompt", False, True), ("both", True, True)]:
        seconds = time_update(path, tokenizer, rollouts, cfg, skip, shared)
        updates[name] = {"seconds": seconds, "tokens_per_s": tokens / seconds,
                         "fraction_of_peak": 6 * params * tokens / seconds / peak}
        r = updates[name]
        print(f"{name:34s} {seconds:8.2f} {r['tokens_per_s']:9.0f} {r['fraction_of_peak']:8.1%} "
              f"{updates['plain']['seconds'] / seconds:8.2f}x")
    results = {"model": cfg.model, "parameters": params, "bf16_peak_flops": peak, "batch_tokens": tokens,
               "rows": len(rollouts), "informative_groups": cfg.informative_groups, "updates": updates}

    if cfg.precision:
        g = torch.Generator().manual_seed(0)
        prompts = torch.randint(100, 1000, (16, 48), generator=g).tolist()
        completions = torch.randint(100, 1000, (16, 64), generator=g).tolist()
        ids, attention, mask = pack(prompts, completions, tokenizer.pad_token_id)
        model = load_policy(path).train()
        print(f"\n{'plain forward + backward, 16 x (48 + 64)':42s} {'tokens/s':>9s} {'of peak':>8s}")
        precision = {}
        for checkpointing in (False, True):
            if checkpointing:
                model.gradient_checkpointing_enable()
            for autocast in (False, True):
                seconds = time_forward_backward(model, ids, attention, mask.shape[1], autocast, cfg.repeats)
                name = f"{'bf16 autocast' if autocast else 'float32'}{' + checkpointing' if checkpointing else ''}"
                precision[name] = {"tokens_per_s": ids.numel() / seconds, "fraction_of_peak": 6 * params * ids.numel() / seconds / peak}
                print(f"{name:42s} {precision[name]['tokens_per_s']:9.0f} {precision[name]['fraction_of_peak']:8.1%}")
        results["precision"] = precision
    if cfg.output:
        Path(cfg.output).write_text(json.dumps(results, indent=2))
        print(f"\nwritten to {cfg.output}")
    return results


if __name__ == "__main__":
    run(main, Config, __doc__)
