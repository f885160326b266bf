"""Loss functions, each a pure function of tensors returning ``(loss, metrics)``.

Shapes: ``B`` sequences in the micro-batch, ``T`` completion tokens (padded; ``mask`` is 1 on
real tokens). Losses of micro-batches are *sums* normalised by whole-batch counts
(``batch_sequences``, ``batch_tokens``), so that summing the micro-batch losses gives exactly
the loss of the whole batch: gradient accumulation changes nothing.
"""

from __future__ import annotations

import torch

LOSS_AGGREGATIONS = ("sequence_mean", "token_mean", "sequence_sum")
ROLLOUT_CORRECTIONS = ("none", "token_tis", "sequence_tis", "token_mask", "sequence_mask")


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


def weigh_and_aggregate(per_token: torch.Tensor, logprobs: torch.Tensor, mask: torch.Tensor, ref_logprobs, beta: float,
                        is_weights, aggregation: str, batch_sequences, batch_tokens, max_tokens):
    """What every policy loss does with its ``[B, T]`` surrogate: the rollout correction's weights on it, GRPO's KL
    term added (``beta * D_KL``), the aggregation. Returns ``(loss, kl [B, T])``."""
    if is_weights is not None:
        per_token = per_token * is_weights  # [B, T]
    kl = k3_kl(logprobs, ref_logprobs) if ref_logprobs is not None else torch.zeros_like(logprobs)  # [B, T]
    if beta:
        per_token = per_token + beta * kl
    loss = aggregate(per_token, mask, aggregation, batch_sequences or logprobs.shape[0],
                     batch_tokens or int(mask.sum().item()), max_tokens or logprobs.shape[1])
    return loss, kl


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
    is_weights: torch.Tensor | None = None,  # [B, T] or [B, 1] stop-gradient weights (rollout_correction); None: 1
) -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped surrogate shared by GRPO and PPO, with GRPO's KL term (DeepSeekMath eq. 3):

        l_t = -w_t min(r_t A_t, clip(r_t, 1 - clip_low, 1 + clip_high) A_t) + beta * D_KL,t
        r_t = pi_theta(o_t) / pi_old(o_t)

    ``clip_high > clip_low`` is DAPO's clip-higher. PPO passes ``beta = 0`` because its KL
    penalty is already in the per-token rewards. ``w_t`` is the engine/trainer correction
    (``rollout_correction``), 1 without it.
    """
    mask = mask.float()
    adv = advantages[:, None] if advantages.ndim == 1 else advantages  # [B, 1] or [B, T]
    ratio = torch.exp(logprobs - old_logprobs)  # [B, T]
    unclipped = ratio * adv  # [B, T]
    clipped = torch.clamp(ratio, 1 - clip_low, 1 + clip_high) * adv  # [B, T]
    per_token = -torch.minimum(unclipped, clipped)  # [B, T]
    loss, kl = weigh_and_aggregate(per_token, logprobs, mask, ref_logprobs, beta, is_weights, aggregation,
                                   batch_sequences, batch_tokens, max_tokens)

    with torch.no_grad():
        is_clipped = ((ratio < 1 - clip_low) & (adv < 0)) | ((ratio > 1 + clip_high) & (adv > 0))  # [B, T]
        metrics = {"clip_fraction": masked_mean(is_clipped.float(), mask), "kl": masked_mean(kl, mask),
                   "ratio_mean": masked_mean(ratio, mask)}
    return loss, metrics


def gspo_loss(
    logprobs: torch.Tensor,  # [B, T] log pi_theta(o_t | q, o_<t), with grad
    old_logprobs: torch.Tensor,  # [B, T] under the policy that sampled
    advantages: torch.Tensor,  # [B] one per sequence
    mask: torch.Tensor,  # [B, T] 1.0 on completion tokens
    *,
    ref_logprobs: torch.Tensor | None = None,
    beta: float = 0.0,
    clip_low: float = 3e-4,
    clip_high: float = 4e-4,
    aggregation: str = "sequence_mean",
    batch_sequences: float | None = None,
    batch_tokens: float | None = None,
    max_tokens: int | None = None,
    is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GSPO (Zheng et al. 2025, arXiv 2507.18071, eqs. 5-7): one importance ratio per sequence, the geometric mean
    of its tokens' ratios, clipped per sequence, so a sequence is kept or clipped whole:

        s_i = exp(1/|o_i| sum_t (log pi_theta(o_it) - log pi_old(o_it)))          [B, 1], with grad
        l_it = -w_it min(s_i A_i, clip(s_i, 1 - clip_low, 1 + clip_high) A_i) + beta * D_KL,it

    The paper clips at 3e-4 / 4e-4 (a sequence ratio moves far less than a token's). Same aggregations
    and options as ``policy_loss``; TRL's ``importance_sampling_level="sequence"`` is this loss.
    """
    if advantages.ndim != 1:
        raise ValueError("GSPO needs one advantage per sequence ([B]); PPO's per-token advantages do not apply")
    mask = mask.float()
    length = mask.sum(-1, keepdim=True).clamp(min=1)  # [B, 1]
    ratio = torch.exp(((logprobs - old_logprobs) * mask).sum(-1, keepdim=True) / length)  # [B, 1]
    adv = advantages[:, None]  # [B, 1]
    per_sequence = -torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip_low, 1 + clip_high) * adv)  # [B, 1]
    per_token = per_sequence.expand_as(logprobs)  # [B, T] the sequence's loss on each of its tokens
    loss, kl = weigh_and_aggregate(per_token, logprobs, mask, ref_logprobs, beta, is_weights, aggregation,
                                   batch_sequences, batch_tokens, max_tokens)
    with torch.no_grad():
        is_clipped = ((ratio < 1 - clip_low) & (adv < 0)) | ((ratio > 1 + clip_high) & (adv > 0))  # [B, 1]
        metrics = {"clip_fraction": masked_mean(is_clipped.float().expand_as(mask), mask), "kl": masked_mean(kl, mask),
                   "ratio_mean": masked_mean(ratio.expand_as(mask), mask)}
    return loss, metrics


def cispo_loss(
    logprobs: torch.Tensor,  # [B, T] log pi_theta(o_t | q, o_<t), with grad
    old_logprobs: torch.Tensor,  # [B, T] under the policy that sampled
    advantages: torch.Tensor,  # [B] or [B, T]
    mask: torch.Tensor,  # [B, T]
    *,
    ref_logprobs: torch.Tensor | None = None,
    beta: float = 0.0,
    clip_low: float = 0.2,
    clip_high: float = 4.0,
    aggregation: str = "token_mean",
    batch_sequences: float | None = None,
    batch_tokens: float | None = None,
    max_tokens: int | None = None,
    is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """CISPO (MiniMax-M1, arXiv 2506.13585, eqs. 4-5): REINFORCE with a clipped, stop-gradient importance weight, so
    the clip bounds how much a token counts but never drops its gradient (PPO's clip zeroes the gradient of a token
    whose ratio left the range):

        r_t = pi_theta(o_t) / pi_old(o_t)
        l_t = -w_t sg(min(r_t, 1 + clip_high)) A_t log pi_theta(o_t) + beta * D_KL,t

    The lower side is left open, as in MiniMax-M1 (``clip_low`` is unused; it is in the signature so every policy
    loss takes the same options). TRL's ``loss_type="cispo"`` is this loss with its ``epsilon_high = 1 + clip_high``.
    """
    mask = mask.float()
    adv = advantages[:, None] if advantages.ndim == 1 else advantages  # [B, 1] or [B, T]
    ratio = torch.exp(logprobs - old_logprobs)  # [B, T]
    weight = torch.clamp(ratio, max=1 + clip_high).detach()  # [B, T]
    per_token = -weight * adv * logprobs  # [B, T]
    loss, kl = weigh_and_aggregate(per_token, logprobs, mask, ref_logprobs, beta, is_weights, aggregation,
                                   batch_sequences, batch_tokens, max_tokens)
    with torch.no_grad():
        is_clipped = (ratio > 1 + clip_high) & (adv > 0)  # [B, T] as TRL counts it
        metrics = {"clip_fraction": masked_mean(is_clipped.float(), mask), "kl": masked_mean(kl, mask),
                   "ratio_mean": masked_mean(ratio, mask)}
    return loss, metrics


POLICY_LOSSES = {"clipped": policy_loss, "gspo": gspo_loss, "cispo": cispo_loss}


def rollout_correction(
    trainer_logprobs: torch.Tensor,  # [B, T] log pi_trainer(o_t): the trained weights, the trainer's kernels
    engine_logprobs: torch.Tensor,  # [B, T] log pi_engine(o_t): what the engine sampled with
    mask: torch.Tensor,  # [B, T]
    mode: str = "token_tis",
    threshold: float = 2.0,
) -> tuple[torch.Tensor | None, dict[str, float]]:
    """The correction for sampling with one distribution and training another (Yao et al. 2025, "Your efficient RL
    framework secretly brings you off-policy RL training"; IcePop; masked importance sampling). The engine samples
    with its own kernels and precision (and, with ``--rollout-staleness``, older weights), so each token's loss is
    weighted by a stop-gradient importance weight:

        rho_t = pi_trainer(o_t) / pi_engine(o_t) = exp(l_t - e_t)           token level
        rho_i = exp(1/|o_i| sum_t (l_t - e_t))                              sequence level (geometric mean), [B, 1]
        *_tis:  w = min(rho, C)                                             truncated importance sampling
        *_mask: w = rho if 1/C <= rho <= C, else 0                          masked (IcePop / MIS)

    ``none`` returns no weights. The metrics (over real tokens) measure the mismatch whatever the mode:
    ``logprob_diff_mean`` (mean of l - e), ``logprob_diff_max`` (max |l - e|), ``kl_engine_trainer`` (k3 estimate of
    KL(engine || trainer) on the engine's samples: mean of rho_t - 1 - log rho_t), ``is_weight_mean`` (mean weight
    applied; the mean of rho_t with ``none``) and ``corrected_fraction`` (tokens whose weight was truncated or masked).
    """
    if mode not in ROLLOUT_CORRECTIONS:
        raise ValueError(f"unknown rollout correction {mode!r}; choose from {', '.join(ROLLOUT_CORRECTIONS)}")
    mask = mask.float()
    diff = ((trainer_logprobs - engine_logprobs) * mask).detach()  # [B, T]
    rho = torch.exp(diff)  # [B, T] token ratios
    metrics = {"rollout/logprob_diff_mean": masked_mean(diff, mask), "rollout/logprob_diff_max": diff.abs().max().item(),
               "rollout/kl_engine_trainer": masked_mean(rho - 1 - diff, mask)}
    if mode == "none":
        return None, {**metrics, "rollout/is_weight_mean": masked_mean(rho, mask), "rollout/corrected_fraction": 0.0}
    if mode.startswith("sequence"):
        rho = torch.exp(diff.sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1))  # [B, 1]
    if mode.endswith("tis"):
        weights, corrected = torch.clamp(rho, max=threshold), rho > threshold
    else:
        corrected = (rho < 1 / threshold) | (rho > threshold)
        weights = torch.where(corrected, torch.zeros_like(rho), rho)
    metrics["rollout/is_weight_mean"] = masked_mean(weights.expand_as(mask), mask)
    metrics["rollout/corrected_fraction"] = masked_mean(corrected.float().expand_as(mask), mask)
    return weights, metrics


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    """The mean of ``x`` over the real tokens (``mask`` 1), 0 when there are none."""
    return ((x * mask).sum() / mask.sum().clamp(min=1)).item()


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
