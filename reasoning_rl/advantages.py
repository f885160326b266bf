"""Advantage estimators: the one place where GRPO and PPO differ.

Everything else (rollouts, rewards, the clipped policy loss, logging) is shared. GRPO scores a
completion against the other completions of the same prompt; PPO scores each token against a
learned value function with GAE.
"""

from __future__ import annotations

import math

import torch


def group_relative(rewards: torch.Tensor, group_size: int, normalize_std: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """GRPO's outcome advantage (DeepSeekMath, arXiv 2402.03300, sec. 4.1.2).

        A_i = (r_i - mean(r_group)) / (std(r_group) + eps)     if normalize_std
        A_i =  r_i - mean(r_group)                             otherwise (Dr. GRPO, arXiv 2503.20783)

    ``rewards`` is ``[B * G]`` ordered prompt-major (the G completions of a prompt are adjacent);
    the result has the same shape and applies to every token of completion i. ``std`` is the
    sample standard deviation (unbiased, as in the reference implementations). A group whose
    rewards are all equal gets advantages of exactly 0 (no NaN).

    Example (the seeds'): rewards [1, 0, 2] in one group -> mean 1 -> advantages [0, -1, 1]
    without std scaling; std = 1, so also [0, -1, 1] (up to eps) with it.
    """
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be 1-D with a length divisible by group_size={group_size}, got {tuple(rewards.shape)}")
    grouped = rewards.view(-1, group_size).float()  # [B, G]
    centered = grouped - grouped.mean(dim=1, keepdim=True)  # [B, G]
    if normalize_std:
        std = grouped.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(grouped[:, :1])
        centered = centered / (std + eps)
    return centered.reshape(-1)  # [B * G]


def zero_std_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """``[B]`` bool: groups whose rewards are all equal (they carry no GRPO gradient)."""
    grouped = rewards.view(-1, group_size)
    return (grouped == grouped[:, :1]).all(dim=1)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's advantage: generalised advantage estimation (Schulman et al. 2016, arXiv 1506.02438, eq. 16).

        delta_t = r_t + gamma * V(s_{t+1}) - V(s_t)         (V = 0 after the last token)
        A_t     = delta_t + gamma * lam * A_{t+1}           computed backwards over tokens
        R_t     = A_t + V(s_t)                              the value target

    ``rewards``, ``values``, ``mask``: ``[B, T]`` per completion token (the sequence reward sits on
    the last real token, the per-token KL penalty everywhere). lam = 1 gives Monte-Carlo returns
    minus values; lam = 0 gives one-step TD errors. Returns ``(advantages [B, T], returns [B, T])``,
    zero on padding.
    """
    B, T = rewards.shape
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros(B, device=rewards.device)
    next_advantage = torch.zeros(B, device=rewards.device)
    for t in reversed(range(T)):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]  # [B]
        advantages[:, t] = (delta + gamma * lam * next_advantage) * m
        next_value = torch.where(m.bool(), values[:, t], next_value)
        next_advantage = torch.where(m.bool(), advantages[:, t], next_advantage)
    return advantages, (advantages + values) * mask


def last_sampled(mask: torch.Tensor) -> torch.Tensor:
    """``[B]`` the index of each row's last token with mask 1 (where PPO puts the sequence reward); tool output may
    follow it, so it is not the mask's sum minus one."""
    return mask.shape[1] - 1 - mask.flip(1).argmax(1)


def whiten(x: torch.Tensor, mask: torch.Tensor, total=None, eps: float = 1e-8) -> torch.Tensor:
    """Normalise to mean 0 and std 1 over the real tokens (PPO's advantage whitening).

    ``total`` sums a list of numbers over ranks (``Dist.sum``), so that the mean and the variance are
    those of every rank's tokens together: the same whitening as one process holding the whole batch.
    """
    total = total or list
    n, s = total([mask.sum().item(), (x * mask).sum().item()])
    mean = s / n
    var = total([(((x - mean) * mask) ** 2).sum().item()])[0] / n
    return (x - mean) / math.sqrt(var + eps) * mask
