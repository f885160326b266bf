"""The algorithm-specific pieces around the loop: GRPO's and PPO's estimators, DPO's pairs, mini-batches."""

import pytest
import torch

from reasoning_rl.advantage_estimators import GAECritic, GroupRelative
from reasoning_rl.dpo import pairs_from_groups
from reasoning_rl.policy_gradient import PolicyGradient, PolicyGradientConfig
from reasoning_rl.rollout import micro_batches
from reasoning_rl.step_metrics import reward_metrics
from test_rollout import make_rollouts


def test_dpo_pairs_best_against_worst_within_each_group():
    r = make_rollouts(["1", "2", "3"], ["a"] * 9, group_size=3)
    r.rewards = torch.tensor([1.0, 0.0, 1.0,   # group 0: two correct, one wrong
                              0.0, 0.0, 0.0,   # group 1: no signal, no pair
                              0.5, 1.0, 0.0])  # group 2: best row 7, worst row 8
    assert pairs_from_groups(r, pairs_per_group=2) == [(0, 1), (7, 8)]
    r.rewards[3:6] = torch.tensor([1.0, 0.0, 0.0])
    assert pairs_from_groups(r, pairs_per_group=2) == [(0, 1), (3, 4), (7, 8)]  # group 1 now has 1 winner: one pair


def test_reward_metrics_average_each_source_over_its_own_prompts():
    r = make_rollouts(["4", None], ["x", "y", "z", "w"])
    r.rewards = torch.tensor([1.0, 0.0, 2.0, 4.0])
    r.components = {"accuracy": torch.tensor([1.0, 0.0, 0.0, 0.0]), "reward_model": torch.tensor([0.0, 0.0, 2.0, 4.0])}
    m = reward_metrics(r)
    assert m["reward/accuracy"] == 0.5 and m["reward/reward_model"] == 3.0 and m["reward/open_ended_fraction"] == 0.5
    assert m["reward/mean"] == 1.75


def test_group_relative_estimator_is_grpo():
    r = make_rollouts(["1"], ["a", "b", "c"], group_size=3)
    r.rewards = torch.tensor([1.0, 0.0, 2.0])
    advantages, _ = GroupRelative(normalize_std=False).advantages(r, None, None)
    assert advantages.tolist() == [0.0, -1.0, 1.0]


def test_gae_critic_puts_the_score_on_the_last_token_and_the_kl_on_every_token(tiny_model):
    """With V = 0 (a fresh head), gamma = lambda = 1 and no whitening, A_t is the sum of the rewards from t on:
    the sequence score minus kl_coef times the summed log-ratio of tokens t.. (InstructGPT's reward)."""
    cfg = PolicyGradientConfig(micro_batch_size=4, autocast=False)
    from reasoning_rl.models import load_tokenizer

    critic = GAECritic(gamma=1.0, lam=1.0, kl_coef=0.5, whiten_advantages=False)
    critic.setup(str(tiny_model), load_tokenizer(str(tiny_model)), cfg)
    r = make_rollouts(["1"], ["a", "b"], group_size=2)  # completion lengths 1 and 2
    r.rewards = torch.tensor([1.0, 0.0])
    old = torch.tensor([[-1.0, 0.0], [-2.0, -1.0]])
    ref = torch.tensor([[-1.5, 0.0], [-1.0, -1.0]])  # log-ratios: [0.5, pad], [-1.0, 0.0]
    advantages, metrics = critic.advantages(r, old, ref)
    # row 0: one token, r_0 = 1 - 0.5 * 0.5 = 0.75. row 1: r_0 = +0.5, r_1 = 0 + 0 -> A = [0.5, 0.0]
    torch.testing.assert_close(advantages, torch.tensor([[0.75, 0.0], [0.5, 0.0]]))
    torch.testing.assert_close(critic.returns, advantages)  # returns = A + V with V = 0
    assert metrics["ppo/value_mean"] == 0.0 and metrics["ppo/kl_penalty"] == pytest.approx((0.5 - 1.0) / 2)


def test_mini_batches_cover_every_row_once_per_epoch_and_shuffle_between_epochs():
    r = make_rollouts(["1", "2", "3", "4"], list("abcdefgh"))
    update = PolicyGradient(PolicyGradientConfig(mini_batches=2, micro_batch_size=3), GroupRelative())
    epochs = [update.mini_batches(r, step=1, epoch=e) for e in range(2)]
    for minis in epochs:
        assert len(minis) == 2
        assert sorted(i for mini in minis for i in mini) == list(range(8))
        assert all(len(micro) <= 3 for mini in minis for micro in micro_batches(r, 3, mini))
    assert [sorted(mini) for mini in epochs[0]] != [sorted(mini) for mini in epochs[1]]
