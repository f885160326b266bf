"""Settings that cannot work, refused before anything loads: one line saying why (a ``UserError``)."""

from __future__ import annotations

from data_prep import TEMPLATES
from reasoning_rl.cli import check_options
from reasoning_rl.config import RLConfig
from reasoning_rl.losses import LOSS_AGGREGATIONS, POLICY_LOSSES, ROLLOUT_CORRECTIONS
from runtime.distributed import SINGLE, Dist
from runtime.errors import UserError
from runtime.sharding import SHARD_KINDS

CHOICES = {"template": tuple(TEMPLATES), "backend": ("vllm", "hf"), "optimizer_state": ("newest", "all", "none"),
           "loss_aggregation": LOSS_AGGREGATIONS, "loss_type": tuple(POLICY_LOSSES), "rollout_correction": ROLLOUT_CORRECTIONS,
           "shared_prompt_scope": ("micro_batch", "step"), "tools": ("none", "python"), "shard": SHARD_KINDS}
GROUP_REASON = {
    "grpo": "its advantage is a reward relative to the group's mean, so a group of one never has a gradient",
    "dpo": "its pairs are a correct and an incorrect completion of the same prompt",
}


def check_settings(cfg: RLConfig, update, algorithm: str, dist: Dist = SINGLE) -> None:
    """Refuse, before anything loads, an option out of its range (``cli.OPTION_RULES``), a setting that cannot produce
    a gradient, or one that cannot be split over the processes (a ``UserError`` saying why)."""
    if cfg.steps < 1:
        raise UserError(f"--steps {cfg.steps}: at least 1 step is needed to train anything")
    if cfg.lr <= 0:
        raise UserError(f"--lr {cfg.lr}: the learning rate must be positive, or no weight ever changes")
    check_options(cfg, CHOICES)
    if cfg.group_size < update.min_group_size:
        raise UserError(f"--group-size {cfg.group_size}: {algorithm.upper()} needs at least {update.min_group_size} "
                        f"completions per prompt, because {GROUP_REASON.get(algorithm, 'it compares them')}")
    if cfg.temperature <= 0:
        why = (f"greedy sampling makes every completion of a group the same, so {algorithm.upper()} has nothing to "
               "compare" if update.min_group_size > 1 else "the update's log-probs are those of softmax(logits / T)")
        raise UserError(f"--temperature {cfg.temperature}: {why}; use a temperature above 0")
    if cfg.overlong_cache >= cfg.max_new_tokens:
        raise UserError(f"--overlong-cache {cfg.overlong_cache}: the penalty zone must be shorter than --max-new-tokens "
                        f"{cfg.max_new_tokens}, or every completion is punished")
    own_options = [f"--{n.replace('_', '-')}" for n in ("heldout_path", "question_field", "answer_field") if getattr(cfg, n)]
    if own_options and "jsonl" not in cfg.task.split("+"):
        raise UserError(f"{', '.join(own_options)} apply to --task jsonl (a file of your own), not to --task {cfg.task}")
    check_rollout_correction(cfg, algorithm)
    check_tools(cfg)
    check_processes(cfg, dist)


def check_tools(cfg: RLConfig) -> None:
    """Tool calls need the engine's stop strings, and one engine per rank (the ranks of a tensor-parallel engine
    would each need the same number of turns); a template that does not mention the tool gets a note."""
    if cfg.tools == "none":
        return
    if cfg.backend != "vllm":
        raise UserError(f"--tools {cfg.tools} stops generation at each code block's closing fence, which needs "
                        "--backend vllm (the hf back end has no stop strings here)")
    if cfg.vllm_tensor_parallel_size > 1:
        raise UserError(f"--tools {cfg.tools} with --vllm-tensor-parallel-size {cfg.vllm_tensor_parallel_size}: the "
                        "ranks of one engine would need the same number of tool turns; use one engine per rank")
    if cfg.template != "chat_tool":
        print(f"note: --tools {cfg.tools} with --template {cfg.template}: the prompt does not tell the model about the "
              "tool (--template chat_tool does)")


def check_rollout_correction(cfg: RLConfig, algorithm: str) -> None:
    """The correction and stale rollouts need the engine's log-probs; GSPO needs one advantage per sequence."""
    needs_engine = cfg.rollout_correction != "none" or cfg.rollout_staleness > 0
    if needs_engine and cfg.backend != "vllm":
        raise UserError("--rollout-correction and --rollout-staleness need the engine's log-probs of what it sampled: "
                        "use --backend vllm (the hf back end samples with the policy itself)")
    if getattr(cfg, "loss_type", "clipped") == "gspo" and algorithm == "ppo":
        raise UserError("--loss-type gspo clips one ratio per sequence against one advantage per sequence; PPO's "
                        "advantages are per token: use clipped or cispo with PPO")


def check_processes(cfg: RLConfig, dist: Dist) -> None:
    """What several processes need: a batch that splits into equal shares, tensor-parallel groups that tile the
    ranks, and DDP (the update's shared-prompt forward and the engine's weight sync read the whole model)."""
    group = cfg.shard_group_size or dist.local_world
    if cfg.shard == "hsdp" and (group < 1 or dist.world % group):
        raise UserError(f"--shard hsdp: --shard-group-size {group} must divide the number of processes ({dist.world}): "
                        "each group of that many ranks holds one sharded copy")
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
        raise UserError(f"accelerate is configured for {kind.split('.')[-1]}, which this trainer does not use: it shards "
                        "with its own --shard fsdp (FSDP2 on the launcher's ranks); run `accelerate config` and choose "
                        "multi-GPU without FSDP or DeepSpeed (or launch with torchrun), and add --shard fsdp")
