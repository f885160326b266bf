"""Loss and advantage tests against values worked out by hand in the comments."""

import math

import pytest
import torch

from reasoning_rl.advantages import group_relative, zero_std_groups
from reasoning_rl.losses import aggregate, k3_kl, policy_loss


def test_group_relative_seed_example():
    # one group [1, 0, 2]: mean 1 -> [0, -1, 1]
    adv = group_relative(torch.tensor([1.0, 0.0, 2.0]), group_size=3, normalize_std=False)
    assert adv.tolist() == [0.0, -1.0, 1.0]


def test_group_relative_std_scaling():
    # group [1, 0, 2]: sample std = sqrt(((0)^2 + 1 + 1) / 2) = 1 -> [0, -1, 1] / (1 + eps)
    adv = group_relative(torch.tensor([1.0, 0.0, 2.0]), 3, normalize_std=True, eps=1e-4)
    assert torch.allclose(adv, torch.tensor([0.0, -1.0, 1.0]) / 1.0001)
    # group [0, 0, 0, 4]: mean 1, std = sqrt((1 + 1 + 1 + 9) / 3) = 2 -> [-0.5, -0.5, -0.5, 1.5]
    adv = group_relative(torch.tensor([0.0, 0.0, 0.0, 4.0]), 4, eps=0.0)
    assert torch.allclose(adv, torch.tensor([-0.5, -0.5, -0.5, 1.5]))


def test_zero_variance_group_gives_zeros_not_nan():
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0])  # groups of 3: [1,1,1] and [0,1,0]
    adv = group_relative(rewards, 3)
    assert not torch.isnan(adv).any()
    assert adv[:3].tolist() == [0.0, 0.0, 0.0]
    assert zero_std_groups(rewards, 3).tolist() == [True, False]
    with pytest.raises(ValueError, match="divisible"):
        group_relative(rewards, 4)


def test_k3_kl_value():
    # logp = log 0.5, ref = log 0.25: ratio ref/pi = 0.5 -> 0.5 - log 0.5 - 1 = 0.5 + 0.6931 - 1 = 0.1931
    kl = k3_kl(torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)]))
    assert kl.item() == pytest.approx(0.5 - math.log(0.5) - 1)
    assert k3_kl(torch.tensor([-1.0]), torch.tensor([-1.0])).item() == 0.0


def one_token(ratio: float, advantage: float, **kw):
    logp = torch.tensor([[math.log(ratio)]])
    return policy_loss(logp, torch.zeros(1, 1), torch.tensor([advantage]), torch.ones(1, 1), **kw)


@pytest.mark.parametrize("ratio,advantage,expected_loss,clipped", [
    # inactive clip: ratio 1.1 inside [0.8, 1.2] -> loss = -1.1 * A
    (1.1, 1.0, -1.1, False),
    (1.1, -1.0, 1.1, False),
    # positive advantage, ratio e = 2.718 > 1.2: clipped to 1.2 -> loss = -1.2; no gradient
    (math.e, 1.0, -1.2, True),
    # negative advantage, ratio 0.5 < 0.8: min(0.5 * -1, 0.8 * -1) = -0.8 -> loss = 0.8; clipped
    (0.5, -1.0, 0.8, True),
    # negative advantage, ratio e above the clip: min(-e, -1.2) = -e -> loss = e; not clipped (pessimistic bound)
    (math.e, -1.0, math.e, False),
    # positive advantage, ratio 0.5 below the clip: min(0.5, 0.8) = 0.5 -> loss = -0.5; not clipped
    (0.5, 1.0, -0.5, False),
])
def test_clipped_objective(ratio, advantage, expected_loss, clipped):
    loss, metrics = one_token(ratio, advantage)
    assert loss.item() == pytest.approx(expected_loss, rel=1e-5)
    assert metrics["clip_fraction"] == (1.0 if clipped else 0.0)


def test_clip_higher_and_gradient():
    # clip_high 0.28: ratio 1.25 is inside [0.8, 1.28] -> loss -1.25 and gradient d(-r)/d(logp) = -r = -1.25
    logp = torch.tensor([[math.log(1.25)]], requires_grad=True)
    loss, m = policy_loss(logp, torch.zeros(1, 1), torch.tensor([1.0]), torch.ones(1, 1), clip_high=0.28)
    loss.backward()
    assert loss.item() == pytest.approx(-1.25) and m["clip_fraction"] == 0.0
    assert logp.grad.item() == pytest.approx(-1.25)
    # with the default 0.2 it is clipped: no gradient
    logp.grad = None
    loss, _ = policy_loss(logp, torch.zeros(1, 1), torch.tensor([1.0]), torch.ones(1, 1))
    loss.backward()
    assert logp.grad.item() == 0.0


def test_kl_term_enters_with_beta():
    # ratio 1 (logp == old), A = 0: loss is beta * k3 = 0.1 * 0.1931
    logp = torch.tensor([[math.log(0.5)]])
    ref = torch.tensor([[math.log(0.25)]])
    loss, m = policy_loss(logp, logp, torch.tensor([0.0]), torch.ones(1, 1), ref_logprobs=ref, beta=0.1)
    assert loss.item() == pytest.approx(0.1 * (0.5 - math.log(0.5) - 1))
    assert m["kl"] == pytest.approx(0.5 - math.log(0.5) - 1)


def test_aggregation_modes():
    # two sequences: [1, 2, 3] (3 tokens) and [4, pad, pad] (1 token); max_tokens 4
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    # sequence_mean: (mean(1,2,3) + mean(4)) / 2 = (2 + 4) / 2 = 3
    assert aggregate(per_token, mask, "sequence_mean", 2, 4, 4).item() == pytest.approx(3.0)
    # token_mean: (1 + 2 + 3 + 4) / 4 tokens = 2.5
    assert aggregate(per_token, mask, "token_mean", 2, 4, 4).item() == pytest.approx(2.5)
    # sequence_sum (Dr. GRPO): 10 / (2 sequences * 4 max tokens) = 1.25
    assert aggregate(per_token, mask, "sequence_sum", 2, 4, 4).item() == pytest.approx(1.25)
    with pytest.raises(ValueError, match="unknown loss aggregation"):
        aggregate(per_token, mask, "mean", 2, 4, 4)


def test_micro_batches_sum_to_the_full_batch():
    torch.manual_seed(0)
    logp, old = torch.randn(6, 5), torch.randn(6, 5)
    adv, mask = torch.randn(6), (torch.rand(6, 5) > 0.3).float()
    for mode in ("sequence_mean", "token_mean", "sequence_sum"):
        full, _ = policy_loss(logp, old, adv, mask, aggregation=mode, max_tokens=5)
        n_tok = int(mask.sum())
        parts = sum(policy_loss(logp[s], old[s], adv[s], mask[s], aggregation=mode, batch_sequences=6, batch_tokens=n_tok, max_tokens=5)[0]
                    for s in (slice(0, 2), slice(2, 6)))
        assert parts.item() == pytest.approx(full.item(), rel=1e-5)


# --- PPO, reward model and DPO pieces (used by the baselines) ---------------------------------

from reasoning_rl.advantages import gae, whiten  # noqa: E402
from reasoning_rl.losses import bradley_terry_loss, dpo_loss, value_loss  # noqa: E402


def test_gae_lambda_one_is_returns_minus_values():
    # rewards [0, 0, 1], values [0.5, 0.6, 0.7], gamma 1: returns are [1, 1, 1] -> A = [0.5, 0.4, 0.3]
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    adv, ret = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    assert torch.allclose(adv, torch.tensor([[0.5, 0.4, 0.3]]))
    assert torch.allclose(ret, torch.tensor([[1.0, 1.0, 1.0]]))


def test_gae_lambda_zero_is_one_step_td_error():
    # delta_t = r_t + gamma V_{t+1} - V_t with gamma 0.9:
    # t0: 0 + 0.9*0.6 - 0.5 = 0.04; t1: 0 + 0.9*0.7 - 0.6 = 0.03; t2: 1 + 0 - 0.7 = 0.3
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    adv, _ = gae(rewards, values, torch.ones(1, 3), gamma=0.9, lam=0.0)
    assert torch.allclose(adv, torch.tensor([[0.04, 0.03, 0.3]]), atol=1e-6)


def test_gae_ignores_padding():
    # a 2-token sequence padded to 3: the padded step must not leak into the last real one
    rewards = torch.tensor([[0.0, 1.0, 5.0]])
    values = torch.tensor([[0.2, 0.4, 9.0]])
    adv, ret = gae(rewards, values, torch.tensor([[1.0, 1.0, 0.0]]), gamma=1.0, lam=1.0)
    assert torch.allclose(adv, torch.tensor([[0.8, 0.6, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[1.0, 1.0, 0.0]]))


def test_whiten():
    x = torch.tensor([[1.0, 3.0, 100.0]])
    w = whiten(x, torch.tensor([[1.0, 1.0, 0.0]]))
    # real tokens [1, 3]: mean 2, std 1 -> [-1, 1]; padding stays 0
    assert torch.allclose(w, torch.tensor([[-1.0, 1.0, 0.0]]), atol=1e-4)


def test_clipped_value_loss():
    # V_old 0.5, R 1.0, clip 0.2. V = 1.0: unclipped error 0, clipped V = 0.7 -> error 0.09; max = 0.09; loss 0.045
    loss, m = value_loss(torch.tensor([[1.0]]), torch.tensor([[0.5]]), torch.tensor([[1.0]]), torch.ones(1, 1), clip=0.2)
    assert loss.item() == pytest.approx(0.5 * 0.09)
    assert m["value_clip_fraction"] == 1.0
    # V = 0.6 inside the clip range: error (0.6 - 1)^2 = 0.16 both ways -> 0.08
    loss, m = value_loss(torch.tensor([[0.6]]), torch.tensor([[0.5]]), torch.tensor([[1.0]]), torch.ones(1, 1), clip=0.2)
    assert loss.item() == pytest.approx(0.08)
    assert m["value_clip_fraction"] == 0.0


def test_bradley_terry_loss():
    # margins [2, -1]: -(log sigmoid(2) + log sigmoid(-1)) / 2 = (0.1269 + 1.3133) / 2 = 0.7201
    loss, m = bradley_terry_loss(torch.tensor([3.0, 0.0]), torch.tensor([1.0, 1.0]))
    assert loss.item() == pytest.approx((math.log1p(math.exp(-2)) + math.log1p(math.exp(1))) / 2)
    assert loss.item() == pytest.approx(0.7201, abs=1e-4)
    assert m["accuracy"] == 0.5


def test_dpo_loss():
    # beta 0.1; policy-ref log-ratios: chosen -10 - (-12) = 2, rejected -9 - (-8) = -1
    # margin = 0.1 * (2 - (-1)) = 0.3 -> loss = -log sigmoid(0.3) = log(1 + e^-0.3) = 0.5544
    loss, m = dpo_loss(torch.tensor([-10.0]), torch.tensor([-9.0]), torch.tensor([-12.0]), torch.tensor([-8.0]), beta=0.1)
    assert loss.item() == pytest.approx(math.log1p(math.exp(-0.3)))
    assert loss.item() == pytest.approx(0.5544, abs=1e-4)
    assert m["chosen_reward"] == pytest.approx(0.2) and m["rejected_reward"] == pytest.approx(-0.1)
    # at initialisation (policy == reference) the loss is log 2
    loss, _ = dpo_loss(torch.tensor([-5.0]), torch.tensor([-7.0]), torch.tensor([-5.0]), torch.tensor([-7.0]))
    assert loss.item() == pytest.approx(math.log(2))
