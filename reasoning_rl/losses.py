"""Loss functions, each a pure function of tensors returning ``(loss, metrics)``.

Shapes: ``B`` sequences in the micro-batch, ``T`` completion tokens (padded; ``mask`` is 1 on
real tokens). Losses of micro-batches are *sums* normalised by whole-batch counts
(``batch_sequences``, ``batch_tokens``), so that summing the micro-batch losses gives exactly
the loss of the whole batch: gradient accumulation changes nothing.
"""

from __future__ import annotations

import torch

LOSS_AGGREGATIONS = ("sequence_mean", "token_mean", "sequence_sum")


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, mode: str, batch_sequences: int, batch_tokens: int, max_tokens: int) -> torch.Tensor:
    """Reduce a ``[B, T]`` per-token loss to a scalar.

    * ``sequence_mean`` (GRPO, DeepSeekMath eq. 3): 1/N sum_i 1/|o_i| sum_t l_it. Long
      completions get less weight per token; this is the length bias Dr. GRPO points out.
    * ``token_mean`` (DAPO eq. 8): sum_i sum_t l_it / sum_i |o_i|. Every token weighs the same.
    * ``sequence_sum`` (Dr. GRPO): sum_i sum_t l_it / (N * max_tokens), a constant normaliser.
    """
    masked = per_token * mask  # [B, T]
    if mode == "sequence_mean":
        return (masked.sum(-1) / mask.sum(-1).clamp(min=1)).sum() / batch_sequences
    if mode == "token_mean":
        return masked.sum() / batch_tokens
    if mode == "sequence_sum":
        return masked.sum() / (batch_sequences * max_tokens)
    raise ValueError(f"unknown loss aggregation {mode!r}; choose from {', '.join(LOSS_AGGREGATIONS)}")


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token unbiased estimator of KL(pi_theta || pi_ref) (DeepSeekMath eq. 4, Schulman's k3):

        D = pi_ref/pi_theta - log(pi_ref/pi_theta) - 1   >= 0, evaluated at the sampled token.
    """
    log_ratio = ref_logprobs - logprobs  # [B, T]
    return torch.exp(log_ratio) - log_ratio - 1


def policy_loss(
    logprobs: torch.Tensor,  # [B, T] log pi_theta(o_t | q, o_<t), with grad
    old_logprobs: torch.Tensor,  # [B, T] same under the policy that sampled the rollouts
    advantages: torch.Tensor,  # [B] one per sequence (GRPO) or [B, T] one per token (PPO)
    mask: torch.Tensor,  # [B, T] 1.0 on completion tokens
    *,
    ref_logprobs: torch.Tensor | None = None,  # [B, T] frozen reference; None when beta = 0
    beta: float = 0.0,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    aggregation: str = "sequence_mean",
    batch_sequences: float | None = None,  # normalisers over the whole batch (all micro-batches, all ranks)
    batch_tokens: float | None = None,
    max_tokens: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped surrogate shared by GRPO and PPO, with GRPO's KL term (DeepSeekMath eq. 3):

        l_t = -min(r_t A_t, clip(r_t, 1 - clip_low, 1 + clip_high) A_t) + beta * D_KL,t
        r_t = pi_theta(o_t) / pi_old(o_t)

    ``clip_high > clip_low`` is DAPO's clip-higher. PPO passes ``beta = 0`` because its KL
    penalty is already in the per-token rewards.
    """
    mask = mask.float()
    batch_sequences = batch_sequences or logprobs.shape[0]
    batch_tokens = batch_tokens or int(mask.sum().item())
    max_tokens = max_tokens or logprobs.shape[1]
    adv = advantages[:, None] if advantages.ndim == 1 else advantages  # [B, 1] or [B, T]
    ratio = torch.exp(logprobs - old_logprobs)  # [B, T]
    unclipped = ratio * adv  # [B, T]
    clipped = torch.clamp(ratio, 1 - clip_low, 1 + clip_high) * adv  # [B, T]
    per_token = -torch.minimum(unclipped, clipped)  # [B, T]
    kl = k3_kl(logprobs, ref_logprobs) if ref_logprobs is not None else torch.zeros_like(logprobs)  # [B, T]
    if beta:
        per_token = per_token + beta * kl
    loss = aggregate(per_token, mask, aggregation, batch_sequences, batch_tokens, max_tokens)

    with torch.no_grad():
        n = mask.sum().clamp(min=1)
        is_clipped = ((ratio < 1 - clip_low) & (adv < 0)) | ((ratio > 1 + clip_high) & (adv > 0))  # [B, T]
        metrics = {
            "clip_fraction": ((is_clipped.float() * mask).sum() / n).item(),
            "kl": ((kl * mask).sum() / n).item(),
            "ratio_mean": ((ratio * mask).sum() / n).item(),
        }
    return loss, metrics


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip: float = 0.2) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped value loss (as in the OpenAI baselines / InstructGPT implementations):

        L_V = 1/2 * mean_t max((V_t - R_t)^2, (clip(V_t, V_old,t - c, V_old,t + c) - R_t)^2)

    ``values`` has grad; ``old_values`` are the critic's values at rollout time; ``returns`` are
    GAE's targets. All ``[B, T]``; the mean is over real tokens.
    """
    mask = mask.float()
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)  # [B, T]
    per_token = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)  # [B, T]
    n = mask.sum().clamp(min=1)
    loss = 0.5 * (per_token * mask).sum() / n
    with torch.no_grad():
        frac = (((clipped - returns) ** 2 > (values - returns) ** 2).float() * mask).sum() / n
    return loss, {"value_clip_fraction": frac.item()}


def bradley_terry_loss(chosen_scores: torch.Tensor, rejected_scores: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Reward-model loss on preference pairs (Bradley & Terry 1952; InstructGPT eq. 1):

        P(chosen > rejected) = sigmoid(s_c - s_r),   L = -mean log sigmoid(s_c - s_r)

    ``chosen_scores``, ``rejected_scores``: ``[B]`` scalar scores of the two responses of each pair.
    """
    margin = chosen_scores - rejected_scores  # [B]
    loss = -torch.nn.functional.logsigmoid(margin).mean()
    return loss, {"accuracy": (margin > 0).float().mean().item(), "margin": margin.mean().item()}


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
             beta: float = 0.1) -> tuple[torch.Tensor, dict[str, float]]:
    """Direct preference optimisation (Rafailov et al. 2023, arXiv 2305.18290, eq. 7):

        L = -log sigmoid(beta * [(log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))])

    Inputs are ``[B]`` summed log-probs of the chosen (y_w) and rejected (y_l) completions under the
    policy and the frozen reference. The implicit rewards are ``beta * (log pi - log ref)``.
    """
    chosen_reward = beta * (policy_chosen - ref_chosen)  # [B]
    rejected_reward = beta * (policy_rejected - ref_rejected)  # [B]
    margin = chosen_reward - rejected_reward
    loss = -torch.nn.functional.logsigmoid(margin).mean()
    return loss, {"reward_accuracy": (margin > 0).float().mean().item(), "reward_margin": margin.mean().item(),
                  "chosen_reward": chosen_reward.mean().item(), "rejected_reward": rejected_reward.mean().item()}
