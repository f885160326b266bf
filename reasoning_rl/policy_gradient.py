"""GRPO's and PPO's update: the clipped surrogate, fed by an advantage estimator.

``PolicyGradient.__call__`` is one batch: the rows that cannot contribute are set aside, the
advantages computed (the one algorithm-specific line), then ``mu`` passes of ``mini_batches``
optimizer steps. ``optimizer_step`` is the algorithm itself: rows -> log-probs -> ``policy_loss``
-> backward -> clip -> step. What makes it fast or lets it run on several ranks sits in the named
helpers below it (global counts, prompt encoding, the empty-rank join, zero-filled gradients).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from reasoning_rl.advantage_estimators import AdvantageEstimator
from reasoning_rl.config import RLConfig
from reasoning_rl.logprobs import supports_shared_prompt
from reasoning_rl.losses import POLICY_LOSSES, rollout_correction
from reasoning_rl.optim import clip_and_step
from reasoning_rl.rollout import (Rollouts, encode_prompts, micro_batches, rollout_forwards, rollout_logprobs,
                                  row_logprobs)
from runtime.distributed import SINGLE, Dist, zero_backward


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
    loss_type: str = "clipped"
    """The policy loss (reasoning_rl/losses.py): clipped (PPO's clipped surrogate, GRPO), gspo (one clipped ratio per
    sequence; use clips of about 3e-4 / 4e-4, --preset gspo) or cispo (REINFORCE with a clipped stop-gradient weight,
    --preset cispo)."""
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
    shared_prompt_scope: str = "step"
    """step: every trained group's prompt encoded once per optimizer step, its graph held until the last
    micro-batch. micro_batch: each micro-batch encodes the prompts of its own groups (a group split over two
    micro-batches is encoded twice) and frees them with its backward; measured 1.4 to 1.6x slower on GSM8K shapes
    and no lower peak up to 8 groups (docs/efficiency.md), so step is the default."""


@dataclass
class Targets:
    """What the loss compares the policy with, for every row of the batch."""

    rollouts: Rollouts  # for the engine's log-probs of each row (vLLM), when it gave them
    advantages: torch.Tensor  # [N] one per completion (GRPO) or [N, T] one per token (PPO)
    old_logprobs: torch.Tensor | None  # [N, T] the trainer's at sampling time; None when mu = 1 (the policy itself)
    ref_logprobs: torch.Tensor | None  # [N, T] under the frozen reference; None when beta = 0
    correction: str  # --rollout-correction
    threshold: float  # --rollout-correction-threshold
    engine_denominator: bool  # stale rollouts without correction: the ratio's denominator is the sampling weights'

    def rows(self, rows: list[int], logprobs: torch.Tensor, mask: torch.Tensor) -> "RowTargets":
        """The targets of ``rows``, cut to the ``T`` tokens of their ``[b, T]`` log-probs, with the engine/trainer
        correction weights and the mismatch metrics (``losses.rollout_correction``) where the engine gave log-probs."""
        T = logprobs.shape[1]
        adv = self.advantages[rows] if self.advantages.ndim == 1 else self.advantages[rows, :T]
        ref = None if self.ref_logprobs is None else self.ref_logprobs[rows, :T]
        old = logprobs.detach() if self.old_logprobs is None else self.old_logprobs[rows, :T]  # mu = 1: the ratio is 1
        engine = self.rollouts.engine_logprob_tensor(rows, T, logprobs.device)
        if engine is None:
            return RowTargets(adv, old, ref, None, {})
        weights, metrics = rollout_correction(old, engine, mask, self.correction, self.threshold)
        return RowTargets(adv, engine if self.engine_denominator else old, ref, weights, metrics)


@dataclass
class RowTargets:
    advantages: torch.Tensor  # [b] or [b, T]
    old_logprobs: torch.Tensor  # [b, T] the ratio's denominator
    ref_logprobs: torch.Tensor | None  # [b, T]
    is_weights: torch.Tensor | None  # [b, T] or [b, 1] the rollout correction's stop-gradient weights
    metrics: dict[str, float]  # the engine/trainer mismatch (rollout/*)


@dataclass
class GlobalCounts:
    """The loss normalisers of one optimizer step, counted over every rank: every row of the mini-batch counts,
    skipped or not. DDP averages the ranks' gradients, so each rank normalises by the global counts divided by
    the number of ranks; the average is then the gradient of the whole mini-batch, as if one process held it."""

    sequences: float  # rows of the mini-batch, over all ranks / ranks
    tokens: float  # their sampled completion tokens (tool output excluded), over all ranks / ranks
    forwarded: int  # sampled completion tokens this rank forwards (the rows it does not skip)
    critic_weight: float  # this rank's forwarded tokens against the average rank's (PPO's critic loss is a token mean)


class PolicyGradient:
    """GRPO's and PPO's update: the clipped surrogate over ``mu`` passes x ``mini_batches`` steps.

    The advantage estimator is the one part that differs: ``GroupRelative`` (GRPO) returns one
    advantage per completion from its group's rewards; ``GAECritic`` (PPO) one per token from a
    learned value function. Both are called with the rollouts and the log-probs at sampling time.
    """

    def __init__(self, cfg: PolicyGradientConfig, estimator: AdvantageEstimator):
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
        self.models = [self.model, *self.estimator.models]  # what the gradient all-reduce runs through
        self.policy_loss = POLICY_LOSSES[self.cfg.loss_type]  # losses.policy_loss, gspo_loss or cispo_loss
        why_not = supports_shared_prompt(policy) if self.cfg.shared_prompt else None
        if why_not:
            tqdm.write(f"--shared-prompt does not apply here ({why_not}): every row encodes its prompt")
        self.shared_prompt = self.cfg.shared_prompt and why_not is None

    def save(self, folder: Path) -> None:
        self.estimator.save(folder)

    def load(self, folder: Path) -> None:
        self.estimator.load(folder)

    def __call__(self, rollouts: Rollouts, step: int) -> dict[str, float]:
        """One batch: the advantages, then ``mu`` passes of ``mini_batches`` optimizer steps; the steps' mean metrics."""
        skip, targets, metrics = self.prepare(rollouts)
        sums = dict.fromkeys(["loss", "clip_fraction", "kl", "entropy", "grad_norm"], 0.0)
        n_steps = 0
        for epoch in range(self.cfg.mu):
            for part in self.mini_batches(rollouts, step, epoch):
                for key, value in self.optimizer_step(rollouts, part, skip, targets).items():
                    sums[key] = sums.get(key, 0.0) + value
                n_steps += 1
        metrics.update({k if "/" in k else f"train/{k}": v / n_steps for k, v in sums.items()})
        metrics["train/nonfinite_steps"] = sums["nonfinite_steps"]  # a count, not a mean
        metrics["train/rows_skipped"] = int(skip.sum())
        return metrics

    def optimizer_step(self, rollouts: Rollouts, part: list[int], skip: torch.Tensor, targets: Targets) -> dict[str, float]:
        """One optimizer step on the rows ``part``: the clipped surrogate over micro-batches of the rows not skipped,
        gradients accumulated (and averaged over ranks on the last one), clipped, applied."""
        cfg = self.cfg
        kept = [i for i in part if not skip[i]]
        counts = self.global_counts(rollouts, part, kept)
        self.optimizer.zero_grad(set_to_none=True)
        prompts = PromptEncoding(self, rollouts, kept)
        sums = dict.fromkeys(["loss", "clip_fraction", "kl", "entropy"], 0.0)
        batches = micro_batches(rollouts, cfg.micro_batch_size, kept)
        passes = self.dist.lockstep(len(batches))  # sharded models: every rank runs the busiest rank's passes
        for k, rows in enumerate(batches):
            with self.dist.accumulate(self.models, sync=k == passes - 1):
                logprobs, entropy, mask = prompts.logprobs(rows)  # [b, T] each
                target = targets.rows(rows, logprobs, mask)  # advantages, old and reference log-probs, weights
                loss, metrics = self.policy_loss(
                    logprobs, old_logprobs=target.old_logprobs, advantages=target.advantages, mask=mask,
                    ref_logprobs=target.ref_logprobs, is_weights=target.is_weights, beta=cfg.beta,
                    clip_low=cfg.clip_low, clip_high=cfg.clip_high, aggregation=cfg.loss_aggregation,
                    batch_sequences=counts.sequences, batch_tokens=counts.tokens, max_tokens=cfg.max_new_tokens)
                loss.backward()
                add_micro_batch_metrics(sums, loss, entropy, mask, {**metrics, **target.metrics}, counts.forwarded)
                self.critic_backward(sums, rollouts, rows, mask, counts)
        prompts.backward()
        self.join_if_idle(rollouts, prompts, len(batches), passes)
        fill_missing_gradients(self.policy)
        sums.update(clip_and_step(self.optimizer, self.policy.parameters(), cfg.max_grad_norm))  # skipped if not finite
        return {**sums, **self.estimator.step()}

    # ---- the machinery around the step, one concern each ----

    def prepare(self, rollouts: Rollouts) -> tuple[torch.Tensor, Targets, dict[str, float]]:
        """The rows to skip, the log-probs at sampling time and under the reference (of the kept rows), and the
        advantages with the estimator's metrics.

        GRPO's advantages need only the rewards, so the rows that cannot contribute are known before any forward
        pass; PPO's need the old log-probs and the critic first, and skip nothing.
        """
        cfg, pad = self.cfg, self.tokenizer.pad_token_id
        early = None if self.estimator.needs_old_logprobs else self.estimator.advantages(rollouts, None, None)
        skip = self.skipped_rows(early[0]) if early else torch.zeros(len(rollouts), dtype=torch.bool)
        kept = (~skip).nonzero().flatten().tolist()

        def logprobs_under(model) -> torch.Tensor:  # [N, T]
            with self.dist.lockstep_forwards(model, pad, rollout_forwards(rollouts, cfg.micro_batch_size, kept,
                                                                          self.shared_prompt)):
                return rollout_logprobs(model, rollouts, pad, cfg.micro_batch_size, cfg.autocast, kept,
                                        self.shared_prompt, cfg.temperature)

        updates = cfg.mu * max(1, cfg.mini_batches)  # after the first, the policy is no longer the one that sampled
        old = logprobs_under(self.policy) if updates > 1 or self.estimator.needs_old_logprobs else None
        ref = logprobs_under(self.reference) if self.reference is not None else None
        advantages, metrics = early or self.estimator.advantages(rollouts, old, ref)  # [N] (GRPO) or [N, T] (PPO)
        stale_uncorrected = cfg.rollout_staleness > 0 and cfg.rollout_correction == "none"
        targets = Targets(rollouts, advantages.to(self.dist.device), old, ref, cfg.rollout_correction,
                          cfg.rollout_correction_threshold, stale_uncorrected)
        return skip, targets, metrics

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

    def global_counts(self, rollouts: Rollouts, part: list[int], kept: list[int]) -> GlobalCounts:
        """The step's normalisers over every rank (``GlobalCounts``)."""
        forwarded = sum(rollouts.sampled_tokens(i) for i in kept)
        tokens = sum(rollouts.sampled_tokens(i) for i in part)
        n_seq, n_tok, n_forwarded = self.dist.sum([len(part), tokens, forwarded])
        world = self.dist.world
        return GlobalCounts(n_seq / world, n_tok / world, forwarded, world * forwarded / max(n_forwarded, 1))

    def critic_backward(self, sums: dict[str, float], rollouts: Rollouts, rows: list[int], mask: torch.Tensor,
                        counts: GlobalCounts) -> None:
        """The estimator's own model (PPO's critic) learns from the same micro-batch; GRPO has none."""
        share = mask.sum().item() / max(counts.forwarded, 1)
        for key, value in self.estimator.backward(rollouts, rows, mask, share, counts.critic_weight).items():
            sums[key] = sums.get(key, 0.0) + value

    def join_if_idle(self, rollouts: Rollouts, prompts: "PromptEncoding", done: int, passes: int) -> None:
        """The passes this rank lacks against the busiest one. DDP: a rank with nothing to train joins the gradient
        all-reduce with zeros. Sharded models: ``passes - done`` more micro-batches of one row, the same forwards and
        backwards as a real one (FSDP2's all-gathers and reduce-scatters pair up), with the loss times 0."""
        if not self.dist.sharded:
            if not done and self.dist.world > 1:
                zero_backward(self.models, self.tokenizer.pad_token_id, self.dist.device)
            return
        for k in range(done, passes):
            with self.dist.accumulate(self.models, sync=k == passes - 1):
                logprobs, _, mask = prompts.logprobs([0])
                (logprobs.sum() * 0).backward()
                self.estimator.backward(rollouts, [0], mask, share=0.0)  # PPO's critic: the same, times 0


class PromptEncoding:
    """How one optimizer step's rows get their prompts.

    With ``--shared-prompt`` each group's prompt is encoded once (Prefix Grouper's shared-prefix forward): in one
    process with ``--shared-prompt-scope step`` (the default), once for the whole step, back-propagated once after
    the last micro-batch (its graph held meanwhile); per micro-batch, in the micro-batch's own forward and backward,
    with ``--shared-prompt-scope micro_batch`` and always with several ranks (so that each micro-batch is one
    forward and one backward through DDP). Without, every row encodes its own prompt. All give the same log-probs
    and gradients.
    """

    def __init__(self, update: PolicyGradient, rollouts: Rollouts, kept: list[int]):
        cfg, self.update, self.rollouts = update.cfg, update, rollouts
        self.pad = update.tokenizer.pad_token_id
        self.step_prompts = None
        if update.shared_prompt and kept and update.dist.world == 1 and cfg.shared_prompt_scope == "step":
            self.step_prompts = encode_prompts(update.policy, rollouts, kept, self.pad, cfg.autocast, cfg.micro_batch_size,
                                               separate_backward=True)

    def logprobs(self, rows: list[int]):
        """``[b, T]`` log-probs and entropies of the sampled tokens of ``rows``, and their ``[b, T]`` mask."""
        update, cfg = self.update, self.update.cfg
        prompts = self.step_prompts
        if update.shared_prompt and prompts is None:  # through DDP: the one forward it syncs on
            prompts = encode_prompts(update.model, self.rollouts, rows, self.pad, cfg.autocast, cfg.micro_batch_size)
        model = update.model if prompts is None else update.policy
        return row_logprobs(model, self.rollouts, rows, self.pad, cfg.autocast, True, prompts, cfg.temperature)

    def backward(self) -> None:
        """The gradient of the step's shared prompt encoding, once, after every micro-batch's backward."""
        if self.step_prompts is not None:
            self.step_prompts.backward()


def add_micro_batch_metrics(sums: dict[str, float], loss: torch.Tensor, entropy: torch.Tensor, mask: torch.Tensor,
                            metrics: dict[str, float], forwarded: int) -> None:
    """Add one micro-batch to the step's metrics: the loss summed, maxima as maxima, the rest token-weighted over the
    rows forwarded."""
    share = mask.sum().item() / max(forwarded, 1)
    sums["loss"] += loss.item()
    sums["entropy"] += (entropy * mask).sum().item() / max(forwarded, 1)
    for key, value in metrics.items():
        if key == "ratio_mean":
            continue  # not logged (1 at the first update)
        if key.endswith("_max"):
            sums[key] = max(sums.get(key, 0.0), value)
        else:
            sums[key] = sums.get(key, 0.0) + value * share


def fill_missing_gradients(model: torch.nn.Module) -> None:
    """Every row skipped: the plain path's gradient is exactly 0, and AdamW still steps (momentum, decay)."""
    for p in model.parameters():
        if p.requires_grad and p.grad is None:
            p.grad = torch.zeros_like(p)
