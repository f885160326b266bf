"""The online RL loop shared by GRPO, PPO and online DPO.

Every step does the same five things, whatever the algorithm:

1. sample ``group_size`` completions for ``prompts_per_step`` prompts in the engine (vLLM);
2. score them: verifiers for prompts with a reference answer, the reward model for the others;
3. update the policy: ``update(rollouts)``, the only algorithm-specific call;
4. push the new weights into the engine;
5. log, evaluate on held-out problems, walk the curriculum, checkpoint.

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
from reasoning_rl.generation import make_generator
from reasoning_rl.logprobs import completion_logprobs
from reasoning_rl.losses import policy_loss
from reasoning_rl.models import load_policy, load_tokenizer, resolve_model
from reasoning_rl.rollout import Rollouts, collect_rollouts, micro_batches, rollout_logprobs, score_rollouts
from reasoning_rl.tasks import PromptSampler, load_task
from reasoning_rl.tracking import MetricsLogger, read_metrics, write_completions, write_samples
from reasoning_rl.training import (format_seconds, frozen_copy, held_out_accuracy, make_optimizer, peak_memory_gib,
                                   plot_run, prepare_policy, seed_everything)
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
    """Move to the next level when the mean training accuracy of the last ``curriculum_window`` steps reaches this."""
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
    prompts_per_step: int = 8
    """Prompts per batch (B)."""
    group_size: int = 8
    """Completions sampled per prompt (G)."""
    max_new_tokens: int = 64
    """Completion length limit; longer completions are cut off and counted in completions/truncated."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts."""
    top_p: float = 1.0
    """Nucleus sampling of the rollouts."""
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

    def setup(self, policy, reference, tokenizer, optimizer, model_path: str) -> None:
        self.policy, self.reference, self.tokenizer, self.optimizer = policy, reference, tokenizer, optimizer
        self.estimator.setup(model_path, tokenizer, self.cfg)

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
        return [part for k in range(cfg.mini_batches) if (part := rows[k :: cfg.mini_batches])]

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
            old_logprobs = rollout_logprobs(policy, rollouts, pad, cfg.micro_batch_size, cfg.autocast, kept)
        ref_logprobs = None
        if self.reference is not None:
            ref_logprobs = rollout_logprobs(self.reference, rollouts, pad, cfg.micro_batch_size, cfg.autocast, kept)

        # the one algorithm-specific line: [N] (GRPO) or [N, T] (PPO) advantages
        advantages, metrics = early or self.estimator.advantages(rollouts, old_logprobs, ref_logprobs)

        sums = dict.fromkeys(["loss", "clip_fraction", "kl", "entropy", "grad_norm"], 0.0)
        n_steps = 0
        for epoch in range(cfg.mu):
            for part in self.mini_batches(rollouts, step, epoch):
                n_seq = len(part)  # the normalisers count every row, skipped or not
                n_tok = sum(len(rollouts.completion_ids[i]) for i in part)
                mini = micro_batches(rollouts, cfg.micro_batch_size, [i for i in part if not skip[i]])
                n_run = max(1, sum(len(rollouts.completion_ids[i]) for rows in mini for i in rows))  # tokens forwarded
                self.optimizer.zero_grad(set_to_none=True)
                for rows in mini:
                    ids, attention, mask = rollouts.pack(rows, pad)
                    T = mask.shape[1]
                    logprobs, entropy = completion_logprobs(policy, ids, attention, T, with_entropy=True, autocast=cfg.autocast)
                    old = old_logprobs[rows, :T] if old_logprobs is not None else logprobs.detach()
                    ref = ref_logprobs[rows, :T] if ref_logprobs is not None else None
                    adv = advantages[rows] if advantages.ndim == 1 else advantages[rows, :T]
                    loss, m = policy_loss(logprobs, old, adv, mask, ref, cfg.beta, cfg.clip_low, cfg.clip_high,
                                          cfg.loss_aggregation, n_seq, n_tok, cfg.max_new_tokens)
                    loss.backward()
                    share = mask.sum().item() / n_run  # token-weighted average over the rows forwarded
                    sums["loss"] += loss.item()
                    sums["entropy"] += (entropy * mask).sum().item() / n_run
                    for key in ("clip_fraction", "kl"):
                        sums[key] += m[key] * share
                    for key, value in self.estimator.backward(rows, ids, attention, mask, share).items():
                        sums[key] = sums.get(key, 0.0) + value
                for p in policy.parameters():  # every row skipped: the plain path's gradient is exactly 0,
                    if p.requires_grad and p.grad is None:  # and AdamW still steps (momentum, decay)
                        p.grad = torch.zeros_like(p)
                sums["grad_norm"] += torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm).item()
                self.optimizer.step()
                for key, value in self.estimator.step().items():
                    sums[key] = sums.get(key, 0.0) + value
                n_steps += 1
        metrics.update({f"train/{k}": v / n_steps for k, v in sums.items()})
        metrics["train/rows_skipped"] = int(skip.sum())
        return metrics


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


def check_settings(cfg: RLConfig, update, algorithm: str) -> None:
    """Refuse, before anything loads, a setting that cannot produce a gradient (a ``UserError`` saying why)."""
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


def find_checkpoint(out: Path, cfg: RLConfig) -> Path | None:
    """The checkpoint to resume from: ``--resume`` insists on one, ``--auto-resume`` takes one if there is one."""
    if not (cfg.resume or cfg.auto_resume):
        return None
    checkpoint = latest_checkpoint(out)
    if checkpoint is None and cfg.resume:
        raise UserError(f"--resume: no checkpoint to resume from in {out} (looked for {out / 'checkpoints'}/step_*); "
                        "check the folder name, or use --auto-resume to start a new run when there is none")
    if checkpoint is None:
        print(f"--auto-resume: no checkpoint in {out}; starting a new run")
    return checkpoint


def train(cfg: RLConfig, update, algorithm: str) -> dict:
    """Run the loop with ``update`` (a ``PolicyGradient`` or a ``DPOUpdate``); return the report."""
    # --- check everything the user asked for before loading anything ---------------------
    check_settings(cfg, update, algorithm)
    with as_user_error():
        reward_weights = parse_weights(cfg.rewards)
        tasks, pools, heldout = load_tasks(cfg)
    open_ended = any(p.answer is None for pool in pools for p in pool)
    if open_ended and not cfg.reward_model:
        raise UserError(f"task {cfg.task!r} has prompts without a reference answer; pass --reward-model <folder> "
                        "(train one with scripts/train_reward_model.py)")
    model_path = resolve_model(cfg.model)
    checkpoint = find_checkpoint(Path(cfg.output_dir), cfg)
    out = check_output_dir(cfg.output_dir)
    seed_everything(cfg.seed)
    start_time = time.perf_counter()
    scorer = None
    if cfg.reward_model:
        from reasoning_rl.reward_model import RewardModelScorer

        scorer = RewardModelScorer(resolve_model(cfg.reward_model), scale=cfg.reward_model_scale, autocast=cfg.autocast)

    # --- model, reference, engine ------------------------------------------------------
    tokenizer = load_tokenizer(model_path)
    policy = load_policy(str(checkpoint / "policy") if checkpoint and cfg.lora_rank == 0 else model_path)
    reference = frozen_copy(load_policy(model_path)) if update.needs_reference else None  # the starting model, also on resume
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

    optimizer, scheduler = make_optimizer(policy, cfg.lr, cfg.weight_decay, cfg.warmup_steps)
    update.setup(policy, reference, tokenizer, optimizer, model_path)
    state = {"level": 0, "cursors": [0] * len(tasks), "recent_accuracy": [], "before": {}}
    if checkpoint:
        state = load_training_state(checkpoint, optimizer, scheduler)
        update.load(checkpoint)
        print(f"resuming from {checkpoint} (step {state['step']})")
    samplers = [PromptSampler(pool, cfg.seed, cursor) for pool, cursor in zip(pools, state["cursors"])]
    start_step = state.get("step", 0)
    logger = MetricsLogger(out, start_step, cfg.tensorboard)
    (out / "config.json").write_text(json.dumps({"algorithm": algorithm, **dataclasses.asdict(cfg)}, indent=2))

    def evaluate_all(n_samples: int) -> dict[str, dict[str, float]]:
        return {t: held_out_accuracy(generator, tokenizer, heldout[t], cfg.template, n_samples, cfg.max_new_tokens)
                for t in tasks if heldout[t]}

    if not state["before"] and cfg.eval_before:
        print(f"evaluating the untrained policy on {cfg.eval_problems} held-out problems per task ...")
        state["before"] = evaluate_all(cfg.eval_samples)

    # --- the loop --------------------------------------------------------------------------
    bar = tqdm(initial=start_step, total=cfg.steps, desc=algorithm, unit="step")
    with report_interrupt(out, bar):
        for step in range(start_step + 1, cfg.steps + 1):
            level = state["level"]
            t0 = time.perf_counter()

            # 1-2. rollouts: G samples per prompt in one engine call, scored by the verifiers (and the reward model)
            t_reward = 0.0

            def sample(k: int) -> Rollouts:
                nonlocal t_reward
                batch = collect_rollouts(generator, tokenizer, samplers[level].take(k), cfg.template, cfg.group_size,
                                         cfg.temperature, cfg.top_p, cfg.max_new_tokens)
                start = time.perf_counter()
                score_rollouts(batch, reward_weights, cfg.max_new_tokens, cfg.overlong_cache, scorer, cfg.verify_timeout,
                               cfg.verify_budget)
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

            # 3. the algorithm's update
            t1 = time.perf_counter()
            lr = scheduler.get_last_lr()[0]
            train_metrics = {}
            if len(rollouts):
                train_metrics = update(rollouts, step)
                scheduler.step()
            t_train = time.perf_counter() - t1

            # 4. push the new weights into the engine
            t_sync = generator.sync_weights(policy)

            # 5. log
            step_seconds = time.perf_counter() - t0
            lengths_all = torch.tensor([len(c) for c in all_rollouts.completion_ids], dtype=torch.float)
            rewards = reward_metrics(all_rollouts)
            accuracy = rewards.get("reward/accuracy", float("nan"))
            metrics = {
                **rewards,
                "train/accuracy": accuracy,
                "train/frac_reward_zero_std": frac_zero_std,
                "train/groups_trained": len(rollouts.problems),
                **train_metrics,
                **audit_metrics([v for v in all_rollouts.verdicts if v is not None]),
                "train/lr": lr,
                "completions/mean_length": lengths_all.mean().item(),
                "completions/max_length": lengths_all.max().item(),
                "completions/truncated": all_rollouts.truncated.float().mean().item(),
                "completions/sampled_total": state.get("sampled_total", 0) + len(all_rollouts),
                "time/generate": t_generate,
                "time/reward": t_reward,
                "time/train": t_train,
                "time/sync": t_sync,
                "time/step": step_seconds,
                "throughput/sampled_tokens_per_s": lengths_all.sum().item() / max(t_generate, 1e-9),
                "throughput/train_tokens_per_s": sum(map(len, rollouts.completion_ids)) / max(t_train, 1e-9),
                "memory/peak_gib": peak_memory_gib(),
                "curriculum/level": level,
            }
            state["sampled_total"] = metrics["completions/sampled_total"]
            if cfg.eval_every and step % cfg.eval_every == 0 and step != cfg.steps and heldout[tasks[level]]:
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
                metrics.update({f"heldout/{k}": v for k, v in state["after"].get(tasks[level], {}).items()})
            logger.log(step, metrics)
            bar.set_postfix(reward=f"{metrics['reward/mean']:.2f}", len=f"{metrics['completions/mean_length']:.0f}",
                            gen=f"{t_generate:.0f}s", train=f"{t_train:.0f}s", refresh=False)
            if step < cfg.steps:
                bar.update()  # the last step is drawn once, by close() (a log file would get it twice)
            if cfg.log_completions:
                write_completions(out, step, all_rollouts)
            if cfg.sample_every and step % cfg.sample_every == 0:
                G = cfg.group_size
                write_samples(out, step, [rollouts.prompts[0]] * G if len(rollouts) else [], rollouts.texts[:G],
                              rollouts.rewards[:G].tolist(), rollouts.answers[:G])
            if step % cfg.save_every == 0 or step == cfg.steps:
                save_checkpoint(out, step, policy, tokenizer, optimizer, scheduler, state, extra=update.save,
                            optimizer_state=cfg.optimizer_state)
        bar.n = cfg.steps
        bar.close()
    logger.close()

    # --- report ----------------------------------------------------------------------------
    wall = time.perf_counter() - start_time
    before, after = state["before"], state.get("after") or evaluate_all(cfg.eval_samples)
    report = {"algorithm": algorithm, "tasks": tasks, "before": before, "after": after, "wall_seconds": wall,
              "steps": cfg.steps, "peak_memory_gib": peak_memory_gib()}
    (out / "results.json").write_text(json.dumps(report, indent=2))
    name = algorithm.upper()
    title = f"{name} on {tasks[0]}" if len(tasks) == 1 else f"{name} curriculum over {len(tasks)} levels"
    plot_run(read_metrics(out), out / "training.png", f"{title} ({cfg.model})", report)
    print(f"\nheld-out accuracy ({cfg.eval_problems} problems per task)" + (", untrained -> trained:" if before else " (untrained: not evaluated in this run):"))
    for t in after:
        b, a = before.get(t), after[t]
        line = f"  {t:>16}: greedy " + (f"{b['greedy']:6.1%} -> " if b else "") + f"{a['greedy']:6.1%}"
        if "pass@1" in a:
            line += "   sampled pass@1 (T=1) " + (f"{b['pass@1']:6.1%} -> " if b and "pass@1" in b else "") + f"{a['pass@1']:6.1%}"
        print(line)
    print(f"wall time {format_seconds(wall)}; metrics in {out / 'metrics.jsonl'}, plot in {out / 'training.png'}")
    return report
