"""Advantage estimators: the one place where GRPO and PPO differ.

Everything else (rollouts, rewards, the clipped policy loss, logging) is shared. GRPO scores a
completion against the other completions of the same prompt; PPO scores each token against a
learned value function with GAE.
"""

from __future__ import annotations

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
