"""Pieces shared by the trainers (GRPO, PPO, DPO): model set-up, optimizer, held-out evaluation, plots."""

from __future__ import annotations

import copy
import random
import resource
from pathlib import Path

import torch

from eval import evaluate


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def peak_memory_gib() -> float:
    """Peak resident memory of this process (CPU) or peak allocated GPU memory, in GiB."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def prepare_policy(policy, lora_rank: int, lora_alpha: int, gradient_checkpointing: bool):
    """Optionally wrap in LoRA (peft) and enable gradient checkpointing."""
    if gradient_checkpointing:
        policy.gradient_checkpointing_enable()
        policy.config.use_cache = False
    if lora_rank > 0:
        from peft import LoraConfig, get_peft_model

        policy = get_peft_model(policy, LoraConfig(r=lora_rank, lora_alpha=lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM"))
    return policy


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def make_optimizer(model, lr: float, weight_decay: float, warmup_steps: int):
    """AdamW with linear warm-up (step s uses lr * (s + 1) / (warmup + 1)), then a constant rate."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.99))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (warmup_steps + 1)))
    return optimizer, scheduler


def held_out_accuracy(generator, tokenizer, problems, template: str, n: int, max_new_tokens: int) -> dict[str, float]:
    """Greedy accuracy and sampled pass@1 (temperature 1.0, ``n`` samples) on ``problems``."""
    _, greedy = evaluate(generator, tokenizer, problems, template, 1, [1], 0.0, 1.0, max_new_tokens, progress=False)
    result = {"greedy": greedy["pass@1"]}
    if n > 0:
        _, sampled = evaluate(generator, tokenizer, problems, template, n, [1], 1.0, 1.0, max_new_tokens, progress=False)
        result["pass@1"] = sampled["pass@1"]
    return result


def plot_run(metrics: list[dict], path: Path, title: str, before: dict[str, float] | None = None) -> None:
    """Reward and held-out accuracy against step (``before``: the untrained policy, at step 0), one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [m["step"] for m in metrics if "reward/mean" in m]
    left.plot(steps, [m["reward/mean"] for m in metrics if "reward/mean" in m], label="train reward (mean)")
    left.plot(steps, [m["train/accuracy"] for m in metrics if "reward/mean" in m], label="train accuracy", alpha=0.7)
    left.set_xlabel("step"), left.set_title("training batches"), left.legend(), left.grid(alpha=0.3)
    for key, label in [("heldout/greedy", "greedy"), ("heldout/pass@1", "sampled pass@1 (T=1)")]:
        points = [(0, before[key.split("/")[1]])] if before and key.split("/")[1] in before else []
        points += [(m["step"], m[key]) for m in metrics if key in m]
        if points:
            right.plot(*zip(*points), marker="o", label=label)
    right.set_xlabel("step"), right.set_ylim(0, 1), right.set_title("held-out accuracy"), right.legend(), right.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_seconds(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s" if seconds >= 60 else f"{seconds:.1f} s"

