"""Advantage estimators for ``policy_gradient.PolicyGradient``: the one place where GRPO and PPO differ.

    GRPO  GroupRelative   A_i = (r_i - mean(r_group)) / std(r_group), the same for every token of
                          completion i; no model, no extra forward pass.
    PPO   GAECritic       per-token rewards r_t = -kl_coef * (log pi_old - log pi_ref)_t, plus the
                          verifier's score on the last token (InstructGPT); a learned critic V(s_t);
                          A_t by GAE(gamma, lambda) backwards over tokens, whitened over the batch;
                          the critic regresses on the returns A_t + V_t with a clipped value loss.

An estimator has ``advantages(rollouts, old_logprobs, ref_logprobs) -> (advantages, metrics)``,
and for its own model (the critic) ``backward(...)`` per micro-batch, ``step()`` per optimizer
step and ``save``/``load`` for checkpoints (the ``AdvantageEstimator`` protocol). The maths are in
``advantages.py`` and ``losses.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from reasoning_rl.advantages import gae, group_relative, last_sampled, whiten
from reasoning_rl.losses import value_loss
from reasoning_rl.optim import clip_and_step
from reasoning_rl.reward_model import TokenScores
from reasoning_rl.rollout import micro_batches, per_token
from reasoning_rl.sharded_checkpoint import load_state, save_state
from runtime.distributed import SINGLE


class AdvantageEstimator(Protocol):
    """What ``PolicyGradient`` asks of an advantage estimator."""

    needs_reference: bool  # its advantages use the frozen reference's log-probs (PPO's KL reward)
    needs_old_logprobs: bool  # its advantages use the log-probs at sampling time (so nothing can be skipped early)
    min_group_size: int  # completions per prompt it needs to have any gradient
    models: list  # its own trained models, DDP-wrapped with several ranks (the critic), or none

    def setup(self, model_path: str, tokenizer, cfg, dist=SINGLE) -> None: ...

    def advantages(self, rollouts, old_logprobs, ref_logprobs) -> tuple[torch.Tensor, dict[str, float]]:
        """``[N]`` or ``[N, T]`` advantages and the estimator's metrics."""

    def backward(self, rollouts, rows, mask, share, weight=1.0) -> dict[str, float]:
        """Its own model's loss on one micro-batch, back-propagated (weighted by ``share * weight``)."""

    def step(self) -> dict[str, float]:
        """Its own optimizer step, after the policy's."""

    def save(self, folder: Path) -> None: ...

    def load(self, folder: Path) -> None: ...


class GroupRelative:
    """GRPO (DeepSeekMath sec. 4.1.2), or Dr. GRPO without the std division."""

    needs_reference = False
    min_group_size = 2  # the baseline is the group's own mean: a group of one always has advantage 0
    needs_old_logprobs = False
    models: list = []  # no model of its own to train

    def __init__(self, normalize_std: bool = True):
        self.normalize_std = normalize_std

    def setup(self, model_path: str, tokenizer, cfg, dist=SINGLE) -> None:
        pass

    def advantages(self, rollouts, old_logprobs, ref_logprobs) -> tuple[torch.Tensor, dict[str, float]]:
        return group_relative(rollouts.rewards, rollouts.group_size, self.normalize_std), {}

    def backward(self, rollouts, rows, mask, share, weight=1.0) -> dict[str, float]:
        return {}

    def step(self) -> dict[str, float]:
        return {}

    def save(self, folder: Path) -> None:
        pass

    def load(self, folder: Path) -> None:
        pass


def critic_values(critic, input_ids: torch.Tensor, attention_mask: torch.Tensor, T: int, autocast: bool) -> torch.Tensor:
    """``[B, T]`` values V(s_t) of the state before each of the last ``T`` tokens.

    The critic is a sequence classifier (backbone + one-output head, ``reward_model.load_reward_model``)
    whose head is applied at every position (``reward_model.TokenScores``, possibly inside DDP);
    position t - 1 sees the prompt and tokens < t, the same alignment as the policy's log-probs.
    """
    return critic(input_ids, attention_mask, autocast)[:, -(T + 1) : -1]  # [B, T]


class GAECritic:
    """PPO's estimator: a learned value function and GAE (InstructGPT-style PPO for language models)."""

    needs_old_logprobs = True

    def __init__(self, gamma: float = 1.0, lam: float = 0.95, kl_coef: float = 0.05, whiten_advantages: bool = True,
                 value_clip: float = 0.2, critic_model: str | None = None, critic_lr: float = 2e-5,
                 critic_trainable_layers: int = 0):
        self.gamma, self.lam, self.kl_coef, self.whiten_advantages = gamma, lam, kl_coef, whiten_advantages
        self.value_clip, self.critic_model, self.critic_lr, self.critic_trainable_layers = value_clip, critic_model, critic_lr, critic_trainable_layers
        self.needs_reference = kl_coef > 0
        self.min_group_size = 1  # the critic is the baseline: one sample per prompt is enough

    def setup(self, model_path: str, tokenizer, cfg, dist=SINGLE) -> None:
        """Critic = a copy of the policy's backbone (or ``critic_model``) with a zero-initialised value head,
        on ``dist.device``; trained through its DDP wrapper (``models``) when there are several ranks."""
        from reasoning_rl.models import resolve_model
        from reasoning_rl.optim import make_optimizer
        from reasoning_rl.reward_model import freeze_lower_layers, load_reward_model

        path = resolve_model(self.critic_model) if self.critic_model else model_path
        self.critic = load_reward_model(path, tokenizer)  # a new head starts at zero: V = 0 before training
        freeze_lower_layers(self.critic, self.critic_trainable_layers)
        self.critic.train()
        self.dist, self.models = dist, [dist.prepare(TokenScores(self.critic))]  # DDP-wrapped with several ranks
        self.optimizer, self.scheduler = make_optimizer(self.critic, self.critic_lr, cfg.weight_decay, cfg.warmup_steps)
        self.autocast, self.max_grad_norm, self.micro_batch_size = cfg.autocast, cfg.max_grad_norm, cfg.micro_batch_size
        self.pad_id = tokenizer.pad_token_id
        self.sharded_format = cfg.shard != "ddp"  # checkpoints of a --shard fsdp run hold DCP shards

    @torch.no_grad()
    def advantages(self, rollouts, old_logprobs, ref_logprobs) -> tuple[torch.Tensor, dict[str, float]]:
        mask = rollouts.completion_mask()  # [N, T]
        N, T = mask.shape
        with self.dist.lockstep_forwards(self.models[0], self.pad_id, len(micro_batches(rollouts, self.micro_batch_size))):
            values = per_token(rollouts, self.pad_id, self.micro_batch_size,
                               lambda ids, attention, T: critic_values(self.models[0], ids, attention, T, self.autocast),
                               self.dist.device)

        # per-token rewards: the KL penalty on every token, the sequence score on the last one
        mask = mask.to(values.device)
        kl = (old_logprobs - ref_logprobs) * mask if ref_logprobs is not None else torch.zeros_like(mask)  # [N, T]
        rewards = -self.kl_coef * kl
        last = last_sampled(mask)  # [N] index of the last sampled token
        rewards[torch.arange(N), last] += rollouts.rewards.float().to(mask.device) * (mask.sum(1) > 0)

        advantages, returns = gae(rewards, values, mask, self.gamma, self.lam)
        self.old_values, self.returns = values, returns

        def mean(x: torch.Tensor) -> torch.Tensor:  # over real tokens
            return (x * mask).sum() / mask.sum()

        def variance(x: torch.Tensor) -> torch.Tensor:
            return mean((x - mean(x)) ** 2)

        metrics = {
            "ppo/value_mean": mean(values).item(),
            "ppo/return_mean": mean(returns).item(),
            "ppo/advantage_std": variance(advantages).sqrt().item(),
            "ppo/kl_penalty": kl.sum(1).mean().item(),  # sum over tokens of log pi_old - log pi_ref, mean over completions
            "ppo/explained_variance": (1 - mean((returns - values) ** 2) / variance(returns).clamp(min=1e-8)).item(),
        }
        if self.whiten_advantages:
            advantages = whiten(advantages, mask, self.dist.sum)  # over every rank's tokens
        return advantages, metrics

    def backward(self, rollouts, rows, mask, share, weight=1.0) -> dict[str, float]:
        T = mask.shape[1]
        input_ids, attention_mask, _ = rollouts.pack(rows, self.pad_id, mask.device)
        values = critic_values(self.models[0], input_ids, attention_mask, T, self.autocast)
        loss, m = value_loss(values, self.old_values[rows, :T], self.returns[rows, :T], mask, self.value_clip)
        # share: this micro-batch's fraction of this rank's tokens; weight: this rank's tokens against the
        # average rank's (DDP averages), so the critic's gradient is that of the token mean over all ranks
        (loss * share * weight).backward()
        return {"value_loss": loss.item() * share, "value_clip_fraction": m["value_clip_fraction"] * share}

    def step(self) -> dict[str, float]:
        done = clip_and_step(self.optimizer, self.critic.parameters(), self.max_grad_norm)  # skipped if not finite
        self.scheduler.step()  # the critic's warm-up counts its optimizer steps
        self.optimizer.zero_grad(set_to_none=True)
        return {"value_grad_norm": done["grad_norm"], "value_nonfinite_steps": done["nonfinite_steps"]}

    def save(self, folder: Path) -> None:
        """``critic.pt``; in a sharded run's checkpoint (every rank) its shards in ``critic/`` and the schedule there."""
        if self.sharded_format:
            save_state(folder / "critic", self.critic, self.optimizer)
            if self.dist.is_main:
                torch.save({"scheduler": self.scheduler.state_dict()}, folder / "critic" / "scheduler.pt")
            return
        torch.save({"critic": self.critic.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict()}, folder / "critic.pt")

    def load(self, folder: Path) -> None:
        if (folder / "critic").is_dir():
            load_state(folder / "critic", self.critic, self.optimizer)
            blob = torch.load(folder / "critic" / "scheduler.pt", weights_only=False)
        else:
            blob = torch.load(folder / "critic.pt", weights_only=False)
            self.critic.load_state_dict(blob["critic"])
            self.optimizer.load_state_dict(blob["optimizer"])
        self.scheduler.load_state_dict(blob["scheduler"])
