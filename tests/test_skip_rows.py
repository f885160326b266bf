"""Skipping zero-advantage rows changes the compute, not the step: parameters after the update agree."""

import random

import pytest
import torch

from data_prep import Problem
from reasoning_rl.estimators import GroupRelative
from reasoning_rl.models import load_policy, load_tokenizer
from reasoning_rl.rollout import Rollouts
from reasoning_rl.trainer import PolicyGradient, PolicyGradientConfig
from reasoning_rl.training import make_optimizer

G = 4


def batch(group_rewards: list[list[float]], seed: int = 0) -> Rollouts:
    """Random prompts of different lengths (left-padded in the update) and completions of 1..7 tokens."""
    rng = random.Random(seed)
    prompts = [[rng.randrange(3, 400) for _ in range(rng.randrange(2, 9))] for _ in group_rewards]
    completions = [[rng.randrange(3, 400) for _ in range(rng.randrange(1, 8))] for _ in range(len(group_rewards) * G)]
    problems = [Problem(f"p{i}", f"q{i}", "1", "test") for i in range(len(group_rewards))]
    n = len(completions)
    return Rollouts(problems, [f"prompt {i}" for i in range(len(problems))], [p for p in prompts for _ in range(G)],
                    completions, [""] * n, torch.zeros(n, dtype=torch.bool), G,
                    torch.tensor([r for group in group_rewards for r in group]))


MIXED = [[1, 1, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0.5, 1]]  # groups 0 and 2 have zero variance
FLAT = [[1, 1, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]  # every row has advantage 0


def train(tiny_model, batches, skip: bool, optimizer: str = "sgd", **options):
    """``batches`` of updates from the same start. SGD moves each weight by lr x its gradient, so equal weights
    mean equal gradients. AdamW divides each gradient by its own size, which turns float32 rounding in a
    near-zero gradient (summed in another order when rows are skipped) into a visible step: it is used
    where its momentum is the point."""
    torch.manual_seed(0)
    policy = load_policy(str(tiny_model))
    cfg = PolicyGradientConfig(skip_zero_advantage=skip, autocast=False, micro_batch_size=3, lr=1e-1, **options)
    update = PolicyGradient(cfg, GroupRelative())
    if optimizer == "sgd":
        optimizer = torch.optim.SGD(policy.parameters(), lr=cfg.lr)
    else:
        optimizer, _ = make_optimizer(policy, 1e-3, 0.01, 0)
    update.setup(policy, None, load_tokenizer(str(tiny_model)), optimizer, str(tiny_model))
    metrics = [update(rollouts, step) for step, rollouts in enumerate(batches, start=1)]
    return policy, metrics


def max_difference(a, b) -> float:
    return max((pa - pb).abs().max().item() for pa, pb in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("aggregation", ["sequence_mean", "token_mean", "sequence_sum"])
@pytest.mark.parametrize("mu", [1, 2])
def test_skipping_zero_advantage_rows_takes_the_same_step(tiny_model, aggregation, mu):
    plain, plain_metrics = train(tiny_model, [batch(MIXED)], skip=False, loss_aggregation=aggregation, mu=mu)
    skipped, skip_metrics = train(tiny_model, [batch(MIXED)], skip=True, loss_aggregation=aggregation, mu=mu)
    assert max_difference(plain, skipped) < 1e-6
    assert max_difference(plain, load_policy(str(tiny_model))) > 1e-4  # the step did move the weights
    assert max_difference(plain, load_policy(str(tiny_model))) > 1e-4
    assert (plain_metrics[0]["train/rows_skipped"], skip_metrics[0]["train/rows_skipped"]) == (0, 8)
    assert plain_metrics[0]["train/loss"] == pytest.approx(skip_metrics[0]["train/loss"], abs=1e-6)


def test_a_batch_with_nothing_to_learn_still_steps_adamw_the_same(tiny_model):
    # after a first step AdamW has momentum: an all-zero gradient still moves the weights, and must when skipping
    plain, _ = train(tiny_model, [batch(MIXED), batch(FLAT, seed=1)], skip=False, optimizer="adamw", mini_batches=2)
    skipped, metrics = train(tiny_model, [batch(MIXED), batch(FLAT, seed=1)], skip=True, optimizer="adamw", mini_batches=2)
    assert metrics[1]["train/rows_skipped"] == 16
    assert max_difference(plain, skipped) < 1e-6


def test_skipping_is_refused_where_it_would_change_the_loss(tiny_model, capsys):
    cfg = PolicyGradientConfig(beta=0.04)
    update = PolicyGradient(cfg, GroupRelative())
    advantages = torch.tensor([0.0, 1.0, -1.0, 0.0])
    assert not update.skipped_rows(advantages).any()
    assert not update.skipped_rows(advantages).any()
    assert capsys.readouterr().out.count("does not apply here (beta > 0") == 1  # said once
    per_token = PolicyGradient(PolicyGradientConfig(), GroupRelative()).skipped_rows(torch.zeros(4, 3))
    assert not per_token.any()
    assert PolicyGradient(PolicyGradientConfig(), GroupRelative()).skipped_rows(advantages).tolist() == [True, False, False, True]
