"""Settings that cannot work, refused before anything loads: one line saying why (a ``UserError``)."""

from __future__ import annotations

from reasoning_rl.config import RLConfig
from reasoning_rl.losses import POLICY_LOSSES, ROLLOUT_CORRECTIONS
from runtime.distributed import SINGLE, Dist
from runtime.errors import UserError


GROUP_REASON = {
    "grpo": "its advantage is a reward relative to the group's mean, so a group of one never has a gradient",
    "dpo": "its pairs are a correct and an incorrect completion of the same prompt",
}


def check_settings(cfg: RLConfig, update, algorithm: str, dist: Dist = SINGLE) -> None:
    """Refuse, before anything loads, a setting that cannot produce a gradient or cannot be split over the
    processes (a ``UserError`` saying why)."""
    if cfg.steps < 1:
        raise UserError(f"--steps {cfg.steps}: at least 1 step is needed to train anything")
    if cfg.prompts_per_step < 1 or cfg.max_new_tokens < 1 or cfg.micro_batch_size < 1:
        raise UserError("--prompts-per-step, --max-new-tokens and --micro-batch-size must be at least 1")
    if cfg.group_size < update.min_group_size:
        raise UserError(f"--group-size {cfg.group_size}: {algorithm.upper()} needs at least {update.min_group_size} "
                        f"completions per prompt, because {GROUP_REASON.get(algorithm, 'it compares them')}")
    if cfg.lr <= 0:
        raise UserError(f"--lr {cfg.lr}: the learning rate must be positive, or no weight ever changes")
    if cfg.temperature <= 0 and update.min_group_size > 1:
        raise UserError(f"--temperature {cfg.temperature}: greedy sampling makes every completion of a group the same, "
                        f"so {algorithm.upper()} has nothing to compare; use a temperature above 0")
    if getattr(cfg, "mu", 1) < 1 or getattr(cfg, "mini_batches", 1) < 1:
        raise UserError("--mu and --mini-batches must be at least 1")
    if cfg.optimizer_state not in ("all", "newest"):
        raise UserError(f"--optimizer-state {cfg.optimizer_state!r}: choose all or newest")
    if not 0 <= cfg.curriculum_replay < 1:
        raise UserError(f"--curriculum-replay {cfg.curriculum_replay}: a share of the batch in [0, 1)")
    if not 0 <= cfg.explore_fraction <= 1 or cfg.retry_weight <= 0:
        raise UserError("--explore-fraction must be in [0, 1] and --retry-weight above 0 (a prompt at weight 0 never comes back)")
    check_rollout_correction(cfg, algorithm)
    check_processes(cfg, dist)


def check_rollout_correction(cfg: RLConfig, algorithm: str) -> None:
    """The correction and stale rollouts need the engine's log-probs; GSPO needs one advantage per sequence."""
    if cfg.rollout_correction not in ROLLOUT_CORRECTIONS:
        raise UserError(f"--rollout-correction {cfg.rollout_correction!r}: choose one of {', '.join(ROLLOUT_CORRECTIONS)}")
    if cfg.rollout_correction_threshold <= 1:
        raise UserError(f"--rollout-correction-threshold {cfg.rollout_correction_threshold}: the bound C on the "
                        "trainer/engine probability ratio must be above 1")
    if cfg.rollout_staleness < 0:
        raise UserError(f"--rollout-staleness {cfg.rollout_staleness}: a number of steps, 0 or more")
    needs_engine = cfg.rollout_correction != "none" or cfg.rollout_staleness > 0
    if needs_engine and cfg.backend != "vllm":
        raise UserError("--rollout-correction and --rollout-staleness need the engine's log-probs of what it sampled: "
                        "use --backend vllm (the hf back end samples with the policy itself)")
    loss_type = getattr(cfg, "loss_type", "clipped")
    if loss_type not in POLICY_LOSSES:
        raise UserError(f"--loss-type {loss_type!r}: choose one of {', '.join(POLICY_LOSSES)}")
    if loss_type == "gspo" and algorithm == "ppo":
        raise UserError("--loss-type gspo clips one ratio per sequence against one advantage per sequence; PPO's "
                        "advantages are per token: use clipped or cispo with PPO")


def check_processes(cfg: RLConfig, dist: Dist) -> None:
    """What several processes need: a batch that splits into equal shares, tensor-parallel groups that tile the
    ranks, and DDP (the update's shared-prompt forward and the engine's weight sync read the whole model)."""
    tp = cfg.vllm_tensor_parallel_size
    if tp < 1 or dist.world % tp:
        raise UserError(f"--vllm-tensor-parallel-size {tp} must divide the number of processes ({dist.world}): each group "
                        f"of {tp} consecutive ranks shares one engine; launch with torchrun --nproc-per-node {max(tp, 1)} or more")
    if tp > 1 and cfg.backend != "vllm":
        raise UserError(f"--vllm-tensor-parallel-size {tp} needs --backend vllm")
    if cfg.prompts_per_step % dist.world:
        raise UserError(f"--prompts-per-step {cfg.prompts_per_step} does not split over {dist.world} processes: use a "
                        f"multiple of {dist.world}, so that every rank samples the same number of groups")
    kind = str(getattr(dist.accelerator, "distributed_type", ""))
    if "FSDP" in kind or "DEEPSPEED" in kind:
        raise UserError(f"accelerate is configured for {kind.split('.')[-1]}, which this trainer does not support yet: "
                        "it trains with DDP (every rank holds the whole model); run `accelerate config` and choose "
                        "multi-GPU without FSDP or DeepSpeed, or launch with torchrun")
