"""What one step logs, and how each metric combines over ranks. Every metric is explained in docs/metrics.md."""

from __future__ import annotations

import torch

from reasoning_rl.advantages import zero_std_groups
from reasoning_rl.hacking import hacking_metrics
from reasoning_rl.rollout import Rollouts
from reasoning_rl.run import Run
from reasoning_rl.sampling import Batch
from reasoning_rl.tool_use import batch_tool_metrics
from reasoning_rl.tracking import peak_memory_gib, step_memory_gib
from rewards import audit_metrics
from runtime.distributed import Dist


def step_metrics(run: Run, batch: Batch, train_metrics: dict[str, float]) -> dict[str, float]:
    """What one step logs: rewards, the verifier's audit, the reward-hacking rates, the update's metrics, lengths,
    times, memory."""
    generated, seconds = batch.generated, batch.seconds
    lengths = torch.tensor([len(c) for c in generated.completion_ids], dtype=torch.float)
    rewards = reward_metrics(generated)
    return {
        **rewards,
        "train/accuracy": rewards.get("reward/accuracy", float("nan")),
        "train/frac_reward_zero_std": batch.frac_zero_std,
        "train/informative_groups": int((~zero_std_groups(generated.rewards, generated.group_size)).sum()),
        "train/groups_trained": batch.groups,
        "train/refills": batch.refills,
        **train_metrics,
        **audit_metrics([v for v in generated.verdicts if v is not None]),
        **hacking_metrics(generated.texts, generated.truncated.tolist()),
        **(batch_tool_metrics(generated.tool_calls, rewards_correct(generated)) if generated.tool_calls is not None else {}),
        "completions/mean_length": lengths.mean().item(),
        "completions/max_length": lengths.max().item(),
        "completions/truncated": generated.truncated.float().mean().item(),
        "completions/sampled": len(generated),
        **{f"time/{k}": v for k, v in seconds.items()},
        "time/step": sum(seconds.values()),
        "throughput/sampled_tokens_per_s": lengths.sum().item() / max(seconds["generate"], 1e-9),
        "throughput/train_tokens_per_s": sum(map(len, batch.rollouts.completion_ids)) / max(seconds["train"], 1e-9),
        "memory/peak_gib": peak_memory_gib(),
        **step_memory_gib(),
        **(level_metrics(run, batch) if run.cfg.curriculum else {}),
        **run.record.summary(),
    }


def rewards_correct(rollouts: Rollouts) -> list[float] | None:
    """Each completion's accuracy (1 or 0), or None when no accuracy reward is computed."""
    accuracy = rollouts.components.get("accuracy")
    return None if accuracy is None else accuracy.tolist()


def level_metrics(run: Run, batch: Batch) -> dict[str, float]:
    """With a curriculum: the level, and the accuracy counts on the current level's prompts (not the replayed ones)."""
    generated, level_pool = batch.generated, run.pools[batch.level]
    current = torch.tensor([p.id in level_pool for p in generated.problems]).repeat_interleave(generated.group_size)
    accuracy = generated.components.get("accuracy", generated.rewards)
    return {"curriculum/level": batch.level, "curriculum/level_correct": float(accuracy[current].sum()),
            "curriculum/level_completions": int(current.sum())}


# How a step's metrics combine over ranks (``reduce_over_ranks``); every other metric is the mean of the ranks' values,
# each rank holding an equal share of the batch.
SUMMED = ("train/rows_skipped", "train/informative_groups", "completions/sampled", "throughput/", "dpo/pairs", "tools/seconds",
          "curriculum/level_correct", "curriculum/level_completions")
MAXIMUM = ("time/", "memory/", "completions/max_length", "rollout/logprob_diff_max")


def reduce_over_ranks(dist: Dist, metrics: dict[str, float]) -> dict[str, float]:
    """One step's metrics over all ranks, the same on every rank (so the curriculum takes the same decision)."""
    if dist.world == 1:
        return metrics
    ranks = dist.gather(metrics)
    out = {}
    for key in ranks[0]:
        values = [m[key] for m in ranks if key in m]
        if key.startswith(SUMMED):
            out[key] = sum(values)
        elif key.startswith(MAXIMUM):
            out[key] = max(values)
        else:
            out[key] = sum(values) / len(values)
    return out


def reward_metrics(rollouts: Rollouts) -> dict[str, float]:
    """Mean and std of the reward and of each component, over the rows where the component applies.

    Verifier components apply to prompts with a reference answer, ``reward_model`` to the others,
    so in a mixed batch the two reward sources are logged separately.
    """
    verifiable = torch.tensor([a is not None for a in rollouts.answers])
    out = {"reward/mean": rollouts.rewards.mean().item(), "reward/std": rollouts.rewards.std().item()}
    applies_to = {"reward_model": ~verifiable, "overlong": torch.ones_like(verifiable)}  # verifiers: the verifiable rows
    for name, values in rollouts.components.items():
        rows = applies_to.get(name, verifiable)
        if rows.any():
            out[f"reward/{name}"] = values[rows].mean().item()
            out[f"reward/{name}_std"] = values[rows].std().item() if rows.sum() > 1 else 0.0
    if not verifiable.all():
        out["reward/open_ended_fraction"] = (~verifiable).float().mean().item()
    return out
