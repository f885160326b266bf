"""GRPO: group sampling in vLLM, group-relative advantages, clipped ratio, KL to a reference.

With no arguments this trains the embedded SmolLM2-135M-Instruct on additions of numbers up
to 20 on the CPU, evaluates the untrained and the trained policy on the same held-out problems,
and writes metrics, a plot and checkpoints to runs/grpo.

    python scripts/train_grpo.py                       # the main job (about 15 minutes on 2 cores)
    python scripts/train_grpo.py --preset curriculum   # easy -> hard arithmetic
    python scripts/train_grpo.py --preset gsm8k        # GSM8K train split, boxed answers
    python scripts/train_grpo.py --help                # every option

Deviations from DeepSeekMath (arXiv 2402.03300), each an option:
* ``beta`` defaults to 0 (no reference model), as in DAPO and Dr. GRPO; set ``--beta 0.04`` for the paper.
* ``mu`` defaults to 1 update per batch, so old log-probs equal the current ones and the ratio is 1
  at the first update (the clip only acts when ``mu > 1``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from reasoning_rl.advantages import group_relative, zero_std_groups
from reasoning_rl.checkpoint import latest_checkpoint, load_training_state, save_checkpoint
from reasoning_rl.config import parse_config
from reasoning_rl.generation import make_generator
from reasoning_rl.logprobs import completion_logprobs
from reasoning_rl.losses import policy_loss
from reasoning_rl.models import load_policy, load_tokenizer, resolve_model
from reasoning_rl.rollout import Rollouts, collect_rollouts, micro_batches, rollout_logprobs, score_rollouts
from reasoning_rl.tasks import PromptSampler, load_task
from reasoning_rl.tracking import MetricsLogger, read_metrics, write_samples
from reasoning_rl.training import (format_seconds, frozen_copy, held_out_accuracy, make_optimizer, peak_memory_gib,
                                   plot_run, prepare_policy, seed_everything)
from rewards import parse_weights


@dataclass
class Config:
    # model and data
    model: str = "smollm2-135m-instruct"
    """Embedded short name, Hugging Face Hub name or local folder (a checkpoint's folder works too)."""
    task: str = "arith:add_20"
    """arith:<level>[,<level>...] (synthetic, see data_prep/synthetic.py) or a benchmark: gsm8k, math."""
    curriculum: tuple[str, ...] = ()
    """Arithmetic levels to walk from easy to hard; overrides ``task``. Empty: no curriculum."""
    curriculum_threshold: float = 0.75
    """Move to the next level when the mean training accuracy of the last ``curriculum_window`` steps reaches this."""
    curriculum_window: int = 3
    """Steps averaged for the curriculum decision."""
    data_path: str | None = None
    """JSONL file, data folder or Hub data set for benchmark tasks (default: ../shared/data, else the Hub)."""
    template: str = "chat"
    """Prompt template: chat, chat_boxed, r1_zero, few_shot (data_prep/templates.py)."""
    train_problems: int = 4096
    """Size of the synthetic training pool (benchmarks use their whole train split)."""
    rewards: str = "accuracy=1.0"
    """Verifier rewards from rewards.REWARDS with their weights, e.g. accuracy=1.0,boxed_format=0.1."""

    # GRPO
    steps: int = 24
    """Optimizer steps (each on one batch of rollouts, times ``mu``)."""
    prompts_per_step: int = 8
    """Prompts per batch (B)."""
    group_size: int = 8
    """Completions sampled per prompt (G)."""
    max_new_tokens: int = 64
    """Completion length limit; longer completions are cut off and counted in train/truncated."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts."""
    top_p: float = 1.0
    """Nucleus sampling of the rollouts."""
    mu: int = 1
    """Policy updates per batch of rollouts (DeepSeekMath's mu)."""
    beta: float = 0.0
    """KL coefficient to the frozen reference model; 0 loads no reference model."""
    clip_low: float = 0.2
    """Lower clip: the ratio is clipped below at 1 - clip_low."""
    clip_high: float = 0.2
    """Upper clip: 1 + clip_high. DAPO's clip-higher uses 0.28."""
    normalize_std: bool = True
    """Divide advantages by the group's reward std (GRPO); False is Dr. GRPO."""
    loss_aggregation: str = "sequence_mean"
    """sequence_mean (GRPO), token_mean (DAPO) or sequence_sum (Dr. GRPO)."""
    dynamic_sampling: bool = False
    """DAPO: drop groups whose rewards are all equal and sample more prompts to refill the batch."""
    max_refills: int = 3
    """Dynamic sampling gives up refilling after this many extra engine calls per step."""
    overlong_cache: int = 0
    """DAPO's soft overlong punishment over the last this-many tokens before max_new_tokens (0: off)."""

    # optimisation
    lr: float = 2e-5
    """AdamW learning rate."""
    warmup_steps: int = 2
    """Linear warm-up steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    micro_batch_size: int = 16
    """Sequences per forward/backward; gradients accumulate over the batch."""
    autocast: bool = True
    """bf16 autocast for the policy's forward (1.8x faster on this CPU; weights stay float32)."""
    lora_rank: int = 0
    """LoRA rank (peft); 0 trains every weight."""
    lora_alpha: int = 32
    """LoRA alpha."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, about 30 % slower)."""

    # generation back end
    backend: str = "vllm"
    """vllm, or hf (transformers generate, for machines without vLLM)."""
    vllm_memory_fraction: float = 0.25
    """vLLM's gpu_memory_utilization: on the CPU the fraction of RAM for the KV cache."""
    vllm_enforce_eager: bool = True
    """Skip torch.compile in vLLM (starts in 30 s instead of 90 s; compiled decoding is 1.6x faster)."""

    # evaluation and outputs
    eval_problems: int = 128
    """Held-out problems (test split) evaluated before and after training."""
    eval_samples: int = 4
    """Samples per held-out problem at temperature 1.0 for pass@1 (greedy is always measured)."""
    eval_every: int = 6
    """Greedy held-out accuracy every this many steps (0: only before and after)."""
    output_dir: str = "runs/grpo"
    """Where metrics.jsonl, tensorboard/, samples.jsonl, checkpoints/ and the plot go."""
    save_every: int = 6
    """Checkpoint every this many steps (and at the end)."""
    sample_every: int = 6
    """Write the completions of one group to samples.jsonl every this many steps."""
    resume: bool = False
    """Continue from the newest checkpoint in output_dir."""
    seed: int = 0
    """Seeds data order, torch and the vLLM engine."""
    tensorboard: bool = True
    """Also write TensorBoard scalars."""


def main(cfg: Config) -> dict:
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    start_time = time.perf_counter()

    reward_weights = parse_weights(cfg.rewards)  # fail on a typo before loading anything

    # --- model, reference, engine ------------------------------------------------------
    model_path = resolve_model(cfg.model)
    tokenizer = load_tokenizer(model_path)
    checkpoint = latest_checkpoint(out) if cfg.resume else None
    policy = load_policy(str(checkpoint / "policy") if checkpoint and cfg.lora_rank == 0 else model_path)
    reference = frozen_copy(load_policy(model_path)) if cfg.beta > 0 else None  # the starting model, also on resume
    policy = prepare_policy(policy, cfg.lora_rank, cfg.lora_alpha, cfg.gradient_checkpointing)
    if checkpoint and cfg.lora_rank > 0:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(policy, load_file(checkpoint / "policy" / "adapter_model.safetensors"))
    policy.train()
    generator = make_generator(cfg.backend, model_path, policy, tokenizer, seed=cfg.seed,
                               memory_fraction=cfg.vllm_memory_fraction, enforce_eager=cfg.vllm_enforce_eager)
    if checkpoint:
        generator.sync_weights(policy)

    # --- data ------------------------------------------------------------------------------
    levels = list(cfg.curriculum) or [cfg.task]
    tasks = [f"arith:{lvl}" if cfg.curriculum else lvl for lvl in levels]
    pools = [load_task(t, "train", cfg.train_problems, cfg.seed, cfg.data_path) for t in tasks]
    heldout = {t: load_task(t, "test", cfg.eval_problems, cfg.seed, cfg.data_path) for t in tasks}
    optimizer, scheduler = make_optimizer(policy, cfg.lr, cfg.weight_decay, cfg.warmup_steps)
    state = {"level": 0, "cursors": [0] * len(tasks), "recent_accuracy": [], "before": {}}
    if checkpoint:
        state = load_training_state(checkpoint, optimizer, scheduler)
        print(f"resuming from {checkpoint} (step {state['step']})")
    samplers = [PromptSampler(pool, cfg.seed, cursor) for pool, cursor in zip(pools, state["cursors"])]
    start_step = state.get("step", 0)
    logger = MetricsLogger(out, start_step, cfg.tensorboard)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))

    def evaluate_all(n_samples: int) -> dict[str, dict[str, float]]:
        return {t: held_out_accuracy(generator, tokenizer, heldout[t], cfg.template, n_samples, cfg.max_new_tokens) for t in tasks}

    if not state["before"]:
        print(f"evaluating the untrained policy on {cfg.eval_problems} held-out problems per task ...")
        state["before"] = evaluate_all(cfg.eval_samples)

    # --- the loop --------------------------------------------------------------------------
    bar = tqdm(range(start_step + 1, cfg.steps + 1), initial=start_step, total=cfg.steps, desc="GRPO", unit="step")
    for step in bar:
        level = state["level"]
        t0 = time.perf_counter()

        # 1. rollouts: G samples per prompt in one engine call, scored by the verifiers
        t_reward = 0.0

        def sample(k: int) -> Rollouts:
            nonlocal t_reward
            batch = collect_rollouts(generator, tokenizer, samplers[level].take(k), cfg.template, cfg.group_size,
                                     cfg.temperature, cfg.top_p, cfg.max_new_tokens)
            start = time.perf_counter()
            score_rollouts(batch, reward_weights, cfg.max_new_tokens, cfg.overlong_cache)
            t_reward += time.perf_counter() - start
            return batch

        rollouts = sample(cfg.prompts_per_step)
        frac_zero_std = zero_std_groups(rollouts.rewards, cfg.group_size).float().mean().item()
        all_rollouts = rollouts
        if cfg.dynamic_sampling:  # DAPO: keep only groups with mixed rewards, refill the batch
            kept, refills = [rollouts.select_groups(~zero_std_groups(rollouts.rewards, cfg.group_size))], 0
            while sum(len(r.problems) for r in kept) < cfg.prompts_per_step and refills < cfg.max_refills:
                extra = sample(cfg.prompts_per_step)
                all_rollouts = Rollouts.concat([all_rollouts, extra])
                kept.append(extra.select_groups(~zero_std_groups(extra.rewards, cfg.group_size)))
                refills += 1
            rollouts = Rollouts.concat(kept)
            if len(rollouts.problems) > cfg.prompts_per_step:
                rollouts = rollouts.select_groups(torch.arange(len(rollouts.problems)) < cfg.prompts_per_step)
        t_generate = time.perf_counter() - t0 - t_reward

        # 2. advantages: group-relative (the one line that differs from PPO)
        advantages = group_relative(rollouts.rewards, cfg.group_size, cfg.normalize_std) if len(rollouts) else torch.zeros(0)

        # 3. policy update(s): clipped surrogate + k3 KL, gradient accumulation over micro-batches
        t1 = time.perf_counter()
        lr = scheduler.get_last_lr()[0]
        train_metrics = {"loss": 0.0, "clip_fraction": 0.0, "kl": 0.0, "entropy": 0.0, "grad_norm": 0.0}
        n_tokens = 0
        if len(rollouts):
            pad = tokenizer.pad_token_id
            old_logprobs = rollout_logprobs(policy, rollouts, pad, cfg.micro_batch_size, cfg.autocast) if cfg.mu > 1 else None
            ref_logprobs = None
            if reference is not None:
                ref_logprobs = rollout_logprobs(reference, rollouts, pad, cfg.micro_batch_size, cfg.autocast)
            lengths = torch.tensor([len(c) for c in rollouts.completion_ids])
            n_tokens = int(lengths.sum())
            batches = micro_batches(rollouts, cfg.micro_batch_size)
            for _ in range(cfg.mu):
                optimizer.zero_grad(set_to_none=True)
                sums = dict.fromkeys(train_metrics, 0.0)
                for rows in batches:
                    ids, attention, mask = rollouts.pack(rows, pad)
                    T = mask.shape[1]
                    logprobs, entropy = completion_logprobs(policy, ids, attention, T, with_entropy=True, autocast=cfg.autocast)
                    old = old_logprobs[rows, :T] if old_logprobs is not None else logprobs.detach()
                    ref = ref_logprobs[rows, :T] if ref_logprobs is not None else None
                    loss, m = policy_loss(logprobs, old, advantages[rows], mask, ref, cfg.beta, cfg.clip_low, cfg.clip_high,
                                          cfg.loss_aggregation, len(rollouts), n_tokens, cfg.max_new_tokens)
                    loss.backward()
                    share = mask.sum().item() / n_tokens  # token-weighted average of the per-batch metrics
                    sums["loss"] += loss.item()
                    sums["entropy"] += (entropy * mask).sum().item() / n_tokens
                    for key in ("clip_fraction", "kl"):
                        sums[key] += m[key] * share
                sums["grad_norm"] = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm).item()
                optimizer.step()
                train_metrics = sums
            scheduler.step()
        t_train = time.perf_counter() - t1

        # 4. push the new weights into the engine
        t_sync = generator.sync_weights(policy)

        # 5. log
        step_seconds = time.perf_counter() - t0
        lengths_all = torch.tensor([len(c) for c in all_rollouts.completion_ids], dtype=torch.float)
        accuracy = all_rollouts.components["accuracy"].mean().item() if "accuracy" in all_rollouts.components else float("nan")
        metrics = {
            "reward/mean": all_rollouts.rewards.mean().item(),
            "reward/std": all_rollouts.rewards.std().item(),
            **{f"reward/{k}": v.mean().item() for k, v in all_rollouts.components.items()},
            **{f"reward/{k}_std": v.std().item() for k, v in all_rollouts.components.items()},
            "train/accuracy": accuracy,
            "train/frac_reward_zero_std": frac_zero_std,
            "train/groups_trained": len(rollouts.problems),
            **{f"train/{k}": v for k, v in train_metrics.items()},
            "train/lr": lr,
            "completions/mean_length": lengths_all.mean().item(),
            "completions/max_length": lengths_all.max().item(),
            "completions/truncated": all_rollouts.truncated.float().mean().item(),
            "time/generate": t_generate,
            "time/reward": t_reward,
            "time/train": t_train,
            "time/sync": t_sync,
            "time/step": step_seconds,
            "throughput/sampled_tokens_per_s": lengths_all.sum().item() / max(t_generate, 1e-9),
            "throughput/train_tokens_per_s": cfg.mu * n_tokens / max(t_train, 1e-9),
            "memory/peak_gib": peak_memory_gib(),
            "curriculum/level": level,
        }
        if cfg.eval_every and step % cfg.eval_every == 0 and step != cfg.steps:
            metrics["heldout/greedy"] = held_out_accuracy(generator, tokenizer, heldout[tasks[level]], cfg.template, 0, cfg.max_new_tokens)["greedy"]
        if cfg.curriculum and level + 1 < len(tasks):
            window = (state["recent_accuracy"] + [accuracy])[-cfg.curriculum_window:]
            state["recent_accuracy"] = window
            if len(window) == cfg.curriculum_window and sum(window) / len(window) >= cfg.curriculum_threshold:
                state["level"], state["recent_accuracy"] = level + 1, []
                tqdm.write(f"step {step}: training accuracy {sum(window) / len(window):.2f} on {tasks[level]} -> moving to {tasks[level + 1]}")
        state["cursors"] = [s.cursor for s in samplers]
        if step == cfg.steps:
            state["after"] = evaluate_all(cfg.eval_samples)
            metrics.update({f"heldout/{k}": v for k, v in state["after"][tasks[level]].items()})
        logger.log(step, metrics)
        bar.set_postfix(reward=f"{metrics['reward/mean']:.2f}", len=f"{metrics['completions/mean_length']:.0f}",
                        gen=f"{t_generate:.0f}s", train=f"{t_train:.0f}s")
        if cfg.sample_every and step % cfg.sample_every == 0:
            G = cfg.group_size
            write_samples(out, step, [rollouts.prompts[0]] * G if len(rollouts) else [], rollouts.texts[:G],
                          rollouts.rewards[:G].tolist(), rollouts.answers[:G])
        if step % cfg.save_every == 0 or step == cfg.steps:
            save_checkpoint(out, step, policy, tokenizer, optimizer, scheduler, state)
    logger.close()

    # --- report ----------------------------------------------------------------------------
    wall = time.perf_counter() - start_time
    before, after = state["before"], state.get("after") or evaluate_all(cfg.eval_samples)
    report = {"tasks": tasks, "before": before, "after": after, "wall_seconds": wall, "steps": cfg.steps}
    (out / "results.json").write_text(json.dumps(report, indent=2))
    title = f"GRPO on {tasks[0]}" if len(tasks) == 1 else f"GRPO curriculum over {len(tasks)} levels"
    plot_run(read_metrics(out), out / "training.png", f"{title} ({cfg.model})", report)
    print(f"\nheld-out accuracy ({cfg.eval_problems} problems per task), untrained -> trained:")
    for t in tasks:
        b, a = before[t], after[t]
        line = f"  {t:>16}: greedy {b['greedy']:6.1%} -> {a['greedy']:6.1%}"
        if "pass@1" in b:
            line += f"   sampled pass@1 (T=1) {b['pass@1']:6.1%} -> {a['pass@1']:6.1%}"
        print(line)
    print(f"wall time {format_seconds(wall)}; metrics in {out / 'metrics.jsonl'}, plot in {out / 'training.png'}")
    return report


if __name__ == "__main__":
    main(parse_config(Config, description=__doc__))
