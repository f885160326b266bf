"""The update's two savings change the compute, not the step.

Skipping zero-advantage rows and encoding each group's prompt once (the shared-prompt forward) are
each compared with the plain update, and together: parameters after the update agree.
"""

import random

import pytest
import torch

from data_prep import Problem
from reasoning_rl.advantage_estimators import GroupRelative
from reasoning_rl.logprobs import EncodedPrompts, completion_logprobs, pack
from reasoning_rl.models import load_policy, load_tokenizer
from reasoning_rl.optim import make_optimizer
from reasoning_rl.policy_gradient import PolicyGradient, PolicyGradientConfig
from reasoning_rl.rollout import Rollouts

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


def train(tiny_model, batches, skip: bool, optimizer: str = "sgd", shared: bool = False, **options):
    """``batches`` of updates from the same start. SGD moves each weight by lr x its gradient, so equal weights
    mean equal gradients. AdamW divides each gradient by its own size, which turns float32 rounding in a
    near-zero gradient (summed in another order when rows are skipped) into a visible step: it is used
    where its momentum is the point."""
    torch.manual_seed(0)
    policy = load_policy(str(tiny_model))
    cfg = PolicyGradientConfig(skip_zero_advantage=skip, shared_prompt=shared, autocast=False, micro_batch_size=3, lr=1e-1,
                               **options)
    update = PolicyGradient(cfg, GroupRelative())
    reference = load_policy(str(tiny_model)).eval() if cfg.beta > 0 else None
    if optimizer == "sgd":
        optimizer = torch.optim.SGD(policy.parameters(), lr=cfg.lr)
    else:
        optimizer, _ = make_optimizer(policy, 1e-3, 0.01, 0)
    update.setup(policy, reference, load_tokenizer(str(tiny_model)), optimizer, str(tiny_model))
    assert update.shared_prompt == shared
    metrics = [update(rollouts, step) for step, rollouts in enumerate(batches, start=1)]
    return policy, metrics


def max_difference(a, b) -> float:
    return max((pa - pb).abs().max().item() for pa, pb in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("aggregation", ["sequence_mean", "token_mean", "sequence_sum"])
@pytest.mark.parametrize("mu", [1, 2])
@pytest.mark.parametrize("skip, shared", [(True, False), (False, True), (True, True)], ids=["skip", "shared", "both"])
def test_each_saving_and_both_take_the_plain_step(tiny_model, aggregation, mu, skip, shared):
    plain, plain_metrics = train(tiny_model, [batch(MIXED)], skip=False, loss_aggregation=aggregation, mu=mu)
    fast, fast_metrics = train(tiny_model, [batch(MIXED)], skip=skip, shared=shared, loss_aggregation=aggregation, mu=mu)
    assert max_difference(plain, fast) < 1e-6
    assert max_difference(plain, load_policy(str(tiny_model))) > 1e-4  # the step did move the weights
    assert (plain_metrics[0]["train/rows_skipped"], fast_metrics[0]["train/rows_skipped"]) == (0, 8 if skip else 0)
    assert plain_metrics[0]["train/loss"] == pytest.approx(fast_metrics[0]["train/loss"], abs=1e-6)


@pytest.mark.parametrize("mini_batches", [1, 2])
def test_the_shared_prompt_serves_the_reference_and_old_policy_too(tiny_model, mini_batches):
    # beta > 0 needs the reference's log-probs, and mu = 2 the old policy's: both come from the shared forward
    options = dict(beta=0.04, mu=2, mini_batches=mini_batches)
    plain, plain_metrics = train(tiny_model, [batch(MIXED)], skip=False, **options)
    shared, shared_metrics = train(tiny_model, [batch(MIXED)], skip=False, shared=True, **options)
    assert max_difference(plain, shared) < 1e-6
    assert plain_metrics[0]["train/kl"] > 0 and shared_metrics[0]["train/kl"] == pytest.approx(plain_metrics[0]["train/kl"], rel=1e-4)


@pytest.mark.parametrize("group_sizes", [[4, 4, 4], [1, 1, 1, 1], [3, 1, 5]], ids=["G=4", "G=1", "uneven"])
def test_shared_prompt_forward_matches_the_plain_forward(tiny_model, group_sizes):
    """Log-probs within 1e-5 and gradients within 1e-4 (float32), prompts of 2..11 tokens (left-padded)."""
    torch.manual_seed(0)
    rng = random.Random(len(group_sizes))
    model = load_policy(str(tiny_model)).train()
    prompts = [[rng.randrange(3, 400) for _ in range(rng.randrange(2, 12))] for _ in group_sizes]
    owner = [k for k, size in enumerate(group_sizes) for _ in range(size)]
    completions = [[rng.randrange(3, 400) for _ in range(rng.randrange(1, 9))] for _ in owner]
    assert len({len(p) for p in prompts}) > 1 and len({len(c) for c in completions}) > 1
    weights = torch.randn(len(owner), 8)  # a loss that weighs every token differently

    def forward(shared: bool):
        model.zero_grad(set_to_none=True)
        if shared:
            encoded = EncodedPrompts(model, prompts, 0, autocast=False)  # each prompt once; row i continues prompts[owner[i]]
            logprobs, entropy, mask = encoded.logprobs(model, owner, completions, 0, with_entropy=True)
        else:
            ids, attention, mask = pack([prompts[k] for k in owner], completions, 0)
            logprobs, entropy = completion_logprobs(model, ids, attention, mask.shape[1], with_entropy=True)
        (logprobs * mask * weights[:, : mask.shape[1]]).sum().backward()
        return logprobs * mask, entropy * mask, {n: p.grad.clone() for n, p in model.named_parameters()}

    (plain, plain_entropy, plain_grads), (shared, shared_entropy, shared_grads) = forward(False), forward(True)
    assert plain.shape == shared.shape
    assert (plain - shared).abs().max() < 1e-5
    assert (plain_entropy - shared_entropy).abs().max() < 1e-5
    assert max((plain_grads[n] - shared_grads[n]).abs().max().item() for n in plain_grads) < 1e-4
    assert max(g.abs().max().item() for g in plain_grads.values()) > 1e-2  # the gradients compared are not all ~0


def test_shared_prompt_steps_aside_under_gradient_checkpointing(tiny_model, capsys):
    policy = load_policy(str(tiny_model))
    policy.gradient_checkpointing_enable()
    update = PolicyGradient(PolicyGradientConfig(), GroupRelative())
    update.setup(policy, None, load_tokenizer(str(tiny_model)), torch.optim.SGD(policy.parameters(), lr=0.1), str(tiny_model))
    assert not update.shared_prompt
    assert "--shared-prompt does not apply here (gradient checkpointing" in capsys.readouterr().out


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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_selective_log_softmax_matches_autograd_through_log_softmax(dtype):
    """The hand-written backward gives autograd's gradient; a chunk boundary inside the batch changes nothing."""
    from reasoning_rl.logprobs import selective_log_softmax

    torch.manual_seed(0)
    logits = (torch.randn(3, 5, 50) * 4).to(dtype)
    targets = torch.randint(0, 50, (3, 5))
    weights = torch.randn(3, 5)
    mine = logits.clone().requires_grad_()
    logprobs, entropy = selective_log_softmax(mine, targets, with_entropy=True, chunk=4)  # 15 tokens: chunks of 4
    (logprobs * weights).sum().backward()
    reference = logits.clone().requires_grad_()
    full = torch.log_softmax(reference.float(), dim=-1)
    expected = full.gather(-1, targets[..., None]).squeeze(-1)
    (expected * weights).sum().backward()
    assert mine.grad.dtype == dtype
    assert (logprobs - expected).abs().max() < 1e-5
    assert (mine.grad.float() - reference.grad.float()).abs().max() < (1e-6 if dtype == torch.float32 else 1e-2)
    assert (entropy - (-(full.exp() * full).sum(-1))).abs().max() < 1e-4


def test_training_log_probs_are_those_of_the_tempered_distribution(tiny_model):
    """At temperature T the engine samples from softmax(z / T); both forwards score that distribution."""
    torch.manual_seed(0)
    model = load_policy(str(tiny_model)).eval()
    prompts, owner, completions = [[5, 6, 7], [8, 9]], [0, 0, 1], [[10, 11, 12], [13], [14, 15]]
    ids, attention, mask = pack([prompts[k] for k in owner], completions, 0)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attention, position_ids=(attention.cumsum(-1) - 1).clamp(min=0)).logits
        by_hand = torch.log_softmax(logits[:, -4:-1] / 0.5, dim=-1).gather(-1, ids[:, -3:, None]).squeeze(-1)
        plain, _ = completion_logprobs(model, ids, attention, 3, temperature=0.5)
        shared, _, _ = EncodedPrompts(model, prompts, 0).logprobs(model, owner, completions, 0, temperature=0.5)
        untempered, _ = completion_logprobs(model, ids, attention, 3)
    assert ((plain - by_hand) * mask).abs().max() < 1e-5
    assert ((shared - by_hand) * mask).abs().max() < 1e-5
    assert ((untempered - by_hand) * mask).abs().max() > 1e-2  # the temperature is not a no-op here
