"""The online RL loop shared by GRPO, PPO and online DPO.

``train`` reads as the five phases of every step, whatever the algorithm, each a function here:

1. ``sample``: ``group_size`` completions for ``prompts_per_step`` prompts in one engine (vLLM) call;
2. ``score``: verifiers for prompts with a reference answer, the reward model for the others
   (``sample_batch`` runs 1 and 2, and repeats them for DAPO's dynamic sampling);
3. ``update_policy``: ``update(rollouts)``, the only algorithm-specific call;
4. ``sync``: push the new weights into the engine;
5. ``log_and_checkpoint``: log, evaluate on held-out problems, walk the curriculum, checkpoint.

``start_run`` loads everything before the loop into one ``Run``; ``final_report`` writes the results.
The updates live beside their maths: ``PolicyGradient`` (GRPO and PPO: the clipped surrogate,
fed by an advantage estimator from ``reasoning_rl.estimators``) and ``DPOUpdate``
(``reasoning_rl.dpo``). An update object has ``needs_reference``, ``setup(...)``,
``__call__(rollouts, step) -> metrics`` and ``save(folder)`` / ``load(folder)`` for its own state
(PPO's critic).
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from reasoning_rl.advantages import zero_std_groups
from reasoning_rl.checkpoint import latest_checkpoint, load_training_state, save_checkpoint
from reasoning_rl.cli import UserError, as_user_error, check_output_dir
from reasoning_rl.distributed import SINGLE, Dist, zero_backward
from reasoning_rl.generation import make_generator
from reasoning_rl.logprobs import supports_shared_prompt
from reasoning_rl.losses import policy_loss
from reasoning_rl.models import load_policy, load_tokenizer, resolve_model
from reasoning_rl.rollout import (Rollouts, collect_rollouts, encode_prompts, micro_batches, rollout_logprobs, row_logprobs,
                                  score_rollouts)
from reasoning_rl.selection import PromptRecord, select_prompts
from reasoning_rl.tasks import PromptSampler, load_task
from reasoning_rl.tracking import MetricsLogger, read_metrics, write_completions, write_samples
from reasoning_rl.training import (format_seconds, frozen_copy, held_out_accuracy, make_optimizer, peak_memory_gib,
                                   plot_run, prepare_policy, seed_everything, weights_sha256)
from rewards import TRAIN_TIMEOUT, audit_metrics, parse_weights


@dataclass
class RLConfig:
    preset: str | None = None
    """A YAML preset from configs/ (curriculum, gsm8k, math, gpu_qwen, dapo, dr_grpo) or a YAML path; its keys
    set the defaults, flags given beside it override them, and the output folder gets its name (runs/grpo_gsm8k)."""
    # model and data
    model: str = "smollm2-135m-instruct"
    """Embedded short name, Hugging Face Hub name or local folder (a checkpoint's folder works too)."""
    task: str = "arith:add_20"
    """arith:<level>[,<level>...] (synthetic), a benchmark (gsm8k, math), hh_rlhf (open-ended prompts); join with + to mix."""
    curriculum: tuple[str, ...] = ()
    """Arithmetic levels to walk from easy to hard; overrides ``task``. Empty: no curriculum."""
    curriculum_threshold: float = 0.75
    """Move to the next level when the training accuracy on the current level's prompts, over the last
    ``curriculum_window`` steps, reaches this."""
    curriculum_patience: int = 0
    """Move to the next level after this many steps on a level even if it is not learnt (its prompts stay in the
    replay share); 0: wait until it is learnt."""
    curriculum_replay: float = 0.25
    """Share of each batch drawn from the levels already passed, spread evenly over them, so that the policy keeps
    practising them (a curriculum that does not forget); 0: none."""
    curriculum_window: int = 3
    """Steps averaged for the curriculum decision."""
    data_path: str | None = None
    """JSONL file, data folder or Hub data set for benchmark tasks (default: ../shared/data, else the Hub)."""
    template: str = "chat"
    """Prompt template: chat, chat_boxed, r1_zero, few_shot (data_prep/templates.py)."""
    drop_unparseable_references: bool = False
    """Drop benchmark problems whose reference answer math-verify cannot parse (they are always counted and reported)."""
    train_problems: int = 4096
    """Size of the synthetic training pool (benchmarks use their whole train split)."""
    rewards: str = "accuracy=1.0"
    """Verifier rewards from rewards.REWARDS with their weights, e.g. accuracy=1.0,boxed_format=0.1."""
    reward_model: str | None = None
    """Folder of a trained reward model (scripts/train_reward_model.py); it scores prompts without a reference answer."""
    reward_model_scale: float = 1.0
    """The reward model's score is multiplied by this before it enters the reward."""
    verify_timeout: float = TRAIN_TIMEOUT
    """Seconds the accuracy verifier may spend on one completion before it scores 0 (a timeout); evaluation allows 5."""
    verify_budget: float = 60.0
    """Seconds for scoring one batch; completions still unscored then score 0 and count as timeouts."""

    # sampling
    steps: int = 24
    """Optimizer steps (each on one batch of rollouts)."""
    time_limit: float = 0.0
    """Minutes: the step during which they run out (counted from this start or resume) is the last one, with
    the final evaluation and a checkpoint, so --resume can go on to --steps (0: no limit)."""
    prompts_per_step: int = 8
    """Prompts per batch (B)."""
    group_size: int = 8
    """Completions sampled per prompt (G)."""
    max_new_tokens: int = 64
    """Completion length limit; longer completions are cut off and counted in completions/truncated."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts; the update's log-probs (ratio, KL) are those of softmax(logits / T) too."""
    top_p: float = 1.0
    """Nucleus sampling of the rollouts."""
    dynamic_sampling: bool = False
    """DAPO: drop groups whose rewards are all equal and sample more prompts to refill the batch."""
    select_by_difficulty: bool = False
    """Draw each step's prompts from the run's record of pass rates (reasoning_rl/selection.py): prompts solved by some
    but not all completions at full weight, always or never solved ones at --retry-weight, --explore-fraction from the
    plain sampler."""
    explore_fraction: float = 0.25
    """With --select-by-difficulty: the share of each batch drawn by the plain sampler (unseen prompts first)."""
    retry_weight: float = 0.1
    """With --select-by-difficulty: the weight of a prompt with pass rate 0 or 1 against 1 for an informative one."""
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
    """bf16 autocast for the policy's forward (1.5x faster on this CPU; weights stay float32)."""
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
    vllm_tensor_parallel_size: int = 1
    """Devices per vLLM engine, for models that do not fit one: each group of this many consecutive ranks shares
    one engine (tensor parallelism, TRL's colocate pattern); it must divide the number of processes."""

    # evaluation and outputs
    eval_problems: int = 128
    """Held-out problems (test split) evaluated before and after training."""
    eval_samples: int = 4
    """Samples per held-out problem at temperature 1.0 for pass@1 (greedy is always measured)."""
    eval_every: int = 6
    """Greedy held-out accuracy every this many steps (0: only before and after)."""
    eval_before: bool = True
    """Evaluate the untrained policy too (compare.py skips it after the first method: same model, same problems)."""
    output_dir: str = "runs/rl"
    """Where metrics.jsonl, tensorboard/, samples.jsonl, checkpoints/ and the plot go."""
    save_every: int = 6
    """Checkpoint every this many steps (and at the end)."""
    sample_every: int = 6
    """Write the completions of one group to samples.jsonl every this many steps."""
    log_completions: bool = True
    """Write every sampled completion with its reward and the verifier's verdict to completions.jsonl (for the audit)."""
    optimizer_state: str = "all"
    """Keep AdamW's state (twice the size of the weights) in every kept checkpoint (all) or only in the newest (newest)."""
    resume: bool = False
    """Continue from the newest checkpoint in output_dir; an error when there is none."""
    auto_resume: bool = False
    """Continue from the newest checkpoint in output_dir if there is one, else start a new run (and say which)."""
    seed: int = 0
    """Seeds data order, torch and the vLLM engine."""
    tensorboard: bool = True
    """Also write TensorBoard scalars."""


@dataclass
class PolicyGradientConfig(RLConfig):
    """Options of the clipped-surrogate update shared by GRPO and PPO."""

    mu: int = 1
    """Passes (epochs) over each batch of rollouts (DeepSeekMath's mu, PPO's epochs)."""
    mini_batches: int = 1
    """Optimizer steps per pass: the batch is split into this many shuffled mini-batches."""
    beta: float = 0.0
    """Coefficient of the k3 KL to the frozen reference in the loss (GRPO); 0 loads no reference for it."""
    clip_low: float = 0.2
    """Lower clip: the ratio is clipped below at 1 - clip_low."""
    clip_high: float = 0.2
    """Upper clip: 1 + clip_high. DAPO's clip-higher uses 0.28."""
    loss_aggregation: str = "sequence_mean"
    """sequence_mean (GRPO), token_mean (DAPO, PPO) or sequence_sum (Dr. GRPO)."""
    skip_zero_advantage: bool = True
    """Neither forward nor back-propagate rows whose advantage is exactly 0 when nothing else in the loss touches them
    (beta = 0, one advantage per completion): the same step for less compute. Not applicable to PPO's per-token
    advantages or with beta > 0 (the run says so once)."""
    shared_prompt: bool = True
    """Encode each group's prompt once per optimizer step and let its completions attend to it (Prefix Grouper's
    shared-prefix forward): the same log-probs and gradients for fewer prompt tokens. Off with gradient
    checkpointing or sliding-window attention (the run says so)."""


class PolicyGradient:
    """GRPO's and PPO's update: the clipped surrogate over ``mu`` passes x ``mini_batches`` steps.

    The advantage estimator is the one part that differs: ``GroupRelative`` (GRPO) returns one
    advantage per completion from its group's rewards; ``GAECritic`` (PPO) one per token from a
    learned value function. Both are called with the rollouts and the log-probs at sampling time.
    """

    def __init__(self, cfg: PolicyGradientConfig, estimator):
        self.cfg, self.estimator = cfg, estimator
        self.needs_reference = cfg.beta > 0 or estimator.needs_reference
        self.min_group_size = estimator.min_group_size
        self._said_skip_not_applicable = False
        self.dist = SINGLE  # until setup

    def setup(self, policy, reference, tokenizer, optimizer, model_path: str, dist: Dist = SINGLE) -> None:
        """``policy`` is the bare model (on ``dist.device``); with several ranks it is trained through its DDP wrapper."""
        self.policy, self.reference, self.tokenizer, self.optimizer, self.dist = policy, reference, tokenizer, optimizer, dist
        self.model = dist.prepare(policy)  # the policy itself in one process
        self.estimator.setup(model_path, tokenizer, self.cfg, dist)
        why_not = supports_shared_prompt(policy) if self.cfg.shared_prompt else None
        if why_not:
            tqdm.write(f"--shared-prompt does not apply here ({why_not}): every row encodes its prompt")
        self.shared_prompt = self.cfg.shared_prompt and why_not is None

    def save(self, folder: Path) -> None:
        self.estimator.save(folder)

    def load(self, folder: Path) -> None:
        self.estimator.load(folder)

    def mini_batches(self, rollouts: Rollouts, step: int, epoch: int) -> list[list[int]]:
        """The row indices of each mini-batch (one optimizer step each). One mini-batch: all rows."""
        cfg = self.cfg
        rows = list(range(len(rollouts)))
        if cfg.mini_batches <= 1:
            return [rows]
        random.Random(f"{cfg.seed}/{step}/{epoch}").shuffle(rows)
        parts = [rows[k :: cfg.mini_batches] for k in range(cfg.mini_batches)]
        # every rank takes the same number of optimizer steps (an empty part joins the all-reduce with 0)
        return parts if self.dist.world > 1 else [part for part in parts if part]

    def skipped_rows(self, advantages: torch.Tensor) -> torch.Tensor:
        """``[N]`` bool: rows that cannot contribute to the loss or its gradient, so they are never forwarded.

        With beta = 0 and one advantage per completion, a row's loss term is ``-min(r A, clip(r) A)``:
        exactly 0, with a gradient exactly 0, when ``A = 0``, on every pass (``mu > 1`` too, since A does
        not change between passes). The normalisers (sequences, tokens) keep their whole-batch counts,
        so the step is the same step. With a KL term (beta > 0) or per-token advantages (PPO) every
        row can contribute, and nothing is skipped.
        """
        skip = torch.zeros(advantages.shape[0], dtype=torch.bool)
        if not self.cfg.skip_zero_advantage:
            return skip
        if self.cfg.beta > 0 or advantages.ndim != 1:
            if not self._said_skip_not_applicable:
                why = "beta > 0 puts a KL term on every row" if self.cfg.beta > 0 else "PPO's advantages are per token"
                tqdm.write(f"--skip-zero-advantage does not apply here ({why}): every row is trained")
                self._said_skip_not_applicable = True
            return skip
        return advantages == 0

    def __call__(self, rollouts: Rollouts, step: int) -> dict[str, float]:
        cfg, policy, pad = self.cfg, self.policy, self.tokenizer.pad_token_id
        updates = cfg.mu * max(1, cfg.mini_batches)
        # GRPO's advantages need only the rewards, so rows that cannot contribute are known before any
        # forward pass; PPO's need the old log-probs and the critic first, and skip nothing.
        early = None if self.estimator.needs_old_logprobs else self.estimator.advantages(rollouts, None, None)
        skip = self.skipped_rows(early[0]) if early else torch.zeros(len(rollouts), dtype=torch.bool)
        kept = (~skip).nonzero().flatten().tolist()
        # log-probs at sampling time: the ratio's denominator after the first update, and PPO's KL reward
        old_logprobs = None
        if updates > 1 or self.estimator.needs_old_logprobs:
            old_logprobs = rollout_logprobs(policy, rollouts, pad, cfg.micro_batch_size, cfg.autocast, kept, self.shared_prompt,
                                            cfg.temperature)
        ref_logprobs = None
        if self.reference is not None:
            ref_logprobs = rollout_logprobs(self.reference, rollouts, pad, cfg.micro_batch_size, cfg.autocast, kept,
                                            self.shared_prompt, cfg.temperature)

        # the one algorithm-specific line: [N] (GRPO) or [N, T] (PPO) advantages
        advantages, metrics = early or self.estimator.advantages(rollouts, old_logprobs, ref_logprobs)
        advantages = advantages.to(self.dist.device)

        sums = dict.fromkeys(["loss", "clip_fraction", "kl", "entropy", "grad_norm"], 0.0)
        n_steps = 0
        for epoch in range(cfg.mu):
            for part in self.mini_batches(rollouts, step, epoch):
                for key, value in self.optimizer_step(rollouts, part, skip, advantages, old_logprobs, ref_logprobs).items():
                    sums[key] = sums.get(key, 0.0) + value
                n_steps += 1
        metrics.update({f"train/{k}": v / n_steps for k, v in sums.items()})
        metrics["train/rows_skipped"] = int(skip.sum())
        return metrics

    def optimizer_step(self, rollouts: Rollouts, part: list[int], skip: torch.Tensor, advantages: torch.Tensor,
                       old_logprobs: torch.Tensor | None, ref_logprobs: torch.Tensor | None) -> dict[str, float]:
        """One optimizer step on the rows ``part``: the loss over micro-batches of its rows that are not skipped,
        gradients accumulated, averaged over ranks, clipped, applied. Returns the step's metrics (token-weighted
        over its micro-batches).

        The normalisers are global: every row of the mini-batch on every rank counts, skipped or not. DDP
        averages the ranks' gradients, so each rank normalises by the global counts divided by the number of
        ranks; the average is then the gradient of the whole mini-batch's loss, as if one process held it all.
        """
        cfg, dist, pad = self.cfg, self.dist, self.tokenizer.pad_token_id
        kept = [i for i in part if not skip[i]]
        n_run = sum(len(rollouts.completion_ids[i]) for i in kept)  # tokens forwarded on this rank
        n_seq, n_tok, n_run_all = dist.sum([len(part), sum(len(rollouts.completion_ids[i]) for i in part), n_run])
        n_seq, n_tok, critic_weight = n_seq / dist.world, n_tok / dist.world, dist.world * n_run / max(n_run_all, 1)
        models = [self.model, *self.estimator.models]  # DDP-wrapped in several processes
        self.optimizer.zero_grad(set_to_none=True)
        # each group's prompt encoded once: for the whole step in one process (back-propagated once after it);
        # per micro-batch with several, so that each micro-batch is one forward and one backward for DDP
        step_prompts = None
        if self.shared_prompt and kept and dist.world == 1:
            step_prompts = encode_prompts(self.policy, rollouts, kept, pad, cfg.autocast, cfg.micro_batch_size, separate_backward=True)
        sums = dict.fromkeys(["loss", "clip_fraction", "kl", "entropy"], 0.0)
        batches = micro_batches(rollouts, cfg.micro_batch_size, kept)
        for k, rows in enumerate(batches):
            with dist.accumulate(models, sync=k == len(batches) - 1):
                prompts = step_prompts
                if self.shared_prompt and prompts is None:  # through DDP: the one forward it syncs on
                    prompts = encode_prompts(self.model, rollouts, rows, pad, cfg.autocast, cfg.micro_batch_size)
                logprobs, entropy, mask = row_logprobs(self.model if prompts is None else self.policy, rollouts, rows, pad,
                                                       cfg.autocast, True, prompts, cfg.temperature)  # [b, T]
                T = mask.shape[1]
                old = old_logprobs[rows, :T] if old_logprobs is not None else logprobs.detach()
                ref = ref_logprobs[rows, :T] if ref_logprobs is not None else None
                adv = advantages[rows] if advantages.ndim == 1 else advantages[rows, :T]
                loss, m = policy_loss(logprobs, old, adv, mask, ref, cfg.beta, cfg.clip_low, cfg.clip_high,
                                      cfg.loss_aggregation, n_seq, n_tok, cfg.max_new_tokens)
                loss.backward()
                share = mask.sum().item() / max(n_run, 1)  # token-weighted average over the rows forwarded here
                sums["loss"] += loss.item()
                sums["entropy"] += (entropy * mask).sum().item() / max(n_run, 1)
                for key in ("clip_fraction", "kl"):
                    sums[key] += m[key] * share
                for key, value in self.estimator.backward(rollouts, rows, mask, share, critic_weight).items():
                    sums[key] = sums.get(key, 0.0) + value
        if step_prompts is not None:
            step_prompts.backward()
        if not batches and dist.world > 1:  # nothing to train here: join the other ranks' all-reduce with zeros
            zero_backward(models, pad, dist.device)
        for p in self.policy.parameters():  # every row skipped: the plain path's gradient is exactly 0,
            if p.requires_grad and p.grad is None:  # and AdamW still steps (momentum, decay)
                p.grad = torch.zeros_like(p)
        sums["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm).item()
        self.optimizer.step()
        return {**sums, **self.estimator.step()}


def load_tasks(cfg: RLConfig) -> tuple[list[str], list[list], dict[str, list]]:
    """Task names, their training pools and their held-out problems (verifiable ones only)."""
    tasks = [f"arith:{lvl}" for lvl in cfg.curriculum] or [cfg.task]
    drop = cfg.drop_unparseable_references
    pools = [load_task(t, "train", cfg.train_problems, cfg.seed, cfg.data_path, drop) for t in tasks]
    heldout = {t: [p for p in load_task(t, "test", cfg.eval_problems, cfg.seed, cfg.data_path, drop) if p.answer is not None]
               for t in tasks}
    return tasks, pools, heldout


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
    check_processes(cfg, dist)


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


@contextmanager
def report_interrupt(out: Path, bar):
    """On Ctrl-C, one line saying which checkpoint ``--resume`` continues from; the exit status is 130 (``cli.run``)."""
    try:
        yield
    except KeyboardInterrupt:
        bar.close()  # drawn once, before the message (not again at exit)
        latest = latest_checkpoint(out)
        where = (f"--resume continues from {latest} (step {int(latest.name.removeprefix('step_'))})" if latest
                 else "no checkpoint was written yet, so --resume would have nothing to continue from")
        print(f"\ninterrupted: {where}", file=sys.stderr, flush=True)
        raise


def find_checkpoint(out: Path, cfg: RLConfig, dist: Dist = SINGLE) -> Path | None:
    """The checkpoint to resume from: ``--resume`` insists on one, ``--auto-resume`` takes one if there is one.
    Every rank reads the same folder (on several machines, a shared file system)."""
    if not (cfg.resume or cfg.auto_resume):
        return None
    checkpoint = latest_checkpoint(out)
    if checkpoint is None and cfg.resume:
        raise UserError(f"--resume: no checkpoint to resume from in {out} (looked for {out / 'checkpoints'}/step_*); "
                        "check the folder name, or use --auto-resume to start a new run when there is none")
    if checkpoint is None:
        dist.print(f"--auto-resume: no checkpoint in {out}; starting a new run")
    return checkpoint


@dataclass
class Run:
    """Everything the loop's phases share: the config, models, engine, data and the resumable state."""

    cfg: RLConfig
    update: object  # PolicyGradient or DPOUpdate
    algorithm: str
    out: Path
    tasks: list[str]
    heldout: dict[str, list]
    samplers: list[PromptSampler]
    pools: list[dict[str, object]]  # per level: problem id -> problem
    record: PromptRecord  # per prompt: completions sampled and their summed accuracy
    reward_weights: dict[str, float]
    scorer: object | None  # the reward model for open-ended prompts
    tokenizer: object
    policy: torch.nn.Module
    generator: object
    optimizer: torch.optim.Optimizer
    scheduler: object
    logger: MetricsLogger
    state: dict  # level, cursors, recent_accuracy, before/after, step, sampled_total: saved in every checkpoint
    start_time: float
    dist: Dist  # this process's rank, the number of ranks, its device

    def evaluate(self, n_samples: int, tasks: list[str] | None = None) -> dict[str, dict[str, float]]:
        """Held-out greedy accuracy (and sampled pass@1 with ``n_samples``) per task; each rank grades its share."""
        return {t: held_out_accuracy(self.generator, self.tokenizer, self.heldout[t], self.cfg.template, n_samples,
                                     self.cfg.max_new_tokens, self.dist)
                for t in tasks or self.tasks if self.heldout[t]}

    def is_last(self, step: int) -> bool:
        """``step`` is ``--steps``, or ``--time-limit`` ran out on some rank (all ranks decide alike)."""
        if step == self.cfg.steps:
            return True
        minutes = (time.perf_counter() - self.start_time) / 60
        return self.cfg.time_limit > 0 and max(self.dist.gather(minutes)) >= self.cfg.time_limit


@dataclass
class Batch:
    """One step's rollouts: those the update trains on, and all that were sampled (DAPO drops some)."""

    rollouts: Rollouts  # this rank's
    sampled: Rollouts
    frac_zero_std: float  # of the first engine call's groups
    seconds: dict[str, float]  # generate, reward
    groups: int  # groups to train on, over all ranks (0: DAPO found none, and no rank updates)


def start_run(cfg: RLConfig, update, algorithm: str) -> Run:
    """Check the settings, load data, models and the engine, and resume from a checkpoint if asked.

    Every rank runs this: it loads the same data, the policy onto its device (DDP-wrapped by the update's
    ``setup``) and its own engine; rank 0 alone writes the output folder's files.
    """
    dist = Dist.start()
    check_settings(cfg, update, algorithm, dist)
    with as_user_error():
        reward_weights = parse_weights(cfg.rewards)
        tasks, pools, heldout = load_tasks(cfg)
    if any(p.answer is None for pool in pools for p in pool) and not cfg.reward_model:
        raise UserError(f"task {cfg.task!r} has prompts without a reference answer; pass --reward-model <folder> "
                        "(train one with scripts/train_reward_model.py)")
    model_path = resolve_model(cfg.model)
    checkpoint = find_checkpoint(Path(cfg.output_dir), cfg, dist)
    out = check_output_dir(cfg.output_dir)
    seed_everything(cfg.seed)
    start_time = time.perf_counter()
    scorer = None
    if cfg.reward_model:
        from reasoning_rl.reward_model import RewardModelScorer

        scorer = RewardModelScorer(resolve_model(cfg.reward_model), scale=cfg.reward_model_scale, autocast=cfg.autocast,
                                   device=dist.device)

    tokenizer = load_tokenizer(model_path)
    policy = load_policy(str(checkpoint / "policy") if checkpoint and cfg.lora_rank == 0 else model_path)
    reference = frozen_copy(load_policy(model_path)).to(dist.device) if update.needs_reference else None  # the starting model, also on resume
    policy = prepare_policy(policy, cfg.lora_rank, cfg.lora_alpha, cfg.gradient_checkpointing).to(dist.device)
    if checkpoint and cfg.lora_rank > 0:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(policy, load_file(checkpoint / "policy" / "adapter_model.safetensors"))
    policy.train()
    generator = make_generator(cfg.backend, model_path, policy, tokenizer, seed=cfg.seed, dist=dist,
                               memory_fraction=cfg.vllm_memory_fraction, enforce_eager=cfg.vllm_enforce_eager,
                               tensor_parallel_size=cfg.vllm_tensor_parallel_size)
    if checkpoint:
        generator.sync_weights(policy)

    optimizer, scheduler = make_optimizer(policy, cfg.lr, cfg.weight_decay, cfg.warmup_steps)
    update.setup(policy, reference, tokenizer, optimizer, model_path, dist)
    state = {"level": 0, "cursors": [0] * len(tasks), "recent_accuracy": [], "before": {}}
    if checkpoint:
        state = load_training_state(checkpoint, optimizer, scheduler)
        update.load(checkpoint)
        dist.print(f"resuming from {checkpoint} (step {state['step']})")
    if dist.world > 1:  # the ranks' own random streams (transformers generate samples with torch's)
        torch.manual_seed(cfg.seed + 1_000_003 * dist.rank + state.get("step", 0))
    samplers = [PromptSampler(pool, cfg.seed, cursor) for pool, cursor in zip(pools, state["cursors"])]
    pools_by_id = [{p.id: p for p in pool} for pool in pools]
    logger = MetricsLogger(out, state.get("step", 0), cfg.tensorboard, enabled=dist.is_main)
    if dist.is_main:
        (out / "config.json").write_text(json.dumps({"algorithm": algorithm, **dataclasses.asdict(cfg),
                                                     "processes": dist.world}, indent=2))
    run = Run(cfg, update, algorithm, out, tasks, heldout, samplers, pools_by_id, PromptRecord.from_json(state.get("record")),
              reward_weights, scorer, tokenizer, policy, generator, optimizer, scheduler, logger, state, start_time, dist)
    if not state["before"] and cfg.eval_before:
        dist.print(f"evaluating the untrained policy on {cfg.eval_problems} held-out problems per task ...")
        state["before"] = run.evaluate(cfg.eval_samples)
    return run


def sample(run: Run, seconds: dict[str, float]) -> Rollouts:
    """Phase 1: ``group_size`` completions for each of ``prompts_per_step`` prompts, in one engine call: the current
    level's, and with a curriculum ``curriculum_replay`` of them from the levels passed. Every rank draws the same
    prompts (samplers and record are seeded and checkpointed) and samples its own share."""
    cfg, start, level = run.cfg, time.perf_counter(), run.state["level"]
    replay = round(cfg.curriculum_replay * cfg.prompts_per_step) if level > 0 else 0
    problems = draw(run, level, cfg.prompts_per_step - replay)
    for earlier in range(level):  # the levels already passed, evenly
        problems += draw(run, earlier, replay // level + (earlier < replay % level))
    rollouts = collect_rollouts(run.generator, run.tokenizer, run.dist.share(problems), cfg.template, cfg.group_size,
                                cfg.temperature, cfg.top_p, cfg.max_new_tokens)
    seconds["generate"] += time.perf_counter() - start
    return rollouts


def draw(run: Run, level: int, k: int) -> list:
    """``k`` prompts of ``level``: by the record (``--select-by-difficulty``) or the plain sampler's next ones. The same
    draw on every rank: the record and the samplers are the same everywhere."""
    cfg, sampler = run.cfg, run.samplers[level]
    if not cfg.select_by_difficulty or k == 0:
        return sampler.take(k)
    rng = random.Random(f"{cfg.seed}/{level}/{sampler.cursor}/{sum(entry[0] for entry in run.record.counts.values())}")
    return select_prompts(sampler, run.record, run.pools[level], k, cfg.explore_fraction, cfg.retry_weight, rng)


def score(run: Run, rollouts: Rollouts, seconds: dict[str, float]) -> Rollouts:
    """Phase 2: the verifiers for prompts with a reference answer, the reward model for the others (in place);
    every rank's groups go into the prompt record."""
    cfg, start = run.cfg, time.perf_counter()
    score_rollouts(rollouts, run.reward_weights, cfg.max_new_tokens, cfg.overlong_cache, run.scorer, cfg.verify_timeout,
                   cfg.verify_budget)
    accuracy = rollouts.components.get("accuracy", rollouts.rewards)
    for ids, values in run.dist.gather(([p.id for p in rollouts.problems], accuracy)):
        run.record.update(ids, values, cfg.group_size)
    seconds["reward"] += time.perf_counter() - start
    return rollouts


def sample_batch(run: Run) -> Batch:
    """Phases 1 and 2 for one step; with DAPO's dynamic sampling, groups with all-equal rewards are dropped and
    more prompts are sampled and scored until the batch is full (or ``max_refills`` engine calls were made).

    With several ranks each fills its own share (``prompts_per_step / ranks`` groups) and the decision to refill
    is taken on the count over all ranks, so that every rank makes the same engine calls and draws the same
    prompts. A rank left without an informative group while others have some keeps its first group: its
    advantages are 0, it trains nothing, and the rank still takes part in the step.
    """
    cfg, dist, G, seconds = run.cfg, run.dist, run.cfg.group_size, {"generate": 0.0, "reward": 0.0}
    rollouts = score(run, sample(run, seconds), seconds)
    frac_zero_std = zero_std_groups(rollouts.rewards, G).float().mean().item()
    sampled = rollouts
    if cfg.dynamic_sampling:
        quota = cfg.prompts_per_step // dist.world
        kept, refills = [rollouts.select_groups(~zero_std_groups(rollouts.rewards, G))], 0

        def filled() -> bool:
            return dist.sum([min(quota, sum(len(r.problems) for r in kept))])[0] >= cfg.prompts_per_step

        while not filled() and refills < cfg.max_refills:
            extra = score(run, sample(run, seconds), seconds)
            sampled = Rollouts.concat([sampled, extra])
            kept.append(extra.select_groups(~zero_std_groups(extra.rewards, G)))
            refills += 1
        rollouts = Rollouts.concat(kept)
        rollouts = rollouts.select_groups(torch.arange(len(rollouts.problems)) < quota)
    groups = int(dist.sum([len(rollouts.problems)])[0])
    if groups and not len(rollouts.problems):
        rollouts = sampled.select_groups(torch.arange(len(sampled.problems)) < 1)
    return Batch(rollouts, sampled, frac_zero_std, seconds, groups)


def update_policy(run: Run, batch: Batch, step: int) -> dict[str, float]:
    """Phase 3: the algorithm's update (``PolicyGradient`` or ``DPOUpdate``) and the learning-rate schedule."""
    start, metrics = time.perf_counter(), {"train/lr": run.scheduler.get_last_lr()[0]}
    if batch.groups:  # dynamic sampling can come back empty (on every rank)
        metrics.update(run.update(batch.rollouts, step))
        run.scheduler.step()
    batch.seconds["train"] = time.perf_counter() - start
    return metrics


def sync(run: Run, batch: Batch) -> None:
    """Phase 4: push the new weights into the engine."""
    batch.seconds["sync"] = run.generator.sync_weights(run.policy)


def step_metrics(run: Run, batch: Batch, train_metrics: dict[str, float]) -> dict[str, float]:
    """What one step logs: rewards, the verifier's audit, the update's metrics, lengths, times, memory."""
    sampled, seconds = batch.sampled, batch.seconds
    lengths = torch.tensor([len(c) for c in sampled.completion_ids], dtype=torch.float)
    rewards = reward_metrics(sampled)
    level_pool = run.pools[run.state["level"]]  # the current level's rows, not the replayed ones
    current = torch.tensor([p.id in level_pool for p in sampled.problems]).repeat_interleave(sampled.group_size)
    accuracy = sampled.components.get("accuracy", sampled.rewards)
    return {
        **rewards,
        "train/accuracy": rewards.get("reward/accuracy", float("nan")),
        "train/frac_reward_zero_std": batch.frac_zero_std,
        "train/informative_groups": int((~zero_std_groups(sampled.rewards, sampled.group_size)).sum()),
        "train/groups_trained": batch.groups,
        **train_metrics,
        **audit_metrics([v for v in sampled.verdicts if v is not None]),
        "completions/mean_length": lengths.mean().item(),
        "completions/max_length": lengths.max().item(),
        "completions/truncated": sampled.truncated.float().mean().item(),
        "completions/sampled": len(sampled),
        **{f"time/{k}": v for k, v in seconds.items()},
        "time/step": sum(seconds.values()),
        "throughput/sampled_tokens_per_s": lengths.sum().item() / max(seconds["generate"], 1e-9),
        "throughput/train_tokens_per_s": sum(map(len, batch.rollouts.completion_ids)) / max(seconds["train"], 1e-9),
        "memory/peak_gib": peak_memory_gib(),
        "curriculum/level": run.state["level"],
        "curriculum/level_correct": float(accuracy[current].sum()),
        "curriculum/level_completions": int(current.sum()),
        **run.record.summary(),
    }


# How a step's metrics combine over ranks (``reduce_over_ranks``); every other metric is the mean of the ranks' values,
# each rank holding an equal share of the batch.
SUMMED = ("train/rows_skipped", "train/informative_groups", "completions/sampled", "throughput/", "dpo/pairs",
          "curriculum/level_correct", "curriculum/level_completions")
MAXIMUM = ("time/", "memory/", "completions/max_length")


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


def walk_curriculum(run: Run, step: int, accuracy: float) -> None:
    """Move to the next level once the training accuracy on the current level's prompts, averaged over the last
    ``curriculum_window`` steps, is high enough."""
    cfg, state, level = run.cfg, run.state, run.state["level"]
    if not cfg.curriculum or level + 1 >= len(run.tasks):
        return
    window = (state["recent_accuracy"] + [accuracy])[-cfg.curriculum_window:]
    state["recent_accuracy"] = window
    learnt = len(window) == cfg.curriculum_window and sum(window) / len(window) >= cfg.curriculum_threshold
    patience_out = cfg.curriculum_patience > 0 and step - state.get("level_start", 0) >= cfg.curriculum_patience
    if learnt or patience_out:
        state["level"], state["recent_accuracy"], state["level_start"] = level + 1, [], step
        why = "learnt" if learnt else f"not learnt after {cfg.curriculum_patience} steps"
        if run.dist.is_main:
            tqdm.write(f"step {step}: training accuracy {sum(window) / len(window):.2f} on {run.tasks[level]} ({why}) "
                       f"-> moving to {run.tasks[level + 1]}")


def log_and_checkpoint(run: Run, step: int, batch: Batch, train_metrics: dict[str, float], last: bool) -> dict[str, float]:
    """Phase 5: metrics, held-out evaluation every ``eval_every`` steps, the curriculum, samples and checkpoints
    (the final evaluation and a checkpoint on the ``last`` step).

    Every rank reduces the metrics and evaluates its share of the held-out problems; rank 0 writes the files
    and the checkpoint while the others wait for it.
    """
    cfg, state, task, dist = run.cfg, run.state, run.tasks[run.state["level"]], run.dist
    metrics = reduce_over_ranks(dist, step_metrics(run, batch, train_metrics))
    state["sampled_total"] = metrics["completions/sampled_total"] = state.get("sampled_total", 0) + metrics["completions/sampled"]
    if cfg.eval_every and step % cfg.eval_every == 0 and not last and run.heldout[task]:
        if cfg.curriculum:  # every level, to see what is learnt and what is forgotten
            metrics.update({f"heldout/greedy/{t.removeprefix('arith:')}": r["greedy"] for t, r in run.evaluate(0).items()})
        else:
            metrics["heldout/greedy"] = run.evaluate(0, [task])[task]["greedy"]
    if cfg.curriculum:
        metrics["curriculum/level_accuracy"] = metrics["curriculum/level_correct"] / max(metrics["curriculum/level_completions"], 1)
        walk_curriculum(run, step, metrics["curriculum/level_accuracy"])
    state["cursors"], state["record"] = [s.cursor for s in run.samplers], run.record.to_json()
    if last:
        state["after"] = run.evaluate(cfg.eval_samples)
        metrics.update({f"heldout/{k}": v for k, v in state["after"].get(task, {}).items()})
    run.logger.log(step, metrics)
    every_rank = dist.gather(batch.sampled) if cfg.log_completions else []
    if dist.is_main:
        for sampled in every_rank:
            write_completions(run.out, step, sampled)
        if cfg.sample_every and step % cfg.sample_every == 0:
            G, rollouts = cfg.group_size, batch.rollouts
            write_samples(run.out, step, [rollouts.prompts[0]] * G if len(rollouts) else [], rollouts.texts[:G],
                          rollouts.rewards[:G].tolist(), rollouts.answers[:G])
    if step % cfg.save_every == 0 or last:
        if dist.is_main:
            save_checkpoint(run.out, step, run.policy, run.tokenizer, run.optimizer, run.scheduler, state,
                            extra=run.update.save, optimizer_state=cfg.optimizer_state)
        dist.barrier()
    return metrics


def train(cfg: RLConfig, update, algorithm: str) -> dict:
    """Run the loop with ``update`` (a ``PolicyGradient`` or a ``DPOUpdate``); return the report."""
    run = start_run(cfg, update, algorithm)
    done = run.state.get("step", 0)  # steps finished (a resumed run starts past its checkpoint)
    bar = tqdm(initial=done, total=cfg.steps, desc=algorithm, unit="step", disable=not run.dist.is_main)
    with report_interrupt(run.out, bar):
        for step in range(done + 1, cfg.steps + 1):
            batch = sample_batch(run)  # 1-2. sample G completions per prompt in the engine, and score them
            train_metrics = update_policy(run, batch, step)  # 3. the algorithm's update
            sync(run, batch)  # 4. the new weights into the engine
            last = run.is_last(step)
            metrics = log_and_checkpoint(run, step, batch, train_metrics, last)  # 5. log, evaluate, checkpoint
            seconds, done = batch.seconds, step
            bar.set_postfix(reward=f"{metrics['reward/mean']:.2f}", len=f"{metrics['completions/mean_length']:.0f}",
                            gen=f"{seconds['generate']:.0f}s", train=f"{seconds['train']:.0f}s", refresh=False)
            if last:
                break
            bar.update()
        bar.n = done  # the last step is drawn once, by close() (a log file would get it twice)
        bar.close()
    run.logger.close()
    if done < cfg.steps and run.dist.is_main:
        print(f"--time-limit {cfg.time_limit:g} min reached after step {done}; add --resume to go on to step {cfg.steps}")
    return final_report(run, done)


def final_report(run: Run, steps: int) -> dict:
    """results.json, the plot, and held-out accuracy before -> after on the console (rank 0; the others return it)."""
    cfg, state, dist = run.cfg, run.state, run.dist
    wall = time.perf_counter() - run.start_time
    before, after = state["before"], state.get("after") or run.evaluate(cfg.eval_samples)
    memory = dist.gather(peak_memory_gib())
    report = {"algorithm": run.algorithm, "tasks": run.tasks, "before": before, "after": after, "wall_seconds": wall,
              "steps": steps, "processes": dist.world, "peak_memory_gib": max(memory), "peak_memory_gib_per_rank": memory}
    if dist.world > 1:  # DDP keeps the ranks' weights equal; a fingerprint per rank shows that it did
        report["weights_sha256_per_rank"] = dist.gather(weights_sha256(run.policy))
        if len(set(report["weights_sha256_per_rank"])) > 1 and dist.is_main:
            print("warning: the ranks' weights differ at the end of the run", file=sys.stderr)
    if not dist.is_main:
        return report
    (run.out / "results.json").write_text(json.dumps(report, indent=2))
    name, tasks = run.algorithm.upper(), run.tasks
    title = f"{name} on {tasks[0]}" if len(tasks) == 1 else f"{name} curriculum over {len(tasks)} levels"
    plot_run(read_metrics(run.out), run.out / "training.png", f"{title} ({cfg.model})", report)
    print(f"\nheld-out accuracy ({cfg.eval_problems} problems per task)" + (", untrained -> trained:" if before else " (untrained: not evaluated in this run):"))
    for t in after:
        b, a = before.get(t), after[t]
        line = f"  {t:>16}: greedy " + (f"{b['greedy']:6.1%} -> " if b else "") + f"{a['greedy']:6.1%}"
        if "pass@1" in a:
            line += "   sampled pass@1 (T=1) " + (f"{b['pass@1']:6.1%} -> " if b and "pass@1" in b else "") + f"{a['pass@1']:6.1%}"
        print(line)
    ranks = f" on {dist.world} processes (peak memory per rank {', '.join(f'{m:.1f}' for m in memory)} GiB)" if dist.world > 1 else ""
    print(f"wall time {format_seconds(wall)}{ranks}; metrics in {run.out / 'metrics.jsonl'}, plot in {run.out / 'training.png'}")
    return report
